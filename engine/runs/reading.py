"""Reading a run folder (its layout: engine.runs.layout) as possibly hostile: run folders are copied and shared
between people.

Every read stays inside the run's folder (a link that leads out is refused), opens plain files only (never a device,
a pipe or a folder), and is bounded in size; every record is checked for the types the pages rely on, so a damaged
file gives a RunError that says which file and why, in plain words, or a record that is skipped, never a crash.
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
from collections.abc import Callable, Collection, Iterator
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch

from data.rules import CLASSES, REASONS
from engine.runs.checks import RunError, head_indices, number, numbers, shared_with, table, text, whole
from engine.runs.formats import config_as_now, ending_of, role_from_label
from engine.runs.layout import (
    CHECKPOINT,
    CONFIG,
    MAX_CHECKPOINT_BYTES,
    MAX_JSON_BYTES,
    MAX_METRICS_BYTES,
    MAX_RECORD_BYTES,
    METRICS,
    STATUS,
    is_watched,
)
from engine.telemetry import (
    ACTIVE_STATUSES,
    ENDED_STATUSES,
    INTERVENTIONS,
    EvalPoint,
    HeadSpecialization,
    MetricsPoint,
    OptimPoint,
    OptimStats,
    SpecializationPoint,
    StepPoint,
)


def open_in_run(folder: Path, name: str) -> BinaryIO:
    """A run file opened for reading; RunError if it is missing, leads outside `folder` or is not a plain file."""
    try:
        real = (folder / name).resolve(strict=True)
    except FileNotFoundError:
        raise RunError(f"{name} is missing") from None
    except (OSError, RuntimeError):  # a loop of links, a folder that cannot be entered
        raise RunError(f"{name} cannot be read") from None
    if not real.is_relative_to(folder.resolve()):
        raise RunError(f"{name} is a link to a file outside its run folder, so it is not read")
    try:
        # O_NONBLOCK: opening a pipe must not hang; O_NOFOLLOW: the name resolved above must not become a link now
        handle = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError:
        raise RunError(f"{name} cannot be read") from None
    if not stat.S_ISREG(os.fstat(handle).st_mode):
        os.close(handle)
        raise RunError(f"{name} is not a plain file, so it is not read")
    return os.fdopen(handle, "rb")


def read_run_bytes(folder: Path, name: str, limit: int) -> bytes:
    with open_in_run(folder, name) as file:
        data = file.read(limit + 1)
    if len(data) > limit:
        raise RunError(f"{name} is larger than {limit // 2**20} MB, which no Headwatch run writes, so it is not read")
    return data


def read_json(folder: Path, name: str) -> Any:
    try:
        return json.loads(read_run_bytes(folder, name, MAX_JSON_BYTES).decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise RunError(f"{name} is damaged (not readable JSON)") from None


def read_object(folder: Path, name: str) -> dict:
    value = read_json(folder, name)
    if not isinstance(value, dict):
        raise RunError(f"{name} is damaged (it holds no settings)")
    return value


def read_config(folder: Path) -> dict:
    """config.json, as this version writes it (engine.runs.formats), with every setting that pages and summaries
    show checked for its type."""
    config = config_as_now(read_object(folder, CONFIG))
    for key, (check, required) in CONFIG_SETTINGS.items():
        try:
            if key in config:
                check(config[key])
            elif required:
                raise ValueError(f"no {key}")
        except ValueError:
            raise RunError(f"{CONFIG} is damaged: its '{key}' setting is missing or not what a run writes") from None
    if config.get("model", {}).get("n_heads") == 0 and not is_watched(config):
        raise RunError(f"{CONFIG} is damaged: its 'model' setting is missing or not what a run writes")
    return config


def _class_name(value: Any) -> str:
    """A Python class name (a watched loop's optimizer), nothing a page would render as anything else."""
    if not isinstance(value, str) or re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]{0,59}", value) is None:
        raise ValueError(f"{value!r} is not a class name")
    return value


def _model_settings(value: Any) -> None:
    """Heads: one count for every attention layer, or (a watched model's layers may differ) 0 and one per layer, or
    (a watched model in which watch found no attention) 0 and no layer; read_config refuses 0 in Headwatch's own."""
    by_layer = value.get("heads", {}) if isinstance(value, dict) else None
    if not isinstance(by_layer, dict) or not all(1 <= whole(n) <= 64 for n in by_layer.values()):
        raise ValueError("not model settings")
    if not 0 <= whole(value.get("n_heads", 4)) <= 64:
        raise ValueError("not model settings")


