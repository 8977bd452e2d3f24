"""A saved run replayed into a read-only Snapshot for the pages: its records, its attention files and the probe claims
they were captured on, and whether it is still training elsewhere."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.runs.layout import (
    ATTENTION,
    MAX_ATTENTION_BYTES,
    MAX_TOKEN_CHARS,
    PROBE,
    WATCHED_EXAMPLES,
    WATCHED_POSITIONS,
    attention_file,
    is_watched,
)
from engine.runs import words
from engine.runs.formats import ending_of
from engine.runs.reading import (
    RECORDS,
    RunError,
    read_config,
    read_json,
    read_records,
    read_run_bytes,
    read_status,
    text,
)
from engine.telemetry import (
    ACTIVE_STATUSES,
    AttentionPoint,
    Downsampler,
    ProbeClaim,
    Snapshot,
    frozen,
    thin,
)


def _attention_weights(name: str, tensor: Any, probe: tuple[ProbeClaim, ...], heads: HeadCounts) -> np.ndarray:
    """(N claims or examples, H, Tq, Tk) weights, or ValueError for a tensor of another kind or shape. Headwatch's
    own runs: query rows up to the REASON position, and every key the longest probe claim needs (the decoder's
    self-attention keys the answer's own positions instead). A watched model's: a few examples of its batch."""
    if not isinstance(tensor, torch.Tensor) or tensor.dim() != 4 or not tensor.is_floating_point():
        raise ValueError("not attention weights")
    claims, found_heads, queries, keys = tensor.shape
    if found_heads < 1 or found_heads != heads.of(name):
        raise ValueError("not attention weights of this run")
    if not probe:
        if not (1 <= claims <= WATCHED_EXAMPLES and queries >= 1 and keys >= 1):
            raise ValueError("not attention weights of this run")
        return tensor.float().numpy()
    needed = 2 if name.startswith("decoder") and ".self" in name else max(len(c.tokens) for c in probe)
    if claims != len(probe) or queries < 2 or keys < max(2, needed):
        raise ValueError("not attention weights of this run")
    return tensor.float().numpy()

def load_attention(folder: Path, probe: tuple[ProbeClaim, ...], heads: HeadCounts) -> list[AttentionPoint]:
    """The saved attention snapshots; a half-written, damaged or foreign one is skipped, not fatal, and so is one
    that does not name the same attention layers as the last."""
    points = []
    for path in sorted((folder / ATTENTION).glob("step_*.pt")):
        step = re.fullmatch(r"step_(\d{1,12})\.pt", path.name)
        if step is None:
            continue
        try:
            data = read_run_bytes(folder, f"{ATTENTION}/{path.name}", MAX_ATTENTION_BYTES)
            tensors = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            weights = {text(name): _attention_weights(name, t, probe, heads) for name, t in tensors.items()}
            if not weights:
                raise ValueError("no attention weights")
        except Exception:  # torch raises many types for damaged files; RunError and ValueError for foreign ones
            continue
        points.append(_with_tokens(folder, AttentionPoint(int(step[1]), weights)))
    return [p for p in points if p.weights.keys() == points[-1].weights.keys()]

def _with_tokens(folder: Path, point: AttentionPoint) -> AttentionPoint:
    """A watched run's attention with the tokens saved beside it (none saved: as it is; damaged: why)."""
    name = f"{ATTENTION}/{attention_file(point.step, tokens=True)}"
    if not (folder / name).exists() and not (folder / name).is_symlink():
        return point
    try:
        return replace(point, tokens=read_tokens(read_json(folder, name)))
    except RunError as error:
        return replace(point, tokens_unread=str(error))
    except ValueError:
        return replace(point, tokens_unread=f"{name} is damaged (it does not list each example's tokens)")

def read_tokens(saved: Any) -> tuple[tuple[str, ...], ...]:
    """Each example's tokens as a watched run saves them (engine.runs.writer), each cut to MAX_TOKEN_CHARS; ValueError
    for anything else, or more examples or tokens than a watched run keeps."""
    examples = saved.get("tokens") if isinstance(saved, dict) else None
    if not isinstance(examples, list) or not 1 <= len(examples) <= WATCHED_EXAMPLES:
        raise ValueError("not a watched run's tokens")
    if not all(isinstance(tokens, list) and len(tokens) <= WATCHED_POSITIONS for tokens in examples):
        raise ValueError("not a watched run's tokens")
    return tuple(tuple(text(token)[:MAX_TOKEN_CHARS] for token in tokens) for tokens in examples)

def read_probe(folder: Path) -> tuple[ProbeClaim, ...]:
    claims = read_json(folder, PROBE)
    try:
        probe = tuple(ProbeClaim(text(c["text"]), text(c["label"]), tuple(map(text, c["tokens"])),
                                 tuple(map(text, c["categories"]))) for c in claims)
        if not all(claim.tokens for claim in probe):
            raise ValueError("a probe claim without words")
        return probe
    except (KeyError, TypeError, ValueError):
        raise RunError(f"{PROBE} is damaged (it does not list the probe claims)") from None

@dataclass(frozen=True)
class HeadCounts:
    """How many heads each attention layer of a run has: one count for all (Headwatch's own models), or one per
    layer (a watched model's layers may differ)."""

    every: int
    by_layer: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def of_run(cls, config: Mapping[str, Any]) -> HeadCounts:
        model = config.get("model", {})  # checked by read_config
        return cls(model.get("n_heads", 4), model.get("heads", {}) if is_watched(config) else {})

    def of(self, name: str) -> int:
        return self.by_layer.get(name, self.every)

    @property
    def most(self) -> int:
        return max([self.every, *self.by_layer.values()])

def fits_heads(kind: str, point: Any, heads: HeadCounts) -> bool:
    """False for a per-head record of another model (pages index every head)."""
    return kind not in ("optim", "specialization") or all(len(h) == heads.of(n) for n, h in point.heads.items())

def replay(folder: Path) -> Snapshot:
    """A saved run as a read-only Snapshot, for every page's replay; RunError (in plain words) if it is damaged."""
    config, status, probe = read_config(folder), read_status(folder), read_probe(folder)
    heads = HeadCounts.of_run(config)
    loss, evals, optim, specialization, metrics = Downsampler(), [], [], [], []
    last_step, seconds = 0, 0.0
    for kind, point in read_records(folder, RECORDS):
        if not fits_heads(kind, point, heads):
            continue
        if kind == "step":
            last_step, seconds = point.step, point.seconds
            loss.append(point.step, point.loss)
        elif kind == "eval":
            evals = thin([*evals, point], 1000)
        elif kind == "optim":
            optim = thin([*optim, point], 1000)
        elif kind == "metrics":
            metrics = thin([*metrics, point], 1000)
        else:
            specialization.append(point)
    attention = load_attention(folder, probe, heads)
    # a watched model's runs have no probe claims to show attention on: its attention layers are those measured
    names = tuple(attention[-1].weights) if attention else tuple(dict.fromkeys(n for p in optim for n in p.heads))
    run_status, message = _replayed_status(status, config)
    return Snapshot(
        run_id=folder.name, run_dir=str(folder), status=run_status, message=message,
        step=last_step, total_steps=config.get("steps") or last_step, seconds=seconds, config=frozen(config),
        loss=loss.series(), evals=tuple(evals), optim=tuple(optim), attention=tuple(attention),
        specialization=tuple(specialization), metrics=tuple(metrics), probe=probe, attention_names=names,
        n_heads=heads.most, read_only=True,
        chance=(status or {}).get("chance"), commonest=(status or {}).get("commonest"),
    )

TRAINING_ELSEWHERE = "training elsewhere"

HEARTBEAT_STALE_SECONDS = 30.0  # engine.recording.watch rewrites a training run's status every few seconds

def training_elsewhere(config: Mapping[str, Any], status: dict | None) -> bool:
    """A run recorded by headwatch.watch whose training loop said, less than HEARTBEAT_STALE_SECONDS ago, that it is
    training (in another process: this one only reads its files)."""
    return (is_watched(config) and (status or {}).get("status") in ACTIVE_STATUSES
            and heard_lately((status or {}).get("updated")))

def heard_lately(updated: object) -> bool:
    """A status rewritten less than HEARTBEAT_STALE_SECONDS ago (`updated`: its time, as status.json says)."""
    return isinstance(updated, int | float) and time.time() - updated < HEARTBEAT_STALE_SECONDS

def _replayed_status(status: dict | None, config: Mapping[str, Any]) -> tuple[str, str]:
    """The saved run's status, and what it says (read_status has checked it)."""
    if status is None:
        return "stopped", words.STATUS_DAMAGED
    if training_elsewhere(config, status):
        return "running", words.WATCHED_TRAINING
    ending = ending_of(status)
    if ending is None:
        return "stopped", words.SERVER_STOPPED
    return status.get("status", "stopped"), words.ended_text(ending, status.get("step", 0), status.get("seconds", 0.0))
