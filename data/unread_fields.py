"""Which field of a claim an unread phrase stands in, from the words around it (the generator's own templates say
which words come before and after each field), and whether it is another billed item beside one read."""

from __future__ import annotations

import re
from itertools import takewhile

from data import phrasing
from data.text import HARD_GAP, phrase_key
from data.unread import Unread
from data.vocabulary import Token

ARTICLES = frozenset({"a", "an", "the"})
ITEM_FIELDS = ("drug", "procedure")
COORDINATORS = frozenset({"and", "plus", "also", "&"})  # "lisinopril 10 mg and gabapentin": another item
LISTED = re.compile(r"[,;+&\n•]|\b(?:and|plus|also)\b", re.IGNORECASE)
COORDINATED = re.compile(r"[+&]|\b(?:and|plus|also)\b", re.IGNORECASE)
# Numbers in words: "levothyroxine 0.1 mg, thirty day fill" lists a supply, not an item.
SPELLED_NUMBERS = frozenset(
    {
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "fifteen",
        "twenty",
        "thirty",
        "forty",
        "fifty",
        "sixty",
        "seventy",
        "eighty",
        "ninety",
        "hundred",
        "thousand",
    }
)
ITEM_KEYS = frozenset(key.lower() for field in ("drug", "proc") for key in phrasing.KV_KEYS[field])


def _template_cues() -> tuple[dict[tuple[str, ...], str], dict[str, str]]:
    """Which field a word's neighbours say it is, from the generator's own templates: the last one or two words
    before a field ("diagnosed with {}", "rx {d}", "underwent {p}", "Dx: ") and the word after it ("{p} done")."""
    groups = {
        "diagnosis": (phrasing.DX, "{}"),
        "drug": (phrasing.DRUG_DOSE + phrasing.DRUG_ONLY, "{d}"),
        "procedure": (phrasing.PROC, "{p}"),
        "specialty": (phrasing.SPECIALTY + phrasing.PRESCRIBER, "{}"),
        "place": (phrasing.PLACE, "{}"),
        "amount": (phrasing.AMOUNT, "{}"),
    }
    verbs = {"drug": phrasing.DRUG_VERBS, "procedure": phrasing.PROC_VERBS}
    keys = {
        "dx": "diagnosis",
        "drug": "drug",
        "proc": "procedure",
        "spec": "specialty",
        "place": "place",
        "dose": "dose",
        "amount": "amount",
        "agesex": "patient",
    }
    exact: dict[tuple[str, ...], set[str]] = {}
    last_word: dict[tuple[str, ...], set[str]] = {}
    after: dict[str, set[str]] = {}

    def before(prefix: str, field: str) -> None:
        if "}" in prefix:  # "{q} of {d}": the word follows another field, it is no cue on its own
            return
        words = tuple(w for w in phrase_key(prefix) if w not in ARTICLES) if prefix.strip(" :") else ()
        if words:
            exact.setdefault(words[-2:], set()).add(field)
            last_word.setdefault(words[-1:], set()).add(field)

    for field, (templates, slot) in groups.items():
        for template in templates:
            prefix, _, suffix = template.partition(slot)
            before(prefix, field)
            following = phrase_key(suffix.partition("{")[0]) if suffix.strip() else ()
            if following:
                after.setdefault(following[0], set()).add(field)
    for field, phrases in verbs.items():
        for verb in phrases:
            before(verb, field)
    for key, names in phrasing.KV_KEYS.items():
        for name in names:
            before(name, keys[key])
    cues = {key: next(iter(fields)) for key, fields in exact.items() if len(fields) == 1}
    cues.update({key: next(iter(fields)) for key, fields in last_word.items() if key not in exact and len(fields) == 1})
    return cues, {word: next(iter(fields)) for word, fields in after.items() if len(fields) == 1}


BEFORE_CUES, AFTER_CUES = _template_cues()
KEY_COLON = re.compile(r"(?:\s*[:=]|\s+-)\s*$")  # "Dx: ", "Dx=", "Dx - ": a key names the field that follows


def _has_own_dose(text: str, tokens: list[Token], unread: Unread) -> bool:
    """A dose follows the phrase within its field ("gabapentin 300 mg")."""
    after = next((t for t in tokens if t.start >= unread.end), None)
    return after is not None and after.category == "dose" and not HARD_GAP.search(text[unread.end : after.start])


def _segment_before(prefix: str) -> str:
    """The text of the field a word stands in, before the word: from the last separator, or from the separator
    before a key ("Dx: ") that ends it."""
    gaps = [m.start() for m in HARD_GAP.finditer(prefix)]
    if gaps and KEY_COLON.search(prefix):
        gaps = gaps[:-1]
    return prefix[gaps[-1] + 1 :] if gaps else prefix


def field_of(text: str, tokens: list[Token], begin: int, end: int) -> str | None:
    """The field an unread phrase's neighbours say it is, from the generator's templates; None if they say none."""
    before = [w for w in phrase_key(_segment_before(text[:begin])) if w not in ARTICLES]
    for key in (tuple(before[-2:]), tuple(before[-1:])):
        if key and key in BEFORE_CUES:
            return BEFORE_CUES[key]
    rest = text[end:]
    stop = HARD_GAP.search(rest)
    following = phrase_key(rest[: stop.start() if stop else len(rest)])
    if following and following[0] in AFTER_CUES:
        return AFTER_CUES[following[0]]
    if _has_own_dose(text, tokens, Unread("", None, begin, end)):
        return "drug"
    return _coordinated_item(text, tokens, begin)


def _coordinated_item(text: str, tokens: list[Token], begin: int) -> str | None:
    """The field of the billed item the phrase is listed after ("lisinopril 10 mg and gabapentin", "metformin 500 mg,
    glipizide", "metformin $10 + glipizide"): past the item's dose and price, after a list separator or an "and" (after
    a price, only an "and": "$40, neuropathy" may as well be a diagnosis); None when anything else stands between."""
    before = [t for t in tokens if t.end <= begin]
    own = list(
        takewhile(lambda t: t.category in ("dose", "amount") or t.surface.lower() in COORDINATORS, reversed(before))
    )
    if len(own) == len(before) or before[-len(own) - 1].category not in ITEM_FIELDS:
        return None
    item = before[-len(own) - 1]
    numbers = [t for t in own if t.category in ("dose", "amount")]
    after = text[(numbers[0] if numbers else item).end : begin]
    if not LISTED.search(after) or (any(t.category == "amount" for t in numbers) and not COORDINATED.search(after)):
        return None
    return item.category


def listed_as_item(text: str, tokens: list[Token], unread: Unread) -> bool:
    """The phrase is another billed item beside one read: with its own dose, listed after an item, or after an item's
    key ("Rx: insulin")."""
    before = [w for w in phrase_key(_segment_before(text[: unread.start])) if w not in ARTICLES]
    if set(phrase_key(unread.surface)) <= SPELLED_NUMBERS:
        return False
    return (
        _has_own_dose(text, tokens, unread)
        or _coordinated_item(text, tokens, unread.start) is not None
        or (bool(before) and before[-1] in ITEM_KEYS)
    )
