"""Measurements of the optimizer and of attention heads, for Headwatch's own runs and watched models alike: pure
functions on tensors, tested by hand computation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from data.generator import ADMIN_KINDS
from data.rules import CLASSES
from engine.cache import Cache
from engine.model.attention_kinds import kind_of
from engine.model.head_slices import HeadSlices, attention_slices
from engine.model.transformer import Attention
from engine.task.claims_model import ClaimsTransformer
from engine.telemetry import OptimPoint, OptimStats


def stats_from_sums(sums: list[float], adam: bool) -> OptimStats:
    """OptimStats from (sum grad^2, sum update^2, sum |update|, sum |m|, sum sqrt v, element count)."""
    grad_sq, step_sq, abs_step, abs_m, sqrt_v, count = sums
    count = max(count, 1.0)
    return OptimStats(
        grad_norm=grad_sq**0.5,
        step_norm=step_sq**0.5,
        mean_abs_step=abs_step / count,
        mean_abs_m=abs_m / count if adam else None,
        mean_sqrt_v=sqrt_v / count if adam else None,
    )


def reads_adam_memories(optimizer: torch.optim.Optimizer) -> bool:
    """Whether Adam's first and second moments are there to read (AdamW is an Adam too)."""
    return isinstance(optimizer, torch.optim.Adam)


def applied_update(
    param: torch.Tensor, optimizer: torch.optim.Optimizer, group: dict | None = None
) -> tuple[torch.Tensor, ...]:
    """(grad, update, m, v) of a parameter right after `optimizer.step()`; m and v are None for SGD. `group`: its
    parameter group, when the caller knows it (else it is looked for).

    For Adam the update is the bias-corrected lr * m_hat / (sqrt(v_hat) + eps), which is exactly what
    torch.optim.Adam subtracted, plus for AdamW the decay lr * wd * p it took first (from the weights before the
    step, recovered from those after it); for SGD it is lr * grad, or lr * momentum buffer.
    """
    group = group or next(g for g in optimizer.param_groups if any(p is param for p in g["params"]))
    state = optimizer.state.get(param, {})
    grad = param.grad if param.grad is not None else torch.zeros_like(param)
    lr = group["lr"]
    if "exp_avg" in state:
        beta1, beta2 = group["betas"]
        t = float(state["step"])
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m_hat = m / (1 - beta1**t)
        v_hat = v / (1 - beta2**t)
        update = lr * m_hat / (v_hat.sqrt() + group["eps"])
        decay = lr * group["weight_decay"] if group.get("decoupled_weight_decay") else 0.0
        if decay:
            update = update + decay * (param.detach() + update) / (1 - decay)
        return grad, update, m, v
    buffer = state.get("momentum_buffer")
    return grad, lr * (buffer if buffer is not None else grad), None, None


def _group_name(parameter_name: str) -> str:
    parts = parameter_name.split(".")
    if parts[0] in ("encoder", "decoder"):
        return f"{parts[0]}.{parts[1]}"
    if parts[0].endswith("embedding"):
        return "embeddings"
    return "output"


@dataclass(frozen=True)
class _Layout:
    """Where each element of the model's parameters, flattened and concatenated, belongs: a parameter group and
    (for attention projections) one head, so that a statistic is one segment sum over all parameters at once."""

    params: tuple[torch.nn.Parameter, ...]
    groups: tuple[str, ...]
    heads: tuple[str, ...]  # attention names, n_heads head segments each, then one segment for "no head"
    n_heads: int
    segment: torch.Tensor  # (P,) group index * head segments + head segment
    counts: torch.Tensor  # (groups, head segments) elements in each segment

    @property
    def head_segments(self) -> int:
        return len(self.heads) * self.n_heads + 1


# The model held weakly: a layout holds its parameters, which must go when the model does (a finished run's).
_LAYOUTS: Cache[_Layout] = Cache("parameter layouts", max_entries=8, key=("model",), weak=("model",))


def _layout(model: ClaimsTransformer) -> _Layout:
    return _LAYOUTS.get(partial(_make_layout, model), model=model)


def _make_layout(model: ClaimsTransformer) -> _Layout:
    attentions = [module for module in model.modules() if isinstance(module, Attention)]
    heads = tuple(module.name for module in attentions)
    no_head = len(heads) * model.config.n_heads
    named = list(model.named_parameters())
    groups = tuple(dict.fromkeys(_group_name(name) for name, _ in named))
    owned = {
        id(s.param): i * module.n_heads + s.head_of_each_element(module.n_heads)
        for i, module in enumerate(attentions)
        for s in attention_slices(module)
    }
    segments = []
    for name, param in named:
        head = owned.get(id(param), torch.full((param.numel(),), no_head))
        segments.append(groups.index(_group_name(name)) * (no_head + 1) + head)
    segment = torch.cat(segments).to(named[0][1].device)
    counts = torch.bincount(segment, minlength=len(groups) * (no_head + 1)).view(len(groups), no_head + 1)
    return _Layout(tuple(p for _, p in named), groups, heads, model.config.n_heads, segment, counts)


