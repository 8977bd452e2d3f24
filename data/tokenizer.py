"""Claim text to tokens: one token per catalog entity, magnitude tokens for numbers, words for the rest.

- Catalog names and aliases are matched longest-first and case-insensitively, and every synonym of an entity
  shares one token ("heart surgery" and "CABG" are both `proc:33533`); the token keeps what the user typed.
- Numbers become magnitude tokens by context: `$150` -> `amt:14` (k = round(2 log2 usd), half-octave buckets),
  `500 mg` / `0.5 g` / `500000 mcg` -> `dose:18` (normalised to mg), `54yo` / `age 54` -> `age:54`; a bare
  number is `<num>`. Impossible values (negative, zero, NaN, 1e308) get the bucket at the edge and a warning.
- Words outside the fixed vocabulary are `<unk>`. Encoding never raises and reads at most what max_len needs.
"""

from __future__ import annotations

import math
from functools import lru_cache
from itertools import accumulate

from data.catalog import Catalog
from data.text import HARD_GAP, SEX_WORDS, kind_of, phrase_key, split
from data.vocabulary import (
    AGE_MAX,
    AMOUNT_BUCKETS,
    CATEGORIES,
    DOSE_BUCKETS,
    SPECIALS,
    Encoded,
    build_vocabulary,
    category_of,
    fast_token,
)

PIECES_PER_TOKEN = 4  # the most pieces a number token takes ("-", "$", "50", "k" ... "usd")

DOSE_UNITS = {
    "mg": 1.0, "mgs": 1.0, "milligram": 1.0, "milligrams": 1.0,
    "mcg": 1e-3, "ug": 1e-3, "µg": 1e-3, "μg": 1e-3, "microgram": 1e-3, "micrograms": 1e-3,
    "g": 1e3, "gm": 1e3, "gram": 1e3, "grams": 1e3,
}  # fmt: skip
MONEY_WORDS = frozenset({"usd", "dollar", "dollars", "bucks"})
MULTIPLIERS = {"k": 1e3, "m": 1e6, "mm": 1e6}  # only when glued to the number: "$50k", "$1.2M"
AGE_SUFFIXES = (("years", "of", "age"), ("years", "old"), ("year", "old"), ("yrs", "old"), ("yr", "old"),
                ("y", "o"), ("yo",), ("yrs",), ("yr",), ("y",))  # fmt: skip
AGE_SUFFIXES_BY_START = {start: tuple(s for s in AGE_SUFFIXES if s[0] == start) for start, *_ in AGE_SUFFIXES}
AGE_WORDS = frozenset({"age", "aged"})
COMBINED_AGE_SEX = frozenset({"yom", "yof"})  # "54yoM"
NUMBER_WORDS = {"nan": math.nan, "inf": math.inf, "infinity": math.inf}

# Shorthand written with a slash between two letters; read as one word, so "f/u" is not the sex word "f".
COMPOUNDS = {
    ("f", "u"): "f/u",
    ("w", "o"): "w/o",
    ("s", "p"): "s/p",
    ("h", "o"): "h/o",
    ("c", "o"): "c/o",
    ("r", "o"): "r/o",
}

# kind_of() for the commonest first characters, looked up instead of computed
FIRST_KIND = {
    **dict.fromkeys("abcdefghijklmnopqrstuvwxyz", "word"), **dict.fromkeys("0123456789-.", "num"), "$": "sym",
}  # fmt: skip


def _number(low: str) -> float:
    if low in NUMBER_WORDS:
        return NUMBER_WORDS[low]
    return float(low.replace(",", ""))


@lru_cache(maxsize=4096)  # generated claims repeat the same doses and prices; user text stays bounded
def _read_magnitude(value: float, low: int, high: int) -> tuple[int, str | None]:
    """The half-octave bucket of value clipped to [low, high], and what is wrong with value, if anything."""
    if value > 0 and not math.isinf(value):  # NaN fails value > 0
        exact = 2 * math.log2(value)
        bucket = min(high, max(low, round(exact)))
        return bucket, None if low - 1 <= exact <= high + 1 else "is not plausible"
    if math.isnan(value):
        return low, "is not a number"
    if value < 0:
        return low, "is negative"
    return (low, "is zero") if value == 0 else (high, "is not plausible")


@lru_cache(maxsize=4096)  # the same few gaps (", ", "; ", " | ") come back all the time
def _is_hard(gap: str) -> bool:
    return HARD_GAP.search(gap) is not None


def _kind(piece: str) -> str:
    if piece in NUMBER_WORDS:
        return "num"
    return FIRST_KIND.get(piece[0]) or kind_of(piece)


