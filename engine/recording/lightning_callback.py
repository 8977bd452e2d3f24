"""Watching a PyTorch Lightning `Trainer` with one line: `Trainer(callbacks=[HeadwatchLightningCallback("runs/mine")])`.

Needs lightning (its `lightning.pytorch`); the rest of Headwatch does not, so this module is imported only when asked
for (`from headwatch import HeadwatchLightningCallback`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from engine.recording.logger import warn
from engine.recording.tokens import Tokenizer
from engine.recording.watch import Watcher
from engine.runs.ending import Ending


class HeadwatchLightningCallback(pl.Callback):
    """Records the Trainer's run of a LightningModule into the Headwatch run folder `out` (new or empty), as `watch`
    records a loop of your own: the loss of every optimizer step (the sum of its micro-batches' losses as Lightning
    scaled them for gradient accumulation: their mean), and every `every` steps each head's optimizer statistics and,
    at log-spaced ones, its attention weights, with each example's tokens when given a `tokenizer` (see
    engine.recording.watch). The run ends "finished" with the training, "stopped" when it is interrupted and "failed"
    when it raises."""

    def __init__(
        self, out: str | Path, every: int = 10, tensorboard: bool = False, tokenizer: Tokenizer | None = None
    ) -> None:
        self.out, self.every, self.tensorboard, self.tokenizer = Path(out), every, tensorboard, tokenizer
        self.watcher: Watcher | None = None
        self._losses: list[torch.Tensor] = []
        self._first_step = 0  # the Trainer's step count when this run began (more than 0 when it resumes)
        self._said_no_loss = False

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        optimizers = trainer.optimizers
        if not optimizers:
            raise ValueError("the LightningModule's configure_optimizers gave no optimizer for Headwatch to watch")
        if len(optimizers) > 1:
            warn(
                f"the LightningModule has {len(optimizers)} optimizers: Headwatch records the statistics of the "
                f"first ({type(optimizers[0]).__name__}) only"
            )
        self._first_step = trainer.global_step
        self.watcher = Watcher(pl_module, optimizers[0], self.out, self.every, self.tensorboard, self.tokenizer)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.watcher.heard_inputs(batch)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if torch.is_tensor(loss):
            self._losses.append(loss.detach())
        if trainer.global_step - self._first_step > self.watcher.steps:  # the optimizer stepped: a step ends
            self.watcher.step(self._step_loss())

    def _step_loss(self) -> torch.Tensor | float:
        losses, self._losses = self._losses, []
        if losses:
            return torch.stack(losses).float().sum()
        if not self._said_no_loss:
            self._said_no_loss = True
            warn("the training_step returns no loss: Headwatch records its steps' loss as missing")
        return float("nan")

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.watcher.close(Ending("finished"))

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if self.watcher is None:
            return
        if isinstance(exception, KeyboardInterrupt):
            self.watcher.close(Ending("stopped"))
        else:
            self.watcher.close(Ending("failed", failure="loop"))
