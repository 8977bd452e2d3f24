"""Watch your own model: attach Headwatch to any PyTorch model with `nn.MultiheadAttention` and its optimizer, and
get a Headwatch run folder (the loss at every step; each attention head's optimizer statistics every `every`
steps, and its attention weights at log-spaced ones of those) that the dashboard lists and opens like its own runs.

    with watch(model, optimizer, out="runs/my-model", every=10) as watcher:
        for batch in loader:
            loss = loss_fn(model(batch.x), batch.y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            watcher.step(loss)

Capture cannot change training: a head's attention weights are computed again, apart, from the inputs its module
was given (without gradients, without dropout), and the model's own forward pass is left as it was. Under
torch.distributed only rank 0 writes.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from engine.head_slices import HeadSlices, attention_slices
from engine.metrics import applied_update, reads_adam_memories, stats_from_sums
from engine.model import Attention, Capture
from engine.run_files import WATCHED, WATCHED_EXAMPLES, WATCHED_POSITIONS
from engine.run_writer import RunWriter
from engine.telemetry import AttentionPoint, MetricsPoint, OptimPoint, OptimStats, StepPoint
from engine.tensorboard_files import TensorBoardObserver
from engine.training.events import Event, Observer, Status
from engine.training.observers import WriterObserver

HEARTBEAT_SECONDS = 5.0  # how often the run's status says it is still training (engine.runs.training_elsewhere)
ATTENTION_SPACING = 1.25  # attention is saved at log-spaced steps, as Headwatch's own runs save it: dense early


# (module, its forward's positional and keyword arguments, its output) -> its attention weights (B, H, Tq, Tk)
WeightsOf = Callable[[nn.Module, tuple, dict, Any], "torch.Tensor | None"]


@dataclass(frozen=True)
class AttentionKind:
    heads: Callable[[nn.Module], int]
    slices: Callable[[nn.Module], list[HeadSlices]]
    weights: WeightsOf


_KINDS: dict[type, AttentionKind] = {}


def register_attention(module_type: type[nn.Module], heads: Callable[[nn.Module], int],
                       slices: Callable[[nn.Module], list[HeadSlices]], weights: WeightsOf) -> None:
    """Teach `watch` an attention module of your own. `heads(module)`: its number of heads. `slices(module)`: its
    query, key, value and output parameters, each as HeadSlices (which of its elements each head owns), for the
    per-head optimizer statistics. `weights(module, args, kwargs, output)`: its attention weights (B, H, Tq, Tk)
    for the call it was just given, or None; called without gradients, at the steps attention is saved. Capture
    must not change training: return weights the module already computed (in its output), or compute them again
    without randomness (dropout off). nn.MultiheadAttention and Headwatch's own attention are registered so."""
    _KINDS[module_type] = AttentionKind(heads, slices, weights)


def _check_slices(name: str, module: nn.Module) -> None:
    """A registration whose slices do not share out evenly among the heads is refused up front, in words."""
    kind = _kind(module)
    heads = kind.heads(module)
    for slices in kind.slices(module):
        shape = tuple(slices.param.shape)
        shares = (len(shape) == 2 and shape[1] % heads == 0) if slices.by_columns else (
            len(shape) >= 1 and shape[0] % (slices.blocks * heads) == 0)
        if heads < 1 or not shares:
            split = f"{heads} heads' columns" if slices.by_columns else f"{slices.blocks} x {heads} heads' rows"
            raise ValueError(f"attention module {name!r}: a parameter of shape {shape} cannot be split into {split}; "
                             "check its register_attention call")


def _kind(module: nn.Module) -> AttentionKind | None:
    return next((_KINDS[cls] for cls in type(module).__mro__ if cls in _KINDS), None)


