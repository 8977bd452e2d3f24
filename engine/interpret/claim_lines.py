"""Claims a line at a time, as `python -m engine predict` reads them from stdin: bytes cut into lines whatever the
locale, a line too long to be one claim refused in words, and one JSON answer per line, judged and flushed a batch
at a time."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import BinaryIO, TextIO

from engine.interpret.inference import MAX_CLAIM_CHARS, Predictor

PREDICT_BATCH = 256  # claims judged in one forward pass by `predict`; answers are flushed after each batch
READ_BYTES = 1 << 16  # `predict` reads what has arrived on stdin, up to this much at a time
MAX_LINE_BYTES = 4 * MAX_CLAIM_CHARS  # UTF-8 spends at most 4 bytes a character: a longer line is too long a claim


class _Overlong:
    """A line too long to be one claim: its start is kept for the answer, the rest is counted, never held."""

    def __init__(self, start: bytes, size: int) -> None:
        self.start, self.size = start, size

    def answer(self) -> dict:
        return {
            "text": self.start.decode("utf-8", errors="replace")[:MAX_CLAIM_CHARS],
            "error": f"The claim is more than {MAX_CLAIM_CHARS:,} characters long (its line holds {self.size:,} "
            f"bytes); the limit is {MAX_CLAIM_CHARS:,}, and text holds its first {MAX_CLAIM_CHARS:,} only."
            " Put one claim per line.",
        }


class _LineSplitter:
    """Bytes as they arrive, cut into lines: a line is decoded whatever the locale (a byte that is not UTF-8 spoils
    its own line only), and one longer than MAX_LINE_BYTES is an _Overlong, so no line can fill the memory."""

    def __init__(self) -> None:
        self.pending = b""  # the start of a line whose end has not arrived
        self.overlong: _Overlong | None = None  # the line being read past

    def feed(self, chunk: bytes) -> list[str | _Overlong]:
        lines: list[str | _Overlong] = []
        if self.overlong is not None:
            end = chunk.find(b"\n")
            self.overlong.size += len(chunk) if end < 0 else end
            if end < 0:
                return lines
            lines.append(self.overlong)
            self.overlong, chunk = None, chunk[end + 1 :]
        *complete, self.pending = (self.pending + chunk).split(b"\n")
        lines += [_line(piece) for piece in complete]
        if len(self.pending) > MAX_LINE_BYTES:
            self.overlong, self.pending = _Overlong(self.pending[:MAX_LINE_BYTES], len(self.pending)), b""
        return lines

    def end(self) -> list[str | _Overlong]:
        """The last line, when the input does not end with a line break."""
        if self.overlong is not None:
            return [self.overlong]
        return [_line(self.pending)] if self.pending else []


def _line(piece: bytes) -> str | _Overlong:
    if len(piece) > MAX_LINE_BYTES:
        return _Overlong(piece[:MAX_LINE_BYTES], len(piece))
    return piece.decode("utf-8", errors="replace").rstrip("\r")


def _line_batches(stream: BinaryIO, batch_size: int = PREDICT_BATCH) -> Iterator[list[str | _Overlong]]:
    """The lines of `stream` in batches of those that have arrived, up to `batch_size`: a pipe is read in batches,
    while a person typing gets each line answered as soon as it is entered."""
    splitter = _LineSplitter()
    while chunk := stream.read1(READ_BYTES):  # what has arrived, waiting only while nothing has
        lines = splitter.feed(chunk)
        yield from (lines[start : start + batch_size] for start in range(0, len(lines), batch_size))
    if last := splitter.end():
        yield last


def _answers(predictor: Predictor, batch: Sequence[str | _Overlong]) -> list[dict]:
    """Each line's answer, in order, the claims among them judged in one batch."""
    judged = iter(predictor.predict_many([line for line in batch if isinstance(line, str)]))
    return [next(judged).to_json() if isinstance(line, str) else line.answer() for line in batch]


def answer_lines(predictor: Predictor, stream: BinaryIO, out: TextIO, batch_size: int = PREDICT_BATCH) -> None:
    """One JSON answer per line of `stream`, in order, written and flushed a batch at a time."""
    for batch in _line_batches(stream, batch_size):
        out.write("".join(json.dumps(answer) + "\n" for answer in _answers(predictor, batch)))
        out.flush()
