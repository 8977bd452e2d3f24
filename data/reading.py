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
each line its own report from the same records.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise, takewhile

from rapidfuzz import process
from rapidfuzz.distance import OSA

from data import phrasing, styles
from data.rules import PARTS, WHOLE, unchecked
from data.text import HARD_GAP, phrase_key
from data.tokenizer import MONEY_WORDS, Tokenizer
from data.vocabulary import DOSE_FORM_WORDS, ENTITY_PREFIXES, SPECIALS, Encoded, Token, category_of, fast_token

# Closed-class English words (pronouns, determiners, auxiliaries, conjunctions, prepositions, particles) and
# greetings that the vocabulary does not hold: they say nothing a verdict could rest on, read or not.
_STOP_TEXT = """
    i me my mine myself we us our ours you your yours he him his she her hers it its they them their theirs
    someone somebody something anyone anybody anything everyone everybody everything nobody none
    some any all both either neither another such these those there here whose whom
    am are were being isn wasn aren weren does doing doesn didn don shall cannot couldn shouldn wouldn won
    ll ve if so then than yet nor while though although whether until unless
    into onto upon within through throughout across against among between beyond off out down near along
    above below behind beside besides despite except inside outside toward towards
    very too still already again ever never always often sometimes now much many few
    hi hello hey dear cheers regards
"""
STOP_WORDS = frozenset(_STOP_TEXT.split())
# Unknown words the generator sprinkles into claims so the model reads past them, and the styles' filler.
HARMLESS_WORDS = STOP_WORDS | frozenset(phrasing.JUNK_WORDS) | frozenset(
    piece for filler in styles.FILLERS for piece in phrase_key(filler))
ARTICLES = frozenset({"a", "an", "the"})

# Edit distances (optimal string alignment: a swap of two letters is one edit) that still read as a catalog name:
# none under 5 letters, where one edit makes another word; 1 up to 7 letters; 2 from 8.
MIN_FUZZY_LETTERS = 5
LONG_NAME_LETTERS = 8
MAX_WINDOW = 4  # the most unread words read together as one name

UNK_ID = SPECIALS.index(Tokenizer.UNK)
# Text that is no claim words at all: a web or mail address (its words are not the claim's, even those the tokenizer
# knows), and runs of pictographs.
LINK = re.compile(r"(?:https?://|www\.)\S+|[\w.+-]+@[\w-]+\.[\w.]+", re.IGNORECASE)
ROMAN_NUMERALS = frozenset({"i", "ii", "iii", "iv"})
ITEM_FIELDS = ("drug", "procedure")
NOT_WORDS = ("link", "symbol")  # the fields of Unreads that are no words: an address, pictographs
COORDINATORS = frozenset({"and", "plus", "also", "&"})  # "lisinopril 10 mg and gabapentin": another item
LISTED = re.compile(r"[,;+&\n•]|\b(?:and|plus|also)\b", re.IGNORECASE)
COORDINATED = re.compile(r"[+&]|\b(?:and|plus|also)\b", re.IGNORECASE)
# Numbers in words: "levothyroxine 0.1 mg, thirty day fill" lists a supply, not an item.
SPELLED_NUMBERS = frozenset({"four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "fifteen",
                             "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety", "hundred",
                             "thousand"})
ITEM_KEYS = frozenset(key.lower() for field in ("drug", "proc") for key in phrasing.KV_KEYS[field])

# Below this share of its words read, a claim is not judged at all (a claim in French, or noise).
MIN_SHARE_READ = 0.5

FIELD_NAMES = {"diagnosis": "diagnosis", "drug": "drug", "procedure": "procedure", "specialty": "specialty",
               "place": "place of service"}
# What a verdict cannot say when a part was not read, as the object of "Headwatch cannot judge ..."
JUDGES = {"diagnosis": "whether the billed item fits the diagnosis", "item": "what was billed", "dose": "the dose",
          "price": "the price", WHOLE: "this claim"}


