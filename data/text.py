"""How claim text is cut into pieces. Shared by the catalog (to compare aliases) and the tokenizer (to match
them), so an alias matches exactly when the tokenizer would see the same pieces: "ob/gyn", "ob gyn" and
"OB-GYN" all become ("ob", "gyn").
"""

from __future__ import annotations

import re

# Pieces are words, numbers and lone symbols. Whitespace and punctuation between pieces is skipped (so
# "doctor's" is two pieces), but hard separators in that gap are noted, so two fields never read as one name.
# Non-ASCII letters start a new word ("café" is "caf" + "é"): catalog names are ASCII and the scan stays fast.
_WORD = r"[a-z]+|[^\W\d_]+"
_NUMBER = r"-?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|-?\.\d+"
_SYMBOL = r"""[^\s\w.'’\-/=*#&~`,;:|+()\[\]{}!?"]"""
PIECES = re.compile(f"({_WORD}|{_NUMBER}|{_SYMBOL})")
HARD_GAP = re.compile(r"""[,;:|+()\[\]{}!?"\n\r\t]|\.\s""")

SEX_WORDS = {
    "m": "M",
    "male": "M",
    "man": "M",
    "boy": "M",
    "gentleman": "M",
    "f": "F",
    "female": "F",
    "woman": "F",
    "girl": "F",
    "lady": "F",
}
# Unit words give a number its meaning; they cannot double as a catalog alias.
UNIT_WORDS = frozenset(
    {
        "mg",
        "mcg",
        "ug",
        "µg",
        "μg",
        "g",
        "gm",
        "gram",
        "grams",
        "milligram",
        "milligrams",
        "microgram",
        "micrograms",
        "usd",
        "dollar",
        "dollars",
        "yo",
        "y",
        "yr",
        "yrs",
        "year",
        "years",
    }
)
RESERVED_WORDS = frozenset(SEX_WORDS) | UNIT_WORDS


def split(text: str, limit: int = 0) -> list[str]:
    """Gaps and pieces of text, alternating: [gap, piece, gap, ..., piece, gap]; the caller lowercases.
    With limit > 0 at most limit pieces are cut and the rest of the text is left in the final gap."""
    parts = PIECES.split(text, maxsplit=limit)
    if "-" in text:
        for i in range(3, len(parts), 2):
            piece = parts[i]
            # A minus glued to the word or number before it is a hyphen: "10-20", "54-year-old", not "-5".
            if piece[0] == "-" and not parts[i - 1] and parts[i - 2][-1:].isalnum():
                parts[i - 1], parts[i] = "-", piece[1:]
    return parts


def kind_of(piece: str) -> str:
    """ "num", "word" or "sym" for a piece from split()."""
    first = piece[0]
    if first.isdecimal() or first in "-.":
        return "num"
    return "word" if first.isalnum() else "sym"


def has_hard_break(text: str) -> bool:
    """True if text holds a field separator, so it could never be read as one name."""
    return any(HARD_GAP.search(gap) for gap in split(text.lower())[0::2])


def phrase_key(text: str) -> tuple[str, ...]:
    """The lowercased pieces of an alias, as the tokenizer would match them."""
    return tuple(split(text.lower())[1::2])
