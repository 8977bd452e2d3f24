"""Model: capture points and head hooks that only read never change the result, replacing a head does, the five
outcomes are a distribution."""

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest
import torch

from data.rules import CLASSES
from engine.interpret.direct_logit import direct_effects
from engine.model.transformer import HeadHook, ModelConfig
from engine.task.claims_model import ClaimsTransformer, targets_for_classes
from engine.task.dataset import ClaimTensors


def tiny_batch(model: ClaimsTransformer, batch: int = 5, length: int = 9) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randint(2, model.config.vocab_size, (batch, length), generator=generator)
    tokens[0, 6:] = 0  # padding
    categories = torch.randint(0, model.config.n_categories, (batch, length), generator=generator)
    return tokens, categories


def trained_like_model() -> ClaimsTransformer:
    torch.manual_seed(0)
    model = ClaimsTransformer(ModelConfig(vocab_size=50, d_model=32, d_ff=64, n_encoder_layers=2))
    with torch.no_grad():  # larger weights than the init so heads differ visibly
        for p in model.parameters():
            p.mul_(20)
    return model.eval()


def test_capture_leaves_logits_identical() -> None:
    model = trained_like_model()
    tokens, categories = tiny_batch(model)
    targets, _ = targets_for_classes(torch.tensor([0, 1, 2, 3, 4]))
    plain = model(tokens, categories, targets)
    capture: dict[str, torch.Tensor] = {}
    captured = model(tokens, categories, targets, capture=capture)
    assert torch.equal(plain, captured)
    assert set(capture) == {"encoder.0.self", "encoder.1.self", "decoder.0.self", "decoder.0.cross"}
    assert capture["encoder.0.self"].shape == (5, 4, 9, 9)
    assert capture["decoder.0.cross"].shape == (5, 4, 3, 9)
    rows = capture["decoder.0.cross"].sum(-1)
    assert torch.allclose(rows, torch.ones_like(rows))
    assert float(capture["encoder.0.self"][0, :, :, 6:].abs().max()) == 0.0  # padding gets no attention


@contextmanager
def reading_every_head(model: ClaimsTransformer, seen: list[torch.Tensor]) -> Iterator[None]:
    """A hook on every attention's HeadPoint that keeps a copy of what the heads hand on, and returns nothing."""
    with ExitStack() as hooks:
        for name in model.attention_names():
            hooks.enter_context(model.attention_named(name).heads.hooked(lambda heads: seen.append(heads.clone())))
        yield


def test_a_hook_that_only_reads_leaves_every_result_bit_identical_and_replacing_a_head_changes_it() -> None:
    model = trained_like_model()
    tokens, categories = tiny_batch(model)
    plain = model.class_log_probs(tokens, categories)
    seen: list[torch.Tensor] = []
    with reading_every_head(model, seen):
        read = model.class_log_probs(tokens, categories)
    assert torch.equal(plain, read)
    assert [tuple(h.shape) for h in seen] == [(5, 4, 9, 8), (5, 4, 9, 8), (5, 4, 2, 8), (5, 4, 2, 8)]
    for name in model.attention_names():

        def silenced(heads: torch.Tensor) -> torch.Tensor:
            heads = heads.clone()
            heads[:, 2] = 0.0
            return heads

        with model.attention_named(name).heads.hooked(silenced):
            assert not torch.allclose(plain, model.class_log_probs(tokens, categories)), name
    assert torch.equal(plain, model.class_log_probs(tokens, categories))  # the hooks are gone


def test_training_with_hooks_attached_trains_exactly_the_same_model() -> None:
    def trained(hooked: bool) -> dict[str, torch.Tensor]:
        model = trained_like_model().train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        tokens, categories = tiny_batch(model)
        inputs, labels = targets_for_classes(torch.tensor([0, 1, 2, 3, 4]))
        with ExitStack() as stack:
            if hooked:
                stack.enter_context(reading_every_head(model, []))
            for _ in range(3):
                logits = model(tokens, categories, inputs)
                loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten())
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        return {k: v.detach().clone() for k, v in model.state_dict().items()}

    plain, hooked = trained(False), trained(True)
    assert plain.keys() == hooked.keys()
    assert all(torch.equal(plain[k], hooked[k]) for k in plain)


def test_reused_keys_and_values_give_the_same_outcomes_with_and_without_a_replaced_head() -> None:
    model = trained_like_model()
    tokens, categories = tiny_batch(model)
    memory = model.encode(tokens, categories)
    reused = model.with_keys_values(memory)
    assert set(reused.keys_values or {}) == {"decoder.0.cross"}
    expected = model.outcome_log_probs(memory)
    assert torch.allclose(model.outcome_log_probs(reused), expected, atol=1e-6)
    with model.attention_named("decoder.0.cross").heads.hooked(lambda heads: heads.flip(0)):
        expected = model.outcome_log_probs(memory)
        assert torch.allclose(model.outcome_log_probs(reused), expected, atol=1e-6)


