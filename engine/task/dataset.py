"""Claims turned into tensors: a pre-tokenized training pool, a held-out set and a fixed probe batch."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

import data as data_package
from data.catalog import CATALOG_DIR, Catalog, load_catalog
from data.generator import ADMIN_KINDS, Claim, generate_claims
from data.rules import CLASSES, label
from data.tokenizer import Tokenizer
from data.vocabulary import CATEGORIES, Encoded, parse_claim
from engine.runs.reading import read_run_bytes
from engine.runs.writer import atomic_write_bytes
from engine.telemetry import ProbeClaim

HELDOUT_SEED_OFFSET = 1_000_003
# The seed story's own examples always sit in the probe batch, so everyone can watch them.
SEED_EXAMPLES = (
    "Diabetes patient, Metformin 500mg, $150",
    "Diabetes patient, heart surgery, $50,000",
    "Appendicitis, appendectomy, $100,000",
    "Diabetes, chemotherapy, $3,000",
)
# Every claim the app offers as an example: the seed's, one with a patient and a provider, and one for each reason
# the seed's leave out. Each bills one item, as nearly every generated claim does.
EXAMPLE_CLAIMS = (
    *SEED_EXAMPLES,
    "54 yo F with hypertension, lisinopril 10 mg, $12, family doctor",
    "Gout flare, colchicine 60 mg, $30",
    "Knee arthritis, knee replacement by a psychiatrist, $35,000",
)


def class_index(verdict: str, reason: str) -> int:
    return 0 if verdict == "VALID" else CLASSES.index(reason)


@dataclass(frozen=True)
class ClaimTensors:
    tokens: torch.Tensor  # (N, T) token ids, 0 = padding
    categories: torch.Tensor  # (N, T) field category ids
    classes: torch.Tensor  # (N,) index into CLASSES
    admin_kinds: torch.Tensor | None = None  # (N,) index into ADMIN_KINDS for ADMIN claims, else -1; None: unknown

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def subset(self, index: torch.Tensor | slice) -> ClaimTensors:
        kinds = None if self.admin_kinds is None else self.admin_kinds[index]
        return ClaimTensors(self.tokens[index], self.categories[index], self.classes[index], kinds)

    def trimmed(self) -> ClaimTensors:
        """Drop padding columns that no claim in this batch uses (the pool is padded to its longest claim)."""
        length = max(int((self.tokens != 0).sum(dim=1).max()), 1)
        return replace(self, tokens=self.tokens[:, :length], categories=self.categories[:, :length])

    def to(self, device: torch.device | str) -> ClaimTensors:
        kinds = None if self.admin_kinds is None else self.admin_kinds.to(device)
        return ClaimTensors(self.tokens.to(device), self.categories.to(device), self.classes.to(device), kinds)


def _padded(values: list[int], lengths: list[int]) -> torch.Tensor:
    """values, row after row (row i holds lengths[i]), as one (rows, longest row) tensor that is zero after
    each row's end; at least one column."""
    width = max(max(lengths, default=0), 1)
    filled = torch.arange(width) < torch.tensor(lengths, dtype=torch.long)[:, None]
    padded = torch.zeros((len(lengths), width), dtype=torch.long)
    # one flat tensor put in place: far cheaper than torch.tensor() on a list of padded lists
    padded[filled] = torch.tensor(values, dtype=torch.long)
    return padded


