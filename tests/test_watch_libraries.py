"""Watching the models people train, with no code beyond `watch(...)`: Hugging Face transformers (BERT, GPT-2, a
Llama-style decoder with grouped-query attention and RoPE) built from tiny configs, random weights, no downloads;
timm's ViT where timm installs."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from support import Heard
from torch import nn

from engine.interpret.metrics import head_stats
from engine.recording.attention_modules import attention_modules
from engine.recording.watch import watch
from engine.runs.replay import replay
from engine.telemetry import AttentionPoint

transformers = pytest.importorskip("transformers", reason="transformers is not installed (requirements-dev.txt)")

HEADS, WIDTH, VOCAB, LENGTH = 4, 32, 100, 6
WIDTH_OF_HEAD = WIDTH // HEADS


def bert(implementation: str, dropout: float = 0.0) -> nn.Module:
    config = transformers.BertConfig(
        hidden_size=WIDTH,
        num_hidden_layers=2,
        num_attention_heads=HEADS,
        intermediate_size=64,
        vocab_size=VOCAB,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        attn_implementation=implementation,
    )
    return transformers.BertForMaskedLM(config)


def gpt2(implementation: str, dropout: float = 0.0) -> nn.Module:
    config = transformers.GPT2Config(
        n_embd=WIDTH,
        n_layer=2,
        n_head=HEADS,
        vocab_size=VOCAB,
        n_positions=16,
        bos_token_id=0,
        eos_token_id=0,
        resid_pdrop=dropout,
        embd_pdrop=dropout,
        attn_pdrop=dropout,
        attn_implementation=implementation,
    )
    return transformers.GPT2LMHeadModel(config)


def llama(implementation: str, dropout: float = 0.0) -> nn.Module:
    """Two query heads read each key and value head (grouped-query attention); positions by RoPE."""
    config = transformers.LlamaConfig(
        hidden_size=WIDTH,
        num_hidden_layers=2,
        num_attention_heads=HEADS,
        num_key_value_heads=HEADS // 2,
        intermediate_size=64,
        vocab_size=VOCAB,
        attention_dropout=dropout,
        attn_implementation=implementation,
    )
    return transformers.LlamaForCausalLM(config)


MODELS: dict[str, tuple[Callable[..., nn.Module], list[str]]] = {
    "bert": (bert, ["bert.encoder.layer.0.attention", "bert.encoder.layer.1.attention"]),
    "gpt2": (gpt2, ["transformer.h.0.attn", "transformer.h.1.attn"]),
    "llama": (llama, ["model.layers.0.self_attn", "model.layers.1.self_attn"]),
}


def built(family: str, implementation: str, dropout: float = 0.0, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return MODELS[family][0](implementation, dropout)


def batch(step: int, padded: bool) -> dict[str, torch.Tensor]:
    data = torch.Generator().manual_seed(step)
    ids = torch.randint(1, VOCAB, (3, LENGTH), generator=data)
    mask = torch.ones(3, LENGTH, dtype=torch.long)
    if padded:
        mask[1, 4:] = 0  # the second example is two tokens shorter
    return {"input_ids": ids, "attention_mask": mask, "labels": ids}


def train(
    model: nn.Module, optimizer: torch.optim.Optimizer, steps: int, watcher=None, padded: bool = True
) -> list[float]:
    model.train()
    losses = []
    for step in range(steps):
        loss = model(**batch(step, padded)).loss
        loss.backward()
        optimizer.step()
        if watcher is not None:
            watcher.step(loss)
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
@pytest.mark.parametrize("family", list(MODELS))
def test_each_layers_attention_is_found_with_its_heads(family: str, implementation: str) -> None:
    model = built(family, implementation)
    found = attention_modules(model)
    assert list(found) == MODELS[family][1]  # BERT's self-attention is part of its attention block, not a third
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    train(model, optimizer, 1)
    assert all(len(head_stats(optimizer, module)) == HEADS for module in found.values())


@pytest.mark.parametrize("padded", [True, False], ids=["padded", "unpadded"])
@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
@pytest.mark.parametrize("family", list(MODELS))
def test_saved_weights_are_the_models_own_eager_attention(
    family: str, implementation: str, padded: bool, tmp_path: Path
) -> None:
    """Recomputed from the module's own query and key (after RoPE), causal and padding masks included, whatever
    implementation the model trains with: equal to what the model returns when asked for eager attentions."""
    model = built(family, implementation)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    heard = Heard(AttentionPoint)  # as the watcher records it (the run's files keep float16)
    with watch(model, optimizer, tmp_path / "run", every=1) as watcher:
        watcher.observers.append(heard)
        train(model, optimizer, 1, watcher, padded)
    saved = {name: torch.from_numpy(w) for name, w in heard.events[0].weights.items()}
    reference = built(family, "eager")
    reference.load_state_dict(start)
    reference.eval()
    inputs = {k: v for k, v in batch(0, padded).items() if k != "labels"}
    with torch.no_grad():
        own = reference(**inputs, output_attentions=True).attentions
    for name, weights in zip(MODELS[family][1], own, strict=True):
        assert saved[name].shape == (3, HEADS, LENGTH, LENGTH)
        torch.testing.assert_close(saved[name], weights, atol=1e-5, rtol=0)
        torch.testing.assert_close(saved[name].sum(-1), torch.ones(3, HEADS, LENGTH), atol=1e-5, rtol=0)
    if family != "bert":  # a decoder's query reads no later key
        assert (saved[MODELS[family][1][0]].triu(1) == 0).all()
    on_disk = torch.load(tmp_path / "run" / "attention" / "step_000000001.pt")
    assert all(torch.allclose(on_disk[name].float(), saved[name], atol=1e-3) for name in saved)


@pytest.mark.parametrize("family", list(MODELS))
def test_training_with_dropout_is_bit_for_bit_unchanged_by_watching(family: str, tmp_path: Path) -> None:
    implementation = "eager" if family == "llama" else "sdpa"  # eager: the weights it returns are dropped out
    model = built(family, implementation, dropout=0.2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    torch.manual_seed(1)  # the same dropout draws in both loops, unless capture drew any
    plain = train(model, optimizer, 4)
    watched_model = built(family, implementation, dropout=0.2)
    watched_optimizer = torch.optim.AdamW(watched_model.parameters(), lr=1e-3)
    torch.manual_seed(1)
    with watch(watched_model, watched_optimizer, tmp_path / "run", every=1) as watcher:
        watched = train(watched_model, watched_optimizer, 4, watcher)
    assert len(list((tmp_path / "run" / "attention").glob("step_*.pt"))) == 4  # captured at every step
    assert watched == plain
    assert all(
        torch.equal(a, b) for a, b in zip(model.state_dict().values(), watched_model.state_dict().values(), strict=True)
    )


def test_eager_attention_after_dropout_is_not_what_is_saved(tmp_path: Path) -> None:
    """Eager attention returns its weights after dropout (rows adding up to anything); Headwatch saves them before."""
    model = built("bert", "eager", dropout=0.5)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    torch.manual_seed(1)
    dropped = model(**batch(0, padded=False), output_attentions=True).attentions[0].detach()
    assert (dropped.sum(-1) - 1).abs().max() > 0.1
    torch.manual_seed(1)
    heard = Heard(AttentionPoint)  # as the watcher records it (the run's files keep float16)
    with watch(model, optimizer, tmp_path / "run", every=1) as watcher:
        watcher.observers.append(heard)
        train(model, optimizer, 1, watcher, padded=False)
    saved = torch.from_numpy(heard.events[0].weights["bert.encoder.layer.0.attention"])
    torch.testing.assert_close(saved.sum(-1), torch.ones(3, HEADS, LENGTH), atol=1e-5, rtol=0)


def rows(start: int, width: int = WIDTH_OF_HEAD) -> slice:
    return slice(start, start + width)


def hand_split(model: nn.Module, family: str, layer: int, head: int) -> list[tuple[nn.Parameter, tuple]]:
    """Head `head`'s own elements of layer `layer`, each parameter with the index that selects them, by hand."""
    own = rows(head * WIDTH_OF_HEAD)
    if family == "bert":
        block = model.bert.encoder.layer[layer].attention
        qkv = [p for lin in (block.self.query, block.self.key, block.self.value) for p in (lin.weight, lin.bias)]
        return [(p, (own,)) for p in qkv] + [(block.output.dense.weight, (slice(None), own))]
    if family == "gpt2":  # c_attn (in, 3 * width): q, k and v side by side in columns; c_proj (width, out): rows
        attention = model.transformer.h[layer].attn
        columns = [rows(block * WIDTH + head * WIDTH_OF_HEAD) for block in range(3)]
        return (
            [(attention.c_attn.weight, (slice(None), c)) for c in columns]
            + [(attention.c_attn.bias, (c,)) for c in columns]
            + [(attention.c_proj.weight, (own,))]
        )
    attention = model.model.layers[layer].self_attn  # llama: heads 0 and 1 read key and value head 0
    shared = rows(head // 2 * WIDTH_OF_HEAD)
    return [
        (attention.q_proj.weight, (own,)),
        (attention.k_proj.weight, (shared,)),
        (attention.v_proj.weight, (shared,)),
        (attention.o_proj.weight, (slice(None), own)),
    ]


@pytest.mark.parametrize("family", list(MODELS))
def test_each_heads_statistics_are_a_hand_split_of_adams_state(family: str) -> None:
    model = built(family, "sdpa")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    train(model, optimizer, 3)
    loss = model(**batch(9, padded=True)).loss
    loss.backward()  # a gradient to measure beside the state (zero_grad cleared the last one)
    optimizer.step()
    found = attention_modules(model)
    assert len(found) == 2
    for layer, module in enumerate(found.values()):
        stats = head_stats(optimizer, module)
        for head in range(HEADS):
            parts = hand_split(model, family, layer, head)
            m = torch.cat([optimizer.state[p]["exp_avg"][index].reshape(-1) for p, index in parts])
            v = torch.cat([optimizer.state[p]["exp_avg_sq"][index].reshape(-1) for p, index in parts])
            grad = torch.cat([p.grad[index].reshape(-1) for p, index in parts])
            assert stats[head].mean_abs_m == pytest.approx(float(m.abs().mean()), rel=1e-5)
            assert stats[head].mean_sqrt_v == pytest.approx(float(v.sqrt().mean()), rel=1e-5)
            assert stats[head].grad_norm == pytest.approx(float(grad.norm()), rel=1e-5)


def timm_or_why_not() -> object:
    """timm, or the test skips saying why it would not import (here: a torchvision built for another torch)."""
    try:
        return importlib.import_module("timm")
    except Exception as error:  # timm's import fails with whatever torchvision raises, not only ImportError
        pytest.skip(f"timm does not import here: {type(error).__name__}: {error}")


def test_timms_vision_transformer_is_watched_with_no_code(tmp_path: Path) -> None:
    timm = timm_or_why_not()
    torch.manual_seed(0)
    model = timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        img_size=32,
        patch_size=16,
        depth=2,
        num_classes=3,
        drop_rate=0.1,
        attn_drop_rate=0.1,
    )
    found = attention_modules(model)
    assert list(found) == ["blocks.0.attn", "blocks.1.attn"]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    images, labels = torch.randn(2, 3, 32, 32), torch.tensor([0, 2])
    with watch(model, optimizer, tmp_path / "vit", every=1) as watcher:
        loss = nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        watcher.step(loss)
    saved = torch.load(tmp_path / "vit" / "attention" / "step_000000001.pt")["blocks.0.attn"].float()
    heads = found["blocks.0.attn"].num_heads
    assert saved.shape == (2, heads, 5, 5)  # 4 patches and the class token
    torch.testing.assert_close(saved.sum(-1), torch.ones(2, heads, 5), atol=1e-5, rtol=0)


