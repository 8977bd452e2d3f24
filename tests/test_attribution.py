"""Causal attribution of reasons to heads, checked on models whose truth is known by construction."""

from __future__ import annotations

import pytest
import torch

from data.catalog import load_catalog
from data.generator import generate_claims
from data.rules import check_claim
from data.tokenizer import Tokenizer
from data.vocabulary import CATEGORIES
from engine.attribution import (
    CHECKS,
    HeadAttribution,
    attribute,
    direct_effects,
    logit_directions,
    minimal_pairs,
    pair_batch,
    patched_runner,
    reason_of,
    run_pairs,
)
from engine.dataset import encode_claims
from engine.model import REASONS, TARGET_ID, ClaimsTransformer, ModelConfig
from engine.ownership import GENERALIST, LITTLE_EFFECT, NOT_PATCHED, OWNED, owners, role_label

CROSS = "decoder.0.cross"
WIRED = ("dose", "amount", "diagnosis", "specialty")  # head k reads only this field


@pytest.fixture(scope="module")
def setting():
    catalog = load_catalog()
    tokenizer = Tokenizer.from_catalog(catalog)
    pairs = minimal_pairs(catalog, tokenizer, per_check=12)
    claims = encode_claims(generate_claims(200, 5, catalog), tokenizer, 48)
    return catalog, tokenizer, pairs, claims, pair_batch(pairs, tokenizer, 48)


def random_model(tokenizer: Tokenizer) -> ClaimsTransformer:
    torch.manual_seed(0)
    model = ClaimsTransformer(ModelConfig(vocab_size=len(tokenizer.vocab), d_model=32, d_ff=64))
    for param in model.parameters():
        torch.nn.init.normal_(param, std=0.3)
    return model.eval()


def wired_model(tokenizer: Tokenizer) -> ClaimsTransformer:
    """Each cross-attention head looks only at the words of one field (at nothing when the claim has none), and
    the encoder passes each word on unmixed, so a head's output depends on its field alone."""
    model = random_model(tokenizer)
    with torch.no_grad():
        model.category_embedding.weight.zero_()
        model.token_embedding.weight[:, : len(CATEGORIES)] = 0.0
        for category in range(len(CATEGORIES)):
            model.category_embedding.weight[category, category] = 10.0  # dimension c marks field c
        encoder = model.encoder[0]
        for linear in (encoder.attention.out, encoder.ff.down):
            linear.weight.zero_()
            linear.bias.zero_()
        model.norm_keys.weight.fill_(1.0)
        model.norm_keys.bias.zero_()
        cross = model.decoder[0].cross_attention
        cross.null_key.zero_()  # scores 0: above every other field's words, far below the head's own
        cross.query.weight.zero_()
        cross.query.bias.fill_(1.0)
        cross.key.weight.zero_()
        cross.key.bias.zero_()
        width = cross.head_dim
        for head, field in enumerate(WIRED):
            cross.key.weight[head * width : (head + 1) * width, CATEGORIES.index(field)] = 1000.0
    return model


def test_minimal_pairs_differ_in_the_one_field_their_check_is_about(setting) -> None:
    catalog, _, pairs, _, _ = setting
    assert {p.check for p in pairs} == set(CHECKS)
    for pair in pairs:
        (violation,) = check_claim(pair.invalid.fields, catalog)
        assert (violation.kind if violation.reason == "ADMIN" else violation.reason) == pair.check
        assert not check_claim(pair.valid.fields, catalog)
        valid, invalid = vars(pair.valid.fields), vars(pair.invalid.fields)
        changed = [name for name in valid if valid[name] != invalid[name]]
        assert len(changed) == 1, pair


def test_patching_a_head_with_its_own_output_changes_nothing(setting) -> None:
    _, tokenizer, _, claims, _ = setting
    model = random_model(tokenizer)
    for attention in (model.decoder[0].cross_attention, model.encoder[0].attention):
        run = patched_runner(model, claims, attention)
        log_probs, outputs = run()
        assert torch.allclose(log_probs, model.class_log_probs(claims.tokens, claims.categories), atol=1e-6)
        for head in range(attention.n_heads):
            assert torch.equal(run(outputs, head)[0], log_probs)  # the hook only reads
        assert not torch.allclose(run(outputs.flip(0), 0)[0], log_probs)  # another claim's output does change it


