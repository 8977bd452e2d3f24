"""A word or phrase of a pasted claim that was not read, with the field its place suggests, and why, in words."""

from __future__ import annotations

from dataclasses import dataclass

from data.tokenizer import MONEY_WORDS

FIELD_NAMES = {
    "diagnosis": "diagnosis",
    "drug": "drug",
    "procedure": "procedure",
    "specialty": "specialty",
    "place": "place of service",
}
NOT_WORDS = ("link", "symbol")  # the fields of Unreads that are no words: an address, pictographs


@dataclass(frozen=True)
class Unread:
    surface: str
    field: str | None  # where its place in the claim puts it: diagnosis, drug, procedure, unit, ... or None
    start: int
    end: int
    near: tuple[str, ...] = ()  # the catalog names it is near when it is ambiguous

    def said(self) -> str:
        """Why it was not read, in words."""
        if self.near:
            return f"'{self.surface}' is near both {' and '.join(self.near)}, so it was read as neither"
        if self.field == "unit" and self.surface.lower() in MONEY_WORDS:
            return f"'{self.surface}' follows no number Headwatch reads (a price is read in digits: $65)"
        if self.field == "unit" and self.surface.replace(",", "").replace(".", "").isdecimal():
            return f"'{self.surface}' has no unit (mg, g or mcg for a dose; $ or USD for a price)"
        if self.field == "link":
            return f"'{self.surface}' is a web or mail address, not claim text Headwatch reads"
        if self.field == "symbol":
            return f"'{self.surface}' is symbols, not words Headwatch reads"
        if self.field == "unit":
            return (
                f"'{self.surface}' is in a unit Headwatch does not read (doses in mg, g or mcg; prices in US dollars)"
            )
        if self.field in FIELD_NAMES:
            return f"'{self.surface}' is not a {FIELD_NAMES[self.field]} Headwatch knows"
        return f"'{self.surface}' is not a diagnosis, drug or procedure Headwatch knows"
