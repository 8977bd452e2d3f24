"""Judge one pasted claim: verdict, reason, confidence per class, what each head looked at, and what the answer
becomes when each head in turn sees what it saw on claims of the kind the model says this one is (resampled, as the
Specialization page measures heads). Never raises for any text: bad input comes back as `error`."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from data.catalog import Catalog, load_catalog
from data.reading import Reader, Reading, Refusal
from data.rules import check_claim, label_read
from data.tokenizer import Tokenizer
from data.vocabulary import Encoded, Token, parse_claim
from engine.analysis import analysed_names
from engine.attribution import reference_claims, resampled_log_probs
from engine.dataset import N_CATEGORIES, ClaimTensors, encode_texts
from engine.model import CLASSES, ClaimsTransformer, ModelConfig, greedy_outcomes
from engine.run_files import CONFIG, TOKENIZER, RunError, load_checkpoint, read_config, read_object

MAX_CLAIM_CHARS = 5000


@dataclass(frozen=True)
class Prediction:
    text: str
    verdict: str | None = None
    reason: str | None = None
    confidence: float | None = None
    probabilities: dict[str, float] = field(default_factory=dict)  # outcome (CLASSES) -> probability
    tokens: tuple[Token, ...] = ()
    attention: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (H, Tq, Tk)
    ablation: dict[str, tuple[str, ...]] = field(default_factory=dict)  # name -> outcome with each head resampled
    # what the rules checker says on the fields it read: (verdict, reason), or (CANNOT_CHECK, NONE)
    rules: tuple[str, str] | None = None
    rule_findings: tuple[str, ...] = ()  # each rule the claim breaks, "REASON: why"
    warnings: tuple[str, ...] = ()
    truncated: bool = False
    error: str | None = None
    step: int | None = None
    reading: Reading | None = None  # what the claim was read as, and what was not
    # Why the model's answer (verdict, reason, confidence above) is not given as the verdict: it rests on a part of
    # the claim that was not read. None when it is the verdict.
    refusal: Refusal | None = None

    @property
    def outcome(self) -> str | None:
        return None if self.verdict is None else verdict_to_outcome(self.verdict, self.reason)

    @property
    def judged(self) -> bool:
        """The model's answer is the verdict: no error, and nothing it rests on was left unread."""
        return self.error is None and self.refusal is None

    def to_json(self) -> dict:
        reading = {"reading": self.reading.to_json()} if self.reading else {}
        if self.error:
            return {"text": self.text, "error": self.error, **reading}
        said = {"verdict": self.verdict, "reason": self.reason, "confidence": round(self.confidence or 0.0, 4)}
        answer = said if self.judged else {"verdict": None, "reason": None, "confidence": None, "model_said": said}
        return {"text": self.text, **answer, "cannot_judge": self.refusal.to_json() if self.refusal else None,
                **reading, "warnings": list(self.warnings)}


def outcome_to_verdict(outcome: str) -> tuple[str, str]:
    return ("VALID", "NONE") if outcome == "VALID" else ("INVALID", outcome)


def verdict_to_outcome(verdict: str, reason: str) -> str:
    """("VALID", "NONE") -> "VALID"; ("INVALID", reason) -> reason."""
    return "VALID" if verdict == "VALID" else reason


