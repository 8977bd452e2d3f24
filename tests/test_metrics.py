"""Metrics checked against hand computations."""

import math

import pytest
import torch

from engine.interpret.metrics import (
    admin_kind_accuracy,
    applied_update,
    attention_confidence,
    attention_entropy,
    category_shares,
    expected_calibration_error,
    optimizer_stats,
    per_class_accuracy,
)
from engine.model.transformer import ModelConfig
from engine.task.claims_model import ClaimsTransformer, targets_for_classes
from engine.training.config import TrainConfig
from engine.training.schedule import make_optimizer


def test_category_shares_entropy_confidence_by_hand() -> None:
    weights = torch.tensor([[[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]]])  # (N=1, H=2, Tk=3)
    categories = torch.tensor([[2, 0, 2]])
    shares = category_shares(weights, categories, 3)
    assert torch.allclose(shares, torch.tensor([[0.5, 0.0, 0.5], [0.0, 0.0, 1.0]]))
    assert torch.allclose(attention_entropy(weights), torch.tensor([math.log(2), 0.0]))
    assert torch.allclose(attention_confidence(weights), torch.tensor([0.5, 1.0]))
    # half of a row on "nothing" counts as a third place to look: [0.25, 0.25, 0] + 0.5
    rests = torch.tensor([[[0.25, 0.25, 0.0]]])
    assert torch.allclose(attention_entropy(rests), torch.tensor([-2 * 0.25 * math.log(0.25) - 0.5 * math.log(0.5)]))


def test_per_class_accuracy_by_hand() -> None:
    overall, per_class = per_class_accuracy(torch.tensor([0, 0, 3, 1]), torch.tensor([0, 1, 3, 1]))
    assert overall == 0.75
    assert per_class["VALID"] == 1.0 and per_class["MEDICAL"] == 0.5 and per_class["COST"] == 1.0
    assert math.isnan(per_class["ADMIN"])


def test_admin_kind_accuracy_by_hand() -> None:
    # ADMIN is class 4; kinds index (sex, age, specialty, place), -1 for claims of other classes
    truth = torch.tensor([4, 4, 4, 4, 4, 0])
    predicted = torch.tensor([4, 0, 4, 1, 4, 0])
    kinds = torch.tensor([0, 0, 1, 2, 2, -1])
    accuracy = admin_kind_accuracy(predicted, truth, kinds)
    assert accuracy["sex"] == 0.5 and accuracy["age"] == 1.0 and accuracy["specialty"] == 0.5
    assert math.isnan(accuracy["place"])


