"""Where the verdict forms: linear probes on what the encoder hands the decoder at each field of a claim.

For each reason and each field (the diagnosis, the billed item, the dose, ...), a logistic regression learns to tell
claims of that reason from valid claims out of the encoder's output at that field alone, and is scored on other
claims (balanced accuracy: 0.5 is a guess). The same probe on the field's embedding, the word itself before the
encoder mixed anything in, is the baseline: a verdict has formed at a field only where the encoder's output says
more than the word there already did (Alain & Bengio 2016; Belinkov 2022 on why probes need baselines).

Probes are fitted on all their claims at once from zero weights with a fixed number of Newton steps, every probe
together as one batch of small problems, so the same weights and claims always give the same table.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from data.rules import CLASSES, REASONS
from data.vocabulary import CATEGORIES
from engine.runs.layout import PROBES
from engine.runs.reading import RunError, number, read_object, whole
from engine.runs.writer import atomic_write_bytes
from engine.task.claims_model import ClaimsTransformer
from engine.task.dataset import ClaimData, ClaimTensors

# probed field -> the token categories it covers: a drug and a procedure are both the claim's billed item
FIELDS: dict[str, tuple[str, ...]] = {
    "diagnosis": ("diagnosis",), "item": ("drug", "procedure"), "dose": ("dose",), "amount": ("amount",),
    "sex": ("sex",), "age": ("age",), "specialty": ("specialty",), "place": ("place",), "words": ("other",),
}  # fmt: skip
FIELD_NAMES = {
    "diagnosis": "diagnosis", "item": "billed item", "dose": "dose", "amount": "price", "sex": "sex", "age": "age",
    "specialty": "specialty", "place": "place", "words": "other words",
}  # fmt: skip
SOURCES = ("encoder", "embeddings")  # what is probed: the encoder's output, and the baseline before it
FIT_CLAIMS = 2000  # claims of the training pool the probes learn from (the held-out claims score them)
MIN_CLAIMS = 20  # of each side (the reason, valid claims), in fitting and in scoring, or the cell is not measured
NEWTON_STEPS = 8
PROBE_L2 = 1e-3  # keeps a probe's weights finite where a field separates the claims perfectly
ENCODE_CHUNK = 500
# A verdict has formed at a field where its encoder probe reaches FORMED and beats the word alone by GAIN
FORMED = 0.85
GAIN = 0.10
HUB_REASONS = ("MEDICAL", "DOSAGE", "COST")  # the reasons that all judge the billed item
# Recorded while training at step 0, FIRST_RECORDED, then every RECORDED_RATIO times later, and at the run's end:
# few, because each costs about a second on one core: the default recipe passes 95% held-out near step 800, after
# only the tables of steps 0 and 200
FIRST_RECORDED = 200
RECORDED_RATIO = 4
FORMAT = "headwatch-probes"


@dataclass(frozen=True)
class ProbeTable:
    """Held-out balanced accuracy per source, reason and field (NaN: too few claims to measure), after `step`."""

    step: int
    accuracy: dict[str, dict[str, dict[str, float]]]  # source -> reason -> field -> accuracy
    claims: dict[str, dict[str, int]]  # reason -> field -> scored claims (reason and valid together)
    seconds: float = float("nan")  # what measuring it cost

    def cell(self, source: str, reason: str, field: str) -> float:
        return self.accuracy[source][reason][field]

    def to_json(self) -> dict:
        """Numbers only; an unmeasured cell (NaN) is null."""

        def finite(value: float) -> float | None:
            return value if math.isfinite(value) else None

        return {
            "step": self.step,
            "seconds": finite(self.seconds),
            "claims": self.claims,
            "accuracy": {
                source: {
                    reason: {field: finite(value) for field, value in cells.items()}
                    for reason, cells in by_reason.items()
                }
                for source, by_reason in self.accuracy.items()
            },
        }


@dataclass(frozen=True)
class Examples:
    """P probing problems over N rows of C numbers: features (P, N, C), labels (P, N), used (P, N) rows."""

    features: torch.Tensor
    labels: torch.Tensor
    used: torch.Tensor


@contextmanager
def _embeddings_seen(model: ClaimsTransformer, into: list[torch.Tensor]) -> Iterator[None]:
    """Collects what the encoder's first layer is given (the packed words' embeddings, (N, C)) on each pass."""
    first = model.encoder[0] if len(model.encoder) else model.norm_memory
    handle = first.register_forward_pre_hook(lambda _module, args: into.append(args[0].detach()))
    try:
        yield
    finally:
        handle.remove()


def _field_of_category() -> torch.Tensor:
    """For each category id, the index of the probed field it belongs to."""
    lookup = torch.full((len(CATEGORIES),), -1, dtype=torch.long)
    for index, categories in enumerate(FIELDS.values()):
        for category in categories:
            lookup[CATEGORIES.index(category)] = index
    return lookup


def _per_field(packed: torch.Tensor, claim: torch.Tensor, field: torch.Tensor, batch: int) -> torch.Tensor:
    """The mean of each claim's packed rows (N, C) per field: (F, B, C), zero where a claim lacks the field."""
    slots = claim * len(FIELDS) + field
    sums = packed.new_zeros(batch * len(FIELDS), packed.shape[1]).index_add_(0, slots, packed)
    counts = packed.new_zeros(batch * len(FIELDS)).index_add_(0, slots, torch.ones_like(slots, dtype=packed.dtype))
    means = sums / counts.clamp(min=1)[:, None]
    return means.view(batch, len(FIELDS), -1).transpose(0, 1)


