"""What a run folder holds: its files' names, the size each may reach, and the format version its records are
written in.

  config.json        the TrainConfig (with its ModelConfig), and the folder's format (FORMAT_KEY)
  tokenizer.json     the vocabulary the weights belong to
  probe.json         the claims whose attention is captured
  status.json        last known status, and how the run ended as facts (engine.runs.ending; atomic replace)
  metrics.jsonl      one JSON object a line: step, eval, optim and specialization records (RECORD_KINDS)
  attention/step_NNNNNNN.pt   probe-batch attention weights at log-spaced steps (a watched run: its batch's first
                              WATCHED_EXAMPLES examples)
  attention/step_NNNNNNN.tokens.json   a watched run's: those examples' tokens, when watch was given a tokenizer
  checkpoints/latest.pt       model state_dict + step (atomic replace; loaded with weights_only=True)
  probes.json        where the verdict forms: probe tables at a few steps (engine.interpret.probes; atomic replace)
  tensorboard/       TensorBoard event files, when asked for (engine.recording.tensorboard_files; read only to export)
  .writer.lock       locked by the one process writing the run for as long as it does (engine.runs.writer.WriterLock)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

CONFIG, STATUS, TOKENIZER, PROBE = "config.json", "status.json", "tokenizer.json", "probe.json"
# The format a folder is written in, named in its config.json: a reader of another format would misread it.
# Runs saved before there was one are format 1; engine.runs.formats reads them, and refuses formats it does not know.
FORMAT_KEY, FORMAT = "format", 3
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoints/latest.pt"
PROBES = "probes.json"
ATTENTION = "attention"
TENSORBOARD = "tensorboard"
WRITER_LOCK = ".writer.lock"  # held (flock) by the one process writing the run; it names that process's id
WATCHED = "watch"  # config.json's "source" in a run recorded by headwatch.watch from someone's own training loop
WATCHED_EXAMPLES = 8  # a watched run's attention files keep the first examples of the batch being trained
WATCHED_POSITIONS = 128  # and of longer sequences, the first positions (a file and a page stay small)
MAX_TOKEN_CHARS = 64  # a token's text, as saved and read back: a tokenizer's tokens are far shorter


def attention_file(step: int, tokens: bool = False) -> str:
    """The name, in ATTENTION, of a step's attention weights, or (tokens=True) of a watched run's tokens for them."""
    return f"step_{step:09d}.tokens.json" if tokens else f"step_{step:09d}.pt"


def is_watched(config: Mapping[str, Any]) -> bool:
    """Whether a run's settings are those of someone's own model, recorded by headwatch.watch."""
    return config.get("source") == WATCHED


RUN_FILES = frozenset({CONFIG, STATUS, TOKENIZER, PROBE, METRICS, ATTENTION, CHECKPOINT.split("/")[0], TENSORBOARD,
                       WRITER_LOCK, PROBES})

MAX_JSON_BYTES = 4 * 2**20  # a tokenizer is ~50 kB; config, status and probe are smaller
MAX_METRICS_BYTES = 2**30  # a 100,000-step run writes ~100 MB
MAX_RECORD_BYTES = 2**20  # one metrics line; the largest (a specialization record) is ~10 kB
MAX_CHECKPOINT_BYTES = 512 * 2**20  # the default model's checkpoint is ~1 MB
MAX_ATTENTION_BYTES = 64 * 2**20
LARGEST_WHOLE = 2**53  # steps, seeds and sizes beyond this are not a run's: pages and tables cannot hold them
