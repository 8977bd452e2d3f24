"""The claims catalog: diagnoses, drugs, procedures, specialties and places of service.

The facts live in human-editable CSV files in `data/catalog/`, one row per item with a `source` column, so a
reviewer can check each figure against its source without reading Python. Lists in a cell are `;`-separated.
All doses are daily and in mg; prices are in USD (a drug's price is a month's supply, a surgery's an episode).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from data.text import RESERVED_WORDS, has_hard_break, phrase_key

CATALOG_DIR = Path(__file__).resolve().parent / "catalog"
SEXES = ("M", "F")
UNIVERSAL = "*"  # a procedure's dx_keys value meaning "fits every diagnosis" (office visits)


class CatalogError(ValueError):
    """A catalog CSV is missing, malformed or inconsistent; the message names the file and row."""


@dataclass(frozen=True)
class Diagnosis:
    key: str
    icd10cm: str
    name: str
    aliases: tuple[str, ...]
    sex: str | None  # the only sex this diagnosis code allows, if restricted
    age_min: int | None  # hard age restriction (MCE-style edit), if any
    age_max: int | None
    typical_age_min: int  # the band valid claims are drawn from; not a rule
    typical_age_max: int
    source: str


@dataclass(frozen=True)
class Drug:
    key: str
    name: str
    aliases: tuple[str, ...]
    dx_keys: frozenset[str]
    dose_min_mg: float
    dose_max_mg: float  # typical daily maximum
    dose_label_max_mg: float  # highest daily dose the label allows
    month_price_low_usd: float
    month_price_high_usd: float
    source: str

    def fits(self, dx_key: str) -> bool:
        return dx_key in self.dx_keys


@dataclass(frozen=True)
class Procedure:
    key: str  # CPT/HCPCS code
    name: str
    aliases: tuple[str, ...]
    dx_keys: frozenset[str]  # may be {"*"}: fits every diagnosis
    price_low_usd: float
    price_high_usd: float
    sex: str | None
    age_min: int | None
    age_max: int | None
    specialties: frozenset[str]
    places: frozenset[str]
    source: str

    def fits(self, dx_key: str) -> bool:
        return UNIVERSAL in self.dx_keys or dx_key in self.dx_keys


@dataclass(frozen=True)
class Specialty:
    key: str
    name: str
    aliases: tuple[str, ...]
    cms_code: str
    source: str


@dataclass(frozen=True)
class Place:
    key: str
    pos_code: str
    name: str
    aliases: tuple[str, ...]
    source: str


def price_range(item: Drug | Procedure) -> tuple[float, float]:
    """The normal (low, high) USD price of what a claim bills: a month of a drug, or a procedure."""
    if isinstance(item, Drug):
        return item.month_price_low_usd, item.month_price_high_usd
    return item.price_low_usd, item.price_high_usd


@dataclass(frozen=True)
class Catalog:
    diagnoses: dict[str, Diagnosis]
    drugs: dict[str, Drug]
    procedures: dict[str, Procedure]
    specialties: dict[str, Specialty]
    places: dict[str, Place]


class _Row:
    """One CSV row with typed accessors whose errors name the file, line and column."""

    def __init__(self, file: str, line: int, values: dict[str, str]) -> None:
        self.file, self.line, self.values = file, line, values

    def error(self, message: str) -> CatalogError:
        return CatalogError(f"{self.file} row {self.line}: {message}")

    def text(self, column: str, required: bool = True) -> str:
        value = (self.values.get(column) or "").strip()
        if required and not value:
            raise self.error(f"column '{column}' is empty")
        return value

    def items(self, column: str, required: bool = True) -> tuple[str, ...]:
        items = tuple(dict.fromkeys(part.strip() for part in self.text(column, required).split(";") if part.strip()))
        if required and not items:
            raise self.error(f"column '{column}' has no items")
        return items

    def number(self, column: str) -> float:
        raw = self.text(column)
        try:
            value = float(raw)
        except ValueError:
            raise self.error(f"column '{column}' value '{raw}' is not a number") from None
        if not math.isfinite(value) or value <= 0:
            raise self.error(f"column '{column}' value '{raw}' must be a positive number")
        return value

    def age(self, column: str) -> int | None:
        raw = self.text(column, required=False)
        if not raw:
            return None
        if not raw.isdecimal() or int(raw) > 130:
            raise self.error(f"column '{column}' value '{raw}' is not an age in years (0-130)")
        return int(raw)

    def sex(self) -> str | None:
        raw = self.text("sex", required=False).upper()
        if raw and raw not in SEXES:
            raise self.error(f"column 'sex' value '{raw}' must be M, F or blank")
        return raw or None

    def range(self, low_column: str, high_column: str) -> tuple[float, float]:
        low, high = self.number(low_column), self.number(high_column)
        if low > high:
            raise self.error(f"'{low_column}' ({low:g}) is above '{high_column}' ({high:g})")
        return low, high


def _read(folder: Path, name: str, columns: tuple[str, ...]) -> list[_Row]:
    path = folder / name
    if not path.is_file():
        raise CatalogError(f"{name}: file not found in {folder}")
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise CatalogError(f"{name}: missing column(s) {', '.join(missing)}")
        rows = []
        for values in reader:
            row = _Row(name, reader.line_num, values)
            if None in values:  # DictReader puts surplus cells under the key None
                raise row.error(f"has {len(columns) + len(values[None])} cells, expected {len(columns)}")
            rows.append(row)
    return rows


def _keyed(rows: list[_Row], key_column: str, build: Callable[[_Row], object]) -> dict:
    items: dict[str, object] = {}
    for row in rows:
        key = row.text(key_column)
        if key in items:
            raise row.error(f"duplicate {key_column} '{key}'")
        items[key] = build(row)
    return items


def _age_range(row: _Row) -> tuple[int | None, int | None]:
    age_min, age_max = row.age("age_min"), row.age("age_max")
    if age_min is not None and age_max is not None and age_min > age_max:
        raise row.error(f"age_min {age_min} is above age_max {age_max}")
    return age_min, age_max


def _diagnosis(row: _Row) -> Diagnosis:
    age_min, age_max = _age_range(row)
    typical_min, typical_max = row.age("typical_age_min"), row.age("typical_age_max")
    if typical_min is None or typical_max is None or typical_min > typical_max:
        raise row.error("typical_age_min/typical_age_max must both be set, min <= max")
    return Diagnosis(
        row.text("dx_key"),
        row.text("icd10cm"),
        row.text("name"),
        row.items("aliases", required=False),
        row.sex(),
        age_min,
        age_max,
        typical_min,
        typical_max,
        row.text("source"),
    )


def _drug(row: _Row) -> Drug:
    dose_min, dose_max = row.range("dose_min_mg", "dose_max_mg")
    label_max = row.number("dose_label_max_mg")
    if label_max < dose_max:
        raise row.error(f"dose_label_max_mg ({label_max:g}) is below dose_max_mg ({dose_max:g})")
    low, high = row.range("month_price_low_usd", "month_price_high_usd")
    return Drug(
        row.text("drug_key"),
        row.text("name"),
        row.items("aliases", required=False),
        frozenset(row.items("dx_keys")),
        dose_min,
        dose_max,
        label_max,
        low,
        high,
        row.text("source"),
    )


def _procedure(row: _Row) -> Procedure:
    low, high = row.range("price_low_usd", "price_high_usd")
    age_min, age_max = _age_range(row)
    return Procedure(
        row.text("proc_key"),
        row.text("name"),
        row.items("aliases", required=False),
        frozenset(row.items("dx_keys")),
        low,
        high,
        row.sex(),
        age_min,
        age_max,
        frozenset(row.items("specialties")),
        frozenset(row.items("places")),
        row.text("source"),
    )


def _specialty(row: _Row) -> Specialty:
    return Specialty(
        row.text("specialty_key"),
        row.text("name"),
        row.items("aliases", required=False),
        row.text("cms_code"),
        row.text("source"),
    )


def _place(row: _Row) -> Place:
    return Place(
        row.text("place_key"),
        row.text("pos_code"),
        row.text("name"),
        row.items("aliases", required=False),
        row.text("source"),
    )


def _check_references(rows: list[_Row], column: str, known: dict, what: str, allow_universal: bool = False) -> None:
    for row in rows:
        for item in row.items(column):
            if item not in known and not (allow_universal and item == UNIVERSAL):
                raise row.error(f"{column} names unknown {what} '{item}'")


FILES: dict[str, tuple[str, ...]] = {
    "diagnoses.csv": (
        "dx_key",
        "icd10cm",
        "name",
        "aliases",
        "sex",
        "age_min",
        "age_max",
        "typical_age_min",
        "typical_age_max",
        "source",
    ),
    "drugs.csv": (
        "drug_key",
        "name",
        "aliases",
        "dx_keys",
        "dose_min_mg",
        "dose_max_mg",
        "dose_label_max_mg",
        "month_price_low_usd",
        "month_price_high_usd",
        "source",
    ),
    "procedures.csv": (
        "proc_key",
        "name",
        "aliases",
        "dx_keys",
        "price_low_usd",
        "price_high_usd",
        "sex",
        "age_min",
        "age_max",
        "specialties",
        "places",
        "source",
    ),
    "specialties.csv": ("specialty_key", "name", "aliases", "cms_code", "source"),
    "places.csv": ("place_key", "pos_code", "name", "aliases", "source"),
}


# Which columns name an entity in free text, per file: aliases, name and, where people type it, the code.
NAME_COLUMNS = {
    "diagnoses.csv": ("dx_key", ("aliases", "name", "icd10cm")),
    "drugs.csv": ("drug_key", ("aliases", "name")),
    "procedures.csv": ("proc_key", ("aliases", "name", "proc_key")),
    "specialties.csv": ("specialty_key", ("aliases", "name")),
    "places.csv": ("place_key", ("aliases", "name")),
}


def _check_aliases(rows: dict[str, list[_Row]]) -> None:
    """Every typed name must point at one entity, or the tokenizer could not give it one token."""
    owner: dict[tuple[str, ...], tuple[str, _Row]] = {}
    for file, (key_column, columns) in NAME_COLUMNS.items():
        for row in rows[file]:
            for column in columns:
                for alias in row.items(column, required=False):
                    key = phrase_key(alias)
                    if has_hard_break(alias):
                        raise row.error(
                            f"{column} '{alias}' contains a separator (, : ( ) ...) so it could never match"
                        )
                    if not key:
                        raise row.error(f"{column} '{alias}' has no letters or digits")
                    if len(key) == 1 and key[0] in RESERVED_WORDS:
                        raise row.error(f"{column} '{alias}' is reserved for sex, units or ages")
                    first = owner.setdefault(key, (row.text(key_column), row))
                    if first[1] is not row:
                        raise row.error(
                            f"{column} '{alias}' is already used by {first[1].file} row {first[1].line} ({first[0]})"
                        )


def load_catalog(folder: Path | None = None) -> Catalog:
    """Read and validate the five catalog CSVs (default `data/catalog/`); CatalogError names file and row."""
    folder = Path(folder) if folder is not None else CATALOG_DIR
    rows = {name: _read(folder, name, columns) for name, columns in FILES.items()}
    diagnoses = _keyed(rows["diagnoses.csv"], "dx_key", _diagnosis)
    specialties = _keyed(rows["specialties.csv"], "specialty_key", _specialty)
    places = _keyed(rows["places.csv"], "place_key", _place)
    _check_references(rows["drugs.csv"], "dx_keys", diagnoses, "diagnosis")
    _check_references(rows["procedures.csv"], "dx_keys", diagnoses, "diagnosis", allow_universal=True)
    _check_references(rows["procedures.csv"], "specialties", specialties, "specialty")
    _check_references(rows["procedures.csv"], "places", places, "place")
    _check_aliases(rows)
    return Catalog(
        diagnoses=diagnoses,
        drugs=_keyed(rows["drugs.csv"], "drug_key", _drug),
        procedures=_keyed(rows["procedures.csv"], "proc_key", _procedure),
        specialties=specialties,
        places=places,
    )