@dataclass(frozen=True)
class ReadTerm:
    surface: str  # exactly as typed
    field: str  # a token category: diagnosis, drug, dose, procedure, amount, age, sex, specialty, place
    meaning: str  # the catalog name, or the value read ("500 mg", "$40.00", "54 years", "female")
    start: int
    end: int
    near: str | None = None  # the catalog name it was read as because it was near it, not equal to it

    def to_json(self) -> dict:
        return {"text": self.surface, "as": self.field, "meaning": self.meaning,
                **({"read_as_near": self.near} if self.near else {})}


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
            return (f"'{self.surface}' is in a unit Headwatch does not read (doses in mg, g or mcg; prices in US "
                    "dollars)")
        if self.field in FIELD_NAMES:
            return f"'{self.surface}' is not a {FIELD_NAMES[self.field]} Headwatch knows"
        return f"'{self.surface}' is not a diagnosis, drug or procedure Headwatch knows"


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
        return (*(f"read '{t.surface}' as {t.near}" for t in self.read if t.near),
                *(u.said() for u in self.unread if u.near))

    def to_json(self) -> dict:
        return {"read": [t.to_json() for t in self.read], "not_read": [u.surface for u in self.unread],
                "notes": list(self.notes()), "share_read": round(self.share_read, 4),
                "parts_not_read": list(self.parts)}


def _template_cues() -> tuple[dict[tuple[str, ...], str], dict[str, str]]:
    """Which field a word's neighbours say it is, from the generator's own templates: the last one or two words
    before a field ("diagnosed with {}", "rx {d}", "underwent {p}", "Dx: ") and the word after it ("{p} done")."""
    groups = {"diagnosis": (phrasing.DX, "{}"), "drug": (phrasing.DRUG_DOSE + phrasing.DRUG_ONLY, "{d}"),
              "procedure": (phrasing.PROC, "{p}"), "specialty": (phrasing.SPECIALTY + phrasing.PRESCRIBER, "{}"),
              "place": (phrasing.PLACE, "{}"), "amount": (phrasing.AMOUNT, "{}")}
    verbs = {"drug": phrasing.DRUG_VERBS, "procedure": phrasing.PROC_VERBS}
    keys = {"dx": "diagnosis", "drug": "drug", "proc": "procedure", "spec": "specialty", "place": "place",
            "dose": "dose", "amount": "amount", "agesex": "patient"}
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


def _allowed_edits(letters: int) -> int:
    if letters < MIN_FUZZY_LETTERS:
        return 0
    return 1 if letters < LONG_NAME_LETTERS else 2


def _each_word_near(query: str, name: str) -> bool:
    """Each typed word is near its word of the name, as near as the shorter of the two allows: "sore throat" is not
    "strep throat", however near the phrases are ("sore" is a word of its own), nor "neurolgy" "urology"."""
    return all(OSA.distance(typed, word) <= _allowed_edits(min(len(typed), len(word)))
               for typed, word in zip(query.split(), name.split(), strict=True))


def _has_own_dose(text: str, tokens: list[Token], unread: Unread) -> bool:
    """A dose follows the phrase within its field ("gabapentin 300 mg")."""
    after = next((t for t in tokens if t.start >= unread.end), None)
    return after is not None and after.category == "dose" and not HARD_GAP.search(text[unread.end:after.start])


def _glued_words(tokens: list[Token]) -> list[list[int]]:
    """Indices of the tokens of each word the user typed that was not read: an unknown token, with the letters
    glued to it ("años" is "a" + "ños", "diabète" is "diab" + "ète": the tokenizer cuts words at accents)."""
    words: list[list[int]] = []
    for index, token in enumerate(tokens):
        if token.text != Tokenizer.UNK or (words and index <= words[-1][-1]):
            continue
        start = end = index
        while start > 0 and _glued(tokens[start - 1], tokens[start]):
            start -= 1
        while end + 1 < len(tokens) and _glued(tokens[end], tokens[end + 1]):
            end += 1
        words.append(list(range(start, end + 1)))
    return words


def _glued(left: Token, right: Token) -> bool:
    return left.end == right.start and left.surface.isalpha() and right.surface.isalpha()