class Predictor:
    def __init__(self, model: ClaimsTransformer, tokenizer: Tokenizer, step: int | None = None,
                 catalog: Catalog | None = None) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.step = step
        self.catalog = catalog or load_catalog()
        self.reader = Reader(tokenizer)

    @classmethod
    def from_weights(cls, config: ModelConfig, tokenizer: Tokenizer, weights: dict[str, torch.Tensor],
                     step: int | None = None) -> Predictor:
        model = ClaimsTransformer(config)
        model.load_state_dict(weights)
        return cls(model, tokenizer, step)

    @classmethod
    def from_run(cls, folder: Path) -> Predictor:
        """Load a saved run's latest checkpoint; damaged, unsafe or mismatched files raise RunError."""
        config, tokenizer, payload = read_config(folder), _tokenizer(folder), load_checkpoint(folder)
        model = _model(_model_config(config, payload), payload["model"], tokenizer)
        return cls(model, tokenizer, payload["step"])

    def _refuse(self, text: str) -> str | None:
        if not text.strip():
            return "The claim is empty: paste or type the text of a claim."
        if len(text) > MAX_CLAIM_CHARS:
            return f"The claim is {len(text):,} characters long; the limit is {MAX_CLAIM_CHARS:,}. Paste one claim."
        return None

    def _encode(self, text: str) -> tuple[tuple[Encoded, Reading] | None, Prediction | None]:
        """The claim read (near misses of catalog names included) with the report of what was read, or else a
        Prediction that says why it cannot be judged."""
        refusal = self._refuse(text)
        if refusal:
            return None, Prediction(text=text, error=refusal, step=self.step)
        encoded, reading = self.reader.read(text, max_len=self.model.config.max_len)
        known = [t for t in encoded.tokens if t.text != Tokenizer.UNK]
        if not known or all(t.category == "other" for t in encoded.tokens):
            return None, Prediction(text=text, tokens=encoded.tokens, warnings=encoded.warnings, step=self.step,
                                    reading=reading,
                                    error="Nothing in this text is a diagnosis, drug, dose, procedure or amount the "
                                          "model knows, so it cannot judge it. Try e.g. 'Diabetes, metformin 500 mg, "
                                          "$40'.")
        return (encoded, reading), None

    def _verdict(self, text: str, read: tuple[Encoded, Reading], probabilities: list[float], outcome_index: int,
                 **details: object) -> Prediction:
        """The prediction of one claim, given its outcome probabilities and greedy outcome (CLASSES order)."""
        encoded, reading = read
        if not all(map(math.isfinite, probabilities)):
            return Prediction(text=text, tokens=encoded.tokens, step=self.step,
                              error="The model's answer is not a number (its weights hold NaN or infinity), so it "
                                    "cannot judge this claim.")
        probabilities = dict(zip(CLASSES, probabilities, strict=True))
        outcome = CLASSES[outcome_index]
        verdict, reason = outcome_to_verdict(outcome)
        return Prediction(text=text, verdict=verdict, reason=reason, confidence=probabilities[outcome],
                          probabilities=probabilities, tokens=encoded.tokens, warnings=encoded.warnings,
                          truncated=encoded.truncated, step=self.step, reading=reading,
                          refusal=reading.refusal(outcome), **details)

    @torch.no_grad()
    def predict(self, text: str, with_ablation: bool = True) -> Prediction:
        text = text if isinstance(text, str) else str(text)
        read, refusal = self._encode(text)
        if read is None:
            return refusal
        tokens, categories = encode_texts([read[0]], self.tokenizer)
        capture: dict[str, torch.Tensor] = {}
        log_probs = self.model.class_log_probs(tokens, categories, capture=capture)  # (1, 5)
        answered = greedy_outcomes(log_probs)
        ablation = self._ablation(ClaimTensors(tokens, categories, answered)) if with_ablation else {}
        rules, findings = self.rules(*read)
        return self._verdict(text, read, log_probs[0].exp().tolist(), int(answered[0]),
                             attention={name: w[0].numpy() for name, w in capture.items()}, ablation=ablation,
                             rules=rules, rule_findings=findings)

    def rules(self, encoded: Encoded, reading: Reading) -> tuple[tuple[str, str] | None, tuple[str, ...]]:
        """The rules checker's answer on the fields read: (verdict, reason), (CANNOT_CHECK, NONE) when that answer
        rests on a part written but not read, None when rules of several reasons are broken; and each rule the
        claim breaks, in words."""
        try:
            violations = check_claim(parse_claim(encoded), self.catalog)
        except ValueError:
            return None, ()
        findings = tuple(f"{v.reason}: {v.message}" for v in violations)
        try:
            return label_read(violations, reading.parts), findings
        except ValueError:
            return None, findings

    @torch.no_grad()
    def predict_many(self, texts: Sequence[str], progress: Callable[[int], None] | None = None,
                     batch_size: int = 256) -> list[Prediction]:
        """Verdicts for many claims, scored in batches (no attention, ablation or rules check); `progress` is
        told how many are done after each batch."""
        predictions: list[Prediction] = []
        for start in range(0, len(texts), batch_size):
            batch = [str(text) for text in texts[start:start + batch_size]]
            encoded = [self._encode(text) for text in batch]
            judged = [read[0] for read, refusal in encoded if refusal is None]
            log_probs = self.model.class_log_probs(*encode_texts(judged, self.tokenizer)) if judged else None
            # one conversion per batch, not per claim: (B, 5) probabilities and (B,) outcomes
            rows = iter(zip(log_probs.exp().tolist(), greedy_outcomes(log_probs).tolist(), strict=True)
                        if log_probs is not None else [])
            predictions += [refusal or self._verdict(text, e, *next(rows))
                            for text, (e, refusal) in zip(batch, encoded, strict=True)]
            if progress is not None:
                progress(len(predictions))
        return predictions

    def _ablation(self, claim: ClaimTensors) -> dict[str, tuple[str, ...]]:
        """The answer with each head in turn resampled, exactly as engine.attribution resamples it for the
        Specialization page, from claims of the class the model answers for this one (`claim.classes`)."""
        reference = reference_claims(self.tokenizer, self.model.config.max_len)
        heads = [(head,) for head in range(self.model.config.n_heads)]
        return {name: tuple(CLASSES[int(greedy_outcomes(log_probs)[0])] for log_probs in resampled_log_probs(
                    self.model, self.model.attention_named(name), claim, claim.classes, heads, reference))
                for name in analysed_names(self.model)}