def test_a_head_that_reads_one_field_carries_exactly_the_checks_on_that_field(setting) -> None:
    _, tokenizer, _, claims, batch = setting
    heads = attribute(wired_model(tokenizer), CROSS, claims, batch)
    field_of = {"MEDICAL": "diagnosis", "DOSAGE": "dose", "COST": "amount", "sex": "sex", "age": "age",
                "specialty": "specialty", "place": "place"}
    for head, field in enumerate(WIRED):
        for check in CHECKS:
            expected = 1.0 if field_of[check] == field else 0.0
            assert heads[head].necessity[check] == pytest.approx(expected, abs=1e-3), (head, check)
            assert heads[head].sufficiency[check] == pytest.approx(expected, abs=1e-3), (head, check)


def test_one_head_doing_everything_is_one_generalist(setting) -> None:
    _, tokenizer, _, claims, batch = setting
    model = random_model(tokenizer)
    cross = model.decoder[0].cross_attention
    with torch.no_grad():
        cross.out.weight[:, cross.head_dim :] = 0.0  # only head 0 reaches the answer
    heads = owners(attribute(model, CROSS, claims, batch))
    assert all(heads[0].necessity[c] == pytest.approx(1.0, abs=1e-4) for c in CHECKS)
    assert all(h.necessity[c] == pytest.approx(0.0, abs=1e-6) for h in heads[1:] for c in CHECKS)
    assert [h.owns for h in heads] == [None] * 4  # head 0 carries every reason: a generalist, not a specialist
    assert [h.kind for h in heads] == [GENERALIST] + [LITTLE_EFFECT] * 3


def _head(necessity: dict[str, float], valid_drop: float = 0.0) -> HeadAttribution:
    full = {c: necessity.get(c, necessity.get(reason_of(c), 0.0)) for c in CHECKS}
    return HeadAttribution(full, full, {}, {"VALID": valid_drop}, {})


def test_ownership_needs_one_reason_only_valid_untouched_and_no_rival() -> None:
    dosage = _head({"DOSAGE": 0.9})
    assert [h.owns for h in owners([dosage, _head({"COST": 0.7})])] == ["DOSAGE", "COST"]
    assert owners([_head({"DOSAGE": 0.9, "COST": OWNED})])[0].owns is None  # two reasons depend on it
    assert owners([_head({"DOSAGE": 0.9, "sex": 0.3})])[0].owns is None  # so does an ADMIN check
    assert owners([_head({"DOSAGE": 0.9}, valid_drop=0.5)])[0].owns is None  # valid claims break without it
    assert [h.owns for h in owners([dosage, dosage])] == [None, None]  # two heads for one reason: shared
    assert owners([_head({"sex": 0.9, "age": 0.9, "specialty": 0.9, "place": 0.9})])[0].owns == "ADMIN"
    assert owners([_head({"sex": 0.9, "age": 0.9})])[0].owns is None  # half of ADMIN's checks: mean 0.45


def test_labels_say_what_the_measurement_found() -> None:
    dosage, cost = _head({"DOSAGE": 0.9}), _head({"COST": 0.7, "sex": 0.3})
    heads = [dosage, cost, _head({"MEDICAL": 0.6, "DOSAGE": 0.6}), _head({"place": 0.4}), _head({"place": 0.1})]
    labelled = owners(heads)
    assert [h.label for h in labelled] == ["DOSAGE specialist", "leans COST", "generalist", "helps ADMIN (place)",
                                           "little effect"]
    assert [(h.kind, h.reason) for h in labelled] == [("specialist", "DOSAGE"), ("leans", "COST"),
                                                      ("generalist", None), ("helps", "place"), ("little effect", None)]
    patient = owners([_head({"sex": 0.63, "age": 0.6})])[0]  # only ADMIN needs it, two of its checks: not a generalist
    assert (patient.label, patient.kind, patient.reason) == ("helps ADMIN (sex, age)", "helps", "sex, age")
    assert "63% of sex's and 60% of age's evidence" in patient.evidence
    assert owners([_head({"MEDICAL": 0.3, "sex": 0.3})])[0].label == "generalist"  # checks of two reasons
    shared = owners([dosage, dosage])
    assert [h.label for h in shared] == ["leans DOSAGE"] * 2 and "Head 2 carries DOSAGE as well" in shared[0].evidence
    assert "90%" in owners([dosage])[0].evidence


