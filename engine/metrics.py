"""Measurements of the optimizer and of attention heads; pure functions on tensors, tested by hand computation."""

from __future__ import annotations

import torch

from engine.model import CLASSES, REASONS, ClaimsTransformer
from engine.telemetry import OptimPoint, OptimStats

SPECIALIST_DROP = 0.5  # ablation drop on its reason for a head to be called that reason's specialist
SPECIALIST_OTHER_MAX = 0.1  # ... while every other reason drops at most this much
LEANING_DROP = 0.2


def _sums(grad: torch.Tensor, step: torch.Tensor, m: torch.Tensor | None, v: torch.Tensor | None,
          dims: tuple[int, ...]) -> torch.Tensor:
    """Sums of [grad^2, step^2, |step|, |m|, sqrt(v), count] over `dims`; moments are 0 when absent."""
    zeros = torch.zeros_like(grad)
    m = zeros if m is None else m
    v = zeros if v is None else v
    parts = [grad.pow(2), step.pow(2), step.abs(), m.abs(), v.sqrt(), torch.ones_like(grad)]
    return torch.stack([p.sum(dim=dims) if dims else p.sum() for p in parts], dim=-1)


def _stats(sums: list[float], adam: bool) -> OptimStats:
    grad_sq, step_sq, abs_step, abs_m, sqrt_v, count = sums
    count = max(count, 1.0)
    return OptimStats(
        grad_norm=grad_sq**0.5,
        step_norm=step_sq**0.5,
        mean_abs_step=abs_step / count,
        mean_abs_m=abs_m / count if adam else None,
        mean_sqrt_v=sqrt_v / count if adam else None,
    )


def applied_update(param: torch.Tensor, optimizer: torch.optim.Optimizer) -> tuple[torch.Tensor, ...]:
    """(grad, update, m, v) of a parameter right after `optimizer.step()`; m and v are None for SGD.

    For Adam the update is the bias-corrected lr * m_hat / (sqrt(v_hat) + eps), which is exactly what
    torch.optim.Adam subtracted; for SGD it is lr * grad, or lr * momentum buffer.
    """
    group = next(g for g in optimizer.param_groups if any(p is param for p in g["params"]))
    state = optimizer.state.get(param, {})
    grad = param.grad if param.grad is not None else torch.zeros_like(param)
    lr = group["lr"]
    if "exp_avg" in state:
        beta1, beta2 = group["betas"]
        t = float(state["step"])
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m_hat = m / (1 - beta1**t)
        v_hat = v / (1 - beta2**t)
        return grad, lr * m_hat / (v_hat.sqrt() + group["eps"]), m, v
    buffer = state.get("momentum_buffer")
    return grad, lr * (buffer if buffer is not None else grad), None, None


def _group_name(parameter_name: str) -> str:
    parts = parameter_name.split(".")
    if parts[0] in ("encoder", "decoder"):
        return f"{parts[0]}.{parts[1]}"
    if parts[0].endswith("embedding"):
        return "embeddings"
    return "output"


def optimizer_stats(model: ClaimsTransformer, optimizer: torch.optim.Optimizer, step: int) -> OptimPoint:
    """Per parameter group and per attention head statistics of the update just applied."""
    adam = isinstance(optimizer, torch.optim.Adam)
    with torch.no_grad():
        groups: dict[str, torch.Tensor] = {}
        for name, param in model.named_parameters():
            group = _group_name(name)
            groups[group] = groups.get(group, 0) + _sums(*applied_update(param, optimizer), dims=())
        heads: dict[str, tuple[OptimStats, ...]] = {}
        for attention_name, attention in model.attention_modules().items():
            h, d = attention.n_heads, attention.head_dim
            total = 0
            for projection in (attention.query, attention.key, attention.value):
                grad, update, m, v = applied_update(projection.weight, optimizer)
                split = [t.reshape(h, d, -1) if t is not None else None for t in (grad, update, m, v)]
                total = total + _sums(*split, dims=(1, 2))  # (H, 6)
                grad, update, m, v = applied_update(projection.bias, optimizer)
                total = total + _sums(*[t.reshape(h, d) if t is not None else None for t in (grad, update, m, v)],
                                      dims=(1,))
            grad, update, m, v = applied_update(attention.out.weight, optimizer)  # columns belong to heads
            split = [t.reshape(-1, h, d) if t is not None else None for t in (grad, update, m, v)]
            total = total + _sums(*split, dims=(0, 2))
            heads[attention_name] = tuple(_stats(row, adam) for row in total.tolist())
    return OptimPoint(step=step, heads=heads, groups={name: _stats(t.tolist(), adam) for name, t in groups.items()})


def per_class_accuracy(predicted: torch.Tensor, truth: torch.Tensor) -> tuple[float, dict[str, float]]:
    """Exact-match accuracy (verdict and reason) overall and for each true class."""
    correct = predicted == truth
    per_class = {}
    for index, name in enumerate(CLASSES):
        chosen = truth == index
        per_class[name] = float(correct[chosen].float().mean()) if chosen.any() else float("nan")
    return float(correct.float().mean()), per_class


def category_shares(weights: torch.Tensor, categories: torch.Tensor, n_categories: int) -> torch.Tensor:
    """Mean share of each head's attention per field category.

    weights: (N, H, Tk) attention from one query position; categories: (N, Tk) category ids (padding carries
    zero weight). Returns (H, n_categories); rows sum to 1.
    """
    one_hot = torch.nn.functional.one_hot(categories, n_categories).to(weights.dtype)  # (N, Tk, C)
    return torch.einsum("nht,ntc->hc", weights, one_hot) / weights.shape[0]


def attention_entropy(weights: torch.Tensor) -> torch.Tensor:
    """Mean entropy (nats) per head of (N, H, Tk) attention rows; zero weights contribute nothing."""
    logs = torch.where(weights > 0, weights.clamp_min(1e-12).log(), torch.zeros_like(weights))
    return -(weights * logs).sum(-1).mean(0)


def attention_confidence(weights: torch.Tensor) -> torch.Tensor:
    """Mean over claims of each head's largest attention weight (Voita et al. 2019): (N, H, Tk) -> (H,)."""
    return weights.max(dim=-1).values.mean(0)


def head_label(ablation: dict[str, float]) -> tuple[str, str]:
    """Name a head from its ablation evidence alone; 'generalist' when no reason clearly depends on it."""
    drops = {reason: ablation.get(reason, 0.0) for reason in REASONS}
    best = max(drops, key=lambda r: drops[r])
    others = [drops[r] for r in REASONS if r != best]
    evidence = ", ".join(f"{r} {-drops[r]:+.2f}" for r in REASONS)
    if drops[best] >= SPECIALIST_DROP and max(others) <= SPECIALIST_OTHER_MAX:
        return f"{best} specialist", f"ablation {-drops[best]:+.2f} on {best}, at most {-max(others):+.2f} elsewhere"
    if drops[best] >= LEANING_DROP and drops[best] >= 2 * max(max(others), 0.0):
        return f"leans {best}", f"ablation accuracy change: {evidence}"
    return "generalist", f"no reason depends on it alone; ablation accuracy change: {evidence}"