class Reader:
    """Reads pasted claims with one tokenizer: its exact reading, near misses of its names, and the report."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        ids = {text: index for index, text in enumerate(tokenizer.vocab)}
        # Near misses are looked for among names of letters only, by number of words and length: n edits reach only
        # names within n characters of the typed length.
        self._names: dict[tuple[int, int], dict[str, int]] = {}
        self._shown: dict[int, str] = {}
        for token_text, aliases in tokenizer.aliases.items():
            self._shown[ids[token_text]] = aliases[0]
            for alias in aliases:
                key = phrase_key(alias)
                name = " ".join(key)
                if all(piece.isalpha() for piece in key):
                    self._names.setdefault((len(key), len(name)), {})[name] = ids[token_text]
        self._numbered = _numbered_names(tokenizer, ids)
        self._heads = _head_words(tokenizer)
        # pasted claims repeat their words (a page reads a claim for its verdict, then again for the what-if)
        self._near = lru_cache(maxsize=8192)(self._near_names)

    def read(self, text: str, max_len: int = 48) -> tuple[Encoded, Reading]:
        """The claim read as the tokenizer reads it with near misses read as the names they are near, and the
        report of what was read and what was not. Never raises for a str."""
        encoded = self.tokenizer.encode(text, max_len)
        marked = [*_not_words(text, encoded.tokens), *self._misread_names(text, encoded.tokens)]
        tokens, corrected, ambiguous = _merged(text, encoded.tokens, marked), {}, []
        unread_words = _glued_words(tokens)
        if unread_words or marked:
            tokens, corrected, ambiguous = self._near_misses(text, tokens, unread_words, marked)
            unread_words = _glued_words(tokens)
            encoded = Encoded(tuple(tokens), encoded.truncated, encoded.warnings)
        unread = self._unread(text, tokens, unread_words, [*ambiguous, *marked])
        read = tuple(self._term(t, corrected.get(i)) for i, t in enumerate(tokens) if t.text != Tokenizer.UNK
                     and t.category != "other")
        in_unread = {i for word in unread_words for i in word}
        marked_starts = {u.start for u in marked}

        def within_unread(token: Token) -> bool:  # "puffs" of "2 puffs", "surgery" of "bariatric surgery"
            return any(u.start <= token.start and token.end <= u.end for u in unread)

        counted = [i for i, t in enumerate(tokens) if i not in in_unread and (t.category != "other"
                                                                               or t.surface[:1].isalnum())]
        words_read = sum(not within_unread(tokens[i]) for i in counted)
        content = sum(tokens[w[0]].start in marked_starts or _is_content(text[tokens[w[0]].start:tokens[w[-1]].end])
                      for w in unread_words)
        parts = self._unread_parts(text, tokens, unread)
        return encoded, Reading(read, unread, parts, len(counted) + content, words_read)

    def _misread_names(self, text: str, tokens: tuple[Token, ...]) -> list[Unread]:
        """Names the tokenizer read as a catalog name that the words before them contradict: "type 1 diabetes" is
        read as diabetes, whose name "type 2 diabetes" differs from it in a number only."""
        found = []
        for index, token in enumerate(tokens):
            for back in range(1, 3):
                if index < back or token.id not in self._numbered:
                    break
                begin = tokens[index - back].start
                if HARD_GAP.search(text[begin:token.end]):
                    break
                typed = phrase_key(text[begin:token.end])
                if any(_differs_in_numbers_only(typed, name) for name in self._numbered[token.id]):
                    found.append(Unread(text[begin:token.end], token.category, begin, token.end))
                    break
        return found

    # ---- near misses -----------------------------------------------------------------------------------------

    def _near_misses(self, text: str, tokens: list[Token], unread_words: list[list[int]],
                     marked: list[Unread]) -> tuple[list[Token], dict[int, str], list[Unread]]:
        """tokens with each run of unread words near one catalog name replaced by that name's token, and each other
        unread word the tokenizer cut at an accent by one unknown token ("médecin" is not "m", read as male, and
        "édecin"); where the names' tokens are, with the name each was near, and the words near two names."""
        replacements: dict[int, tuple[int, Token, str | None]] = {}  # first index -> (tokens replaced, by, near)
        ambiguous: list[Unread] = []
        marked_starts = {u.start for u in marked}
        for run in self._runs(text, tokens, [w for w in unread_words if tokens[w[0]].start not in marked_starts]):
            start = 0
            while start < len(run):
                length, found = self._match(text, tokens, run, start)
                first, last = run[start][0], run[start + length - 1][-1]
                if isinstance(found, tuple):
                    replacements[first] = (last - first + 1, *found)
                elif found is not None:
                    ambiguous.append(found)
                start += length
        covered = {i for first, (count, _, _) in replacements.items() for i in range(first, first + count)}
        for word in unread_words:
            if len(word) > 1 and word[0] not in covered:
                begin, end = tokens[word[0]].start, tokens[word[-1]].end
                unknown = fast_token(UNK_ID, Tokenizer.UNK, text[begin:end], begin, end, "other", None)
                replacements[word[0]] = (len(word), unknown, None)
        result, corrected, index = [], {}, 0
        while index < len(tokens):
            count, token, near = replacements.get(index, (1, tokens[index], None))
            if near is not None:
                corrected[len(result)] = near
            result.append(token)
            index += count
        return result, corrected, ambiguous

    def _runs(self, text: str, tokens: list[Token], unread_words: list[list[int]]) -> list[list[list[int]]]:
        """Unread words that stand together (no separator between them), as lists of words of token indices; a run
        that ends in a content word takes the word after it when that word ends catalog names ("famly doctor")."""
        runs: list[list[list[int]]] = []
        for word in unread_words:
            first = tokens[word[0]]
            if not first.surface[:1].isalpha():
                runs.append([])
                continue
            previous = runs[-1][-1] if runs and runs[-1] else None
            if previous and previous[-1] == word[0] - 1 and not HARD_GAP.search(text[tokens[previous[-1]].end:
                                                                                       first.start]):
                runs[-1].append(word)
            else:
                runs.append([word])
        runs = [run for run in runs if run]
        for run in runs:
            last = run[-1][-1]
            if _is_content(text[tokens[run[-1][0]].start:tokens[last].end]) and self._head_after(text, tokens, last):
                run.append([last + 1])
        return runs

    def _head_after(self, text: str, tokens: list[Token], index: int) -> bool:
        """The token after `index` is a word that ends catalog names ("surgery", "doctor", "test"), after a space."""
        return (index + 1 < len(tokens) and tokens[index + 1].text in self._heads
                and text[tokens[index].end:tokens[index + 1].start].isspace())

    def _match(self, text: str, tokens: list[Token], run: list[list[int]],
               start: int) -> tuple[int, tuple[Token, str] | Unread | None]:
        """The longest window of the run from `start` that is near catalog names, and its words: near one, that
        name's token and the name; near two or more, an Unread naming them; near none, (1, None)."""
        if tokens[run[start][0]].text != Tokenizer.UNK:  # a word read, taken only to end a name
            return 1, None
        for length in range(min(MAX_WINDOW, len(run) - start), 0, -1):
            window = run[start:start + length]
            begin, end = tokens[window[0][0]].start, tokens[window[-1][-1]].end
            query = " ".join(text[tokens[w[0]].start:tokens[w[-1]].end].lower() for w in window)
            if length == 1 and query in HARMLESS_WORDS:
                continue
            near = self._near(query, length)
            if len(near) == 1:
                (token_id, name), = near
                vocab = self.tokenizer.vocab[token_id]
                return length, (fast_token(token_id, vocab, text[begin:end], begin, end, category_of(vocab), None),
                                name)
            if near:
                return length, Unread(text[begin:end], None, begin, end, tuple(self._named(*n) for n in near))
        return 1, None

    def _near_names(self, query: str, words: int) -> tuple[tuple[int, str], ...]:
        """(token id, name) of every catalog entity with a name of `words` words within the allowed edits of query,
        nearest first, each with its nearest name."""
        allowed = _allowed_edits(sum(c.isalpha() for c in query))
        names = {name: token_id for length in range(len(query) - allowed, len(query) + allowed + 1)
                 for name, token_id in self._names.get((words, length), {}).items()}
        if not allowed or not names:
            return ()
        matches = process.extract(query, list(names), scorer=OSA.distance, score_cutoff=allowed, limit=None)
        nearest: dict[int, str] = {}
        for name, _, _ in sorted(matches, key=lambda m: m[1]):
            if _each_word_near(query, name):
                nearest.setdefault(names[name], name)
        return tuple(nearest.items())

    def _named(self, token_id: int, name: str) -> str:
        """A catalog name as typed, with the entity's own name when that differs: 'lasix (Furosemide)'."""
        shown = self._shown[token_id]
        return name if name == shown.lower() else f"{name} ({shown})"

    # ---- words not read --------------------------------------------------------------------------------------

    def _unread(self, text: str, tokens: list[Token], unread_words: list[list[int]],
                given: list[Unread]) -> tuple[Unread, ...]:
        """Unread content words grouped into phrases, each with its field, a phrase ending with the word after it
        when that word ends catalog names ("bariatric surgery"); numbers in units not read; and `given` (words near
        two names, addresses, symbols, names misread)."""
        found: list[Unread] = list(given)
        taken = {(u.start, u.end) for u in given}
        phrase: list[int] = []  # token indices

        def close() -> None:
            if phrase:
                last = phrase[-1] + 1 if self._head_after(text, tokens, phrase[-1]) else phrase[-1]
                begin, end = tokens[phrase[0]].start, tokens[last].end
                found.append(Unread(text[begin:end], _field(text, tokens, begin, end), begin, end))
                phrase.clear()

        for word in unread_words:
            first, last = tokens[word[0]], tokens[word[-1]]
            surface = text[first.start:last.end]
            inside_given = any(s <= first.start and last.end <= e for s, e in taken)
            unit = _unit(text, tokens, word[0], word[-1])
            if inside_given or unit is not None or not _is_content(surface):
                close()
                if unit is not None:
                    found.append(unit)
                continue
            if phrase and (phrase[-1] != word[0] - 1 or HARD_GAP.search(text[tokens[phrase[-1]].end:first.start])):
                close()
            phrase.extend(word)
        close()
        return tuple(sorted([*found, *_uncounted_doses(text, tokens, found)], key=lambda u: u.start))

    def _unread_parts(self, text: str, tokens: list[Token],
                      unread: tuple[Unread, ...]) -> tuple[tuple[str, tuple[Unread, ...]], ...]:
        """Each part of the claim written but not read, with what was not read of it. A claim that names no billed
        item has none not read: nothing was written there."""
        categories = {t.category for t in tokens}
        read = {"diagnosis": "diagnosis" in categories, "item": bool({"drug", "procedure"} & categories),
                "dose": "dose" in categories, "price": "amount" in categories}
        slot_parts = {"diagnosis": ("diagnosis",), None: ("diagnosis", "item")}  # drug and procedure: above
        blamed: dict[str, list[Unread]] = {part: [] for part in PARTS}
        for u in unread:
            if u.field == "unit":
                blamed["dose"] += [u] if "drug" in categories and not read["dose"] else []
                blamed["price"] += [u] if not read["price"] else []
            elif u.field in NOT_WORDS:  # an address or symbols stand for no part
                continue
            elif u.field in (*ITEM_FIELDS, None) and _listed_as_item(text, tokens, u):
                blamed["item"].append(u)
            elif u.field in ITEM_FIELDS:
                blamed["item"] += [u] if not read["item"] else []
            else:  # words where a diagnosis or item goes are blamed for it when none was read
                blamed.update({part: [*blamed[part], u] for part in slot_parts.get(u.field, ()) if not read[part]})
        return tuple((part, tuple(blamed[part])) for part in PARTS if blamed[part])

    def _term(self, token: Token, near: str | None) -> ReadTerm:
        shown = None if near is None else self._named(token.id, near)
        return ReadTerm(token.surface, token.category, self._meaning(token), token.start, token.end, shown)

    def _meaning(self, token: Token) -> str:
        if token.category in ENTITY_PREFIXES:
            return self._shown[token.id]
        if token.category == "sex":
            return {"M": "male", "F": "female"}[token.text.partition(":")[2]]
        if token.value is None:
            return token.text
        return {"dose": f"{token.value:g} mg", "amount": f"${token.value:,.2f}",
                "age": f"{token.value:g} years"}[token.category]


