"""Judge one pasted claim: verdict, reason, confidence per class, what each head looked at, and what the answer
becomes when each head in turn sees what it saw on claims of the kind the model says this one is (resampled, as the
Specialization page measures heads). Never raises for any text: bad input comes back as `error`."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch

from data.catalog import Catalog, load_catalog
from data.lines import ServiceLine, ServiceLines, cut_lines
from data.reading import Reader, Reading, Refusal
from data.rules import CANNOT_CHECK, CLASSES, INVALID, NO_REASON, check_claim, label_read
from data.tokenizer import Tokenizer
from data.vocabulary import Encoded, Token, entity_of, parse_claim
from engine.interpret.attribution import reference_claims, resampled_log_probs
from engine.interpret.prediction import Prediction, outcome_to_verdict
from engine.interpret.saved_model import load_saved_model
from engine.interpret.specialization import analysed_names
from engine.model.transformer import ModelConfig
from engine.task.claims_model import ClaimsTransformer, greedy_outcomes
from engine.task.dataset import ClaimTensors, encode_texts

MAX_CLAIM_CHARS = 5000


class Predictor:
    def __init__(
        self, model: ClaimsTransformer, tokenizer: Tokenizer, step: int | None = None, catalog: Catalog | None = None
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.step = step
        self.catalog = catalog or load_catalog()
        self.reader = Reader(tokenizer)

    @classmethod
    def from_weights(
        cls, config: ModelConfig, tokenizer: Tokenizer, weights: dict[str, torch.Tensor], step: int | None = None
    ) -> Predictor:
        model = ClaimsTransformer(config)
        model.load_state_dict(weights)
        return cls(model, tokenizer, step)

    @classmethod
    def from_run(cls, folder: Path) -> Predictor:
        """Load a saved run's latest checkpoint; damaged, unsafe or mismatched files raise RunError."""
        model, tokenizer, step = load_saved_model(folder)
        return cls(model, tokenizer, step)

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
            return None, Prediction(
                text=text,
                tokens=encoded.tokens,
                warnings=encoded.warnings,
                step=self.step,
                reading=reading,
                error="Nothing in this text is a diagnosis, drug, dose, procedure or amount the "
                "model knows, so it cannot judge it. Try e.g. 'Diabetes, metformin 500 mg, "
                "$40'.",
            )
        return (encoded, reading), None

    def _verdict(
        self,
        text: str,
        read: tuple[Encoded, Reading],
        probabilities: list[float],
        outcome_index: int,
        **details: object,
    ) -> Prediction:
        """The prediction of one claim, given its outcome probabilities and greedy outcome (CLASSES order)."""
        encoded, reading = read
        if not all(map(math.isfinite, probabilities)):
            return Prediction(
                text=text,
                tokens=encoded.tokens,
                step=self.step,
                error="The model's answer is not a number (its weights hold NaN or infinity), so it "
                "cannot judge this claim.",
            )
        probabilities = dict(zip(CLASSES, probabilities, strict=True))
        outcome = CLASSES[outcome_index]
        verdict, reason = outcome_to_verdict(outcome)
        return Prediction(
            text=text,
            verdict=verdict,
            reason=reason,
            confidence=probabilities[outcome],
            probabilities=probabilities,
            tokens=encoded.tokens,
            warnings=encoded.warnings,
            truncated=encoded.truncated,
            step=self.step,
            reading=reading,
            refusal=reading.refusal(outcome),
            **details,
        )

    @torch.no_grad()
    def predict(self, text: str, with_ablation: bool = True) -> Prediction:
        """The verdict on one claim; a claim of several billed items is judged line by line (the attention and
        ablation are those of its first line the model answers)."""
        text = text if isinstance(text, str) else str(text)
        read, refusal = self._encode(text)
        if read is None:
            return refusal
        lines = cut_lines(text, *read, self._fits)
        if lines is None:
            return self._judge(text, read, with_ablation)
        # the first line read is figured (attention, ablation); the others need only their answers, in one batch
        truncated, read_lines = read[0].truncated, [line for line in lines.lines if not line.unread_item]
        rows = self._rows([line.encoded(truncated) for line in read_lines[1:]])
        judged = [
            self._unread_line(line)
            if line.unread_item
            else self._judge(line.text, (line.encoded(truncated), line.reading), with_ablation)
            if line is read_lines[0]
            else self._line_verdict(line, truncated, next(rows))
            for line in lines.lines
        ]
        return self._claim_of_lines(text, read, lines, judged)

    def _judge(self, text: str, read: tuple[Encoded, Reading], with_ablation: bool) -> Prediction:
        tokens, categories = encode_texts([read[0]], self.tokenizer)
        capture: dict[str, torch.Tensor] = {}
        log_probs = self.model.class_log_probs(tokens, categories, capture=capture)  # (1, 5)
        answered = greedy_outcomes(log_probs)
        ablation = self._ablation(ClaimTensors(tokens, categories, answered)) if with_ablation else {}
        rules, findings = self.rules(*read)
        return self._verdict(
            text,
            read,
            log_probs[0].exp().tolist(),
            int(answered[0]),
            attention={name: w[0].numpy() for name, w in capture.items()},
            ablation=ablation,
            rules=rules,
            rule_findings=findings,
        )

    def _fits(self, item: Token, diagnosis: Token) -> bool:
        """Whether the catalog lists the billed item for the diagnosis."""
        (kind, key), (_, dx) = entity_of(item), entity_of(diagnosis)
        return (self.catalog.drugs if kind == "drug" else self.catalog.procedures)[key].fits(dx)

    def _unread_line(self, line: ServiceLine) -> Prediction:
        """A line whose billed item was not read: no answer, and why."""
        return Prediction(
            text=line.text,
            tokens=line.tokens,
            rules=(CANNOT_CHECK, NO_REASON),
            step=self.step,
            reading=line.reading,
            refusal=line.refusal(None),
        )

    def _claim_of_lines(
        self, text: str, read: tuple[Encoded, Reading], lines: ServiceLines, judged: list[Prediction]
    ) -> Prediction:
        """The claim's verdict from its lines' (`judged`, in order): the worst line's. An INVALID line makes the
        claim INVALID; else a line that cannot be judged makes the claim one that cannot be judged, saying which
        line; else VALID, as sure as its least sure line."""
        encoded, reading = read
        worst = min((p for p in judged if p.verdict is not None), key=_badness)
        refused = [(number, p) for number, p in enumerate(judged, 1) if p.refusal is not None]
        invalid = any(p.judged and p.verdict == INVALID for p in judged)
        refusal = (
            None
            if invalid or not refused
            else Refusal(
                tuple(dict.fromkeys(part for _, p in refused for part in p.refusal.parts)),
                tuple(
                    f"on line {number} ('{p.text}'), {why[:1].lower() + why[1:]}"
                    for number, p in refused
                    for why in p.refusal.why
                ),
            )
        )
        return Prediction(
            text=text,
            verdict=worst.verdict,
            reason=worst.reason,
            confidence=worst.confidence,
            probabilities=worst.probabilities,
            tokens=encoded.tokens,
            rules=_worst_rules(judged),
            rule_findings=tuple(dict.fromkeys(f for p in judged for f in p.rule_findings)),
            warnings=encoded.warnings,
            truncated=encoded.truncated,
            step=self.step,
            reading=reading,
            refusal=refusal,
            lines=tuple(judged),
            lines_note=lines.total_note(),
        )

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
    def predict_many(
        self, texts: Sequence[str], progress: Callable[[int], None] | None = None, batch_size: int = 256
    ) -> list[Prediction]:
        """Verdicts for many claims, scored in batches (no attention, ablation or rules check); `progress` is
        told how many are done after each batch."""
        predictions: list[Prediction] = []
        for start in range(0, len(texts), batch_size):
            batch = [str(text) for text in texts[start : start + batch_size]]
            encoded = [self._encode(text) for text in batch]
            cut = [
                cut_lines(text, *read, self._fits) if read else None
                for text, (read, _) in zip(batch, encoded, strict=True)
            ]
            # each claim is one input, or one per line whose item was read
            inputs = [
                [read]
                if lines is None
                else [(line.encoded(read[0].truncated), line.reading) for line in lines.lines if not line.unread_item]
                for (read, _), lines in zip(encoded, cut, strict=True)
                if read
            ]
            rows = self._rows([e for claim in inputs for e, _ in claim])
            predictions += [
                refusal
                or (self._verdict(text, e, *next(rows)) if lines is None else self._lines_of(text, e, lines, rows))
                for text, (e, refusal), lines in zip(batch, encoded, cut, strict=True)
            ]
            if progress is not None:
                progress(len(predictions))
        return predictions

    def _rows(self, encoded: list[Encoded]) -> Iterator[tuple[list[float], int]]:
        """Each claim's outcome probabilities and greedy outcome, from one forward pass over them all (one
        conversion per batch, not per claim)."""
        if not encoded:
            return iter(())
        log_probs = self.model.class_log_probs(*encode_texts(encoded, self.tokenizer))
        return iter(zip(log_probs.exp().tolist(), greedy_outcomes(log_probs).tolist(), strict=True))

    def _line_verdict(self, line: ServiceLine, truncated: bool, row: tuple[list[float], int]) -> Prediction:
        """A line judged from its row of answers, with its rules."""
        encoded = line.encoded(truncated)
        rules, findings = self.rules(encoded, line.reading)
        return self._verdict(line.text, (encoded, line.reading), *row, rules=rules, rule_findings=findings)

    def _lines_of(
        self, text: str, read: tuple[Encoded, Reading], lines: ServiceLines, rows: Iterator[tuple[list[float], int]]
    ) -> Prediction:
        """The claim judged from its lines' next rows of answers (predict_many), with each line's rules."""
        judged = [
            self._unread_line(line) if line.unread_item else self._line_verdict(line, read[0].truncated, next(rows))
            for line in lines.lines
        ]
        return self._claim_of_lines(text, read, lines, judged)

    def _ablation(self, claim: ClaimTensors) -> dict[str, tuple[str, ...]]:
        """The answer with each head in turn resampled, exactly as engine.interpret.attribution resamples it for the
        Specialization page, from claims of the class the model answers for this one (`claim.classes`)."""
        reference = reference_claims(self.tokenizer, self.model.config.max_len)
        heads = [(head,) for head in range(self.model.config.n_heads)]
        return {
            name: tuple(
                CLASSES[int(greedy_outcomes(log_probs)[0])]
                for log_probs in resampled_log_probs(
                    self.model, self.model.attention_named(name), claim, claim.classes, heads, reference
                )
            )
            for name in analysed_names(self.model)
        }


def _badness(p: Prediction) -> tuple[int, float]:
    """Orders lines worst first: INVALID (surest first), then those that cannot be judged, then VALID (least sure
    first)."""
    if p.judged and p.verdict == INVALID:
        return 0, -(p.confidence or 0.0)
    return (1, 0.0) if not p.judged else (2, p.confidence or 0.0)


def _worst_rules(lines: list[Prediction]) -> tuple[str, str] | None:
    """The rules checker on the claim from its lines: INVALID for the reason its lines break (None for several
    reasons, or a line's rules of several), else CANNOT CHECK if a line cannot be checked, else VALID."""
    answers = [p.rules for p in lines]
    reasons = {rules[1] for rules in answers if rules is not None and rules[0] == INVALID}
    if None in answers or len(reasons) > 1:
        return None
    if reasons:
        return INVALID, reasons.pop()
    return next((rules for rules in answers if rules[0] == CANNOT_CHECK), answers[0])