def test_outcome_probabilities_sum_to_one() -> None:
    model = trained_like_model()
    tokens, categories = tiny_batch(model)
    probabilities = model.class_log_probs(tokens, categories).exp()
    assert probabilities.shape == (5, len(CLASSES))
    assert torch.allclose(probabilities.sum(-1), torch.ones(5), atol=1e-5)


def test_targets_follow_bos_verdict_reason_eos() -> None:
    inputs, labels = targets_for_classes(torch.tensor([0, 3]))
    from engine.task.claims_model import TARGET_VOCAB

    assert [TARGET_VOCAB[i] for i in inputs[0]] == ["<bos>", "VALID", "NONE"]
    assert [TARGET_VOCAB[i] for i in labels[1]] == ["INVALID", "COST", "<eos>"]


def test_a_claims_result_does_not_depend_on_the_padding_or_the_batch_around_it() -> None:
    model = trained_like_model()
    tokens, categories = tiny_batch(model)
    tokens[2, 4:] = 0
    targets, _ = targets_for_classes(torch.tensor([0, 1, 2, 3, 4]))
    together = model(tokens, categories, targets)
    for row in range(len(tokens)):
        length = int((tokens[row] != 0).sum())
        alone = model(tokens[row : row + 1, :length], categories[row : row + 1, :length], targets[row : row + 1])
        scale = float(together[row].detach().abs().max())  # logits near 100: compare to float32 rounding at that size
        assert torch.allclose(alone[0], together[row], rtol=0, atol=1e-4 * scale), row
    gradients = torch.autograd.grad(together.sum(), model.token_embedding.weight)[0]
    assert gradients[0].abs().max() == 0  # the padding embedding never learns


def scaled_model(cross_keys: str) -> ClaimsTransformer:
    torch.manual_seed(0)
    model = ClaimsTransformer(ModelConfig(vocab_size=50, d_model=32, d_ff=64, cross_keys=cross_keys))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(20)
    return model.eval()


def test_where_cross_attention_looks_is_chosen_from_the_words_as_written() -> None:
    for cross_keys, same_place in (("embeddings", True), ("encoder", False)):
        model = scaled_model(cross_keys)
        tokens, categories = tiny_batch(model)
        plain: dict[str, torch.Tensor] = {}
        silenced: dict[str, torch.Tensor] = {}
        outcomes = model.class_log_probs(tokens, categories, capture=plain)
        with model.attention_named("encoder.0.self").heads.hooked(torch.zeros_like):  # the encoder's heads silenced
            changed = model.class_log_probs(tokens, categories, capture=silenced)
        assert not torch.allclose(outcomes, changed)  # what the heads read changed...
        looks_alike = torch.allclose(plain["decoder.0.cross"], silenced["decoder.0.cross"], atol=1e-6)
        assert looks_alike == same_place, cross_keys  # ... where they look only when keyed on the encoder


def test_settings_read_back_as_written_and_one_this_version_does_not_know_is_ignored() -> None:
    """The model knows nothing of older runs' settings (engine.runs.formats does: test_formats)."""
    assert ModelConfig.from_dict(ModelConfig().to_dict()) == ModelConfig()
    assert ModelConfig.from_dict({"d_model": 32, "retired_setting": 1}) == ModelConfig(d_model=32)


def starting_peaks(config: ModelConfig) -> dict[str, torch.Tensor]:
    """Each head's largest attention weight at step 0, averaged over 64 claims of 12 words: name -> (H,)."""
    torch.manual_seed(0)
    model = ClaimsTransformer(config).eval()
    tokens, categories = tiny_batch(model, batch=64, length=12)
    tokens[0, 6:] = 1  # no padding: every claim is 12 words long
    capture: dict[str, torch.Tensor] = {}
    model.class_log_probs(tokens, categories, capture=capture)
    cross = capture["decoder.0.cross"][:, :, 1, :]  # (N, H, T) from the reason position
    favourite = cross.mean(0).argmax(-1)  # (H,) the position each head looks at most
    assert len(set(favourite.tolist())) > 1  # not all at the same word
    return {"encoder": capture["encoder.0.self"].max(-1).values.mean((0, 2)), "cross": cross.max(-1).values.mean(0)}