def _is_age(low: str) -> bool:
    return low.isdecimal() and len(low) <= 3 and int(low) <= 120


class Tokenizer:
    PAD, UNK, NUM = SPECIALS

    def __init__(self, vocab: tuple[str, ...], aliases: dict[str, tuple[str, ...]]) -> None:
        if tuple(vocab[:3]) != SPECIALS:
            raise ValueError(f"vocabulary must start with {SPECIALS}")
        self.vocab = tuple(vocab)
        self.aliases = aliases  # entity token text -> the names and aliases that produce it
        self._ids = {text: index for index, text in enumerate(self.vocab)}
        if len(self._ids) != len(self.vocab):
            raise ValueError("vocabulary has duplicate entries")
        self._categories = tuple(map(category_of, self.vocab))
        # first piece -> ((length, {all pieces: token id}), ...), longest first, for longest-match lookup;
        # the first name listed wins a tie, as it would in a list
        by_start: dict[str, dict[int, dict[tuple[str, ...], int]]] = {}
        for token_text, names in aliases.items():
            for name in names:
                key = phrase_key(name)
                by_start.setdefault(key[0], {}).setdefault(len(key), {}).setdefault(key, self._ids[token_text])
        self._phrases: dict[str, tuple[tuple[int, dict[tuple[str, ...], int]], ...]] = {
            start: tuple(sorted(by_length.items(), key=lambda item: -item[0])) for start, by_length in by_start.items()
        }
        # Words that read the same whatever their neighbours: not a name's first piece, not money, not one
        # letter (units, "f/u"); sex words included. Unknown words are not here: they take the slow path.
        self._plain = {
            word: index
            for word, index in self._ids.items()
            if word.isalpha() and len(word) > 1 and word not in self._phrases and word not in MONEY_WORDS
        }
        # So is a one-piece name that starts no longer name and is not read as a number ("inf").
        self._plain.update(
            {
                start: by_length[0][1][(start,)]
                for start, by_length in self._phrases.items()
                if len(by_length) == 1
                and by_length[0][0] == 1
                and start.isalpha()
                and len(start) > 1
                and start not in MONEY_WORDS
                and start not in NUMBER_WORDS
            }
        )
        # A sex word that starts a name ("female breast cancer") is read as the name when the name follows.
        self._plain.update(
            {
                word: self._ids[f"sex:{sex}"]
                for word, sex in SEX_WORDS.items()
                if len(word) > 1 and word not in self._phrases
            }
        )
        longest = max((length for lengths in self._phrases.values() for length, _ in lengths), default=1)
        self._pieces_per_token = max(longest, PIECES_PER_TOKEN)
        self._category_ids = tuple(map(self.category_id, self._categories))

    @classmethod
    def from_catalog(cls, catalog: Catalog) -> Tokenizer:
        return cls(*build_vocabulary(catalog))

    def to_json(self) -> dict:
        return {
            "format": "headwatch-tokenizer",
            "version": 1,
            "vocab": list(self.vocab),
            "aliases": {text: list(names) for text, names in self.aliases.items()},
        }

    @classmethod
    def from_json(cls, data: dict) -> Tokenizer:
        if data.get("format") != "headwatch-tokenizer" or data.get("version") != 1:
            raise ValueError("not a headwatch tokenizer (format/version mismatch)")
        return cls(tuple(data["vocab"]), {text: tuple(names) for text, names in data["aliases"].items()})

    def category_id(self, category: str) -> int:
        return CATEGORIES.index(category)

    @property
    def category_ids(self) -> tuple[int, ...]:
        """category_id() of each vocabulary entry's category, indexed by token id."""
        return self._category_ids

    def encode(self, text: str, max_len: int = 48) -> Encoded:
        """At most max_len tokens (truncated=True if more followed); never raises for a str."""
        max_len = max(0, max_len)
        encoding = self._read(text, max_len)
        vocab, categories, found = self.vocab, self._categories, encoding.tokens
        tokens = tuple(
            fast_token(token_id, vocab[token_id], text[start:end], start, end, categories[token_id], value)
            for token_id, start, end, value in found[:max_len]
        )
        return Encoded(tokens, len(found) > max_len, tuple(encoding.warnings))

    def encode_ids(self, text: str, max_len: int = 48) -> list[int]:
        """The ids of encode()'s tokens, without building the tokens: for encoding many claims at once."""
        max_len = max(0, max_len)
        return [found[0] for found in self._read(text, max_len).tokens[:max_len]]

    def _read(self, text: str, max_len: int) -> _Encoding:
        # Reading stops once max_len + 1 tokens are certain, so huge inputs cost no more than short ones.
        encoding = _Encoding(self, text, (max_len + 2) * self._pieces_per_token)
        encoding.run(max_len + 1)
        return encoding