# setting -> (its check, whether every run writes it)
CONFIG_SETTINGS: dict[str, tuple[Callable[[Any], Any], bool]] = {
    "optimizer": (text, True), "lr": (number, True), "batch_size": (whole, True), "seed": (whole, True),
    "steps": (whole, True), "preset": (text, False), "data_seed": (whole, False), "warmup_steps": (whole, False),
    "schedule": (text, False), "decay_fraction": (number, False), "momentum": (number, False),
    "model": (_model_settings, False), "optimizer_name": (_class_name, False), "beta2": (number, False),
}


def read_status(folder: Path) -> dict | None:
    """status.json; {} if there is none (a run killed before writing it), None if it is damaged."""
    if not (folder / STATUS).exists():
        return {}
    try:
        status = read_object(folder, STATUS)
        if status.get("status", "stopped") not in (*ACTIVE_STATUSES, *ENDED_STATUSES):
            raise ValueError("not a status a run writes")
        ending_of(status)
        whole(status.get("step", 0))
        if status.get("chance") is not None and not 0 <= number(status["chance"]) <= 1:
            raise ValueError("not a share")
        if status.get("commonest") not in (None, *CLASSES):
            raise ValueError("not an outcome")
    except (RunError, ValueError):
        return None
    return status


def _lines(file: BinaryIO) -> Iterator[bytes]:
    """The file's lines, skipping any longer than MAX_RECORD_BYTES (never held whole in memory)."""
    while line := file.readline(MAX_RECORD_BYTES + 1):
        if len(line) <= MAX_RECORD_BYTES:
            yield line
            continue
        while line and not line.endswith(b"\n"):
            line = file.readline(MAX_RECORD_BYTES + 1)


def read_metrics(folder: Path) -> list[dict]:
    """Every complete record of metrics.jsonl; a torn last line (the process was killed mid-write), a damaged line
    or one that is not a record is skipped."""
    if not (folder / METRICS).exists():
        return []
    with open_in_run(folder, METRICS) as file:
        if os.fstat(file.fileno()).st_size > MAX_METRICS_BYTES:
            raise RunError(f"{METRICS} is larger than {MAX_METRICS_BYTES // 2**30} GB, so it is not read")
        records = []
        for line in _lines(file):
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


def _stats(record: Any) -> OptimStats:
    values = {k: number(v) for k, v in record.items()}
    return OptimStats(**values)


def eval_point(record: dict) -> EvalPoint:
    return EvalPoint(
        step=whole(record["step"]), seconds=number(record["seconds"]), train_loss=number(record["train_loss"]),
        heldout_loss=number(record["heldout_loss"]), train_accuracy=number(record["train_accuracy"]),
        heldout_accuracy=number(record["heldout_accuracy"]), train_per_class=numbers(record["train_per_class"]),
        heldout_per_class=numbers(record["heldout_per_class"]),
    )


def optim_point(record: dict) -> OptimPoint:
    return OptimPoint(
        step=whole(record["step"]),
        heads={text(name): tuple(_stats(s) for s in heads) for name, heads in record["heads"].items()},
        groups={text(name): _stats(s) for name, s in record["groups"].items()},
    )


def _owned(value: Any) -> str | None:
    if value is not None and value not in REASONS:
        raise ValueError(f"{value!r} is not a reason")
    return value


def _head(record: dict) -> HeadSpecialization:
    if not record["shares"]:
        raise ValueError("a head that read nothing")
    return HeadSpecialization(
        shares=numbers(record["shares"]), entropy=number(record["entropy"]), confidence=number(record["confidence"]),
        importance=number(record["importance"]), ablation=numbers(record["ablation"]),
        admin_kinds=numbers(record.get("admin_kinds", {})),
        necessity=numbers(record.get("necessity", {})), sufficiency=numbers(record.get("sufficiency", {})),
        direct=numbers(record.get("direct", {})),
        answers={text(k): numbers(v) for k, v in table(record.get("answers", {})).items()},
        owns=_owned(record.get("owns")), **_role(record),
        pair_necessity={text(k): numbers(v) for k, v in table(record.get("pair_necessity", {})).items()},
        pair_ablation={text(k): numbers(v) for k, v in table(record.get("pair_ablation", {})).items()},
        selectivity=None if record.get("selectivity") is None else number(record["selectivity"]),
        shared_with=shared_with(record.get("shared_with", {})),
        rivals=head_indices(record.get("rivals", [])),
        intervention=_intervention(record),
    )