@pytest.mark.slow
def test_the_hugging_face_example_learns_to_copy_watched_from_outside_the_checkout(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[1] / "examples" / "watch_huggingface.py"
    result = subprocess.run(
        [sys.executable, str(example), "--out", str(tmp_path / "gpt2"), "--steps", "120"],
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        "headwatch: watch records 2 attention modules: transformer.h.0.attn (GPT2Attention, 4 heads), "
        "transformer.h.1.attn (GPT2Attention, 4 heads)" in result.stderr
    )
    snap = replay(tmp_path / "gpt2")
    assert (snap.status, snap.step, snap.attention_names) == (
        "finished",
        120,
        ("transformer.h.0.attn", "transformer.h.1.attn"),
    )
    copied = [m.values["copied"] for m in snap.metrics]
    assert np.mean(copied[-10:]) > 0.9 > np.mean(copied[:10])  # it learns to look back
    assert len(snap.optim[-1].heads["transformer.h.1.attn"]) == HEADS


def trained_with_trainer(
    folder: Path, callbacks: list, trainer_class: type | None = None, **settings: object
) -> tuple[nn.Module, list]:
    """A tiny GPT-2 trained 6 steps by Hugging Face's Trainer (AdamW, dropout on, batches of 3 padded sequences)."""
    model = built("gpt2", "sdpa", dropout=0.1)
    rows = [
        {name: tensor[i] for name, tensor in batch(step, padded=True).items()} for step in range(6) for i in range(3)
    ]
    args = transformers.TrainingArguments(
        output_dir=str(folder / "trainer"),
        max_steps=6,
        learning_rate=1e-3,
        per_device_train_batch_size=3,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    trainer = (trainer_class or transformers.Trainer)(
        model=model, args=args, train_dataset=rows, callbacks=callbacks, **settings
    )
    trainer.train()
    return model, [log["loss"] for log in trainer.state.log_history if "loss" in log]


def test_a_trainer_is_watched_with_one_callback_and_trains_as_without_it(tmp_path: Path) -> None:
    from headwatch import HeadwatchCallback

    plain, _ = trained_with_trainer(tmp_path / "plain", [])
    watched, logged = trained_with_trainer(tmp_path / "watched", [HeadwatchCallback(tmp_path / "run", every=2)])
    assert all(
        torch.equal(a, b) for a, b in zip(plain.state_dict().values(), watched.state_dict().values(), strict=True)
    )  # bit for bit, dropout included
    snap = replay(tmp_path / "run")
    assert (snap.status, snap.step, snap.attention_names) == ("finished", 6, tuple(MODELS["gpt2"][1]))
    assert snap.loss.values == pytest.approx(logged, abs=1e-3)  # the loss the Trainer logged at each step
    assert [p.step for p in snap.optim] == [1, 2, 4, 6]
    assert all(h.mean_abs_m > 0 for h in snap.optim[-1].heads["transformer.h.1.attn"])  # AdamW's, unwrapped
    assert snap.attention[0].step == 1 and snap.attention[0].weights["transformer.h.0.attn"].shape == (
        3,
        HEADS,
        LENGTH,
        LENGTH,
    )


class LossOfItsOwn(transformers.Trainer):
    """A Trainer whose loss is computed outside the model: the model returns none."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        logits = model(**inputs).logits
        return nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten())


def test_a_trainer_whose_model_returns_no_loss_is_said_once(tmp_path: Path, caplog) -> None:
    from headwatch import HeadwatchCallback

    with caplog.at_level("WARNING", logger="headwatch"):
        trained_with_trainer(tmp_path, [HeadwatchCallback(tmp_path / "run", every=2)], LossOfItsOwn)
    assert caplog.messages == [
        "the model returns no loss (a compute_loss of your own?): Headwatch records its steps' loss as missing"
    ]
    snap = replay(tmp_path / "run")
    assert snap.step == 6 and np.isnan(snap.loss.values).all() and len(snap.optim) == 4


def word_tokenizer() -> transformers.PreTrainedTokenizerFast:
    """A Hugging Face tokenizer of its own words, t0 to t99, built here (no download)."""
    from tokenizers import Tokenizer, models

    words = Tokenizer(models.WordLevel({f"t{i}": i for i in range(VOCAB)}, unk_token="t0"))
    return transformers.PreTrainedTokenizerFast(tokenizer_object=words, pad_token="t0")


def test_a_trainers_own_tokenizer_names_the_tokens_of_the_saved_attention(tmp_path: Path) -> None:
    from headwatch import HeadwatchCallback

    trained_with_trainer(tmp_path, [HeadwatchCallback(tmp_path / "run", every=2)], processing_class=word_tokenizer())
    trained_rows = {tuple(example) for step in range(6) for example in batch(step, padded=True)["input_ids"].tolist()}
    snap = replay(tmp_path / "run")
    assert [p.step for p in snap.attention] == [1, 2, 4, 6]
    for point in snap.attention:  # the Trainer shuffles: each example is one of its rows, named t<id>
        assert len(point.tokens) == 3 and all(len(tokens) == LENGTH for tokens in point.tokens)
        assert all(tuple(int(t.removeprefix("t")) for t in tokens) in trained_rows for tokens in point.tokens)
