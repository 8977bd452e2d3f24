"""Claims turned into tensors: a pre-tokenized training pool, a held-out set and a fixed probe batch."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from data.catalog import Catalog, load_catalog
from data.generator import Claim, generate_claims
from data.rules import label
from data.tokenizer import CATEGORIES, Encoded, Tokenizer, parse_claim
from engine.model import CLASSES
from engine.telemetry import ProbeClaim

HELDOUT_SEED_OFFSET = 1_000_003
# The seed story's own examples always sit in the probe batch, so everyone can watch them.
SEED_EXAMPLES = (
    "Diabetes patient, Metformin 500mg, $150",
    "Diabetes patient, heart surgery, $50,000",
    "Appendicitis, appendectomy, $100,000",
    "Diabetes, chemotherapy, $3,000",
)


def class_index(verdict: str, reason: str) -> int:
    return 0 if verdict == "VALID" else CLASSES.index(reason)


@dataclass(frozen=True)
class ClaimTensors:
    tokens: torch.Tensor  # (N, T) token ids, 0 = padding
    categories: torch.Tensor  # (N, T) field category ids
    classes: torch.Tensor  # (N,) index into CLASSES

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def subset(self, index: torch.Tensor | slice) -> ClaimTensors:
        return ClaimTensors(self.tokens[index], self.categories[index], self.classes[index])

    def trimmed(self) -> ClaimTensors:
        """Drop padding columns that no claim in this batch uses (the pool is padded to its longest claim)."""
        length = max(int((self.tokens != 0).sum(dim=1).max()), 1)
        return ClaimTensors(self.tokens[:, :length], self.categories[:, :length], self.classes)

    def to(self, device: torch.device | str) -> ClaimTensors:
        return ClaimTensors(self.tokens.to(device), self.categories.to(device), self.classes.to(device))


def encode_texts(encoded: list[Encoded], tokenizer: Tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    length = max((len(e.tokens) for e in encoded), default=1) or 1
    tokens = torch.zeros(len(encoded), length, dtype=torch.long)
    categories = torch.zeros(len(encoded), length, dtype=torch.long)
    for row, item in enumerate(encoded):
        ids = [t.id for t in item.tokens]
        tokens[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        categories[row, : len(ids)] = torch.tensor([tokenizer.category_id(t.category) for t in item.tokens])
    return tokens, categories


def encode_claims(claims: list[Claim], tokenizer: Tokenizer, max_len: int) -> ClaimTensors:
    encoded = [tokenizer.encode(c.text, max_len=max_len) for c in claims]
    tokens, categories = encode_texts(encoded, tokenizer)
    classes = torch.tensor([class_index(c.verdict, c.reason) for c in claims], dtype=torch.long)
    return ClaimTensors(tokens, categories, classes)


@dataclass(frozen=True)
class ClaimData:
    tokenizer: Tokenizer
    train: ClaimTensors
    heldout: ClaimTensors
    probe: ClaimTensors
    probe_claims: tuple[ProbeClaim, ...]


def _probe_claims(heldout: list[Claim], tokenizer: Tokenizer, catalog: Catalog, max_len: int) -> list[tuple[str, int]]:
    chosen = []
    for text in SEED_EXAMPLES:
        verdict, reason = label(parse_claim(tokenizer.encode(text, max_len), tokenizer), catalog)
        chosen.append((text, class_index(verdict, reason)))
    for wanted in range(len(CLASSES)):
        for claim in heldout:
            if class_index(claim.verdict, claim.reason) == wanted and all(claim.text != t for t, _ in chosen):
                chosen.append((claim.text, wanted))
                break
    return chosen


def build_probe(heldout: list[Claim], tokenizer: Tokenizer, catalog: Catalog,
                max_len: int) -> tuple[ClaimTensors, tuple[ProbeClaim, ...]]:
    probe = _probe_claims(heldout, tokenizer, catalog, max_len)
    encoded = [tokenizer.encode(text, max_len) for text, _ in probe]
    tokens, categories = encode_texts(encoded, tokenizer)
    probe_claims = tuple(
        ProbeClaim(
            text=text,
            label=CLASSES[cls],
            tokens=tuple(t.text if t.text == Tokenizer.UNK else t.surface for t in enc.tokens),
            categories=tuple(t.category for t in enc.tokens),
        )
        for (text, cls), enc in zip(probe, encoded, strict=True)
    )
    return ClaimTensors(tokens, categories, torch.tensor([cls for _, cls in probe])), probe_claims


def build_data(seed: int, pool_size: int, heldout_size: int, max_len: int) -> ClaimData:
    catalog = load_catalog()
    tokenizer = Tokenizer.from_catalog(catalog)
    train_claims = generate_claims(pool_size, seed, catalog)
    seen = {c.text for c in train_claims}
    heldout_claims = [
        c for c in generate_claims(heldout_size * 11 // 10, seed + HELDOUT_SEED_OFFSET, catalog) if c.text not in seen
    ][:heldout_size]
    probe, probe_claims = build_probe(heldout_claims, tokenizer, catalog, max_len)
    return ClaimData(
        tokenizer=tokenizer,
        train=encode_claims(train_claims, tokenizer, max_len),
        heldout=encode_claims(heldout_claims, tokenizer, max_len),
        probe=probe,
        probe_claims=probe_claims,
    )


N_CATEGORIES = len(CATEGORIES)
