"""The run's story in plain words, told with its own numbers: in short, then before, during and after training, then
what the shipped studies found over many runs of each recipe. Its figures and HTML report are in dashboard.report.

Pure: snapshots and measurements in, chapters of sentences out. Every sentence about a head rests on its causal
measurement (engine.interpret.attribution), never on attention alone; those sentences are in dashboard.head_words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from dashboard import outcome_words, summaries
from dashboard.figures import optimizer_name
from dashboard.head_figures import taken_away
from dashboard.head_words import head_sentence, joined, lead_paragraph, promise_sentence, study_paragraph
from dashboard.measurement import Measurement, latest_measurement, unfinished
from dashboard.untrusted import markdown_text
from data.rules import CLASSES, REASONS
from engine.interpret.metrics import NOTHING, attention_entropy
from engine.interpret.ownership import SPECIALIST
from engine.model.transformer import ModelConfig
from engine.reports.reference_studies import References, study_of_run
from engine.telemetry import Snapshot

LEARNED = 0.8  # a reason counts as learned once this share of its held-out claims is audited correctly...
KEPT = 0.7  # ... and never falls below this share afterwards (early curves jump around: 0%, 100%, 0%)...
OVERALL = 0.5  # ... while at least this share of all claims is right: answering one reason to everything scores
# 100% on that reason's claims without having learned anything
EVEN_START = 0.9  # attention at least this share of an even spread's entropy counts as looking at everything
BASELINE_MARGIN = 0.02  # an accuracy within 2 points of a baseline is no better than it (sampling noise)


@dataclass(frozen=True)
class Chapter:
    key: str  # "before", "during" or "after"
    title: str
    paragraphs: tuple[str, ...]
    numbers: dict[str, float] = field(default_factory=dict)


def percent_text(value: float | None) -> str:
    """'42%', or 'n/a' for a share that was not measured."""
    return "n/a" if value is None or math.isnan(value) else f"{value:.0%}"


def _learned_step(snap: Snapshot, cls: str) -> int | None:
    values = [np.nan_to_num(e.heldout_per_class.get(cls, math.nan)) for e in snap.evals]
    overall = [e.heldout_accuracy for e in snap.evals]
    for index, value in enumerate(values):
        if value >= LEARNED and min(values[index:]) >= KEPT and min(overall[index:]) >= OVERALL:
            return snap.evals[index].step
    return None


def _entropy(snap: Snapshot, index: int) -> tuple[float, float] | None:
    """(mean entropy of the REASON position's attention over the probe claims' words, the same for an even spread)."""
    cross = next((n for n in snap.attention_names if n.endswith(".cross")), None)
    if cross is None or not snap.attention or not snap.probe:
        return None
    weights = snap.attention[index].weights[cross]  # (N, H, 2, T)
    nothing = ModelConfig.from_dict(snap.config.get("model", {})).null_key  # one more place to look
    spent, even = [], []
    for claim, probe in enumerate(snap.probe[: weights.shape[0]]):
        rows = torch.as_tensor(np.asarray(weights[claim, :, 1, : len(probe.tokens)], dtype=float))  # (H, T)
        spent.append(float(attention_entropy(rows[None]).mean()))
        even.append(math.log(len(probe.tokens) + nothing))
    return float(np.mean(spent)), float(np.mean(even))


def _habit(snap: Snapshot) -> str:
    """'answering VALID to every claim (50%, as many test claims are VALID)'."""
    named = snap.commonest or "its commonest answer"
    return f"answering {named} to every claim ({snap.chance:.0%}: that many test claims are {named})"


def against_baselines(accuracy: float, snap: Snapshot) -> str:
    """How an accuracy compares with the two baselines a reader can check: picking one of the five answers at
    random, and answering the commonest one to every claim (when the run recorded which that is)."""
    guess = f"picking one of the five answers at random ({1 / len(CLASSES):.0%})"
    above_guess = accuracy > 1 / len(CLASSES) + BASELINE_MARGIN
    if snap.chance is None:
        return f"{'more than' if above_guess else 'no better than'} {guess}"
    if accuracy > snap.chance + BASELINE_MARGIN:
        return f"more than {guess} or {_habit(snap)}"
    if accuracy >= snap.chance - BASELINE_MARGIN:
        return f"no better than {_habit(snap)}"
    return f"{'more' if above_guess else 'no better'} than {guess}, but less than {_habit(snap)}"


def _before(snap: Snapshot) -> Chapter:
    first = snap.evals[0]
    numbers = {"step0_accuracy": first.heldout_accuracy}
    paragraphs = []
    habit = max(CLASSES, key=lambda c: np.nan_to_num(first.heldout_per_class.get(c, 0.0)))
    text = (
        f"Before any training (step {first.step:,}), the model's settings are random. It judged "
        f"**{percent_text(first.heldout_accuracy)}** of the test claims correctly (claims it never practises on, kept "
        f"aside to test it): {against_baselines(first.heldout_accuracy, snap)}."
    )
    if np.nan_to_num(first.heldout_per_class.get(habit, 0.0)) >= 0.8:
        text += (
            f" It said {outcome_words.outcome_text(habit)} to almost everything, which is right only for the "
            f"claims that really are {habit}."
        )
    paragraphs.append(text)
    entropy = _entropy(snap, 0)
    if entropy is not None and entropy[1] > 0:  # one-word probe claims have no spread to compare with
        spent, even = entropy
        numbers.update(step0_entropy=spent, even_entropy=even)
        measured = f"their attention was {spent / even:.0%} as spread out as it can possibly be"
        if spent / even >= EVEN_START:
            start = (
                f"Its four attention heads looked at every word of a claim about equally: {measured}. Nobody was "
                "looking at anything in particular yet. The chart starts there: each head's shares just follow "
                "how many words of each kind a claim has."
            )
        else:
            start = (
                f"Its four attention heads each started out favouring some words over others, wherever their "
                f"random starting weights pointed, not where anything mattered: {measured}. The chart starts "
                "there."
            )
        paragraphs.append(f"{start} Press Play to watch them change as it trains.")
    return Chapter("before", "Before: random guesses", tuple(paragraphs), numbers)


def _adam_sentence(snap: Snapshot) -> str | None:
    cross = next((n for n in snap.attention_names if n.endswith(".cross")), None)
    points = [p for p in snap.optim if cross in p.heads]
    if snap.config.get("optimizer") != "adam" or not points:
        return None
    steps = [h.mean_abs_step for h in points[-1].heads[cross]]
    if min(steps) <= 0:
        return None
    big, small = int(np.argmax(steps)), int(np.argmin(steps))
    return (
        f"Adam kept its two memories (which direction each weight usually moves, and how big its mistakes "
        f"usually are) for every weight separately, so each head got steps sized to its own history: at step "
        f"{points[-1].step:,}, Head {big + 1}'s weights moved {max(steps) / min(steps):.1f}× as far per step as "
        f"Head {small + 1}'s."
    )


def _race_sentences(snap: Snapshot, race: Snapshot | None) -> list[str]:
    if race is None or not race.loss.steps:
        return []
    sentences = [summaries.race_summary(snap, race)]
    held = {e.step: e.heldout_accuracy for e in race.evals}
    common = [e for e in snap.evals if e.step in held]
    if common:
        e = common[-1]
        sentences.append(
            f"Test claims judged correctly at step {e.step:,}: {optimizer_name(snap.config)} "
            f"{percent_text(e.heldout_accuracy)}, {optimizer_name(race.config)} {percent_text(held[e.step])}."
        )
    return sentences


def _milestones(snap: Snapshot) -> str:
    """When it first did better than the habit of answering the commonest outcome, and when it passed 90%."""
    levels = [] if snap.chance is None else [(snap.chance + BASELINE_MARGIN, f"did better than {_habit(snap)}")]
    levels.append((0.9, "passed 90%"))
    said = [f"{what} at step {e.step:,}" for level, what in levels if (e := snap.first_reaching(level)) is not None]
    if said:
        return f"On the test claims, it first {joined(said)}."
    if snap.chance is not None:
        return f"So far it has done no better on the test claims than {_habit(snap)}."
    return "So far it has not passed 90% of the test claims."


def _during(snap: Snapshot, race: Snapshot | None) -> Chapter:
    first, last = snap.evals[0], snap.evals[-1]
    numbers = {"first_loss": first.heldout_loss, "last_loss": last.heldout_loss}
    drop = 1 - last.heldout_loss / first.heldout_loss if first.heldout_loss > 0 else 0.0
    paragraphs = [
        f"Then it practised: {last.step:,} rounds of guess, check, adjust, each on a batch of "
        f"{snap.config.get('batch_size', '?')} claims. How wrong it was on the test claims, measured as "
        f"the loss (0 would be always right and sure of it), fell by **{drop:.0%}**, from "
        f"**{first.heldout_loss:.2f}** to **{last.heldout_loss:.2f}**."
    ]
    paragraphs.append(_milestones(snap))
    learned = {r: _learned_step(snap, r) for r in REASONS}
    numbers.update({f"learned_{r}": float(s) for r, s in learned.items() if s is not None})
    order = sorted((s, r) for r, s in learned.items() if s is not None)
    never = [r for r, s in learned.items() if s is None]
    text = ""
    if order:
        steps = [f"{r} (step {s:,})" for s, r in order]
        text = (
            f"Reasons it learned (at least {LEARNED:.0%} of their claims right, and staying above {KEPT:.0%}, "
            f"while getting at least {OVERALL:.0%} of all claims right), in order: {joined(steps)}."
        )
    if never:
        text += f" Not learned yet: {joined(never)}."
    paragraphs.append(text.strip())
    adam = _adam_sentence(snap)
    if adam:
        paragraphs.append(adam)
    race_text = _race_sentences(snap, race)
    if race_text:
        paragraphs.append("Plain SGD raced alongside on the same claims: " + markdown_text(" ".join(race_text)))
    return Chapter("during", "During: learning from mistakes", tuple(paragraphs), numbers)


def _after(snap: Snapshot, measurement: Measurement | None) -> Chapter:
    title = "So far: what the heads have become" if snap.active else "After: which heads became specialists"
    last = snap.evals[-1]
    per_class = ", ".join(f"{c} {percent_text(last.heldout_per_class.get(c, math.nan))}" for c in CLASSES)
    paragraphs = [
        f"It now judges **{percent_text(last.heldout_accuracy)}** of the test claims correctly ({per_class}). "
        "These claims are made up by this app from a catalog of real diagnosis and procedure codes, drug "
        "doses and prices, and labelled by its own rules: a score on them is not a score on real claims, "
        "which are written in more ways and break rules this catalog does not have."
    ]
    habits = [c for c in CLASSES if np.nan_to_num(last.heldout_per_class.get(c, math.nan)) >= LEARNED]
    if last.heldout_accuracy < OVERALL and habits:
        paragraphs[0] += (
            f" The high score on {joined(habits)} is mostly a habit, not knowledge: it gives that answer "
            "to most claims, so it is right whenever that answer happens to be the true one."
        )
    numbers = {"final_accuracy": last.heldout_accuracy}
    heads = measurement.cross if measurement else ()
    if not heads:
        paragraphs.append("The heads have not been measured yet.")
        return Chapter("after", title, tuple(paragraphs), numbers)
    numbers["specialists"] = float(sum(h.kind == SPECIALIST for h in heads))
    taken = taken_away([measurement.point])
    paragraphs.append(
        "To see what each head is for, we took claims that break one rule, each beside a twin with the "
        "wrong field put right, showed one head at a time what it saw on the twin, and measured how "
        "much of the case for flagging the claim went away. We also took each head away as the model "
        f"could meet it on a real claim: each head in turn {taken}, and we measured the accuracy each "
        "kind of claim lost. That finds a head the twins cannot, one that reads what a claim and its "
        f"twin share (step {measurement.point.step:,})."
    )
    paragraphs.extend(head_sentence(i, h) for i, h in enumerate(heads))
    paragraphs.append(promise_sentence(heads, unfinished(snap, measurement.point.step)))
    favourites = {max((c for c in h.shares if c != NOTHING), key=h.shares.get) for h in heads}
    if len(favourites) == 1:
        paragraphs.append(
            f"Attention alone would have misled here: every head looks most at "
            f"'{markdown_text(favourites.pop())}' "
            "words, so by attention they all look alike. That is why each head is named only from "
            "what its removal takes away."
        )
    return Chapter("after", title, tuple(paragraphs), numbers)


def _in_short(snap: Snapshot, measurement: Measurement, references: References) -> Chapter:
    """The answer first: the lead paragraph over the picture of the heads."""
    heads = measurement.cross
    reference = study_of_run(references.studies, snap.config)
    lead = lead_paragraph(heads, snap.evals[-1].heldout_accuracy, unfinished(snap, measurement.point.step), reference)
    return Chapter("answer", "In short", (lead,), {"specialists": float(sum(h.kind == SPECIALIST for h in heads))})


NO_REFERENCES = References()
REFERENCE_INTRO = (
    "Which heads specialize is not settled by the recipe alone: runs that differ only in their random "
    "start can end differently, so one run is one draw. These studies, shipped with Headwatch, trained "
    "each recipe many times and measured every run's heads as this page measures them."
)


def _beyond(references: References) -> Chapter:
    paragraphs = [REFERENCE_INTRO, *(study_paragraph(s) for s in references.studies)]
    if len(references.studies) > 1:
        means = [
            f"{markdown_text(s.name)} {s.summary['mean_specialists']:.2f}"
            for s in references.studies
            if s.summary["mean_specialists"] is not None
        ]
        paragraphs.append(
            f"Specialist heads per run, on average, recipe by recipe: {joined(means)}. Recipes that "
            "differ in one setting show what that setting does to how often heads specialize; with this "
            "few runs each, a difference of a run or two may be chance."
        )
    paragraphs.extend(markdown_text(problem) for problem in references.problems)
    return Chapter("reference", "Beyond this run: many runs of each recipe", tuple(paragraphs))


def tell_story(
    snap: Snapshot,
    race: Snapshot | None = None,
    measurement: Measurement | None = None,
    references: References = NO_REFERENCES,
) -> list[Chapter]:
    """In short, then before, during and after, in this run's numbers, then what the shipped studies found over
    many runs; empty until the run's first evaluation."""
    if not snap.evals:
        return []
    measurement = measurement or latest_measurement(snap)
    chapters = [_before(snap), _during(snap, race), _after(snap, measurement)]
    if measurement and measurement.cross:
        chapters.insert(0, _in_short(snap, measurement, references))
    if references.studies or references.problems:
        chapters.append(_beyond(references))
    return chapters