class _Encoding:
    """One encode() call: the pieces of the text as parallel lists, and the tokens and warnings so far. A token
    is kept as (id, start, end, value) until encode() builds it, so encode_ids() never has to."""

    def __init__(self, tokenizer: Tokenizer, text: str, limit: int) -> None:
        self.tk, self.text = tokenizer, text
        lowered = text.lower()
        # Spans found in the lowercased text fit the original unless a character grew when lowercased ("İ");
        # then cut the original and lowercase piece by piece.
        same_length = len(lowered) == len(text)
        parts = split(lowered if same_length else text, limit)
        gaps, lows = parts[0::2], parts[1::2]
        if not same_length:
            lows = [piece.lower() for piece in lows]
        offsets = list(accumulate(map(len, parts)))
        self.lows, self.gaps = lows, gaps  # gaps[i] stands before lows[i]
        self.starts, self.ends = offsets[0 : 2 * len(lows) : 2], offsets[1::2]
        self.tokens: list[tuple[int, int, int, float | None]] = []
        self.warnings: list[str] = []

    def run(self, limit: int) -> None:
        """Read tokens until the text ends or at least limit are found."""
        tokens, lows, starts, ends = self.tokens, self.lows, self.starts, self.ends
        phrases, plain = self.tk._phrases, self.tk._plain
        i, n = 0, len(lows)
        while i < n and len(tokens) < limit:
            low = lows[i]
            if low in plain:  # most words: read the same whatever stands next to them
                tokens.append((plain[low], starts[i], ends[i], None))
                i += 1
                continue
            number = _kind(low) == "num"
            if number:
                consumed = self._number(i)
            elif (low == "$" or low in MONEY_WORDS) and self._number_at(i + 1):
                consumed = self._amount(i + 1, self._money_start(i))
            elif len(low) == 1 and self._compound(i):
                consumed = 2
            else:
                consumed = self._phrase(i) if low in phrases else 0
            if not consumed:
                word = Tokenizer.NUM if number else f"sex:{SEX_WORDS[low]}" if low in SEX_WORDS else low
                self._emit(word, starts[i], ends[i])
                consumed = 1
            i += consumed

    def _emit(self, text: str, start: int, end: int, value: float | None = None) -> None:
        self._emit_id(self.tk._ids.get(text, 1), start, end, value)

    def _emit_id(self, token_id: int, start: int, end: int, value: float | None = None) -> None:
        self.tokens.append((token_id, start, end, value))

    # ---- neighbourhood tests -------------------------------------------------------------------------------

    def _soft(self, i: int) -> bool:
        """Piece i exists and nothing but spaces or joiners stand between it and piece i - 1."""
        return i < len(self.lows) and not _is_hard(self.gaps[i])

    def _any_hard(self, first: int, end: int) -> bool:
        """A separator stands somewhere between pieces first - 1 and end - 1."""
        return any(map(_is_hard, self.gaps[first:end]))

    def _glued(self, i: int) -> bool:
        """Piece i exists and touches piece i - 1 ("50k", "54M")."""
        return i < len(self.lows) and self.starts[i] == self.ends[i - 1]

    def _number_at(self, i: int) -> bool:
        return self._soft(i) and _kind(self.lows[i]) == "num"

    def _money_suffix_at(self, i: int) -> bool:
        """A money word after a number, or a "$" not starting the next amount ("150$", not "99213 $150")."""
        if not self._soft(i):
            return False
        low = self.lows[i]
        if low == "$":
            return not self._number_at(i + 1)
        return low in MONEY_WORDS and not self._glued(i + 1)

    def _age_suffix_at(self, i: int) -> int:
        lows = self.lows
        for suffix in AGE_SUFFIXES_BY_START.get(lows[i], ()):
            end = i + len(suffix)
            if tuple(lows[i:end]) == suffix and not self._any_hard(i, end) and not self._glued(end):
                return len(suffix)
        return 0

    def _after_age_word(self, i: int) -> bool:
        """Piece i - 1 is "age"/"aged" standing as a word of its own (not the end of "37 years of age")."""
        if not self.tokens:
            return False
        last_id, _, last_end, _ = self.tokens[-1]
        return self.lows[i - 1] in AGE_WORDS and last_end == self.ends[i - 1] and self.tk.vocab[last_id] in AGE_WORDS

    def _money_start(self, i: int) -> int:
        # "-$5": the minus sits right before the dollar sign, outside the number piece.
        start, text = self.starts[i], self.text
        if (
            self.lows[i] == "$"
            and start > 0
            and text[start - 1] == "-"
            and (start == 1 or not text[start - 2].isalnum())
        ):
            return start - 1
        return start

    # ---- readers: emit tokens, return how many pieces they consumed (0 or False: not theirs) ---------------

    def _compound(self, i: int) -> bool:
        if i + 1 < len(self.lows) and self.text[self.ends[i] : self.starts[i + 1]] == "/":
            word = COMPOUNDS.get((self.lows[i], self.lows[i + 1]))
            if word is not None:
                self._emit(word, self.starts[i], self.ends[i + 1])
                return True
        return False

    def _phrase(self, i: int) -> int:
        lows = self.lows
        for length, names in self.tk._phrases.get(lows[i], ()):
            end = i + length
            token_id = names.get(tuple(lows[i:end]))
            if token_id is not None and not self._any_hard(i + 1, end):
                self._emit_id(token_id, self.starts[i], self.ends[end - 1])
                return length
        return 0

    def _number(self, i: int) -> int:
        """Amount, dose or age from the number at i and its neighbours, else a catalog code such as 99213."""
        lows = self.lows
        low = lows[i]
        nxt = lows[i + 1] if self._soft(i + 1) else None
        if (nxt in MULTIPLIERS and self._glued(i + 1) and self._money_suffix_at(i + 2)) or self._money_suffix_at(i + 1):
            return self._amount(i, self.starts[i])
        # a unit is only a unit if it is not glued to more text: "10 g" is a dose, "icd-10 G43.909" is not
        clean = not self._glued(i + 2)
        if nxt in DOSE_UNITS and clean:
            self._magnitude("dose", _number(low) * DOSE_UNITS[nxt], i, DOSE_BUCKETS, self.ends[i + 1])
            return 2
        if nxt in COMBINED_AGE_SEX and clean:  # "54yoF"
            split_at = self.starts[i + 1] + 2
            self._age(i, split_at)
            self._emit(f"sex:{nxt[-1].upper()}", split_at, self.ends[i + 1])
            return 2
        suffix = self._age_suffix_at(i + 1) if nxt in AGE_SUFFIXES_BY_START else 0
        if suffix:
            self._age(i, self.ends[i + suffix])
            return 1 + suffix
        if self._after_age_word(i):
            self._age(i, self.ends[i])
            return 1
        consumed = self._phrase(i) if low in self.tk._phrases else 0
        if consumed:
            return consumed
        # "54 M", "F 54", "M/54": a plausible age right next to a sex word
        if _is_age(low) and (
            (nxt in SEX_WORDS and clean) or (i > 0 and lows[i - 1] in SEX_WORDS and not _is_hard(self.gaps[i]))
        ):
            self._age(i, self.ends[i])
            return 1
        return 0

    def _amount(self, i: int, start: int) -> int:
        """The amount whose number is piece i and whose text starts at start ("$", "USD", "-$"); returns the
        pieces consumed, counted from the first piece of the amount."""
        first = i - 1 if start < self.starts[i] else i
        value = _number(self.lows[i])
        if self.text[start] == "-" and value > 0:
            value = -value
        end = i + 1
        if self._glued(end) and self.lows[end] in MULTIPLIERS:
            value *= MULTIPLIERS[self.lows[end]]
            end += 1
        if self._money_suffix_at(end):
            end += 1
        self._magnitude("amount", value, i, AMOUNT_BUCKETS, self.ends[end - 1], start)
        return end - first

    def _magnitude(
        self, kind: str, value: float, i: int, buckets: tuple[int, int], end: int, start: int | None = None
    ) -> None:
        bucket, problem = _read_magnitude(value, *buckets)
        if problem:
            unit = " mg" if kind == "dose" else ""
            self.warnings.append(f"{kind} {self._shown(i, value)}{unit} {problem}")
        prefix = "amt" if kind == "amount" else kind
        self._emit(f"{prefix}:{bucket}", self.starts[i] if start is None else start, end, value)

    def _shown(self, i: int, value: float) -> str:
        number = self.text[self.starts[i] : self.ends[i]]
        return f"-{number}" if value < 0 and not number.startswith("-") else number

    def _age(self, i: int, end: int) -> None:
        value = _number(self.lows[i])
        if 0 <= value <= AGE_MAX:
            years = int(value)
        else:
            self.warnings.append(f"age {self._shown(i, value)} is not plausible")
            years = AGE_MAX if value > AGE_MAX else 0  # NaN and negatives sit at the low edge
        self._emit(f"age:{years}", self.starts[i], end, value)
