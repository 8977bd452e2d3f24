"""The words of a pasted claim the tokenizer did not read: which they are (with the letters glued to them), which
could carry a field, and the text that is no claim words at all (addresses, pictographs, numbers in units not read)."""

from __future__ import annotations

import re
import unicodedata
from itertools import pairwise

from data import phrasing, styles
from data.text import phrase_key
from data.tokenizer import MONEY_WORDS, Tokenizer
from data.unread import Unread
from data.vocabulary import DOSE_FORM_WORDS, SPECIALS, Token, fast_token

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
HARMLESS_WORDS = (
    STOP_WORDS
    | frozenset(phrasing.JUNK_WORDS)
    | frozenset(piece for filler in styles.FILLERS for piece in phrase_key(filler))
)

UNK_ID = SPECIALS.index(Tokenizer.UNK)
# Text that is no claim words at all: a web or mail address (its words are not the claim's, even those the tokenizer
# knows), and runs of pictographs.
LINK = re.compile(r"(?:https?://|www\.)\S+|[\w.+-]+@[\w-]+\.[\w.]+", re.IGNORECASE)


def glued_words(tokens: list[Token]) -> list[list[int]]:
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


def not_words(text: str, tokens: tuple[Token, ...]) -> list[Unread]:
    """Web and mail addresses, and runs of pictographs ("🔥🔥🔥"), each as one Unread over the tokens it covers."""
    found = []
    for match in LINK.finditer(text):
        inside = [t for t in tokens if match.start() <= t.start and t.end <= match.end()]
        if inside:
            found.append(Unread(text[inside[0].start : inside[-1].end], "link", inside[0].start, inside[-1].end))
    run: list[Token] = []
    for token in (*tokens, None):
        if (
            token is not None
            and token.text == Tokenizer.UNK
            and all(unicodedata.category(c) == "So" for c in token.surface)
        ):
            if run and run[-1].end != token.start:
                found.append(Unread(text[run[0].start : run[-1].end], "symbol", run[0].start, run[-1].end))
                run = []
            run.append(token)
        elif run:
            found.append(Unread(text[run[0].start : run[-1].end], "symbol", run[0].start, run[-1].end))
            run = []
    return found


def merged(text: str, tokens: tuple[Token, ...], marked: list[Unread]) -> list[Token]:
    """tokens with the tokens of each marked span replaced by one unknown token over the span."""
    result: list[Token] = []
    for token in tokens:
        span = next((u for u in marked if u.start <= token.start and token.end <= u.end), None)
        if span is None:
            result.append(token)
        elif token.start == span.start:
            result.append(fast_token(UNK_ID, Tokenizer.UNK, span.surface, span.start, span.end, "other", None))
    return result


def uncounted_doses(text: str, tokens: list[Token], found: list[Unread]) -> list[Unread]:
    """A number right after a drug that is no dose read: with a dose form ("2 puffs", "1 tablet") or none ("40"),
    unless a unit not read was already found for it ("10 units")."""
    doses = []
    for index, (before, token) in enumerate(pairwise(tokens), 1):
        if (
            token.text != Tokenizer.NUM
            or before.category != "drug"
            or text[before.end : token.start].strip()
            or any(u.start <= token.start < u.end for u in found)
        ):
            continue
        after = tokens[index + 1] if index + 1 < len(tokens) else None
        counted = after is not None and after.text in DOSE_FORM_WORDS and text[token.end : after.start].isspace()
        end = after.end if counted else token.end
        doses.append(Unread(text[token.start : end], "unit", token.start, end))
    return doses


def is_content(surface: str) -> bool:
    """A word that could carry a field: letters, more than one, not a stop-word nor the generator's filler."""
    low = surface.lower()
    return len(low) > 1 and low.isalpha() and low not in HARMLESS_WORDS


def unit_not_read(text: str, tokens: list[Token], first: int, last: int) -> Unread | None:
    """A number whose unit was not read ("10 units", "40 euros", "€40"), as one Unread; else None."""
    low = text[tokens[first].start : tokens[last].end].lower()
    if not ((low.isalpha() and len(low) > 1) or unicodedata.category(low[0]) == "Sc"):  # "€"; not "-", "•", "5d"
        return None
    if low in MONEY_WORDS:  # "sixty dollars": a money word with no number read
        return Unread(text[tokens[first].start : tokens[last].end], "unit", tokens[first].start, tokens[last].end)
    before = tokens[first - 1] if first > 0 else None
    after = tokens[last + 1] if last + 1 < len(tokens) else None
    if before is not None and before.text == Tokenizer.NUM and not text[before.end : tokens[first].start].strip():
        return Unread(text[before.start : tokens[last].end], "unit", before.start, tokens[last].end)
    if (
        after is not None
        and after.text == Tokenizer.NUM
        and not low.isalpha()
        and not text[tokens[last].end : after.start].strip()
    ):
        return Unread(text[tokens[first].start : after.end], "unit", tokens[first].start, after.end)
    return None