@torch.no_grad()
def field_vectors(model: ClaimsTransformer, claims: ClaimTensors) -> tuple[torch.Tensor, torch.Tensor]:
    """Each claim's vector at each field, from each source: (S, F, B, C), and where the claim has the field:
    (F, B). A field written in several words is the mean of its words' vectors."""
    was_training = model.training
    model.eval()
    lookup = _field_of_category().to(claims.tokens.device)
    vectors, present = [], []
    for start in range(0, len(claims), ENCODE_CHUNK):
        chunk = claims.subset(slice(start, start + ENCODE_CHUNK)).trimmed()
        seen: list[torch.Tensor] = []
        with _embeddings_seen(model, seen):
            memory = model.encode(chunk.tokens, chunk.categories)
        packing, batch = memory.packing, len(chunk)
        claim = packing.index // chunk.tokens.shape[1]
        field = lookup[packing.pack(chunk.categories)]
        vectors.append(torch.stack([_per_field(rows, claim, field, batch) for rows in (memory.tokens, seen[0])]))
        present.append(
            torch.zeros(len(FIELDS), batch, dtype=torch.bool, device=claim.device).index_put_(
                (field, claim), torch.ones_like(claim, dtype=torch.bool)
            )
        )
    model.train(was_training)
    return torch.cat(vectors, dim=2), torch.cat(present, dim=1)


def probe_accuracy(fit: Examples, score: Examples, steps: int = NEWTON_STEPS) -> torch.Tensor:
    """Each of P logistic-regression probes fitted on `fit` and scored on `score`: held-out balanced accuracy (the
    mean of its recall on both labels), (P,); NaN where either label has fewer than MIN_CLAIMS rows on either side."""
    labels, used = fit.labels.float(), fit.used.float()
    positives, negatives = (labels * used).sum(1), ((1 - labels) * used).sum(1)
    # standardized with the fitted rows' own mean and spread, so one penalty suits every probe
    mean = (fit.features * used[..., None]).sum(1) / used.sum(1).clamp(min=1)[:, None]
    spread = ((fit.features - mean[:, None]) ** 2 * used[..., None]).sum(1) / used.sum(1).clamp(min=1)[:, None]
    scale = spread.sqrt().clamp(min=1e-6)

    def inputs(features: torch.Tensor) -> torch.Tensor:  # standardized, with a constant 1 for the bias
        standard = (features - mean[:, None]) / scale[:, None]
        return torch.cat([standard, torch.ones_like(standard[..., :1])], dim=-1)

    rows = inputs(fit.features)  # (P, N, C + 1)
    # each label weighs half, whatever its count: a probe cannot score by always answering "valid"
    weights = used * (labels / positives.clamp(min=1)[:, None] + (1 - labels) / negatives.clamp(min=1)[:, None]) / 2
    penalty = torch.full((rows.shape[-1],), PROBE_L2, dtype=rows.dtype, device=rows.device)
    penalty[-1] = 0.0  # the bias is not held back
    coefficients = rows.new_zeros(rows.shape[0], rows.shape[-1])
    for _ in range(steps):  # Newton's method (IRLS): a few exact steps instead of hundreds of gradient steps
        probability = torch.sigmoid(torch.einsum("pnc,pc->pn", rows, coefficients))
        gradient = torch.einsum("pnc,pn->pc", rows, weights * (probability - labels)) + penalty * coefficients
        curvature = (rows * (weights * probability * (1 - probability))[..., None]).transpose(1, 2) @ rows
        curvature = curvature + torch.diag(penalty.clamp(min=1e-9))
        coefficients = coefficients - torch.linalg.solve(curvature, gradient)
    said = torch.einsum("pnc,pc->pn", inputs(score.features), coefficients) > 0
    truth, kept = score.labels.bool(), score.used.bool()
    hits_true, hits_false = (said & truth & kept).sum(1), (~said & ~truth & kept).sum(1)
    count_true, count_false = (truth & kept).sum(1), (~truth & kept).sum(1)
    accuracy = (hits_true / count_true.clamp(min=1) + hits_false / count_false.clamp(min=1)) / 2
    enough = torch.stack([positives, negatives, count_true.float(), count_false.float()]).min(0).values >= MIN_CLAIMS
    return torch.where(enough, accuracy, torch.nan)


