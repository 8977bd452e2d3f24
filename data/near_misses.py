"""Catalog names a pasted claim misses: unread words near one name in spelling ("Metformn"), read as that name, or
near two, read as neither; and names the tokenizer read that the words before them contradict ("type 1 diabetes")."""

from __future__ import annotations

from functools import lru_cache

from rapidfuzz import process
from rapidfuzz.distance import OSA

from data.text import HARD_GAP, phrase_key
from data.tokenizer import Tokenizer
from data.unread import Unread
from data.unread_words import HARMLESS_WORDS, UNK_ID, is_content
from data.vocabulary import Token, category_of, fast_token

# Edit distances (optimal string alignment: a swap of two letters is one edit) that still read as a catalog name:
# none under 5 letters, where one edit makes another word; 1 up to 7 letters; 2 from 8.
MIN_FUZZY_LETTERS = 5
LONG_NAME_LETTERS = 8
MAX_WINDOW = 4  # the most unread words read together as one name
ROMAN_NUMERALS = frozenset({"i", "ii", "iii", "iv"})


def _allowed_edits(letters: int) -> int:
    if letters < MIN_FUZZY_LETTERS:
        return 0
    return 1 if letters < LONG_NAME_LETTERS else 2


def _each_word_near(query: str, name: str) -> bool:
    """Each typed word is near its word of the name, as near as the shorter of the two allows: "sore throat" is not
    "strep throat", however near the phrases are ("sore" is a word of its own), nor "neurolgy" "urology"."""
    return all(
        OSA.distance(typed, word) <= _allowed_edits(min(len(typed), len(word)))
        for typed, word in zip(query.split(), name.split(), strict=True)
    )


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
    return frozenset(
        key[-1]
        for aliases in tokenizer.aliases.values()
        for key in map(phrase_key, aliases)
        if len(key) > 1 and key[-1] in words and len(key[-1]) > 1 and key[-2].isalpha()
    )


def _is_number_word(word: str) -> bool:
    return word.replace(".", "", 1).isdecimal() or word in ROMAN_NUMERALS


def _differs_in_numbers_only(typed: tuple[str, ...], name: tuple[str, ...]) -> bool:
    """Typed and name differ, each word of them alike but numbers: "type 1 diabetes" and "type 2 diabetes"."""
    return (
        len(typed) == len(name)
        and typed != name
        and all(a == b or (_is_number_word(a) and _is_number_word(b)) for a, b in zip(typed, name, strict=True))
    )


class NearMisses:
    """One tokenizer's catalog names, looked up by how near typed words are to them."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        ids = {text: index for index, text in enumerate(tokenizer.vocab)}
        # Near misses are looked for among names of letters only, by number of words and length: n edits reach only
        # names within n characters of the typed length.
        self._names: dict[tuple[int, int], dict[str, int]] = {}
        self.shown: dict[int, str] = {}  # each entity's own name, by token id
        for token_text, aliases in tokenizer.aliases.items():
            self.shown[ids[token_text]] = aliases[0]
            for alias in aliases:
                key = phrase_key(alias)
                name = " ".join(key)
                if all(piece.isalpha() for piece in key):
                    self._names.setdefault((len(key), len(name)), {})[name] = ids[token_text]
        self._numbered = _numbered_names(tokenizer, ids)
        self._heads = _head_words(tokenizer)
        # pasted claims repeat their words (a page reads a claim for its verdict, then again for the what-if)
        self._near = lru_cache(maxsize=8192)(self._near_names)

    def misread_names(self, text: str, tokens: tuple[Token, ...]) -> list[Unread]:
        """Names the tokenizer read as a catalog name that the words before them contradict: "type 1 diabetes" is
        read as diabetes, whose name "type 2 diabetes" differs from it in a number only."""
        found = []
        for index, token in enumerate(tokens):
            for back in range(1, 3):
                if index < back or token.id not in self._numbered:
                    break
                begin = tokens[index - back].start
                if HARD_GAP.search(text[begin : token.end]):
                    break
                typed = phrase_key(text[begin : token.end])
                if any(_differs_in_numbers_only(typed, name) for name in self._numbered[token.id]):
                    found.append(Unread(text[begin : token.end], token.category, begin, token.end))
                    break
        return found

    def replace_near(
        self, text: str, tokens: list[Token], unread_words: list[list[int]], marked: list[Unread]
    ) -> tuple[list[Token], dict[int, str], list[Unread]]:
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
            if (
                previous
                and previous[-1] == word[0] - 1
                and not HARD_GAP.search(text[tokens[previous[-1]].end : first.start])
            ):
                runs[-1].append(word)
            else:
                runs.append([word])
        runs = [run for run in runs if run]
        for run in runs:
            last = run[-1][-1]
            if is_content(text[tokens[run[-1][0]].start : tokens[last].end]) and self.head_after(text, tokens, last):
                run.append([last + 1])
        return runs

    def head_after(self, text: str, tokens: list[Token], index: int) -> bool:
        """The token after `index` is a word that ends catalog names ("surgery", "doctor", "test"), after a space."""
        return (
            index + 1 < len(tokens)
            and tokens[index + 1].text in self._heads
            and text[tokens[index].end : tokens[index + 1].start].isspace()
        )

    def _match(
        self, text: str, tokens: list[Token], run: list[list[int]], start: int
    ) -> tuple[int, tuple[Token, str] | Unread | None]:
        """The longest window of the run from `start` that is near catalog names, and its words: near one, that
        name's token and the name; near two or more, an Unread naming them; near none, (1, None)."""
        if tokens[run[start][0]].text != Tokenizer.UNK:  # a word read, taken only to end a name
            return 1, None
        for length in range(min(MAX_WINDOW, len(run) - start), 0, -1):
            window = run[start : start + length]
            begin, end = tokens[window[0][0]].start, tokens[window[-1][-1]].end
            query = " ".join(text[tokens[w[0]].start : tokens[w[-1]].end].lower() for w in window)
            if length == 1 and query in HARMLESS_WORDS:
                continue
            near = self._near(query, length)
            if len(near) == 1:
                ((token_id, name),) = near
                vocab = self.tokenizer.vocab[token_id]
                return length, (
                    fast_token(token_id, vocab, text[begin:end], begin, end, category_of(vocab), None),
                    name,
                )
            if near:
                return length, Unread(text[begin:end], None, begin, end, tuple(self.named(*n) for n in near))
        return 1, None

    def _near_names(self, query: str, words: int) -> tuple[tuple[int, str], ...]:
        """(token id, name) of every catalog entity with a name of `words` words within the allowed edits of query,
        nearest first, each with its nearest name."""
        allowed = _allowed_edits(sum(c.isalpha() for c in query))
        names = {
            name: token_id
            for length in range(len(query) - allowed, len(query) + allowed + 1)
            for name, token_id in self._names.get((words, length), {}).items()
        }
        if not allowed or not names:
            return ()
        matches = process.extract(query, list(names), scorer=OSA.distance, score_cutoff=allowed, limit=None)
        nearest: dict[int, str] = {}
        for name, _, _ in sorted(matches, key=lambda m: m[1]):
            if _each_word_near(query, name):
                nearest.setdefault(names[name], name)
        return tuple(nearest.items())

    def named(self, token_id: int, name: str) -> str:
        """A catalog name as typed, with the entity's own name when that differs: 'lasix (Furosemide)'."""
        shown = self.shown[token_id]
        return name if name == shown.lower() else f"{name} ({shown})"