def test_attention_heads_start_out_looking_at_different_words() -> None:
    even = 1 / 12
    peaks = starting_peaks(ModelConfig(vocab_size=50))
    assert (peaks["encoder"] > 2 * even).all() and (peaks["cross"] > 3 * even).all()
    narrow = starting_peaks(ModelConfig(vocab_size=50, encoder_qk_init=0.02))
    assert (narrow["encoder"] < 1.5 * even).all()  # at the spread of the other weights: evenly at every word
    assert (narrow["cross"] > 3 * even).all()


def test_sparse_attention_gives_words_exactly_zero_and_keeps_softmaxs_ranking() -> None:
    torch.manual_seed(0)
    sparse = ClaimsTransformer(ModelConfig(vocab_size=50, sparse_attention=True)).eval()
    dense = ClaimsTransformer(ModelConfig(vocab_size=50)).eval()
    dense.load_state_dict(sparse.state_dict())  # the same weights, scores and ranking; only the normalisation differs
    tokens, categories = tiny_batch(sparse, batch=16, length=10)
    weights = {}
    for name, model in (("sparse", sparse), ("dense", dense)):
        capture: dict[str, torch.Tensor] = {}
        model.class_log_probs(tokens, categories, capture=capture)
        weights[name] = capture["decoder.0.cross"]  # (B, H, 2, T)
    real = tokens[:, None, None, :] != 0
    assert (weights["dense"][real.expand_as(weights["dense"])] > 0).all()
    assert (weights["sparse"][real.expand_as(weights["sparse"])] == 0).float().mean() > 0.3
    assert (weights["sparse"].sum(-1) <= 1 + 1e-6).all()  # the rest is what the head gives "nothing"
    kept = weights["sparse"] > 0
    assert (weights["dense"].masked_fill(~kept, 2).amin(-1) >= weights["dense"].masked_fill(kept, -1).amax(-1)).all()


def test_the_sparse_recipe_is_the_default_with_sparse_attention() -> None:
    from engine.training.presets import ABOUT, PRESETS, preset

    assert set(ABOUT) == set(PRESETS)  # the pages say what every recipe is for

    default, sparse = preset("default").to_dict(), preset("sparse").to_dict()
    assert (default["model"].pop("sparse_attention"), sparse["model"].pop("sparse_attention")) == (False, True)
    assert (default.pop("preset"), sparse.pop("preset")) == ("default", "sparse")
    assert default == sparse


def test_sparse_attention_judges_a_claim_with_no_words_without_failing() -> None:
    model = ClaimsTransformer(ModelConfig(vocab_size=50, sparse_attention=True, null_key=False)).eval()
    tokens, categories = tiny_batch(model, batch=2)
    tokens[1] = 0  # every word is padding: no key to look at, and no "nothing" slot
    assert torch.isfinite(model.class_log_probs(tokens, categories)).all()


# Levers for issue 29 (docs/specialization.md, "Levers"): each is off by default, so every run is as it was.
LEVERS = {"cross_value_dim": 4, "cross_head_gate": True, "sparse_encoder": True, "cross_learned_alpha": True}


def test_every_lever_is_off_by_default_and_adds_no_parameter() -> None:
    from engine.training.presets import PRESETS

    assert all(getattr(ModelConfig(), name) in (None, False) for name in LEVERS)
    assert all(getattr(recipe.model, name) in (None, False) for recipe in PRESETS.values() for name in LEVERS)
    model = ClaimsTransformer(ModelConfig(vocab_size=50))
    cross = model.attention_named("decoder.0.cross")
    assert (cross.value_dim, cross.gate, cross.alpha_logit) == (16, None, None)
    assert not any(name.endswith(("gate.weight", "alpha_logit")) for name, _ in model.named_parameters())


def test_each_lever_round_trips_through_a_saved_configuration_and_is_checked() -> None:
    from engine.training.config import ConfigError, TrainConfig

    for name, value in LEVERS.items():
        config = TrainConfig(model=ModelConfig(**{name: value}))
        config.validate()
        assert getattr(TrainConfig.from_dict(config.to_dict()).model, name) == value, name
    for width in (0, -4, 2.5, True, 1000):
        with pytest.raises(ConfigError, match=r"cross value dim must be a whole number in \[1, 256\]"):
            TrainConfig(model=ModelConfig(cross_value_dim=width)).validate()


def lever_model(**settings: object) -> ClaimsTransformer:
    torch.manual_seed(0)
    return ClaimsTransformer(ModelConfig(vocab_size=50, **settings)).eval()


