"""Service lines: a pasted claim that names two or more billed items is cut into lines, as payers adjudicate them.

The model was trained on claims of one billed item, so each line is judged as a claim of its own: the line's item
with the numbers that belong to it, and what every line shares (the patient's age and sex, the diagnoses, specialty,
place and the words around them). Which number belongs to which item comes from where each stands in the text:
- a number goes to the item it follows, up to the next item; a dose just before a drug ("500 mg of metformin") goes
  to that drug;
- prices are judged per line only when each line has its own; otherwise (one price at the end: "..., $40") a price is
  the claim's total, and no line is judged on it, which the lines say.
An item written with its own dose but not read ("gabapentin 300 mg") is a line too, one that cannot be judged.
A claim with one billed item is not cut at all.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from data.reading import Reading, Refusal
from data.unread import Unread
from data.vocabulary import Encoded, Token

ITEMS = ("drug", "procedure")
NUMBERS = ("dose", "amount")
DOSE_BEFORE_DRUG = re.compile(r"\s*(?:of\s+)?")  # "500 mg metformin", "500 mg of metformin"


@dataclass(frozen=True)
class ServiceLine:
    text: str  # the line's own words as written, from its item to its last number
    start: int
    end: int
    tokens: tuple[Token, ...]  # what the model reads for this line: its own tokens and the shared ones
    reading: Reading  # what was read of the line and what was not
    unread_item: Unread | None = None  # the line's item, written but not read: the line cannot be judged

    def refusal(self, outcome: str | None) -> Refusal | None:
        """Why the line cannot be given `outcome`; for a line whose item was not read, always why."""
        if self.unread_item is not None:
            return Refusal(("item",), (self.unread_item.said(),))
        return self.reading.refusal(outcome)

    def encoded(self, truncated: bool = False) -> Encoded:
        return Encoded(self.tokens, truncated, ())


@dataclass(frozen=True)
class ServiceLines:
    lines: tuple[ServiceLine, ...]
    total: tuple[Token, ...]  # prices that are not any one line's: judged on no line

    def total_note(self) -> str | None:
        """Why no line is judged on its price, in words; None when each line has its own."""
        if not self.total:
            return None
        prices = " and ".join(t.surface for t in self.total)
        what = "the claim's total" if len(self.total) == 1 else "not each after its own item"
        return (
            f"{prices} is {what}, not a price of one of its {len(self.lines)} lines, so no line is judged on its price"
        )


def cut_lines(
    text: str, encoded: Encoded, reading: Reading, fits: Callable[[Token, Token], bool] | None = None
) -> ServiceLines | None:
    """The claim cut into service lines, or None when it bills fewer than two items (or too little was read).
    `fits(item, diagnosis)` points each line at its diagnosis when the claim names several, as a claim form's
    diagnosis pointer does: the first its item fits (else the claim's first)."""
    tokens = encoded.tokens
    items = _items(tokens)
    unread_items = [u for part, blamed in reading.unread_parts if part == "item" for u in blamed]
    if not items or len(items) + len(unread_items) < 2 or reading.too_little_read:
        return None
    anchors = sorted([*((t.start, t) for t in items), *((u.start, u) for u in unread_items)], key=lambda a: a[0])
    owned: dict[int, list[Token]] = {index: [] for index in range(len(anchors))}
    for index, token in enumerate(tokens):
        if token.category in NUMBERS and token.value is not None:
            owner = _owner(text, tokens, index, anchors)
            if owner is not None:
                owned[owner].append(token)
    each_priced = all(any(t.category == "amount" for t in own) for own in owned.values())
    total = () if each_priced else tuple(t for t in tokens if t.category == "amount")
    spans = [
        _span(anchor, [t for t in owned[i] if each_priced or t.category != "amount"])
        for i, (_, anchor) in enumerate(anchors)
    ]
    lines = tuple(
        _line(text, tokens, reading, anchor, i, spans, total, items, fits) for i, (_, anchor) in enumerate(anchors)
    )
    return ServiceLines(lines, total)


def _items(tokens: tuple[Token, ...]) -> list[Token]:
    """Each billed item's mention: an item named again is the same item ("TURP (transurethral prostate resection)")
    unless a dose or price stands between the two, as on two lines of one drug ("metformin 500 mg $10, metformin
    1000 mg $20")."""
    items: list[Token] = []
    numbered: set[int] = set()  # items of which a dose or price followed the last mention
    for token in tokens:
        if token.category in ITEMS and (token.id in numbered or all(t.id != token.id for t in items)):
            items.append(token)
            numbered.discard(token.id)
        elif token.category in NUMBERS and items:
            numbered.add(items[-1].id)
    return items


def _owner(text: str, tokens: tuple[Token, ...], index: int, anchors: list) -> int | None:
    """The line a number belongs to: the drug right after a dose, else the item it follows; None before any item."""
    token = tokens[index]
    following = next((t for t in tokens[index + 1 :] if t.text != "of"), None)
    if token.category == "dose" and following is not None:
        for i, (start, anchor) in enumerate(anchors):
            if (
                start == following.start
                and isinstance(anchor, Token)
                and anchor.category == "drug"
                and DOSE_BEFORE_DRUG.fullmatch(text[token.end : following.start])
            ):
                return i
    before = [i for i, (start, _) in enumerate(anchors) if start < token.start]
    if before:
        return before[-1]
    return 0 if token.category == "dose" else None


def _pointed(
    tokens: tuple[Token, ...], item: Token | Unread, fits: Callable[[Token, Token], bool] | None
) -> tuple[Token, ...]:
    """The tokens with one diagnosis left of several: the first the item fits, else the first."""
    diagnoses = list({t.id: t for t in reversed(tokens) if t.category == "diagnosis"}.values())[::-1]
    if len(diagnoses) < 2 or fits is None or not isinstance(item, Token):
        return tokens
    pointed = next((dx for dx in diagnoses if fits(item, dx)), diagnoses[0])
    return tuple(t for t in tokens if t.category != "diagnosis" or t.id == pointed.id)


def _span(anchor: Token | Unread, own: list[Token]) -> tuple[int, int]:
    return min([anchor.start, *(t.start for t in own)]), max([anchor.end, *(t.end for t in own)])


def _line(
    text: str,
    tokens: tuple[Token, ...],
    reading: Reading,
    anchor: Token | Unread,
    index: int,
    spans: list[tuple[int, int]],
    total: tuple[Token, ...],
    items: list[Token],
    fits: Callable[[Token, Token], bool] | None,
) -> ServiceLine:
    """One line: every token but those of the other lines, the other items' and the prices judged on no line."""
    others = [span for i, span in enumerate(spans) if i != index]
    other_items = {t.id for t in items if not isinstance(anchor, Token) or t.id != anchor.id}  # its own: by span

    def elsewhere(start: int, end: int) -> bool:
        return any(s <= start and end <= e for s, e in others)

    kept = tuple(t for t in tokens if not elsewhere(t.start, t.end) and t.id not in other_items and t not in total)
    kept = _pointed(kept, anchor, fits)
    starts = {t.start for t in kept}
    parts = tuple(
        (part, tuple(u for u in blamed if not elsewhere(u.start, u.end) and u is not anchor))
        for part, blamed in reading.unread_parts
    )
    line_reading = replace(
        reading,
        read=tuple(t for t in reading.read if t.start in starts),
        unread=tuple(u for u in reading.unread if not elsewhere(u.start, u.end)),
        unread_parts=tuple((part, blamed) for part, blamed in parts if blamed),
    )
    start, end = spans[index]
    return ServiceLine(text[start:end], start, end, kept, line_reading, anchor if isinstance(anchor, Unread) else None)