def _numbered_names(tokenizer: Tokenizer, ids: dict[str, int]) -> dict[int, tuple[tuple[str, ...], ...]]:
    """Each entity's names of two or more words with a number in them ("type 2 diabetes"), by token id."""
    numbered: dict[int, list[tuple[str, ...]]] = {}
    for token_text, aliases in tokenizer.aliases.items():
        for key in map(phrase_key, aliases):
            if len(key) > 1 and any(map(_is_number_word, key)):
                numbered.setdefault(ids[token_text], []).append(key)
    return {token_id: tuple(keys) for token_id, keys in numbered.items()}


def _head_words(tokenizer: Tokenizer) -> frozenset[str]:
    """Vocabulary words that end catalog names of two or more words after a word ("surgery" of "general surgery",
    "doctor" of "family doctor"): after an unknown word, the word ends that unknown name."""
    words = {text for text in tokenizer.vocab if category_of(text) == "other"}
    return frozenset(key[-1] for aliases in tokenizer.aliases.values() for key in map(phrase_key, aliases)
                     if len(key) > 1 and key[-1] in words and len(key[-1]) > 1 and key[-2].isalpha())


def _is_number_word(word: str) -> bool:
    return word.replace(".", "", 1).isdecimal() or word in ROMAN_NUMERALS


