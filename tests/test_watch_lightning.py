"""Watching a PyTorch Lightning Trainer with one callback: a tiny LightningModule around a tiny attention model, on
the CPU."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from engine.runs.listing import list_runs
from engine.runs.replay import replay

pl = pytest.importorskip("lightning.pytorch", reason="lightning is not installed (requirements-dev.txt)")

HEADS, WIDTH, VOCAB, LENGTH = 2, 8, 20, 5


class Tiny(pl.LightningModule):
    """Embedding, one encoder layer with dropout, a head: it learns each token's own id, and keeps its losses."""

    def __init__(self, fail_at: int | None = None) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(WIDTH, HEADS, dim_feedforward=16, dropout=0.1, batch_first=True)
        self.model = nn.Sequential(
            nn.Embedding(VOCAB, WIDTH), nn.TransformerEncoder(layer, 1, enable_nested_tensor=False), nn.Linear(WIDTH, 1)
        )
        self.fail_at, self.losses = fail_at, []

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        if batch_idx == self.fail_at:
            raise RuntimeError("the data broke")
        [ids] = batch
        loss = (self.model(ids).squeeze(-1) - ids.float() / VOCAB).pow(2).mean()
        self.losses.append(loss.item())
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def fitted(callbacks: list, batches: int = 6, accumulate: int = 1, fail_at: int | None = None) -> Tiny:
    pl.seed_everything(0, verbose=False)
    module = Tiny(fail_at)
    ids = torch.randint(0, VOCAB, (3 * batches, LENGTH), generator=torch.Generator().manual_seed(1))
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
        accumulate_grad_batches=accumulate,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, DataLoader(TensorDataset(ids), batch_size=3))
    return module


@pytest.mark.parametrize("accumulate", [1, 2])
def test_a_lightning_trainer_is_watched_with_one_callback_and_trains_as_without_it(
    tmp_path: Path, accumulate: int
) -> None:
    from headwatch import HeadwatchLightningCallback

    plain = fitted([], accumulate=accumulate)
    callback = HeadwatchLightningCallback(tmp_path / "run", every=2, tokenizer=lambda i: f"w{i}")
    watched = fitted([callback], accumulate=accumulate)
    assert all(
        torch.equal(a, b) for a, b in zip(plain.state_dict().values(), watched.state_dict().values(), strict=True)
    )  # bit for bit, dropout included
    steps = 6 // accumulate  # one optimizer step per `accumulate` batches
    snap = replay(tmp_path / "run")
    assert (snap.status, snap.step, snap.attention_names) == ("finished", steps, ("model.1.layers.0.self_attn",))
    step_losses = np.reshape(watched.losses, (steps, accumulate)).mean(axis=1)  # each step's micro-batches
    assert snap.loss.values == pytest.approx(step_losses, rel=1e-5)
    assert [p.step for p in snap.optim] == [s for s in range(1, steps + 1) if s == 1 or s % 2 == 0]
    assert all(h.mean_abs_m > 0 for h in snap.optim[-1].heads["model.1.layers.0.self_attn"])
    first = snap.attention[0]
    assert first.step == 1 and first.weights["model.1.layers.0.self_attn"].shape == (3, HEADS, LENGTH, LENGTH)
    ids = torch.randint(0, VOCAB, (18, LENGTH), generator=torch.Generator().manual_seed(1))[:3]  # the first batch
    assert first.tokens == tuple(tuple(f"w{i}" for i in example) for example in ids.tolist())


def test_a_lightning_training_that_raises_ends_the_run_as_failed(tmp_path: Path) -> None:
    from headwatch import HeadwatchLightningCallback

    with pytest.raises(RuntimeError, match="the data broke"):
        fitted([HeadwatchLightningCallback(tmp_path / "run", every=2)], fail_at=3)
    [listed] = list_runs(tmp_path)
    assert (listed.status, listed.step) == ("failed", 3)
    assert not any(math.isnan(v) for v in replay(tmp_path / "run").loss.values)