def _balanced_rows(classes: torch.Tensor, reason: int) -> torch.Tensor:
    """The rows of one reason's claims and as many valid ones (the first of each), for fitting its probes."""
    mine, valid = (classes == reason).nonzero().squeeze(1), (classes == 0).nonzero().squeeze(1)
    count = min(len(mine), len(valid))
    return torch.cat([mine[:count], valid[:count]])


def _examples(
    vectors: torch.Tensor, present: torch.Tensor, classes: torch.Tensor, rows: list[torch.Tensor]
) -> Examples:
    """One problem per source, reason and field (in that order), each on its reason's `rows`: the claims of that
    reason against valid claims, at those that have the field."""
    width = max(len(r) for r in rows)
    features, labels, used = [], [], []
    for source in range(vectors.shape[0]):
        for reason, chosen in enumerate(rows, start=1):
            padding = width - len(chosen)
            index = torch.cat([chosen, chosen.new_zeros(padding)])
            real = torch.cat([torch.ones(len(chosen), dtype=torch.bool), torch.zeros(padding, dtype=torch.bool)])
            real = real.to(classes.device)
            for field in range(vectors.shape[1]):
                features.append(vectors[source, field, index])
                labels.append(classes[index] == reason)
                used.append(real & present[field, index] & ((classes[index] == reason) | (classes[index] == 0)))
    return Examples(torch.stack(features), torch.stack(labels), torch.stack(used))


def probe_table(model: ClaimsTransformer, fit: ClaimTensors, score: ClaimTensors, step: int) -> ProbeTable:
    """Every (source, reason, field) probe of `model`, fitted on `fit` claims and scored on `score` claims."""
    fit_vectors, fit_present = field_vectors(model, fit)
    score_vectors, score_present = field_vectors(model, score)
    reasons = range(1, len(CLASSES))
    fitted = _examples(fit_vectors, fit_present, fit.classes, [_balanced_rows(fit.classes, r) for r in reasons])
    every = torch.arange(len(score), device=score.classes.device)
    scored = _examples(score_vectors, score_present, score.classes, [every for _ in reasons])
    accuracy = probe_accuracy(fitted, scored).view(len(SOURCES), len(REASONS), len(FIELDS)).tolist()
    in_score = score_present[None] & (
        (score.classes[None, None] == torch.tensor(list(reasons))[:, None, None]) | (score.classes == 0)[None, None]
    )  # (R, F, B)
    return ProbeTable(
        step=step,
        accuracy={
            source: {reason: dict(zip(FIELDS, accuracy[s][r], strict=True)) for r, reason in enumerate(REASONS)}
            for s, source in enumerate(SOURCES)
        },
        claims={
            reason: dict(zip(FIELDS, in_score[r].sum(1).tolist(), strict=True)) for r, reason in enumerate(REASONS)
        },
    )


def probing_claims(data: ClaimData) -> tuple[ClaimTensors, ClaimTensors]:
    """The claims a run's probes learn from (the start of its training pool) and are scored on (its held-out)."""
    return data.train.subset(slice(0, FIT_CLAIMS)), data.heldout


def formed_at(table: ProbeTable, reason: str) -> list[str]:
    """The fields where `reason`'s verdict has formed: the encoder's output there tells it from valid claims
    (FORMED) clearly better than the word there does alone (GAIN)."""
    return [
        field
        for field in FIELDS
        if (encoder := table.cell("encoder", reason, field)) >= FORMED
        and encoder - table.cell("embeddings", reason, field) >= GAIN
    ]