def _differs_in_numbers_only(typed: tuple[str, ...], name: tuple[str, ...]) -> bool:
    """Typed and name differ, each word of them alike but numbers: "type 1 diabetes" and "type 2 diabetes"."""
    return (len(typed) == len(name) and typed != name
            and all(a == b or (_is_number_word(a) and _is_number_word(b)) for a, b in zip(typed, name, strict=True)))


def _not_words(text: str, tokens: tuple[Token, ...]) -> list[Unread]:
    """Web and mail addresses, and runs of pictographs ("🔥🔥🔥"), each as one Unread over the tokens it covers."""
    found = []
    for match in LINK.finditer(text):
        inside = [t for t in tokens if match.start() <= t.start and t.end <= match.end()]
        if inside:
            found.append(Unread(text[inside[0].start:inside[-1].end], "link", inside[0].start, inside[-1].end))
    run: list[Token] = []
    for token in (*tokens, None):
        if token is not None and token.text == Tokenizer.UNK and all(unicodedata.category(c) == "So"
                                                                     for c in token.surface):
            if run and run[-1].end != token.start:
                found.append(Unread(text[run[0].start:run[-1].end], "symbol", run[0].start, run[-1].end))
                run = []
            run.append(token)
        elif run:
            found.append(Unread(text[run[0].start:run[-1].end], "symbol", run[0].start, run[-1].end))
            run = []
    return found