def optimizer_stats(model: ClaimsTransformer, optimizer: torch.optim.Optimizer, step: int) -> OptimPoint:
    """Per parameter group and per attention head statistics of the update just applied."""
    adam = reads_adam_memories(optimizer)
    layout = _layout(model)
    with torch.no_grad():
        flat: list[list[torch.Tensor]] = [[], [], [], []]  # grad, update, m, v
        for param in layout.params:
            for values, tensor in zip(flat, applied_update(param, optimizer), strict=True):
                values.append((tensor if tensor is not None else torch.zeros_like(param)).reshape(-1))
        grad, update, m, v = (torch.cat(values) for values in flat)
        parts = [grad.pow(2), update.pow(2), update.abs(), m.abs(), v.sqrt()]
        sums = [torch.bincount(layout.segment, weights=part, minlength=layout.counts.numel()) for part in parts]
        sums = torch.stack([*sums, layout.counts.reshape(-1).to(sums[0].dtype)], dim=1)
        sums = sums.view(len(layout.groups), layout.head_segments, 6)  # (groups, head segments, 6)
        group_sums, head_sums = sums.sum(1).tolist(), sums.sum(0)[:-1].tolist()
    heads = {
        name: tuple(stats_from_sums(head_sums[i * layout.n_heads + h], adam) for h in range(layout.n_heads))
        for i, name in enumerate(layout.heads)
    }
    groups = {name: stats_from_sums(values, adam) for name, values in zip(layout.groups, group_sums, strict=True)}
    return OptimPoint(step=step, heads=heads, groups=groups)


def per_class_accuracy(predicted: torch.Tensor, truth: torch.Tensor) -> tuple[float, dict[str, float]]:
    """Exact-match accuracy (verdict and reason) overall and for each true class."""
    correct = predicted == truth
    per_class = {}
    for index, name in enumerate(CLASSES):
        chosen = truth == index
        per_class[name] = float(correct[chosen].float().mean()) if chosen.any() else float("nan")
    return float(correct.float().mean()), per_class


def expected_calibration_error(confidences: list[float], correct: list[bool], bins: int = 15) -> float:
    """How far stated confidence is from accuracy: over equal-width confidence bins, the claim-weighted mean of
    |accuracy - mean confidence| in each bin (Guo et al. 2017)."""
    totals: dict[int, list[float]] = {}
    for confidence, right in zip(confidences, correct, strict=True):
        slot = totals.setdefault(min(int(confidence * bins), bins - 1), [0.0, 0.0, 0.0])
        slot[0], slot[1], slot[2] = slot[0] + 1, slot[1] + confidence, slot[2] + right
    return sum(abs(hits - said) for _, said, hits in totals.values()) / max(1, len(confidences))


def admin_kind_accuracy(predicted: torch.Tensor, truth: torch.Tensor, kinds: torch.Tensor) -> dict[str, float]:
    """Exact-match accuracy on the ADMIN claims of each kind; kinds: (N,) index into ADMIN_KINDS, -1 for claims
    that are not ADMIN. NaN for a kind without claims."""
    correct = predicted == truth
    accuracy = {}
    for index, kind in enumerate(ADMIN_KINDS):
        chosen = kinds == index
        accuracy[kind] = float(correct[chosen].float().mean()) if chosen.any() else float("nan")
    return accuracy


NOTHING = "nothing"  # the share of attention a head gives no word (the model's null key), beside the categories


def category_shares(weights: torch.Tensor, categories: torch.Tensor, n_categories: int) -> torch.Tensor:
    """Mean share of each head's attention per field category.

    weights: (N, H, Tk) attention from one query position; categories: (N, Tk) category ids (padding carries
    zero weight). Returns (H, n_categories); rows sum to 1.
    """
    one_hot = torch.nn.functional.one_hot(categories, n_categories).to(weights.dtype)  # (N, Tk, C)
    return torch.einsum("nht,ntc->hc", weights, one_hot) / weights.shape[0]


def commonest_class(classes: torch.Tensor) -> tuple[str, float]:
    """The commonest of (N,) class indices and its share: what answering it to every claim scores."""
    counts = classes.bincount(minlength=len(CLASSES))
    return CLASSES[int(counts.argmax())], float(counts.max()) / max(len(classes), 1)