def attention_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Every attention module of the model that `watch` knows (nn.MultiheadAttention, inside nn.Transformer* layers
    too; Headwatch's own; any registered with register_attention), by its name in the model."""
    model = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    return {name or type(module).__name__: module for name, module in model.named_modules()
            if _kind(module) is not None}  # the model itself has no name in it: its type's


def _called_again(module: nn.Module, args: tuple, kwargs: dict, **changes: Any) -> Any:
    """The module's forward on the same arguments (given by position or by name), some changed, with dropout off."""
    call = inspect.signature(module.forward).bind(*args, **kwargs)
    call.arguments.update(changes)
    module.train(False)
    try:
        return module.forward(*call.args, **call.kwargs)
    finally:
        module.train(True)


def _mha_slices(module: nn.MultiheadAttention) -> list[HeadSlices]:
    if module.in_proj_weight is not None:
        stacked = [HeadSlices(module.in_proj_weight, 3)]
    else:
        stacked = [HeadSlices(p) for p in (module.q_proj_weight, module.k_proj_weight, module.v_proj_weight)]
    if module.in_proj_bias is not None:
        stacked.append(HeadSlices(module.in_proj_bias, 3))
    return [*stacked, HeadSlices(module.out_proj.weight, by_columns=True)]


def _mha_weights(module: nn.MultiheadAttention, args: tuple, kwargs: dict, output: Any) -> torch.Tensor | None:
    """nn.Transformer* layers ask for no weights: asked for again, per head (an unbatched call gives (H, Tq, Tk))."""
    _, weights = _called_again(module, args, kwargs, need_weights=True, average_attn_weights=False)
    return None if weights is None else weights if weights.dim() == 4 else weights[None]


def _own_weights(module: Attention, args: tuple, kwargs: dict, output: Any) -> torch.Tensor:
    capture: Capture = {}
    _called_again(module, args, kwargs, capture=capture)
    return capture[module.name]


register_attention(nn.MultiheadAttention, lambda m: m.num_heads, _mha_slices, _mha_weights)
register_attention(Attention, lambda m: m.n_heads, attention_slices, _own_weights)


# the optimizers whose update engine.metrics.applied_update reads from their state (AdamW is an Adam)
READ_FROM_STATE = (torch.optim.Adam, torch.optim.SGD)


def head_stats(optimizer: torch.optim.Optimizer, module: nn.Module,
               before: Mapping[int, torch.Tensor] | None = None) -> tuple[OptimStats, ...]:
    """Each head's statistics of the update the optimizer just applied to its query, key, value and output
    weights, as Headwatch's own runs measure them (engine.metrics.applied_update); read before the gradients are
    zeroed (a cleared gradient counts as zero). Another optimizer's update is what its step changed (`before`: the
    parameters before it, by id), and its memories are not read."""
    kind = _kind(module)
    heads = kind.heads(module)
    sums = torch.zeros(heads, 6, dtype=torch.float64)
    trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
    for slices in (s for s in kind.slices(module) if id(s.param) in trained):  # frozen weights do not move
        sums += _head_sums(slices, heads, *_applied(slices.param, optimizer, before)).cpu()
    adam = reads_adam_memories(optimizer)
    return tuple(stats_from_sums(total, adam) for total in sums.tolist())


def _applied(param: nn.Parameter, optimizer: torch.optim.Optimizer,
             before: Mapping[int, torch.Tensor] | None) -> tuple[torch.Tensor | None, ...]:
    if isinstance(optimizer, READ_FROM_STATE) or before is None:
        return applied_update(param, optimizer)
    grad = param.grad if param.grad is not None else torch.zeros_like(param)
    return grad, before[id(param)] - param.detach(), None, None


def _head_sums(slices: HeadSlices, heads: int, *tensors: torch.Tensor | None) -> torch.Tensor:
    """Each head's share of the sums stats_from_sums takes, (heads, 6): |grad|², |update|², Σ|update|, Σ|m|, Σ√v,
    and the count of its elements."""
    grad, update, m, v = (None if t is None else slices.by_head(t.detach(), heads).double() for t in tensors)
    none = grad.new_zeros(heads)  # on the parameters' device, as the sums are
    return torch.stack([grad.pow(2).sum(1), update.pow(2).sum(1), update.abs().sum(1),
                        m.abs().sum(1) if m is not None else none, v.sqrt().sum(1) if v is not None else none,
                        torch.full_like(none, grad.shape[1])], dim=1)


class Watcher:
    """Records one training run of someone's model into a Headwatch run folder; see `watch`."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, out: Path, every: int,
                 tensorboard: bool = False) -> None:
        if every < 1:
            raise ValueError(f"every must be a whole number of steps from 1 (got {every!r})")
        self.optimizer, self.every, self.steps, self.tensorboard = optimizer, every, 0, tensorboard
        self.attention = attention_modules(model)
        for name, module in self.attention.items():
            _check_slices(name, module)
        self.captured: dict[str, np.ndarray] = {}
        self._before: dict[int, torch.Tensor] | None = None  # attention weights before a step (see _applied)
        self.started, self.said_running, self.next_attention = time.perf_counter(), 0.0, 1
        self.writer = RunWriter(out, self._config(), {}, ()) if _writes() else None
        self.observers: list[Observer] = []
        self._hooks: list[Any] = []
        if self.writer:
            self.observers = [WriterObserver(self.writer, _warn)]
            if tensorboard:
                self.observers.append(TensorBoardObserver(out, _warn))
            self._hooks = [module.register_forward_hook(self._capture(name), with_kwargs=True)
                           for name, module in self.attention.items()]
            self._hooks.append(optimizer.register_step_post_hook(lambda *_: self._after_update()))
            if not isinstance(optimizer, READ_FROM_STATE):
                self._hooks.append(optimizer.register_step_pre_hook(lambda *_: self._before_update()))
        self._warned: set[str] = set()

    def _emit(self, event: Event) -> None:
        for observer in self.observers:
            observer.hear(event)

    def _config(self) -> dict:
        group = self.optimizer.param_groups[0]
        counts = {name: _kind(m).heads(m) for name, m in self.attention.items()}
        heads = set(counts.values())  # one count, or per layer ("heads") when they differ
        betas = group.get("betas", (0.9, 0.999))
        return {"preset": "watched", "source": WATCHED, "tensorboard": self.tensorboard,
                "optimizer": type(self.optimizer).__name__.lower(), "optimizer_name": type(self.optimizer).__name__,
                "lr": float(group["lr"]), "beta2": float(betas[1]), "batch_size": 0, "seed": 0, "steps": 0,
                "model": {"n_heads": heads.pop() if len(heads) == 1 else 0, "attention": list(self.attention),
                          "heads": counts}}

    def _capturing(self) -> bool:
        return (self.steps + 1) % self.every == 0 or self.steps == 0

    def _saving_attention(self) -> bool:
        """Whether the step being trained saves its attention: the first, then log-spaced among the captured."""
        return self._capturing() and self.steps + 1 >= self.next_attention

    def _capture(self, name: str) -> Any:
        kind = _kind(self.attention[name])

        def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            if not (module.training and self._saving_attention()) or name in self.captured:
                return
            with torch.no_grad():
                weights = kind.weights(module, args, kwargs, output)
            if weights is None:
                return
            if weights.dim() != 4 or weights.shape[1] != kind.heads(module):
                self._warn_once(name, f"attention module {name!r} gave weights of shape {tuple(weights.shape)}, not "
                                      f"(batch, {kind.heads(module)} heads, queries, keys): its attention is not saved")
                return
            kept = weights[:WATCHED_EXAMPLES, :, :WATCHED_POSITIONS, :WATCHED_POSITIONS]
            self.captured[name] = kept.detach().float().cpu().numpy()
        return hook

    def _before_update(self) -> None:
        """An optimizer whose state Headwatch does not read: the attention weights, to see what its step changes."""
        if self._capturing():
            self._before = {id(s.param): s.param.detach().clone() for module in self.attention.values()
                            for s in _kind(module).slices(module)}

    def _warn_once(self, name: str, message: str) -> None:
        if name not in self._warned:
            self._warned.add(name)
            _warn(message)

    def _after_update(self) -> None:
        if self._capturing():
            heads = {name: head_stats(self.optimizer, module, self._before) for name, module in self.attention.items()}
            self._emit(OptimPoint(self.steps + 1, heads, {}))
            self._before = None

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
        if self.captured:
            self._emit(AttentionPoint(self.steps, self.captured))
            self.captured = {}
            self.next_attention = max(self.steps + 1, round(self.steps * ATTENTION_SPACING))
        if self.steps == 1 or seconds - self.said_running >= HEARTBEAT_SECONDS:
            self._emit(Status("running", f"Training elsewhere, recorded by engine.watch (step {self.steps:,})",
                              self.steps, seconds))
            self.said_running = seconds

    def close(self, status: str, message: str) -> None:
        for hook in self._hooks:
            hook.remove()
        if self.writer is not None:
            try:
                self._emit(Status(status, message, self.steps, time.perf_counter() - self.started))
            finally:
                self.writer.close()


def _number(value: float | torch.Tensor) -> float:
    return float(value.detach()) if torch.is_tensor(value) else float(value)


def _warn(message: str) -> None:
    logging.getLogger("headwatch").warning(message)


def _writes() -> bool:
    """Only one process writes: rank 0 when torch.distributed runs, else this one."""
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    return not distributed or torch.distributed.get_rank() == 0


@contextmanager
def watch(model: nn.Module, optimizer: torch.optim.Optimizer, out: str | Path, every: int = 10,
          tensorboard: bool = False) -> Iterator[Watcher]:
    """Record a training loop into the run folder `out` (new or empty) while it runs; see the module's docstring.
    `tensorboard=True` also writes TensorBoard event files into `out/tensorboard` (engine.tensorboard_files)."""
    watcher = Watcher(model, optimizer, Path(out), every, tensorboard)
    try:
        yield watcher
    except KeyboardInterrupt:
        watcher.close("stopped", f"Stopped at step {watcher.steps}")
        raise
    except BaseException:
        watcher.close("failed", f"The training loop raised an error at step {watcher.steps}")
        raise
    watcher.close("finished", f"Finished {watcher.steps:,} steps")
