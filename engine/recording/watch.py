"""Watch your own model: attach Headwatch to any PyTorch model with attention (nn.MultiheadAttention, Hugging Face
transformers, timm, your own registered module; engine.model.attention_kinds) and its optimizer, and get a Headwatch run
folder (the loss at every step; each attention head's optimizer statistics every `every` steps, and its attention
weights at log-spaced ones of those) that the dashboard lists and opens like its own runs.

    with watch(model, optimizer, out="runs/my-model", every=10) as watcher:
        for batch in loader:
            loss = loss_fn(model(batch.x), batch.y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            watcher.step(loss)

Given your tokenizer (`tokenizer=`: anything with convert_ids_to_tokens or decode, or a function from a token id to
its text), the saved attention keeps its examples' tokens, and the Attention page labels its axes with them.

Capture cannot change training: a head's attention weights are computed again, apart, from the inputs its module
was given (without gradients, without dropout), and the model's own forward pass is left as it was; a capture that
fails is said once and stopped, never raised into the model's forward or the optimizer's step. Under
torch.distributed only rank 0 writes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from engine.interpret.metrics import (
    READ_FROM_STATE,
    _groups,
    _head_stats,
    head_stats,
)
from engine.model.attention_kinds import AttentionKind, NotAttention, kind_of, register_attention
from engine.model.head_slices import HeadSlices
from engine.recording.attention_modules import (
    attention_modules,
    check_attention_rows,
    check_slices,
    detached,
    say_what_was_found,
)
from engine.recording.events import Event, Observer, RunWarning, Status
from engine.recording.logger import described, headwatch_logger, warn
from engine.recording.observers import WriterObserver
from engine.recording.tensorboard_files import TensorBoardObserver
from engine.recording.tokens import Tokenizer, token_ids, token_texts
from engine.runs.ending import ENDED_BY, Ending
from engine.runs.layout import MAX_TOKEN_CHARS, WATCHED, WATCHED_EXAMPLES, WATCHED_POSITIONS
from engine.runs.words import warning_text
from engine.runs.writer import RunWriter
from engine.telemetry import AttentionPoint, MetricsPoint, OptimPoint, StepPoint

__all__ = ["HeadSlices", "Watcher", "head_stats", "register_attention", "watch"]

HEARTBEAT_SECONDS = 5.0  # how often the run's status says it is still training (engine.runs.replay.training_elsewhere)
ATTENTION_SPACING = 1.25  # attention is saved at log-spaced steps, as Headwatch's own runs save it: dense early


class Watcher:
    """Records one training run of someone's model into a Headwatch run folder; see `watch`."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        out: Path,
        every: int,
        tensorboard: bool = False,
        tokenizer: Tokenizer | None = None,
    ) -> None:
        if every < 1:
            raise ValueError(f"every must be a whole number of steps from 1 (got {every!r})")
        self._tokens_of = token_texts(tokenizer) if tokenizer is not None else None
        self._ids: list[list[int]] | None = None  # the token ids of the examples whose attention this step saves
        self.optimizer, self.every, self.steps, self.tensorboard = optimizer, every, 0, tensorboard
        self.attention = attention_modules(model)
        self.kinds: dict[str, AttentionKind] = {name: kind_of(module) for name, module in self.attention.items()}
        for name, module in self.attention.items():
            check_slices(name, module)
        # each module's heads and slices, read once: a module's parameters stay its own while it trains
        self._parts = {
            name: (self.kinds[name].heads(module), self.kinds[name].slices(module))
            for name, module in self.attention.items()
        }
        self.captured: dict[str, np.ndarray] = {}
        self._before: dict[int, torch.Tensor] | None = None  # attention weights before a step (see _applied)
        self.started, self.said_running, self.next_attention = time.perf_counter(), 0.0, 1
        self._warned: set[str] = set()
        self.stats_stopped = False
        self.writer = RunWriter(out, self._config(), {}, ()) if _writes() else None
        self.observers: list[Observer] = []
        self._captures: dict[str, Any] = {}  # each attention module's forward hook, removed when its capture fails
        self._hooks: list[Any] = []
        if self.writer:
            say_what_was_found(model, self.attention, self.kinds)
            self.observers = [WriterObserver(self.writer, _warn_files)]
            if tensorboard:  # first, as in a Trainer's run: its files are complete, or their failure known, before
                # the run's status is written, and that status names the failure (RunWriter.beside_failed)
                self.observers.insert(0, TensorBoardObserver(out, _warn_files, self.writer))
            self._captures = {
                name: module.register_forward_hook(self._capture(name), with_kwargs=True)
                for name, module in self.attention.items()
            }
            self._hooks.append(optimizer.register_step_post_hook(lambda *_: self._after_update()))
            if tokenizer is not None:
                headwatch_logger().info("watch labels attention with the tokens of %s", type(tokenizer).__name__)
                self._hooks.append(model.register_forward_pre_hook(self._heard_model_inputs, with_kwargs=True))
            if not isinstance(optimizer, READ_FROM_STATE):
                self._hooks.append(optimizer.register_step_pre_hook(lambda *_: self._before_update()))

    def _emit(self, event: Event) -> None:
        for observer in self.observers:
            observer.hear(event)

    def _config(self) -> dict:
        group = self.optimizer.param_groups[0]
        counts = {name: self.kinds[name].heads(m) for name, m in self.attention.items()}
        heads = set(counts.values())  # one count, or per layer ("heads") when they differ
        betas = group.get("betas", (0.9, 0.999))
        return {
            "preset": "watched",
            "source": WATCHED,
            "tensorboard": self.tensorboard,
            "optimizer": type(self.optimizer).__name__.lower(),
            "optimizer_name": type(self.optimizer).__name__,
            "lr": float(group["lr"]),
            "beta2": float(betas[1]),
            "batch_size": 0,
            "seed": 0,
            "steps": 0,
            "model": {
                "n_heads": heads.pop() if len(heads) == 1 else 0,
                "attention": list(self.attention),
                "heads": counts,
            },
        }

    def _capturing(self) -> bool:
        return (self.steps + 1) % self.every == 0 or self.steps == 0

    def _saving_attention(self) -> bool:
        """Whether the step being trained saves its attention: the first, then log-spaced among the captured."""
        return self._capturing() and self.steps + 1 >= self.next_attention

    def _capture(self, name: str) -> Any:
        def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            if not (module.training and self._saving_attention()) or name in self.captured:
                return
            try:
                weights = self._weights(name, module, args, kwargs, output)
            except Exception as error:  # said once, never raised into the model's forward
                self._captures.pop(name).remove()
                why = error if isinstance(error, NotAttention) else f"reading its weights failed ({described(error)})"
                self._warn_once(
                    name,
                    f"attention module {name!r} ({type(module).__name__}): {why}. Its attention "
                    "is no longer saved; training goes on unchanged",
                )
                return
            if weights is not None:
                self.captured[name] = weights

        return hook

    def _weights(self, name: str, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> np.ndarray | None:
        """The module's weights for the call it was just given, checked, as saved: the first examples and
        positions; None when it has none (nn.MultiheadAttention asked for none and cannot give them)."""
        kind = self.kinds[name]
        with torch.no_grad():
            weights = kind.weights(module, detached(args), detached(kwargs), detached(output))
        if weights is None:
            return None
        heads = kind.heads(module)
        if not torch.is_tensor(weights) or weights.dim() != 4 or weights.shape[1] != heads:
            shape = tuple(weights.shape) if torch.is_tensor(weights) else type(weights).__name__
            raise NotAttention(f"its weights are {shape}, not (batch, {heads} heads, queries, keys)")
        rows = weights[:WATCHED_EXAMPLES, :, :WATCHED_POSITIONS].detach().float()
        check_attention_rows(rows, kind.rows_at_most_one)
        return rows[..., :WATCHED_POSITIONS].cpu().numpy()

    def _heard_model_inputs(self, model: nn.Module, args: tuple, kwargs: dict) -> None:
        if model.training:
            self.heard_inputs((kwargs, *args))

    def heard_inputs(self, inputs: Any) -> None:
        """The model's inputs, or a batch (as a callback hears it), before a training step's forward pass: the
        token ids of the examples whose attention this step saves, for the tokenizer to name. Never raises."""
        if self._tokens_of is None or self._ids is not None or not self._saving_attention():
            return
        try:
            ids = token_ids(inputs)
            if ids is not None:
                self._ids = ids[:WATCHED_EXAMPLES, :WATCHED_POSITIONS].tolist()
        except Exception as error:  # said once, never raised into the model's forward
            self._stop_tokens(f"reading the token ids failed ({described(error)})")

    def _tokens(self, ids: list[list[int]] | None) -> tuple[tuple[str, ...], ...]:
        """The tokenizer's texts for the examples whose attention is saved now (`ids`: theirs); () without them."""
        if ids is None or self._tokens_of is None:
            return ()
        try:
            named = [list(self._tokens_of(example)) for example in ids]
            if any(
                len(texts) != len(example) or not all(isinstance(t, str) for t in texts)
                for texts, example in zip(named, ids, strict=True)
            ):
                raise TypeError("it did not give one text for each token id")
        except Exception as error:  # someone else's tokenizer: said once, training goes on
            self._stop_tokens(f"naming the tokens failed ({described(error)})")
            return ()
        return tuple(tuple(text[:MAX_TOKEN_CHARS] for text in texts) for texts in named)

    def _stop_tokens(self, why: str) -> None:
        self._tokens_of, self._ids = None, None
        warn(
            f"the tokenizer given to watch: {why}. Attention is saved on, its positions numbered instead of "
            "named; training goes on unchanged"
        )

    def _before_update(self) -> None:
        """An optimizer whose state Headwatch does not read: the attention weights, to see what its step changes."""
        if self._capturing() and not self.stats_stopped:
            self._before = {id(s.param): s.param.detach().clone() for _, slices in self._parts.values() for s in slices}

    def _warn_once(self, name: str, message: str) -> None:
        if name not in self._warned:
            self._warned.add(name)
            warn(message)

    def _after_update(self) -> None:
        if not self._capturing() or self.stats_stopped:
            return
        try:
            groups = _groups(self.optimizer)
            heads = {
                name: _head_stats(self.optimizer, count, slices, groups, self._before)
                for name, (count, slices) in self._parts.items()
            }
        except Exception as error:  # said once, never raised into the optimizer's step
            self.stats_stopped = True
            warn(
                f"each head's optimizer statistics could not be measured ({described(error)}); they are no "
                "longer recorded, training goes on unchanged"
            )
            return
        finally:
            self._before = None
        self._emit(OptimPoint(self.steps + 1, heads, {}))

    def step(self, loss: float | torch.Tensor, metrics: Mapping[str, float | torch.Tensor] | None = None) -> None:
        """Call once per training step, after optimizer.step(): records the loss and any other numbers of this
        step (`metrics={"accuracy": 0.93}`; floats or 0-d tensors)."""
        self.steps += 1
        if self.writer is None:
            return
        seconds = time.perf_counter() - self.started
        self._emit(StepPoint(self.steps, _number(loss), seconds))
        if metrics:
            self._emit(MetricsPoint(self.steps, {str(name): _number(v) for name, v in metrics.items()}))
        ids, self._ids = self._ids, None  # this step's, whether or not any attention was captured in it
        if self.captured:
            self._emit(AttentionPoint(self.steps, self.captured, self._tokens(ids)))
            self.captured = {}
            self.next_attention = max(self.steps + 1, round(self.steps * ATTENTION_SPACING))
        if self.steps == 1 or seconds - self.said_running >= HEARTBEAT_SECONDS:
            self._emit(Status("running", self.steps, seconds))
            self.said_running = seconds

    def close(self, ending: Ending) -> None:
        """Remove the hooks, and record in the run's folder how the loop ended."""
        for hook in (*self._captures.values(), *self._hooks):
            hook.remove()
        if self.writer is not None:
            try:
                self._emit(Status(ENDED_BY[ending.by], self.steps, time.perf_counter() - self.started, ending))
            finally:
                self.writer.close()


def _number(value: float | torch.Tensor) -> float:
    return float(value.detach()) if torch.is_tensor(value) else float(value)


def _warn_files(warning: RunWarning) -> None:
    warn(warning_text(warning.files, warning.error))


def _writes() -> bool:
    """Only one process writes: rank 0 when torch.distributed runs, else this one."""
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    return not distributed or torch.distributed.get_rank() == 0


@contextmanager
def watch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    out: str | Path,
    every: int = 10,
    tensorboard: bool = False,
    tokenizer: Tokenizer | None = None,
) -> Iterator[Watcher]:
    """Record a training loop into the run folder `out` (new or empty) while it runs; see the module's docstring.
    `tensorboard=True` also writes TensorBoard event files into `out/tensorboard` (engine.recording.tensorboard_files);
    `tokenizer` names the tokens of the examples whose attention is saved (token_texts)."""
    watcher = Watcher(model, optimizer, Path(out), every, tensorboard, tokenizer)
    try:
        yield watcher
    except KeyboardInterrupt:
        watcher.close(Ending("stopped"))
        raise
    except BaseException:
        watcher.close(Ending("failed", failure="loop"))
        raise
    watcher.close(Ending("finished"))
