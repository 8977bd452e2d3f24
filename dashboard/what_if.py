"""What-if edits of a pasted claim: rewrite one field's words in place and keep the rest exactly as typed.

The tokenizer tells where each dose, amount, age and sex sits in the text (Token.start/end) and what it means
(Token.value: mg, US dollars, years), so a change rewrites only that span and the edited claim is read the same way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from data.vocabulary import Token

EDITABLE = ("dose", "amount", "age", "sex")
SEXES = ("M", "F")
UNITS = {"dose": "mg", "amount": "US dollars", "age": "years"}
LARGEST_EDITABLE = 1e12  # NaN fails this too; a number input cannot hold an infinite or 400-digit value
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


@dataclass(frozen=True)
class Field:
    index: int  # position in the claim's tokens
    category: str
    surface: str
    value: float | str  # a number for dose, amount and age; "M" or "F" for sex


def editable_fields(tokens: Sequence[Token]) -> list[Field]:
    fields = []
    for index, token in enumerate(tokens):
        if token.category == "sex":
            fields.append(Field(index, "sex", token.surface, token.text.partition(":")[2] or "M"))
        elif token.category in EDITABLE and token.value is not None and abs(token.value) <= LARGEST_EDITABLE:
            fields.append(Field(index, token.category, token.surface, float(token.value)))
    return fields


def plain_number(value: float) -> str:
    """'1000000', '0.5': never '1e+06', which the tokenizer would not read as one number."""
    return f"{value:.4f}".rstrip("0").rstrip(".")


def spelled(token: Token, value: float | str) -> str:
    """The words that say `value` in place of `token`, in the token's own style where it matters."""
    if token.category == "sex":
        short = len(token.surface) == 1  # "54 M" must stay "54 F": a bare age needs a sex letter beside it
        return str(value) if short else {"M": "male", "F": "female"}[str(value)]
    number = float(value)
    if token.category == "amount":
        text = f"{abs(number):,.2f}".removesuffix(".00")
        return f"-${text}" if number < 0 else f"${text}"
    if token.category == "dose":
        return f"{plain_number(number)} mg"
    # age: keep "years old", "yo" or "aged" around the number
    return _NUMBER.sub(str(round(number)), token.surface, count=1)


def rewrite(text: str, tokens: Sequence[Token], changes: Mapping[int, float | str]) -> str:
    """`text` with the tokens at the given indices spelled with their new values; unchanged values stay as typed."""
    for index in sorted(changes, key=lambda i: tokens[i].start, reverse=True):  # from the end: offsets stay valid
        token = tokens[index]
        old = token.text.partition(":")[2] if token.category == "sex" else token.value
        if old == changes[index]:
            continue
        text = text[: token.start] + spelled(token, changes[index]) + text[token.end :]
    return text
