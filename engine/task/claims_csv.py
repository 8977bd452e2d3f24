"""Claims CSV files from users: read with plain-English refusals, labelled for training (engine.interpret.scored_csv
scores them with a model).

A file needs a `text` column; `verdict` (VALID/INVALID) and `reason` (NONE/MEDICAL/DOSAGE/COST/ADMIN) are optional.
Nothing here executes or unpickles user data: it is parsed as text by the csv module.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from data.catalog import Catalog, load_catalog
from data.rules import REASONS, label
from data.tokenizer import Tokenizer
from data.vocabulary import parse_claim
from engine.task.dataset import ClaimData, ClaimTensors, build_probe, class_index, encode_texts

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
    lines: tuple[int, ...] = ()  # the line of the file each claim starts on

    def __len__(self) -> int:
        return len(self.texts)


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise CsvProblem(
            f"The file is not UTF-8 text (bad byte at position {error.start}); save it as 'CSV UTF-8' and try again."
        ) from None


def _dialect(text: str) -> type[csv.Dialect]:
    try:
        return csv.Sniffer().sniff(text[:20_000], delimiters=DELIMITERS)
    except csv.Error:
        return csv.excel


def _too_large(name: str, size: int, max_bytes: int) -> str:
    return f"{name} is {size / 2**20:.1f} MB; the limit is {max_bytes // 2**20} MB."


def read_claims_file(path: Path, max_bytes: int = MAX_BYTES, max_rows: int = MAX_ROWS) -> ImportedClaims:
    """read_claims_csv of a file, read no further than the limit."""
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        if size > max_bytes:
            raise CsvProblem(_too_large(path.name, size, max_bytes))
        data = file.read(max_bytes + 1)
    return read_claims_csv(data, path.name, max_bytes, max_rows)


def read_claims_csv(
    data: bytes, name: str = "the file", max_bytes: int = MAX_BYTES, max_rows: int = MAX_ROWS
) -> ImportedClaims:
    """The claims of a CSV file (any of , ; tab | as delimiter, UTF-8 with or without a BOM); CsvProblem, naming the
    line, for anything that cannot be read as the file's author meant it."""
    if not data.strip():
        raise CsvProblem(f"{name} is empty.")
    if len(data) > max_bytes:
        raise CsvProblem(_too_large(name, len(data), max_bytes))
    rows = iter(_rows(_decode(data), name))
    columns = [c.strip().lower() for c in next(rows, (1, []))[1]]
    if "text" not in columns:
        found = ", ".join(repr(c) for c in columns[:6]) or "none"
        raise CsvProblem(
            f"{name} has no 'text' column (found: {found}). The first line must name the columns, "
            "e.g. text,verdict,reason."
        )
    texts, verdicts, reasons, lines, blank = [], [], [], [], 0
    for number, values in rows:
        if len(texts) >= max_rows:
            raise CsvProblem(f"{name} has more than {max_rows:,} claims; split it into smaller files.")
        row = _named(values, columns, number)
        claim = row.get("text", "").strip()
        if not claim:
            blank += 1
            continue
        verdict, reason = _labels(row, number)
        texts.append(claim)
        verdicts.append(verdict)
        reasons.append(reason)
        lines.append(number)
    if not texts:
        raise CsvProblem(f"{name} has a header but no claims.")
    return ImportedClaims(tuple(texts), tuple(verdicts), tuple(reasons), blank, tuple(lines))


def _rows(text: str, name: str) -> list[tuple[int, list[str]]]:
    """(line where the row starts, its values) for each row that is not empty. Read strictly first, so that an
    unclosed quote is caught instead of swallowing the rest of the file as one claim; a file that strict reading
    refuses for a smaller slip (a quoted word followed by more text: '"Asthma" montelukast') is read as a
    spreadsheet reads it."""
    dialect = _dialect(text)
    try:
        return _read_rows(text, type("Strict", (dialect,), {"strict": True}), name)
    except csv.Error:
        return _read_rows(text, dialect, name)


