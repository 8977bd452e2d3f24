"""Claims CSV files from users: read with plain-English refusals, score with a model, label for training.

A file needs a `text` column; `verdict` (VALID/INVALID) and `reason` (NONE/MEDICAL/DOSAGE/COST/ADMIN) are optional.
Nothing here executes or unpickles user data: it is parsed as text by the csv module.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from data.catalog import Catalog, load_catalog
from data.rules import label
from data.tokenizer import Tokenizer, parse_claim
from engine.dataset import ClaimData, ClaimTensors, build_probe, class_index, encode_texts
from engine.inference import Predictor
from engine.model import REASONS

MAX_BYTES = 5 * 2**20
MAX_ROWS = 50_000
DELIMITERS = ",;\t|"


class CsvProblem(ValueError):
    """The file cannot be used; the message names the problem."""


@dataclass(frozen=True)
class ImportedClaims:
    texts: tuple[str, ...]
    verdicts: tuple[str | None, ...]
    reasons: tuple[str | None, ...]
    skipped_blank: int

    def __len__(self) -> int:
        return len(self.texts)


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise CsvProblem(f"The file is not UTF-8 text (bad byte at position {error.start}); "
                         "save it as 'CSV UTF-8' and try again.") from None


def _dialect(text: str) -> type[csv.Dialect] | csv.Dialect:
    try:
        return csv.Sniffer().sniff(text[:20_000], delimiters=DELIMITERS)
    except csv.Error:
        return csv.excel


def read_claims_csv(data: bytes, name: str = "the file") -> ImportedClaims:
    if not data.strip():
        raise CsvProblem(f"{name} is empty.")
    if len(data) > MAX_BYTES:
        raise CsvProblem(f"{name} is {len(data) / 2**20:.1f} MB; the limit is {MAX_BYTES // 2**20} MB.")
    text = _decode(data)
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""), dialect=_dialect(text))
        columns = [c.strip().lower() for c in reader.fieldnames or []]
    except csv.Error as error:
        raise CsvProblem(f"{name} is not a readable CSV file: {error}") from None
    if "text" not in columns:
        found = ", ".join(repr(c) for c in columns[:6]) or "none"
        raise CsvProblem(f"{name} has no 'text' column (found: {found}). The first line must name the columns, "
                         "e.g. text,verdict,reason.")
    reader.fieldnames = columns
    texts, verdicts, reasons, blank = [], [], [], 0
    try:
        for number, row in enumerate(reader, start=2):
            if len(texts) >= MAX_ROWS:
                raise CsvProblem(f"{name} has more than {MAX_ROWS:,} claims; split it into smaller files.")
            claim = (row.get("text") or "").strip()
            if not claim:
                blank += 1
                continue
            verdict, reason = _labels(row, number)
            texts.append(claim)
            verdicts.append(verdict)
            reasons.append(reason)
    except csv.Error as error:
        raise CsvProblem(f"{name} is not a readable CSV file: {error}") from None
    if not texts:
        raise CsvProblem(f"{name} has a header but no claims.")
    return ImportedClaims(tuple(texts), tuple(verdicts), tuple(reasons), blank)


def _labels(row: dict, number: int) -> tuple[str | None, str | None]:
    verdict = (row.get("verdict") or "").strip().upper() or None
    reason = (row.get("reason") or "").strip().upper() or None
    if verdict not in (None, "VALID", "INVALID"):
        raise CsvProblem(f"Line {number}: verdict must be VALID or INVALID (got '{verdict}').")
    if reason not in (None, "NONE", *REASONS):
        raise CsvProblem(f"Line {number}: reason must be NONE, {', '.join(REASONS)} (got '{reason}').")
    if verdict == "VALID" and reason not in (None, "NONE"):
        raise CsvProblem(f"Line {number}: a VALID claim has reason NONE (got '{reason}').")
    if verdict == "INVALID" and reason in (None, "NONE"):
        raise CsvProblem(f"Line {number}: an INVALID claim needs a reason ({', '.join(REASONS)}).")
    return verdict, reason


def score_claims(predictor: Predictor, claims: ImportedClaims, progress: Callable[[int], None] | None = None) -> bytes:
    """A results CSV: the model's verdict per claim beside any expected label; `progress` hears how many claims
    are scored so far."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["text", "verdict", "reason", "confidence", "error", "expected_verdict", "expected_reason",
                     "agrees"])
    predictions = predictor.predict_many(claims.texts, progress)
    for prediction, verdict, reason in zip(predictions, claims.verdicts, claims.reasons, strict=True):
        agrees = ""
        if verdict and prediction.verdict:
            agrees = str(prediction.verdict == verdict and (verdict == "VALID" or prediction.reason == reason))
        writer.writerow([prediction.text, prediction.verdict or "", prediction.reason or "",
                         f"{prediction.confidence:.4f}" if prediction.confidence is not None else "",
                         prediction.error or "", verdict or "", reason or "", agrees])
    return buffer.getvalue().encode("utf-8")


def training_labels(claims: ImportedClaims, tokenizer: Tokenizer, catalog: Catalog) -> tuple[list[str], list[int], int]:
    """(texts, class indices, skipped): the file's labels where given, else the rules checker's; claims the
    rules cannot label unambiguously are skipped."""
    texts, classes, skipped = [], [], 0
    for text, verdict, reason in zip(claims.texts, claims.verdicts, claims.reasons, strict=True):
        if verdict is None:
            try:
                verdict, reason = label(parse_claim(tokenizer.encode(text), tokenizer), catalog)
            except ValueError:
                skipped += 1
                continue
        texts.append(text)
        classes.append(class_index(verdict, reason or "NONE"))
    return texts, classes, skipped


MIN_TRAINING_CLAIMS = 50


def build_data_from_csv(path: Path, seed: int, max_len: int) -> ClaimData:
    """Train on a user's claims: a seeded 80/20 split into training pool and held-out set."""
    catalog = load_catalog()
    tokenizer = Tokenizer.from_catalog(catalog)
    texts, classes, _ = training_labels(read_claims_csv(path.read_bytes(), path.name), tokenizer, catalog)
    if len(texts) < MIN_TRAINING_CLAIMS:
        raise CsvProblem(f"Only {len(texts)} claims could be labelled; training needs at least {MIN_TRAINING_CLAIMS}.")
    order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(seed)).tolist()
    cut = max(1, len(order) // 5)

    def tensors(indices: list[int]) -> ClaimTensors:
        tokens, categories = encode_texts([tokenizer.encode(texts[i], max_len) for i in indices], tokenizer)
        return ClaimTensors(tokens, categories, torch.tensor([classes[i] for i in indices], dtype=torch.long))

    probe, probe_claims = build_probe([], tokenizer, catalog, max_len)
    return ClaimData(tokenizer, tensors(order[cut:]), tensors(order[:cut]), probe, probe_claims)