def attention_entropy(weights: torch.Tensor) -> torch.Tensor:
    """Mean entropy (nats) per head of (N, H, Tk) attention rows; zero weights contribute nothing. What a row gives
    none of its words went to the model's "nothing" slot, one more place it can look."""
    nothing = (1 - weights.sum(-1, keepdim=True)).clamp_min(0)  # (N, H, 1)
    weights = torch.cat([weights, nothing], dim=-1)
    logs = torch.where(weights > 0, weights.clamp_min(1e-12).log(), torch.zeros_like(weights))
    return -(weights * logs).sum(-1).mean(0)


def attention_confidence(weights: torch.Tensor) -> torch.Tensor:
    """Mean over claims of each head's largest attention weight (Voita et al. 2019): (N, H, Tk) -> (H,)."""
    return weights.max(dim=-1).values.mean(0)


def shown_change(change: float) -> float:
    """An accuracy change at the two decimals it is shown with; + 0.0 turns -0.0 into 0.0, so a change that rounds
    to zero never reads '-0.00'."""
    return round(change, 2) + 0.0


def signed(change: float) -> str:
    """An accuracy change as people read it: '+0.14', '-0.39', '+0.00'."""
    return f"{shown_change(change):+.2f}"


# the optimizers whose update engine.interpret.metrics.applied_update reads from their state (AdamW is an Adam)
READ_FROM_STATE = (torch.optim.Adam, torch.optim.SGD)


def head_stats(
    optimizer: torch.optim.Optimizer, module: nn.Module, before: Mapping[int, torch.Tensor] | None = None
) -> tuple[OptimStats, ...]:
    """Each head's statistics of the update the optimizer just applied to its query, key, value and output
    weights, as Headwatch's own runs measure them (engine.interpret.metrics.applied_update); read before the gradients
    are zeroed (a cleared gradient counts as zero). Another optimizer's update is what its step changed (`before`: the
    parameters before it, by id), and its memories are not read."""
    kind = kind_of(module)
    return _head_stats(optimizer, kind.heads(module), kind.slices(module), _groups(optimizer), before)


def _groups(optimizer: torch.optim.Optimizer) -> dict[int, dict]:
    """Each trained parameter's group, by the parameter's id (a frozen one is in none)."""
    return {id(p): group for group in optimizer.param_groups for p in group["params"]}


def _head_stats(
    optimizer: torch.optim.Optimizer,
    heads: int,
    slices: list[HeadSlices],
    groups: Mapping[int, dict],
    before: Mapping[int, torch.Tensor] | None,
) -> tuple[OptimStats, ...]:
    sums = torch.zeros(heads, 6, dtype=torch.float64)
    for part in (s for s in slices if id(s.param) in groups):  # frozen weights do not move
        sums += _head_sums(part, heads, *_applied(part.param, optimizer, groups[id(part.param)], before)).cpu()
    adam = reads_adam_memories(optimizer)
    return tuple(stats_from_sums(total, adam) for total in sums.tolist())


def _applied(
    param: nn.Parameter, optimizer: torch.optim.Optimizer, group: dict, before: Mapping[int, torch.Tensor] | None
) -> tuple[torch.Tensor | None, ...]:
    if isinstance(optimizer, READ_FROM_STATE) or before is None:
        return applied_update(param, optimizer, group)
    grad = param.grad if param.grad is not None else torch.zeros_like(param)
    return grad, before[id(param)] - param.detach(), None, None


def _head_sums(
    slices: HeadSlices,
    heads: int,
    grad: torch.Tensor,
    update: torch.Tensor,
    m: torch.Tensor | None,
    v: torch.Tensor | None,
) -> torch.Tensor:
    """Each head's share of the sums stats_from_sums takes, (heads, 6): |grad|², |update|², Σ|update|, Σ|m|, Σ√v,
    and the count of its elements. The five are computed side by side (a last dimension) and cut into heads at once:
    a step measured costs a few operations a parameter, not a few dozen."""
    grad, update = grad.detach().double(), update.detach().double()
    none = torch.zeros_like(grad)  # on the parameters' device, as the sums are
    each = torch.stack(
        [
            grad.square(),
            update.square(),
            update.abs(),
            m.detach().double().abs() if m is not None else none,
            v.detach().double().sqrt() if v is not None else none,
        ],
        dim=-1,
    )
    banded = slices.by_head(each, heads).reshape(heads, -1, 5)  # (heads, elements of each, 5)
    return torch.cat([banded.sum(1), banded.new_full((heads, 1), banded.shape[1])], dim=1)