def measured_fields(table: ProbeTable, reason: str) -> list[str]:
    return [field for field in FIELDS if not math.isnan(table.cell("encoder", reason, field))]


def _listed(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def where_it_forms(table: ProbeTable, reason: str) -> str:
    """One plain line: where `reason`'s verdict forms ("DOSAGE forms at the billed item and the dose.")."""
    formed, measured = formed_at(table, reason), measured_fields(table, reason)
    if not measured:
        return f"{reason}: too few claims to measure."
    if not formed:
        return (
            f"{reason} forms at no single field: no field's encoder output tells it from valid claims clearly "
            "better than its word alone."
        )
    if len(formed) == len(measured):
        return f"{reason} forms everywhere: at every field measured."
    return f"{reason} forms at {_listed([f'the {FIELD_NAMES[f]}' for f in formed])}."


def hub_line(table: ProbeTable) -> str:
    """Whether the billed item is a hub: every reason that judges it (HUB_REASONS) has its verdict formed there."""
    there = [reason for reason in HUB_REASONS if "item" in formed_at(table, reason)]
    if len(there) == len(HUB_REASONS):
        return f"The billed item is a hub: {_listed(list(HUB_REASONS))} all form there."
    if not there:
        return f"The billed item is no hub: none of {_listed(list(HUB_REASONS))} forms there."
    verb = "forms" if len(there) == 1 else "form"
    return f"The billed item is no hub: of {_listed(list(HUB_REASONS))}, only {_listed(there)} {verb} there."


def recorded_steps(total: int) -> list[int]:
    """The steps at which a run of `total` steps records its probe table (its end as well, wherever it stops)."""
    steps, step = [0], FIRST_RECORDED
    while step < total:
        steps.append(step)
        step *= RECORDED_RATIO
    return [*steps, total]


def save_probes(folder: Path, tables: list[ProbeTable]) -> None:
    data = {"format": FORMAT, "version": 1, "tables": [table.to_json() for table in tables]}
    atomic_write_bytes(folder / PROBES, json.dumps(data, allow_nan=False).encode())


def _share(value: Any) -> float:
    share = number(value)
    if not (math.isnan(share) or 0 <= share <= 1):
        raise ValueError("not a share")
    return share


def _cells(value: Any, keys: tuple[str, ...], read: Any) -> dict:
    """A table with exactly `keys` (extra keys are left out), each value checked by `read`."""
    if not isinstance(value, dict):
        raise ValueError("not a table")
    return {key: read(value[key]) for key in keys}


def _count(value: Any) -> int:
    if whole(value) < 0:
        raise ValueError("a negative count")
    return value


def _seconds(value: Any) -> float:
    seconds = number(value)
    if seconds < 0:
        raise ValueError("negative seconds")
    return seconds


def _table(record: Any) -> ProbeTable:
    if not isinstance(record, dict):
        raise ValueError("not a table")
    return ProbeTable(
        step=_count(record["step"]),
        accuracy=_cells(
            record["accuracy"],
            SOURCES,
            lambda by_reason: _cells(by_reason, REASONS, lambda cells: _cells(cells, tuple(FIELDS), _share)),
        ),
        claims=_cells(record["claims"], REASONS, lambda cells: _cells(cells, tuple(FIELDS), _count)),
        seconds=_seconds(record.get("seconds")),
    )


def read_probes(folder: Path) -> list[ProbeTable]:
    """A run's recorded probe tables, by step; [] when it recorded none. RunError when the file is not one a run
    writes; a damaged table in it is left out, and when none is left the file counts as damaged."""
    if not (folder / PROBES).exists():
        return []
    data = read_object(folder, PROBES)
    if data.get("format") != FORMAT or data.get("version") != 1 or not isinstance(data.get("tables"), list):
        raise RunError(f"{PROBES} is damaged (it is not a table of probes Headwatch writes)")
    tables = {}
    for record in data["tables"]:
        try:
            table = _table(record)
        except (KeyError, TypeError, ValueError):
            continue
        tables[table.step] = table
    if data["tables"] and not tables:
        raise RunError(f"{PROBES} is damaged (none of its tables holds the numbers a run writes)")
    return [tables[step] for step in sorted(tables)]