def encode_texts(encoded: list[Encoded], tokenizer: Tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = [len(e.tokens) for e in encoded]
    tokens = _padded([t.id for e in encoded for t in e.tokens], lengths)
    return tokens, _padded([tokenizer.category_ids[t.id] for e in encoded for t in e.tokens], lengths)


def encode_claims(claims: list[Claim], tokenizer: Tokenizer, max_len: int) -> ClaimTensors:
    # All ids in one flat list: a list per claim would keep the garbage collector busy for nothing.
    ids: list[int] = []
    lengths = []
    for claim in claims:
        row = tokenizer.encode_ids(claim.text, max_len=max_len)
        ids += row
        lengths.append(len(row))
    category_ids = tokenizer.category_ids
    tokens, categories = _padded(ids, lengths), _padded([category_ids[i] for i in ids], lengths)
    classes = torch.tensor([class_index(c.verdict, c.reason) for c in claims], dtype=torch.long)
    kinds = torch.tensor([ADMIN_KINDS.index(c.admin_kind) if c.admin_kind else -1 for c in claims], dtype=torch.long)
    return ClaimTensors(tokens, categories, classes, kinds)


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
        verdict, reason = label(parse_claim(tokenizer.encode(text, max_len)), catalog)
        chosen.append((text, class_index(verdict, reason)))
    for wanted in range(len(CLASSES)):
        for claim in heldout:
            if class_index(claim.verdict, claim.reason) == wanted and all(claim.text != t for t, _ in chosen):
                chosen.append((claim.text, wanted))
                break
    return chosen


def build_probe(
    heldout: list[Claim], tokenizer: Tokenizer, catalog: Catalog, max_len: int
) -> tuple[ClaimTensors, tuple[ProbeClaim, ...]]:
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


POOL_CACHE = ".pools"  # beside the run folders: tokenized claim pools, reused by later runs with the same settings
MAX_POOL_BYTES = 512 * 2**20  # the default recipe's pool is about 15 MB


def unsaved_pool_cache() -> Path | None:
    """Where runs that are not saved keep their pools: the user's cache folder (best effort, like every pool);
    None when the user has no home folder to find it in."""
    try:
        return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "headwatch" / "pools"
    except RuntimeError:
        return None


def build_data(seed: int, pool_size: int, heldout_size: int, max_len: int, cache: Path | None = None) -> ClaimData:
    """Generate and tokenize the claims; with a `cache` folder, a pool built once for these settings (and this
    catalog and code) is read back instead (about 4 s of pure Python saved on every later start)."""
    catalog = load_catalog()
    tokenizer = Tokenizer.from_catalog(catalog)
    if cache is not None and cache.is_symlink():
        cache = None  # a link could lead the pool's writes out of the runs folder: built, not kept
    path = cache / f"pool-{_pool_key(seed, pool_size, heldout_size, max_len)}.pt" if cache else None
    if path is not None and path.exists():
        try:
            return _read_pool(path, tokenizer)
        except Exception:  # a damaged or foreign file is rebuilt, never trusted
            path.unlink(missing_ok=True)
    train_claims = generate_claims(pool_size, seed, catalog)
    seen = {c.text for c in train_claims}
    heldout_claims = [
        c for c in generate_claims(heldout_size * 11 // 10, seed + HELDOUT_SEED_OFFSET, catalog) if c.text not in seen
    ][:heldout_size]
    probe, probe_claims = build_probe(heldout_claims, tokenizer, catalog, max_len)
    data = ClaimData(
        tokenizer=tokenizer,
        train=encode_claims(train_claims, tokenizer, max_len),
        heldout=encode_claims(heldout_claims, tokenizer, max_len),
        probe=probe,
        probe_claims=probe_claims,
    )
    if path is not None:
        _write_pool(path, data)
    return data


def _pool_key(*settings: int) -> str:
    """Changes with the settings, the catalog and the code that turns claims into tensors."""
    digest = hashlib.sha256(repr(settings).encode())
    sources = [
        *sorted(CATALOG_DIR.glob("*.csv")),
        *sorted(Path(data_package.__file__).parent.glob("*.py")),
        Path(__file__),
    ]
    for source in sources:
        digest.update(source.read_bytes())
    return digest.hexdigest()[:20]


def _tensors(values: dict[str, torch.Tensor]) -> ClaimTensors:
    return ClaimTensors(**{name: tensor.long() for name, tensor in values.items()})


def _read_pool(path: Path, tokenizer: Tokenizer) -> ClaimData:
    """RunError for a file that is not a plain one inside the cache, or is larger than any pool."""
    saved = torch.load(io.BytesIO(read_run_bytes(path.parent, path.name, MAX_POOL_BYTES)), weights_only=True)
    probe_claims = tuple(
        ProbeClaim(text, label, tuple(tokens), tuple(categories))
        for text, label, tokens, categories in saved["probe_claims"]
    )
    return ClaimData(
        tokenizer, _tensors(saved["train"]), _tensors(saved["heldout"]), _tensors(saved["probe"]), probe_claims
    )


def _write_pool(path: Path, data: ClaimData) -> None:
    """Best effort: a pool that cannot be saved is simply built again next time."""
    # ids fit 16 bits while the vocabulary does (about 850 words): a quarter of the file
    small = torch.int16 if len(data.tokenizer.vocab) < 2**15 else torch.int32
    parts = {
        name: {k: v.to(small) for k, v in asdict(getattr(data, name)).items() if v is not None}
        for name in ("train", "heldout", "probe")
    }
    probe_claims = [[p.text, p.label, list(p.tokens), list(p.categories)] for p in data.probe_claims]
    buffer = io.BytesIO()
    torch.save({**parts, "probe_claims": probe_claims}, buffer)
    with contextlib.suppress(OSError):
        atomic_write_bytes(path, buffer.getvalue())


N_CATEGORIES = len(CATEGORIES)