def _few_steps(optimizer_name: str) -> tuple[ClaimsTransformer, torch.optim.Optimizer, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model = ClaimsTransformer(ModelConfig(vocab_size=30, d_model=16, d_ff=32))
    optimizer = {
        "adam": lambda: torch.optim.Adam(model.parameters(), lr=1e-2),
        "adamw": lambda: make_optimizer(TrainConfig(lr=1e-2, weight_decay=0.1), model),
        "sgd": lambda: torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
    }[optimizer_name]()
    tokens = torch.randint(1, 30, (8, 7))
    categories = torch.randint(0, 10, (8, 7))
    inputs, labels = targets_for_classes(torch.randint(0, 5, (8,)))
    before: dict[str, torch.Tensor] = {}
    for _ in range(3):
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        logits = model(tokens, categories, inputs)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model, optimizer, before


@pytest.mark.parametrize("kind", ["adam", "adamw"])
def test_adam_effective_step_is_the_update_torch_applied(kind: str) -> None:
    model, optimizer, before = _few_steps(kind)
    assert len(optimizer.param_groups) == (2 if kind == "adamw" else 1)  # AdamW: no decay on biases and norms
    for name, param in model.named_parameters():
        _, update, m, v = applied_update(param, optimizer)
        assert torch.allclose(before[name] - param.detach(), update, atol=1e-7), name
        state = optimizer.state[param]
        assert m is state["exp_avg"] and v is state["exp_avg_sq"]


def test_per_head_adam_statistics_by_hand() -> None:
    model, optimizer, _ = _few_steps("adam")
    point = optimizer_stats(model, optimizer, step=3)
    attention = model.decoder[0].cross_attention
    head, dim = 1, attention.head_dim
    rows = slice(head * dim, (head + 1) * dim)
    ms, vs, steps, grads = [], [], [], []
    beta1, beta2 = 0.9, 0.999
    for proj in (attention.query, attention.key, attention.value):
        for p in (proj.weight, proj.bias):
            s = optimizer.state[p]
            m, v = s["exp_avg"][rows], s["exp_avg_sq"][rows]
            ms.append(m.flatten())
            vs.append(v.flatten())
            steps.append((1e-2 * (m / (1 - beta1**3)) / ((v / (1 - beta2**3)).sqrt() + 1e-8)).flatten())
            grads.append(p.grad[rows].flatten())
    s = optimizer.state[attention.null_key]
    ms.append(s["exp_avg"][head])
    vs.append(s["exp_avg_sq"][head])
    m, v = s["exp_avg"][head], s["exp_avg_sq"][head]
    steps.append(1e-2 * (m / (1 - beta1**3)) / ((v / (1 - beta2**3)).sqrt() + 1e-8))
    grads.append(attention.null_key.grad[head])
    s = optimizer.state[attention.out.weight]
    ms.append(s["exp_avg"][:, rows].flatten())
    vs.append(s["exp_avg_sq"][:, rows].flatten())
    steps.append(
        (
            1e-2
            * (s["exp_avg"][:, rows] / (1 - beta1**3))
            / ((s["exp_avg_sq"][:, rows] / (1 - beta2**3)).sqrt() + 1e-8)
        ).flatten()
    )
    grads.append(attention.out.weight.grad[:, rows].flatten())
    m, v, step, grad = torch.cat(ms), torch.cat(vs), torch.cat(steps), torch.cat(grads)
    stats = point.heads["decoder.0.cross"][head]
    assert math.isclose(stats.mean_abs_m, float(m.abs().mean()), rel_tol=1e-5)
    assert math.isclose(stats.mean_sqrt_v, float(v.sqrt().mean()), rel_tol=1e-5)
    assert math.isclose(stats.mean_abs_step, float(step.abs().mean()), rel_tol=1e-5)
    assert math.isclose(stats.grad_norm, float(grad.norm()), rel_tol=1e-5)
    assert set(point.groups) == {"embeddings", "encoder.0", "decoder.0", "output"}


def test_sgd_reports_step_norm_and_no_moments() -> None:
    model, optimizer, before = _few_steps("sgd")
    point = optimizer_stats(model, optimizer, step=3)
    stats = point.heads["encoder.0.self"][0]
    assert stats.mean_abs_m is None and stats.mean_sqrt_v is None
    assert stats.step_norm > 0
    for name, param in model.named_parameters():
        _, update, _, _ = applied_update(param, optimizer)
        assert torch.allclose(before[name] - param.detach(), update, atol=1e-6), name


def test_a_finished_run_s_model_and_weights_are_not_kept_alive_by_its_statistics() -> None:
    """Each model's parameter layout is kept for its next step, but not past the model (a finished run's weights
    must be freed)."""
    import gc
    import weakref

    model, optimizer, _ = _few_steps("adam")
    first = optimizer_stats(model, optimizer, step=3)
    assert optimizer_stats(model, optimizer, step=3) == first  # the kept layout reads the same
    model_gone, weight_gone = weakref.ref(model), weakref.ref(next(model.parameters()))
    del model, optimizer
    gc.collect()
    assert model_gone() is None and weight_gone() is None


def test_expected_calibration_error_on_hand_computed_cases() -> None:
    # 4 claims at 0.95 confidence, 2 right: |0.5 - 0.95| = 0.45 over all of them
    assert expected_calibration_error([0.95] * 4, [True, True, False, False]) == pytest.approx(0.45)
    # two bins: 2 claims at 0.9 both right (gap 0.1), 2 at 0.5, one right (gap 0.0): (2 * 0.1 + 2 * 0) / 4
    assert expected_calibration_error([0.9, 0.9, 0.5, 0.5], [True, True, True, False]) == pytest.approx(0.05)
    assert expected_calibration_error([1.0], [True]) == pytest.approx(0.0)  # 1.0 falls in the top bin