def _tokenizer(folder: Path) -> Tokenizer:
    saved = read_object(folder, TOKENIZER)
    try:
        return Tokenizer.from_json(saved)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        raise RunError(f"{TOKENIZER} is damaged (it is not a Headwatch vocabulary)") from None


def _model_config(config: dict, payload: dict) -> ModelConfig:
    """The run's model settings, which must be those the checkpoint was trained with."""
    try:
        model_config = ModelConfig.from_dict(config.get("model", {}))
    except TypeError:
        raise RunError(f"{CONFIG} is damaged (its model settings are not what a run writes)") from None
    trained_with = payload.get("model_config")
    trained_with = trained_with if isinstance(trained_with, dict) else {}
    differences = [f"{k} is {trained_with[k]} in the checkpoint but {v} in {CONFIG}"
                   for k, v in model_config.to_dict().items() if k in trained_with and trained_with[k] != v]
    if differences:
        raise RunError("checkpoint does not match this run's model configuration: " + "; ".join(differences))
    return model_config


def _model(config: ModelConfig, weights: dict, tokenizer: Tokenizer) -> ClaimsTransformer:
    """The model with `weights` loaded, after checking on a weightless copy that they fit: a damaged config must
    not allocate a huge model, and a vocabulary must fit the embedding it indexes."""
    try:
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in ClaimsTransformer(config).state_dict().items()}
    except Exception:  # nn modules raise many types for impossible sizes
        raise RunError(f"{CONFIG} is damaged (its model settings cannot build a model)") from None
    found = {k: tuple(v.shape) for k, v in weights.items() if isinstance(v, torch.Tensor)}
    if expected != found:
        differing = sorted(set(expected) ^ set(found)) or [k for k in expected if expected[k] != found.get(k)]
        detail = ", ".join(f"{k} {found.get(k)} vs {expected.get(k)}" for k in differing[:3])
        raise RunError(f"checkpoint does not match this run's model configuration: {detail}")
    if config.n_categories != N_CATEGORIES:
        raise RunError(f"the model reads {config.n_categories} kinds of field, not the {N_CATEGORIES} Headwatch has")
    if len(tokenizer.vocab) != config.vocab_size:
        raise RunError(f"{TOKENIZER} has {len(tokenizer.vocab)} words but the model was trained on "
                       f"{config.vocab_size}: they do not belong together")
    if not all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point()):
        raise RunError("the checkpoint's weights are not all numbers (NaN or infinity): this model cannot judge "
                       "claims")
    model = ClaimsTransformer(config)
    try:
        model.load_state_dict(weights)
    except (RuntimeError, TypeError):  # e.g. a value that cannot be copied into a weight
        raise RunError("the checkpoint's weights cannot be loaded into the model") from None
    return model
