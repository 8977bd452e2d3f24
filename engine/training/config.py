"""What a run is asked to do, and the range every setting a user can change must lie in."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from engine.model.transformer import CROSS_KEYS, ModelConfig

OPTIMIZERS = ("adam", "sgd", "sgd-momentum")
SCHEDULES = ("cosine", "constant")
# How training batches are drawn: as generated (half valid, an eighth per reason), or valid and each reason a fifth
REASON_BALANCES = ("generated", "even")
MAX_STEPS = 1_000_000
MAX_VALUE_DIM = 256  # a cross-attention head's value width: the model's own width is 64


class ConfigError(ValueError):
    """A setting outside its allowed range; the message names the field and the range."""


# (low, high, low inclusive) for every number a user can set
LIMITS: dict[str, tuple[float, float, bool]] = {
    "lr": (0.0, 10.0, False),
    "batch_size": (1, 1024, True),
    "steps": (1, MAX_STEPS, True),
    "seed": (0, 2**31 - 1, True),
    "data_seed": (0, 2**31 - 1, True),
    "warmup_steps": (0, MAX_STEPS, True),
    "pool_size": (100, 500_000, True),
    "heldout_size": (50, 50_000, True),
    "eval_every": (1, MAX_STEPS, True),
    "optim_every": (1, MAX_STEPS, True),
    "threads": (0, 64, True),
    "momentum": (0.0, 0.999, True),
    "beta2": (0.0, 0.9999, True),
    "weight_decay": (0.0, 1.0, True),
    "decay_fraction": (0.0, 1.0, False),
}


@dataclass
class TrainConfig:
    preset: str = "default"
    optimizer: str = "adam"
    lr: float = 3e-3
    batch_size: int = 128
    steps: int = 2000
    seed: int = 0  # starting weights and the order claims are drawn in
    # which claims are generated (training pool, held-out set): the same for every run unless changed, so runs
    # are compared on the same held-out claims and a pool built once (cached) serves every later run
    data_seed: int = 0
    warmup_steps: int = 100
    schedule: str = "cosine"
    decay_fraction: float = 1.0  # the cosine reaches its floor (LR_FLOOR) after this share of the steps, then stays
    momentum: float = 0.9
    beta2: float = 0.999  # Adam's second-moment decay: its memory of mistake sizes spans ~1 / (1 - beta2) steps
    weight_decay: float = 0.0  # Adam's decoupled weight decay (AdamW) on weight matrices and embeddings
    pool_size: int = 40_000
    heldout_size: int = 1000
    eval_every: int = 100
    optim_every: int = 10
    max_seconds: float | None = None
    target_accuracy: float | None = None
    # A fixed count repeats a seed's run bit for bit (float sums split across threads round differently); 0 measures
    # 1 vs 2 as the run goes (ThreadTuner): faster on an idle machine, but a run does not repeat.
    threads: int = 1
    device: str = "auto"
    tensorboard: bool = False  # also write TensorBoard event files into the run's folder
    claims_csv: str | None = None  # train on a user's claims file instead of generated claims
    reason_balance: str = "generated"
    model: ModelConfig = field(default_factory=ModelConfig)

    def validate(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)} (got '{self.optimizer}')")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)} (got '{self.schedule}')")
        if self.reason_balance not in REASON_BALANCES:
            balances = ", ".join(REASON_BALANCES)
            raise ConfigError(f"reason balance must be one of {balances} (got '{self.reason_balance}')")
        for name, (low, high, inclusive) in LIMITS.items():
            value = getattr(self, name)
            ok = isinstance(value, int | float) and math.isfinite(value)
            ok = ok and (low <= value if inclusive else low < value) and value <= high
            if not ok:
                opening = "[" if inclusive else "("
                raise ConfigError(f"{name.replace('_', ' ')} must be in {opening}{low:g}, {high:g}] (got {value!r})")
        if self.max_seconds is not None and not (0 < self.max_seconds <= 7 * 24 * 3600):
            raise ConfigError(f"max seconds must be in (0, 604800] (got {self.max_seconds!r})")
        if self.target_accuracy is not None and not (0 < self.target_accuracy <= 1):
            raise ConfigError(f"target accuracy must be in (0, 1] (got {self.target_accuracy!r})")
        width = self.model.cross_value_dim
        whole = isinstance(width, int) and not isinstance(width, bool)
        if width is not None and not (whole and 1 <= width <= MAX_VALUE_DIM):
            raise ConfigError(f"cross value dim must be a whole number in [1, {MAX_VALUE_DIM}] (got {width!r})")
        if self.model.cross_keys not in CROSS_KEYS:
            raise ConfigError(f"cross keys must be one of {', '.join(CROSS_KEYS)} (got '{self.model.cross_keys}')")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        config = cls(**{k: v for k, v in values.items() if k in known and k != "model"})
        config.model = ModelConfig.from_dict(values.get("model", {}))
        return config
