"""What a pasted claim was read as, and what was not: the report every answer carries, and the rule that keeps a
verdict from resting on words that were not read.

- Terms read: each catalog term, number and patient word the tokenizer read, as what field.
- Near misses: an unread word (or run of words) within a small edit distance of one catalog name is read as that
  name, with a note ("read 'Metformn' as Metformin"); near two catalog terms, it is read as neither and said to be
  ambiguous. This is for text people paste (Reader.read): Tokenizer.encode, which generated training claims go
  through, stays exact.
- Words not read: content words the tokenizer did not know, grouped into phrases (with the word after them when
  that word ends catalog names: "bariatric surgery"), each with the field its place in the claim suggests ("for a
  common cold" is where a diagnosis goes; "and gabapentin" after a drug is another item). Numbers in units not read
  ("40 euros", "2 puffs"), web addresses and runs of pictographs are words not read too, and so is a name the
  tokenizer read that the words before it contradict in a number ("type 1 diabetes" is not the catalog's "type 2
  diabetes"). Stop-words, and the filler and junk words the generator writes (data.phrasing, data.styles), carry
  nothing to judge and are not counted.
- Parts not read: a diagnosis, billed item, dose or price that was written but not read; a verdict that rests on
  such a part is not given (data.rules.unchecked). A claim that names no billed item has none not read. A claim
  with too little of it read is not judged at all, and says how much was read.

Each term and phrase keeps its place in the text (start, end), so a claim cut into service lines (data.lines) gives
each line its own report from the same records. The Reader puts together data.near_misses (names typed near a catalog
name), data.unread_words (which words were not read) and data.unread_fields (the field each stands in).
"""

from __future__ import annotations

from dataclasses import dataclass

from data.near_misses import NearMisses
from data.rules import PARTS, WHOLE, unchecked
from data.text import HARD_GAP
from data.tokenizer import Tokenizer
from data.unread import NOT_WORDS, Unread
from data.unread_fields import ITEM_FIELDS, field_of, listed_as_item
from data.unread_words import glued_words, is_content, merged, not_words, uncounted_doses, unit_not_read
from data.vocabulary import ENTITY_PREFIXES, Encoded, Token

# Below this share of its words read, a claim is not judged at all (a claim in French, or noise).
MIN_SHARE_READ = 0.5

# What a verdict cannot say when a part was not read, as the object of "Headwatch cannot judge ..."
JUDGES = {
    "diagnosis": "whether the billed item fits the diagnosis",
    "item": "what was billed",
    "dose": "the dose",
    "price": "the price",
    WHOLE: "this claim",
}


@dataclass(frozen=True)
class ReadTerm:
    surface: str  # exactly as typed
    field: str  # a token category: diagnosis, drug, dose, procedure, amount, age, sex, specialty, place
    meaning: str  # the catalog name, or the value read ("500 mg", "$40.00", "54 years", "female")
    start: int
    end: int
    near: str | None = None  # the catalog name it was read as because it was near it, not equal to it

    def to_json(self) -> dict:
        return {
            "text": self.surface,
            "as": self.field,
            "meaning": self.meaning,
            **({"read_as_near": self.near} if self.near else {}),
        }


@dataclass(frozen=True)
class Refusal:
    """Why an answer is not given: the parts it rests on that were not read ("claim" when too little of it was
    read), and what was not read, a clause each."""

    parts: tuple[str, ...]
    why: tuple[str, ...]

    def sentence(self) -> str:
        judged = [JUDGES[part] for part in self.parts]
        what = judged[0] if len(judged) == 1 else ", ".join(judged[:-1]) + " or " + judged[-1]
        return f"Headwatch cannot judge {what}: " + "; ".join(self.why) + "."

    def to_json(self) -> dict:
        return {"parts": list(self.parts), "why": list(self.why), "said": self.sentence()}


@dataclass(frozen=True)
class Reading:
    read: tuple[ReadTerm, ...]
    unread: tuple[Unread, ...]
    unread_parts: tuple[tuple[str, tuple[Unread, ...]], ...]  # each of rules.PARTS written but not read, and what
    words: int  # the claim's words that could carry meaning: words read plus unread content words
    words_read: int

    @property
    def share_read(self) -> float:
        return self.words_read / self.words if self.words else 0.0

    @property
    def too_little_read(self) -> bool:
        return self.words > 0 and self.share_read < MIN_SHARE_READ

    @property
    def parts(self) -> tuple[str, ...]:
        """The parts written but not read (rules.PARTS), and rules.WHOLE when too little of the claim was read."""
        return (*(part for part, _ in self.unread_parts), *((WHOLE,) if self.too_little_read else ()))

    def refusal(self, outcome: str) -> Refusal | None:
        """Why `outcome` (VALID or a reason) cannot be given on what was read; None when it can."""
        parts = unchecked(outcome, self.parts)
        if not parts:
            return None
        blamed = dict(self.unread_parts)
        named = self.parts if WHOLE in parts else parts
        why = [u.said() for u in dict.fromkeys(u for part in named for u in blamed.get(part, ()))]
        if WHOLE in parts:
            why.append(f"only {self.words_read} of its {self.words} words were read ({self.share_read:.0%})")
        return Refusal(parts, tuple(why))

    def notes(self) -> tuple[str, ...]:
        """Each near miss read as a catalog name, and each word near two, in words."""
        return (
            *(f"read '{t.surface}' as {t.near}" for t in self.read if t.near),
            *(u.said() for u in self.unread if u.near),
        )

    def to_json(self) -> dict:
        return {
            "read": [t.to_json() for t in self.read],
            "not_read": [u.surface for u in self.unread],
            "notes": list(self.notes()),
            "share_read": round(self.share_read, 4),
            "parts_not_read": list(self.parts),
        }