def _merged(text: str, tokens: tuple[Token, ...], marked: list[Unread]) -> list[Token]:
    """tokens with the tokens of each marked span replaced by one unknown token over the span."""
    result: list[Token] = []
    for token in tokens:
        span = next((u for u in marked if u.start <= token.start and token.end <= u.end), None)
        if span is None:
            result.append(token)
        elif token.start == span.start:
            result.append(fast_token(UNK_ID, Tokenizer.UNK, span.surface, span.start, span.end, "other", None))
    return result


def _uncounted_doses(text: str, tokens: list[Token], found: list[Unread]) -> list[Unread]:
    """A number right after a drug that is no dose read: with a dose form ("2 puffs", "1 tablet") or none ("40"),
    unless a unit not read was already found for it ("10 units")."""
    doses = []
    for index, (before, token) in enumerate(pairwise(tokens), 1):
        if (token.text != Tokenizer.NUM or before.category != "drug" or text[before.end:token.start].strip()
                or any(u.start <= token.start < u.end for u in found)):
            continue
        after = tokens[index + 1] if index + 1 < len(tokens) else None
        counted = after is not None and after.text in DOSE_FORM_WORDS and text[token.end:after.start].isspace()
        end = after.end if counted else token.end
        doses.append(Unread(text[token.start:end], "unit", token.start, end))
    return doses


