"""The encoder-decoder set to the claims task: the answers it writes (verdict, then reason), the teacher-forced
targets it learns from, and how its outputs decode into one of five outcomes."""

from __future__ import annotations

import math

import torch

from data.rules import REASONS
from data.tokenizer import Tokenizer
from data.vocabulary import CATEGORIES
from engine.model.transformer import Capture, EncoderDecoder, Memory, ModelConfig

TARGET_VOCAB = ("<pad>", "<bos>", "<eos>", "VALID", "INVALID", "NONE", "MEDICAL", "DOSAGE", "COST", "ADMIN")
TARGET_ID = {token: index for index, token in enumerate(TARGET_VOCAB)}
CROSS = "decoder.0.cross"  # the cross-attention whose heads the pages name: where the answer looks at the claim
REASON_POSITION = 1  # decoder position whose input is the verdict and whose output is the reason


def sized_for_claims(config: ModelConfig, tokenizer: Tokenizer) -> ModelConfig:
    """These settings for the tokenizer's vocabulary, the claims' field categories and the answers' vocabulary."""
    return config.sized_for(len(tokenizer.vocab), len(CATEGORIES), len(TARGET_VOCAB))


class ClaimsTransformer(EncoderDecoder):
    """The encoder-decoder that reads a claim and writes its verdict and reason."""

    def class_log_probs(
        self, tokens: torch.Tensor, categories: torch.Tensor, capture: Capture | None = None
    ) -> torch.Tensor:
        """Log P of each of the five outcomes (VALID, MEDICAL, DOSAGE, COST, ADMIN): (B, 5)."""
        return self.outcome_log_probs(self.encode(tokens, categories, capture), capture)

    def outcome_log_probs(self, memory: Memory, capture: Capture | None = None) -> torch.Tensor:
        """P(VALID) is the verdict probability; P(reason) = P(INVALID) * P(reason | INVALID).

        One decoder pass with the input <bos> INVALID gives both, so the captured reason-position weights always
        answer "if this claim were invalid, why?", the same question for every claim.
        """
        targets = torch.tensor([[TARGET_ID["<bos>"], TARGET_ID["INVALID"]]], device=memory.tokens.device)
        log_probs = self.decode(targets.expand(memory.batch_size, 2), memory, capture)
        log_probs = log_probs.log_softmax(dim=-1)  # (B, 2, V)
        verdict = log_probs[:, 0, [TARGET_ID["VALID"], TARGET_ID["INVALID"]]].log_softmax(dim=-1)  # (B, 2)
        reasons = log_probs[:, 1, [TARGET_ID[r] for r in REASONS]].log_softmax(dim=-1)  # (B, 4)
        return torch.cat([verdict[:, :1], verdict[:, 1:] + reasons], dim=1)


def greedy_outcomes(log_probs: torch.Tensor) -> torch.Tensor:
    """Decode as the decoder does: the verdict first, then (if INVALID) the likeliest reason. (B, 5) -> (B,)"""
    valid = log_probs[:, 0] > math.log(0.5)
    return torch.where(valid, 0, 1 + log_probs[:, 1:].argmax(dim=-1))


def teacher_forced_outcomes(logits: torch.Tensor) -> torch.Tensor:
    """Greedy outcomes read from teacher-forced logits (B, 3, V) whose decoder input held the true verdict.

    Exact: where the true verdict is INVALID the reason position saw INVALID, as greedy decoding would after a
    right verdict; where the verdict is wrong the claim is wrong whichever reason follows.
    """
    verdict_invalid = logits[:, 0, TARGET_ID["INVALID"]] > logits[:, 0, TARGET_ID["VALID"]]
    reason = logits[:, 1, [TARGET_ID[r] for r in REASONS]].argmax(dim=-1)
    return torch.where(verdict_invalid, 1 + reason, 0)


def targets_for_classes(classes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoder inputs and labels for class indices: <bos> VERDICT REASON -> VERDICT REASON <eos>."""
    verdict = torch.where(classes == 0, TARGET_ID["VALID"], TARGET_ID["INVALID"])
    reason_lookup = torch.tensor([TARGET_ID["NONE"]] + [TARGET_ID[r] for r in REASONS], device=classes.device)
    reason = reason_lookup[classes]
    bos = torch.full_like(classes, TARGET_ID["<bos>"])
    eos = torch.full_like(classes, TARGET_ID["<eos>"])
    return torch.stack([bos, verdict, reason], dim=1), torch.stack([verdict, reason, eos], dim=1)
