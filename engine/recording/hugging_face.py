"""Watching a Hugging Face `Trainer` with one line: `Trainer(..., callbacks=[HeadwatchCallback("runs/my-model")])`.

Needs transformers (and the accelerate its Trainer needs); the rest of Headwatch does not, so this module is
imported only when asked for (`from headwatch import HeadwatchCallback`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from engine.recording.logger import warn
from engine.recording.tokens import Tokenizer
from engine.recording.watch import Watcher
from engine.runs.ending import Ending


class HeadwatchCallback(TrainerCallback):
    """Records the Trainer's run into the Headwatch run folder `out` (new or empty), as `watch` records a loop of
    your own: the loss of every optimizer step (the mean of its micro-batches' losses, as the model returned them),
    and every `every` steps each head's optimizer statistics and, at log-spaced ones, its attention weights. The
    run ends "finished" with the Trainer's training; a run whose training raised stays "training elsewhere" until
    the dashboard finds it quiet ("interrupted"). Its tokens are named by `tokenizer` (see engine.recording.watch), or
    else by the Trainer's own tokenizer (its processing_class) when it has one."""

    def __init__(
        self, out: str | Path, every: int = 10, tensorboard: bool = False, tokenizer: Tokenizer | None = None
    ) -> None:
        self.out, self.every, self.tensorboard, self.tokenizer = Path(out), every, tensorboard, tokenizer
        self.watcher: Watcher | None = None
        self._losses: list[torch.Tensor] = []
        self._hook: Any = None
        self._said_no_loss = False

    def on_train_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: nn.Module | None = None,
        optimizer: Any = None,
        processing_class: Any = None,
        **kwargs: Any,
    ) -> None:
        tokenizer = self.tokenizer if self.tokenizer is not None else _tokenizer_of(processing_class)
        self.watcher = Watcher(model, _torch_optimizer(optimizer), self.out, self.every, self.tensorboard, tokenizer)
        self._hook = model.register_forward_hook(self._heard_loss)

    def _heard_loss(self, model: nn.Module, args: tuple, output: Any) -> None:
        loss = output.get("loss") if isinstance(output, dict) else getattr(output, "loss", None)
        if model.training and torch.is_tensor(loss):
            self._losses.append(loss.detach())

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if not self._losses and not self._said_no_loss:
            self._said_no_loss = True
            warn(
                "the model returns no loss (a compute_loss of your own?): Headwatch records its steps' loss as missing"
            )
        loss = torch.stack(self._losses).float().mean() if self._losses else float("nan")
        self._losses = []
        self.watcher.step(loss)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._hook.remove()
        self.watcher.close(Ending("finished"))


def _tokenizer_of(processing_class: Any) -> Any:
    """The Trainer's tokenizer: its processing_class, or the tokenizer inside a processor (text and images)."""
    for candidate in (processing_class, getattr(processing_class, "tokenizer", None)):
        if callable(getattr(candidate, "convert_ids_to_tokens", None)):
            return candidate
    return None


def _torch_optimizer(optimizer: Any) -> torch.optim.Optimizer:
    """The torch optimizer inside accelerate's wrapper (AcceleratedOptimizer), whose state holds Adam's memories."""
    while isinstance(getattr(optimizer, "optimizer", None), torch.optim.Optimizer):
        optimizer = optimizer.optimizer
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"the Trainer's optimizer ({type(optimizer).__name__}) holds no torch optimizer to watch")
    return optimizer