class Reader:
    """Reads pasted claims with one tokenizer: its exact reading, near misses of its names, and the report."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self._misses = NearMisses(tokenizer)

    def read(self, text: str, max_len: int = 48) -> tuple[Encoded, Reading]:
        """The claim read as the tokenizer reads it with near misses read as the names they are near, and the
        report of what was read and what was not. Never raises for a str."""
        encoded = self.tokenizer.encode(text, max_len)
        marked = [*not_words(text, encoded.tokens), *self._misses.misread_names(text, encoded.tokens)]
        tokens, corrected, ambiguous = merged(text, encoded.tokens, marked), {}, []
        unread_words = glued_words(tokens)
        if unread_words or marked:
            tokens, corrected, ambiguous = self._misses.replace_near(text, tokens, unread_words, marked)
            unread_words = glued_words(tokens)
            encoded = Encoded(tuple(tokens), encoded.truncated, encoded.warnings)
        unread = self._unread(text, tokens, unread_words, [*ambiguous, *marked])
        read = tuple(
            self._term(t, corrected.get(i))
            for i, t in enumerate(tokens)
            if t.text != Tokenizer.UNK and t.category != "other"
        )
        in_unread = {i for word in unread_words for i in word}
        marked_starts = {u.start for u in marked}

        def within_unread(token: Token) -> bool:  # "puffs" of "2 puffs", "surgery" of "bariatric surgery"
            return any(u.start <= token.start and token.end <= u.end for u in unread)

        counted = [
            i for i, t in enumerate(tokens) if i not in in_unread and (t.category != "other" or t.surface[:1].isalnum())
        ]
        words_read = sum(not within_unread(tokens[i]) for i in counted)
        content = sum(
            tokens[w[0]].start in marked_starts or is_content(text[tokens[w[0]].start : tokens[w[-1]].end])
            for w in unread_words
        )
        parts = self._unread_parts(text, tokens, unread)
        return encoded, Reading(read, unread, parts, len(counted) + content, words_read)

    def _unread(
        self, text: str, tokens: list[Token], unread_words: list[list[int]], given: list[Unread]
    ) -> tuple[Unread, ...]:
        """Unread content words grouped into phrases, each with its field, a phrase ending with the word after it
        when that word ends catalog names ("bariatric surgery"); numbers in units not read; and `given` (words near
        two names, addresses, symbols, names misread)."""
        found: list[Unread] = list(given)
        taken = {(u.start, u.end) for u in given}
        phrase: list[int] = []  # token indices

        def close() -> None:
            if phrase:
                last = phrase[-1] + 1 if self._misses.head_after(text, tokens, phrase[-1]) else phrase[-1]
                begin, end = tokens[phrase[0]].start, tokens[last].end
                found.append(Unread(text[begin:end], field_of(text, tokens, begin, end), begin, end))
                phrase.clear()

        for word in unread_words:
            first, last = tokens[word[0]], tokens[word[-1]]
            surface = text[first.start : last.end]
            inside_given = any(s <= first.start and last.end <= e for s, e in taken)
            unit = unit_not_read(text, tokens, word[0], word[-1])
            if inside_given or unit is not None or not is_content(surface):
                close()
                if unit is not None:
                    found.append(unit)
                continue
            if phrase and (phrase[-1] != word[0] - 1 or HARD_GAP.search(text[tokens[phrase[-1]].end : first.start])):
                close()
            phrase.extend(word)
        close()
        return tuple(sorted([*found, *uncounted_doses(text, tokens, found)], key=lambda u: u.start))

    def _unread_parts(
        self, text: str, tokens: list[Token], unread: tuple[Unread, ...]
    ) -> tuple[tuple[str, tuple[Unread, ...]], ...]:
        """Each part of the claim written but not read, with what was not read of it. A claim that names no billed
        item has none not read: nothing was written there."""
        categories = {t.category for t in tokens}
        read = {
            "diagnosis": "diagnosis" in categories,
            "item": bool({"drug", "procedure"} & categories),
            "dose": "dose" in categories,
            "price": "amount" in categories,
        }
        slot_parts = {"diagnosis": ("diagnosis",), None: ("diagnosis", "item")}  # drug and procedure: above
        blamed: dict[str, list[Unread]] = {part: [] for part in PARTS}
        for u in unread:
            if u.field == "unit":
                blamed["dose"] += [u] if "drug" in categories and not read["dose"] else []
                blamed["price"] += [u] if not read["price"] else []
            elif u.field in NOT_WORDS:  # an address or symbols stand for no part
                continue
            elif u.field in (*ITEM_FIELDS, None) and listed_as_item(text, tokens, u):
                blamed["item"].append(u)
            elif u.field in ITEM_FIELDS:
                blamed["item"] += [u] if not read["item"] else []
            else:  # words where a diagnosis or item goes are blamed for it when none was read
                blamed.update({part: [*blamed[part], u] for part in slot_parts.get(u.field, ()) if not read[part]})
        return tuple((part, tuple(blamed[part])) for part in PARTS if blamed[part])

    def _term(self, token: Token, near: str | None) -> ReadTerm:
        shown = None if near is None else self._misses.named(token.id, near)
        return ReadTerm(token.surface, token.category, self._meaning(token), token.start, token.end, shown)

    def _meaning(self, token: Token) -> str:
        if token.category in ENTITY_PREFIXES:
            return self._misses.shown[token.id]
        if token.category == "sex":
            return {"M": "male", "F": "female"}[token.text.partition(":")[2]]
        if token.value is None:
            return token.text
        return {"dose": f"{token.value:g} mg", "amount": f"${token.value:,.2f}", "age": f"{token.value:g} years"}[
            token.category
        ]