def _read_rows(text: str, dialect: type[csv.Dialect], name: str) -> list[tuple[int, list[str]]]:
    reader = csv.reader(io.StringIO(text, newline=""), dialect=dialect)
    rows, line = [], 1
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return rows
        except csv.Error as error:
            if "end of data" in str(error):
                raise CsvProblem(
                    f"{name}, line {line}: a quote opened here is never closed. Put each claim's text "
                    'in double quotes, and write a quote inside it as two ("").'
                ) from None
            if "field larger than field limit" in str(error):
                raise CsvProblem(
                    f"{name}, line {line}: a value is longer than {csv.field_size_limit():,} "
                    "characters; one claim is a few lines of text at most."
                ) from None
            if dialect.strict:
                raise
            raise CsvProblem(f"{name}, line {line} cannot be read as CSV.") from None
        if values:
            rows.append((line, values))
        line = reader.line_num + 1


def _named(values: list[str], columns: list[str], number: int) -> dict[str, str]:
    extra = values[len(columns) :]
    if any(v.strip() for v in extra):
        raise CsvProblem(
            f"Line {number} has more values than the first line has column names: is there a comma "
            "in a claim's text without double quotes around it? Write it as \"Diabetes, metformin "
            '500 mg, $40".'
        )
    return dict(zip(columns, values, strict=False))


def _labels(row: dict[str, str], number: int) -> tuple[str | None, str | None]:
    verdict = row.get("verdict", "").strip().upper() or None
    reason = row.get("reason", "").strip().upper() or None
    if verdict not in (None, "VALID", "INVALID"):
        raise CsvProblem(f"Line {number}: verdict must be VALID or INVALID (got '{verdict}').")
    if reason not in (None, "NONE", *REASONS):
        raise CsvProblem(f"Line {number}: reason must be NONE, {', '.join(REASONS)} (got '{reason}').")
    if verdict == "VALID" and reason not in (None, "NONE"):
        raise CsvProblem(f"Line {number}: a VALID claim has reason NONE (got '{reason}').")
    if verdict == "INVALID" and reason in (None, "NONE"):
        raise CsvProblem(f"Line {number}: an INVALID claim needs a reason ({', '.join(REASONS)}).")
    return verdict, reason


def training_labels(claims: ImportedClaims, tokenizer: Tokenizer, catalog: Catalog) -> tuple[list[str], list[int], int]:
    """(texts, class indices, skipped): the file's labels where given, else the rules checker's; claims the
    rules cannot label unambiguously are skipped."""
    texts, classes, skipped = [], [], 0
    for text, verdict, reason in zip(claims.texts, claims.verdicts, claims.reasons, strict=True):
        if verdict is None:
            try:
                verdict, reason = label(parse_claim(tokenizer.encode(text)), catalog)
            except ValueError:
                skipped += 1
                continue
        texts.append(text)
        classes.append(class_index(verdict, reason or "NONE"))
    return texts, classes, skipped


MIN_TRAINING_CLAIMS = 50


def trainable_claims(claims: ImportedClaims) -> tuple[Tokenizer, Catalog, list[str], list[int]]:
    """(tokenizer, catalog, texts, class indices) to train on; CsvProblem when too few claims can be labelled, so
    a file is refused before any run is touched."""
    catalog = load_catalog()
    tokenizer = Tokenizer.from_catalog(catalog)
    texts, classes, _ = training_labels(claims, tokenizer, catalog)
    if len(texts) < MIN_TRAINING_CLAIMS:
        raise CsvProblem(
            f"Only {len(texts)} of the file's {len(claims)} claims could be labelled (by the file's "
            f"verdict and reason, or by the rules checker); training needs at least "
            f"{MIN_TRAINING_CLAIMS}."
        )
    return tokenizer, catalog, texts, classes


def build_data_from_csv(path: Path, seed: int, max_len: int) -> ClaimData:
    """Train on a user's claims: a seeded 80/20 split into training pool and held-out set."""
    tokenizer, catalog, texts, classes = trainable_claims(read_claims_file(path))
    order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(seed)).tolist()
    cut = max(1, len(order) // 5)

    def tensors(indices: list[int]) -> ClaimTensors:
        tokens, categories = encode_texts([tokenizer.encode(texts[i], max_len) for i in indices], tokenizer)
        return ClaimTensors(tokens, categories, torch.tensor([classes[i] for i in indices], dtype=torch.long))

    probe, probe_claims = build_probe([], tokenizer, catalog, max_len)
    return ClaimData(tokenizer, tensors(order[cut:]), tensors(order[:cut]), probe, probe_claims)