def cross_heads_seen(
    model: ClaimsTransformer, tokens: torch.Tensor, categories: torch.Tensor, hook: HeadHook | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The outcomes, and what the cross-attention's heads handed on (read at its HeadPoint, before `hook`)."""
    seen: list[torch.Tensor] = []

    def read_then_replace(heads: torch.Tensor) -> torch.Tensor | None:
        seen.append(heads.clone())
        return None if hook is None else hook(heads)

    with torch.no_grad(), model.attention_named("decoder.0.cross").heads.hooked(read_then_replace):
        outcomes = model.class_log_probs(tokens, categories)
    return outcomes, seen[0]


def silence_head(head: int) -> HeadHook:
    def silenced(heads: torch.Tensor) -> torch.Tensor:
        heads = heads.clone()
        heads[:, head] = 0.0
        return heads

    return silenced


def test_a_narrower_cross_value_channel_is_what_a_head_hands_on_and_what_its_hook_replaces() -> None:
    model = lever_model(cross_value_dim=4)
    cross = model.attention_named("decoder.0.cross")
    assert (cross.value.out_features, cross.out.in_features) == (16, 16)  # 4 heads of 4, not of 16
    assert model.attention_named("encoder.0.self").value_dim == 16  # the encoder keeps its width
    tokens, categories = tiny_batch(model)
    plain = model.class_log_probs(tokens, categories)
    read, heads = cross_heads_seen(model, tokens, categories)
    assert torch.equal(read, plain) and heads.shape == (5, 4, 2, 4)
    replaced, _ = cross_heads_seen(model, tokens, categories, silence_head(1))
    assert not torch.allclose(replaced, plain)
    claims = ClaimTensors(tokens, categories, torch.zeros(5, dtype=torch.long))
    assert direct_effects(model, cross, claims, torch.zeros(5, dtype=torch.long)).shape == (5, 4)


def test_a_head_gate_scales_the_heads_output_before_its_hook_so_a_replacement_is_not_gated() -> None:
    model = lever_model(cross_head_gate=True)
    tokens, categories = tiny_batch(model)
    cross = model.attention_named("decoder.0.cross")
    _, open_heads = cross_heads_seen(model, tokens, categories)
    with torch.no_grad():
        cross.gate.bias[1] = -100.0  # head 1 shut: sigmoid gives it 0
    plain, shut = cross_heads_seen(model, tokens, categories)
    assert float(shut[:, 1].abs().max()) == 0.0 and torch.equal(shut[:, 0], open_heads[:, 0])
    assert float(open_heads[:, 1].abs().max()) > 0
    reopened, _ = cross_heads_seen(model, tokens, categories, lambda heads: open_heads)
    assert not torch.allclose(reopened, plain)  # what the hook hands on reaches the output projection as it is


def test_a_sparse_encoder_gives_the_encoders_words_exactly_zero_and_leaves_cross_attention_softmax() -> None:
    model = lever_model(sparse_encoder=True)
    tokens, categories = tiny_batch(model)
    capture: dict[str, torch.Tensor] = {}
    model.class_log_probs(tokens, categories, capture=capture)
    real = tokens[:, None, None, :] != 0
    encoder, cross = capture["encoder.0.self"], capture["decoder.0.cross"]
    assert (encoder[real.expand_as(encoder)] == 0).float().mean() > 0.3
    assert (cross[real.expand_as(cross)] > 0).all()
    plain = model.class_log_probs(tokens, categories)
    with model.attention_named("encoder.0.self").heads.hooked(silence_head(0)):
        assert not torch.allclose(model.class_log_probs(tokens, categories), plain)


def test_learned_alpha_starts_at_entmax_15_and_each_head_learns_its_own() -> None:
    from entmax import entmax15

    model = lever_model(cross_learned_alpha=True)
    cross = model.attention_named("decoder.0.cross")
    assert torch.equal(cross.alphas(), torch.full((4,), 1.5))
    scores = torch.randn(5, 4, 2, 9, generator=torch.Generator().manual_seed(0)) * 3
    scores[..., 6:] = cross.masked_score  # padding
    weights = cross.normalize(scores, dim=-1)
    assert torch.allclose(weights, entmax15(scores, dim=-1), atol=1e-5)  # bisection finds entmax 1.5's answer
    assert (weights == 0).float().mean() > 0.4
    tokens, categories = tiny_batch(model)
    loss = model.class_log_probs(tokens, categories)[:, 0].sum()
    (gradient,) = torch.autograd.grad(loss, cross.alpha_logit)
    assert (gradient != 0).all()  # every head's alpha is trained
    plain, heads = cross_heads_seen(model, tokens, categories)
    replaced, _ = cross_heads_seen(model, tokens, categories, silence_head(2))
    assert heads.shape == (5, 4, 2, 16) and not torch.allclose(replaced, plain)