def _intervention(record: dict) -> str:
    """How the record's ablation took a head away; runs saved before it was recorded gave the head its average output
    when they recorded where the answers went, and zeroed it before that."""
    if "intervention" not in record:
        return "mean" if record.get("answers") else "zeroed"
    if record["intervention"] not in INTERVENTIONS:
        raise ValueError("not an intervention Headwatch makes")
    return record["intervention"]


def _role(record: dict) -> dict[str, Any]:
    """The head's kind and the reason it names (engine.runs.formats reads them from older runs' labels)."""
    if "kind" not in record:
        role = role_from_label(text(record["label"]))
        return {"kind": role["kind"], "reason": role["reason"]}
    reason = record.get("reason")
    return {"kind": text(record["kind"]), "reason": None if reason is None else text(reason)}


def specialization_point(record: dict) -> SpecializationPoint:
    return SpecializationPoint(
        step=whole(record["step"]),
        heads={text(name): tuple(_head(h) for h in heads) for name, heads in record["heads"].items()},
    )


def step_record(record: dict) -> StepPoint:
    return StepPoint(whole(record["step"]), number(record["loss"]), number(record["seconds"]))


def metrics_point(record: dict) -> MetricsPoint:
    return MetricsPoint(whole(record["step"]), numbers(record["values"]))


Record = StepPoint | EvalPoint | OptimPoint | SpecializationPoint | MetricsPoint
# kind -> (what a run writes, how a reader checks it back)
RECORD_KINDS: dict[str, tuple[type, Callable[[dict], Record]]] = {
    "step": (StepPoint, step_record), "eval": (EvalPoint, eval_point), "optim": (OptimPoint, optim_point),
    "specialization": (SpecializationPoint, specialization_point), "metrics": (MetricsPoint, metrics_point),
}
RECORDS = tuple(RECORD_KINDS)
_KIND_OF = {written: kind for kind, (written, _) in RECORD_KINDS.items()}


def encode_record(point: Record) -> dict:
    """A measurement as one line of metrics.jsonl: its kind and its fields (a step's rate and time left are not
    kept)."""
    values = _plain(point)
    if isinstance(point, StepPoint):
        del values["steps_per_second"], values["seconds_left"]
    return {"type": _KIND_OF[type(point)], **values}


def _plain(value: Any) -> Any:
    """A record's fields as JSON takes them, as dataclasses.asdict gives them but without copying each value: a
    watched loop writes one every step."""
    if is_dataclass(value):
        return {field.name: _plain(getattr(value, field.name)) for field in fields(value)}
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def read_records(folder: Path, kinds: Collection[str], newest_first: bool = False) -> Iterator[tuple[str, Any]]:
    """(kind, parsed record) for each record of metrics.jsonl of one of `kinds`, in order (or newest first); a
    damaged record (a missing field, a value of the wrong type) is skipped."""
    records = read_metrics(folder)
    for record in reversed(records) if newest_first else records:
        kind = record.get("type")
        if not isinstance(kind, str) or kind not in kinds:
            continue
        try:
            yield kind, RECORD_KINDS[kind][1](record)
        except (KeyError, TypeError, ValueError, AttributeError):
            continue


STATE_DTYPES = frozenset({torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int64, torch.int32,
                          torch.int16, torch.int8, torch.uint8, torch.bool})


def _plain_tensor(value: Any) -> bool:
    """A dense tensor of ordinary numbers in memory: what a state_dict holds (not sparse, meta, quantised, float8)."""
    return (isinstance(value, torch.Tensor) and value.layout == torch.strided and value.device.type == "cpu"
            and value.dtype in STATE_DTYPES)


def load_checkpoint(folder: Path) -> dict:
    """A checkpoint's {"step", "model"}; refuses anything that is not plain tensors (weights_only=True)."""
    data = read_run_bytes(folder, CHECKPOINT, MAX_CHECKPOINT_BYTES)
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception:  # torch raises many types for damaged files, and UnpicklingError for unsafe ones
        raise RunError(f"{CHECKPOINT} is damaged or holds more than model weights, so it is not loaded (only plain "
                       "weights are ever loaded: anything else could run code)") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("model"), dict):
        raise RunError(f"{CHECKPOINT} does not hold a Headwatch model")
    if not all(isinstance(k, str) and _plain_tensor(v) for k, v in payload["model"].items()):
        raise RunError(f"{CHECKPOINT} holds something other than plain weights, so it is not loaded")
    try:
        payload["step"] = whole(payload.get("step", 0))
    except ValueError:
        raise RunError(f"{CHECKPOINT} is damaged (its step is not a whole number)") from None
    return payload