def test_mean_ablation_shows_where_answers_go_and_encoder_heads_are_not_patched(setting) -> None:
    _, tokenizer, _, claims, batch = setting
    model = random_model(tokenizer)
    cross = attribute(model, CROSS, claims, batch)
    for head in cross:
        shares = [sum(answered.values()) for answered in head.answers.values() if any(answered.values())]
        assert shares and all(share == pytest.approx(1.0) for share in shares)
        assert head.ablation["VALID"] == pytest.approx(head.valid_drop)
    encoder = owners(attribute(model, "encoder.0.self", claims, batch))
    assert all(not h.necessity and h.owns is None and h.kind == NOT_PATCHED for h in encoder)


def test_direct_logit_attribution_adds_up_exactly_with_the_rest_of_the_residual(setting) -> None:
    _, tokenizer, _, claims, _ = setting
    model = random_model(tokenizer)
    cross = model.decoder[0].cross_attention
    reasons = torch.randint(0, len(REASONS), (len(claims),), generator=torch.Generator().manual_seed(0))
    final: list[torch.Tensor] = []
    handle = model.norm_out.register_forward_pre_hook(lambda _m, args: final.append(args[0]))
    with torch.no_grad():
        memory = model.encode(claims.tokens, claims.categories)
        targets = torch.tensor([[TARGET_ID["<bos>"], TARGET_ID["INVALID"]]]).expand(len(claims), 2)
        logits = model.decode(targets, memory)  # (B, 2, V)
        heads = direct_effects(model, cross, claims, reasons)  # (B, H)
    handle.remove()
    rows = [TARGET_ID[r] for r in REASONS]
    chosen = logits[:, 1, rows].gather(1, reasons[:, None]).squeeze(1)
    actual = (logits[:, 0, TARGET_ID["INVALID"]] - logits[:, 0, TARGET_ID["VALID"]]
              + chosen - (logits[:, 1, rows].sum(1) - chosen) / (len(REASONS) - 1))
    # everything else in the final residual, read the same way: the residual minus the heads' writes, plus the
    # LayerNorm's and the unembedding's constants
    residual = final[-1]
    sigma = (residual.var(-1, unbiased=False, keepdim=True) + model.norm_out.eps).sqrt()
    verdict, reason = logit_directions(model, reasons)
    directions = torch.stack([verdict, reason], dim=1)  # (B, 2, C)
    bias = model.output.bias
    constants = (bias[TARGET_ID["INVALID"]] - bias[TARGET_ID["VALID"]] + bias[rows].gather(0, reasons)
                 - (bias[rows].sum() - bias[rows].gather(0, reasons)) / (len(REASONS) - 1))
    constants = constants + (directions * model.norm_out.bias).sum((1, 2))
    total = ((residual - residual.mean(-1, keepdim=True)) / sigma * model.norm_out.weight * directions).sum((1, 2))
    assert torch.allclose(total + constants, actual, atol=1e-4)  # the frozen-LayerNorm reading is exact
    _, outputs = patched_runner(model, claims, cross)()
    rest = residual - torch.einsum("bsk,ck->bsc", outputs, cross.out.weight)  # the residual without the heads
    rest_read = ((rest - rest.mean(-1, keepdim=True)) / sigma * model.norm_out.weight * directions).sum((1, 2))
    assert torch.allclose(heads.sum(1) + rest_read + constants, actual, atol=1e-4)


def test_run_pairs_are_made_once_per_tokenizer(setting) -> None:
    _, tokenizer, _, _, _ = setting
    first = run_pairs(tokenizer, 48)
    assert run_pairs(tokenizer, 48) is first and len(first.checks) > 100
    other = Tokenizer(tokenizer.vocab, dict(list(tokenizer.aliases.items())[1:]))  # one name fewer
    assert run_pairs(other, 48) is not first  # other aliases read claims otherwise: their own pairs


@pytest.mark.parametrize(("label", "kind", "reason"), [
    ("DOSAGE specialist", "specialist", "DOSAGE"), ("leans COST", "leans", "COST"),
    ("helps ADMIN (age)", "helps", "age"), ("helps ADMIN (sex, age)", "helps", "sex, age"),
    ("helps MEDICAL", "helps", "MEDICAL"), ("generalist", "generalist", None),
])
def test_runs_saved_before_heads_had_a_kind_read_it_from_their_label(label: str, kind: str, reason: str | None) -> None:
    from engine.run_files import specialization_point

    head = {"shares": {"dose": 1.0}, "entropy": 0.1, "confidence": 0.9, "importance": 0.0, "ablation": {},
            "label": label, "evidence": "numbers"}
    [read] = specialization_point({"step": 5, "heads": {CROSS: [head]}}).heads[CROSS]
    assert (read.kind, read.reason) == (kind, reason)
    assert role_label(kind, reason) == label  # the same words as a run that records its kind