def _is_content(surface: str) -> bool:
    """A word that could carry a field: letters, more than one, not a stop-word nor the generator's filler."""
    low = surface.lower()
    return len(low) > 1 and low.isalpha() and low not in HARMLESS_WORDS


def _unit(text: str, tokens: list[Token], first: int, last: int) -> Unread | None:
    """A number whose unit was not read ("10 units", "40 euros", "€40"), as one Unread; else None."""
    low = text[tokens[first].start:tokens[last].end].lower()
    if not ((low.isalpha() and len(low) > 1) or unicodedata.category(low[0]) == "Sc"):  # "€"; not "-", "•", "5d"
        return None
    if low in MONEY_WORDS:  # "sixty dollars": a money word with no number read
        return Unread(text[tokens[first].start:tokens[last].end], "unit", tokens[first].start, tokens[last].end)
    before = tokens[first - 1] if first > 0 else None
    after = tokens[last + 1] if last + 1 < len(tokens) else None
    if before is not None and before.text == Tokenizer.NUM and not text[before.end:tokens[first].start].strip():
        return Unread(text[before.start:tokens[last].end], "unit", before.start, tokens[last].end)
    if (after is not None and after.text == Tokenizer.NUM and not low.isalpha()
            and not text[tokens[last].end:after.start].strip()):
        return Unread(text[tokens[first].start:after.end], "unit", tokens[first].start, after.end)
    return None


def _segment_before(prefix: str) -> str:
    """The text of the field a word stands in, before the word: from the last separator, or from the separator
    before a key ("Dx: ") that ends it."""
    gaps = [m.start() for m in HARD_GAP.finditer(prefix)]
    if gaps and KEY_COLON.search(prefix):
        gaps = gaps[:-1]
    return prefix[gaps[-1] + 1:] if gaps else prefix


def _field(text: str, tokens: list[Token], begin: int, end: int) -> str | None:
    """The field an unread phrase's neighbours say it is, from the generator's templates; None if they say none."""
    before = [w for w in phrase_key(_segment_before(text[:begin])) if w not in ARTICLES]
    for key in (tuple(before[-2:]), tuple(before[-1:])):
        if key and key in BEFORE_CUES:
            return BEFORE_CUES[key]
    rest = text[end:]
    stop = HARD_GAP.search(rest)
    following = phrase_key(rest[:stop.start() if stop else len(rest)])
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
    own = list(takewhile(lambda t: t.category in ("dose", "amount") or t.surface.lower() in COORDINATORS,
                         reversed(before)))
    if len(own) == len(before) or before[-len(own) - 1].category not in ITEM_FIELDS:
        return None
    item = before[-len(own) - 1]
    numbers = [t for t in own if t.category in ("dose", "amount")]
    after = text[(numbers[0] if numbers else item).end:begin]
    if not LISTED.search(after) or (any(t.category == "amount" for t in numbers) and not COORDINATED.search(after)):
        return None
    return item.category


def _listed_as_item(text: str, tokens: list[Token], unread: Unread) -> bool:
    """The phrase is another billed item beside one read: with its own dose, listed after an item, or after an item's
    key ("Rx: insulin")."""
    before = [w for w in phrase_key(_segment_before(text[:unread.start])) if w not in ARTICLES]
    if set(phrase_key(unread.surface)) <= SPELLED_NUMBERS:
        return False
    return (_has_own_dose(text, tokens, unread) or _coordinated_item(text, tokens, unread.start) is not None
            or (bool(before) and before[-1] in ITEM_KEYS))
