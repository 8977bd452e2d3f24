"""The run's story in plain words, told with its own numbers, and a self-contained HTML report of it.

Pure: snapshots and measurements in, sentences, figures and HTML out. Every sentence about a head rests on its causal
measurement (engine.interpret.attribution), never on attention alone.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields

import numpy as np
import plotly.graph_objects as go
import torch

from dashboard import figures, head_figures, summaries
from dashboard.untrusted import markdown_html, markdown_text
from data.rules import CLASSES, REASONS
from engine.interpret.inference import Predictor
from engine.interpret.metrics import NOTHING, attention_entropy
from engine.interpret.ownership import LEANS, SHARES, SPECIALIST, named
from engine.interpret.specialization import ANALYSIS_CLAIMS
from engine.model.transformer import ModelConfig
from engine.reports.reference_studies import References, ReferenceStudy, study_of_run
from engine.task.dataset import EXAMPLE_CLAIMS
from engine.telemetry import HeadSpecialization, Snapshot, SpecializationPoint

LEARNED = 0.8  # a reason counts as learned once this share of its held-out claims is audited correctly...
KEPT = 0.7  # ... and never falls below this share afterwards (early curves jump around: 0%, 100%, 0%)...
OVERALL = 0.5  # ... while at least this share of all claims is right: answering one reason to everything scores
# 100% on that reason's claims without having learned anything
SEED_PROMISE = "four specialists: medical, dosage, cost and admin"
EVEN_START = 0.9  # attention at least this share of an even spread's entropy counts as looking at everything
BASELINE_MARGIN = 0.02  # an accuracy within 2 points of a baseline is no better than it (sampling noise)


@dataclass(frozen=True)
class Measurement:
    """The heads' specialization at one step: from `python -m engine analyze` on a saved run, or the latest one the
    trainer took while training."""

    point: SpecializationPoint
    claims: int
    source: str  # "analyze" or "training"

    @property
    def cross(self) -> tuple[HeadSpecialization, ...]:
        return next((heads for name, heads in self.point.heads.items() if name.endswith(".cross")), ())


def measurement_from_report(report: dict) -> Measurement:
    """engine.reports.analyze's JSON as a Measurement (the pages name heads from it as training's records do)."""
    known = {f.name for f in fields(HeadSpecialization)}
    heads = {name: tuple(HeadSpecialization(**{k: v for k, v in h.items() if k in known}) for h in specs)
             for name, specs in report["heads"].items()}
    return Measurement(SpecializationPoint(int(report["step"] or 0), heads), int(report["claims"]), "analyze")


def latest_measurement(snap: Snapshot) -> Measurement | None:
    return Measurement(snap.specialization[-1], ANALYSIS_CLAIMS, "training") if snap.specialization else None


@dataclass(frozen=True)
class Chapter:
    key: str  # "before", "during" or "after"
    title: str
    paragraphs: tuple[str, ...]
    numbers: dict[str, float] = field(default_factory=dict)


def _pct(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.0%}"


def _join(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def head_sentence(index: int, head: HeadSpecialization) -> str:
    """'**Head 2: COST specialist.** Only COST needs it: ...': the engine's label and the measurement behind it (read
    from the run's files: plain text)."""
    return f"**Head {index + 1}: {markdown_text(head.label)}.** {markdown_text(head.evidence)}"


def selectivity_sentence(head: HeadSpecialization) -> str:
    """'Selectivity +62%: what the reason that needs it most needs of it, minus the most any other reason needs.',
    or '' where it was not measured (encoder heads, runs saved before it)."""
    if head.selectivity is None:
        return ""
    return (f"Selectivity {head.selectivity:+.0%}: what the reason that needs it most needs of it, minus the most any "
            "other reason needs.")


def reads_sentence(head: HeadSpecialization) -> str:
    top = sorted(head.shares.items(), key=lambda kv: -kv[1])[:2]
    return ("Reads mostly " + " and ".join(f"{markdown_text(c)} ({s:.0%})" for c, s in top)
            + " (what it looks at, not what it is for).")


@dataclass(frozen=True)
class Unfinished:
    """Where a run that has not reached its last step stands: its heads can still change (or could have)."""

    step: int
    total: int
    stopped: bool  # training ended early; else it is still going

    @property
    def when(self) -> str:
        """'So far, at step 177 of 3,500' or 'At step 177 of 3,500, where training was stopped'."""
        where = f"at step {self.step:,} of {self.total:,}"
        return f"{where.capitalize()}, where training was stopped" if self.stopped else f"So far, {where}"


def unfinished(snap: Snapshot, step: int) -> Unfinished | None:
    """How far a run measured at `step` had got, when it is training or was stopped before its last step; None for a
    run that trained to the end (its verdict is final)."""
    if snap.active:
        return Unfinished(step, max(snap.total_steps, step), stopped=False)
    if snap.status != "finished" and step < snap.total_steps:
        return Unfinished(step, snap.total_steps, stopped=True)
    return None


def promise_sentence(heads: Sequence[HeadSpecialization], so_far: Unfinished | None = None) -> str:
    """Whether the seed story's promise held: a verdict for a run that trained to the end; for one still training
    (or stopped early), what holds so far, at step N of M, never a verdict."""
    specialists = [markdown_text(named(h.reason or "")) for h in heads if h.kind == SPECIALIST]
    leaning = [markdown_text(named(h.reason or "")) for h in heads if h.kind == LEANS]
    count = len(specialists)
    if so_far is not None:
        verdict = _so_far_sentence(heads, specialists, so_far)
    elif {h.owns for h in heads if h.kind == SPECIALIST} == set(REASONS):
        verdict = f"The story's promise of {SEED_PROMISE} was borne out in this run."
    elif count:
        verdict = (f"The story promised {SEED_PROMISE}. In this run {count} of the {len(heads)} heads became a "
                   f"specialist ({_join(specialists)}), so the promise was only partly borne out.")
    else:
        verdict = (f"The story promised {SEED_PROMISE}. In this run none of the {len(heads)} heads became a "
                   "specialist, so the promise was not borne out.")
    if leaning:
        verdict += f" Leaning (a clear but partial dependence): {_join(leaning)}."
    return verdict


def _so_far_sentence(heads: Sequence[HeadSpecialization], specialists: list[str], so_far: Unfinished) -> str:
    count, promised = len(specialists), f"The story promises {SEED_PROMISE}."
    has = "had" if so_far.stopped else "has"
    if {h.owns for h in heads if h.kind == SPECIALIST} == set(REASONS):
        found = f"each reason {has} a head of its own"
    elif count:
        found = (f"{count} of the {len(heads)} heads {'have' if count > 1 and not so_far.stopped else has} become a "
                 f"specialist ({_join(specialists)})")
    else:
        found = f"none of the {len(heads)} heads {has} become a specialist"
    later = "" if so_far.stopped else " Heads can still change before training ends."
    return f"{promised} {so_far.when}, {found}.{later}"


NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 8: "eight"}


def _answer(heads: Sequence[HeadSpecialization], so_far: Unfinished | None) -> str:
    """The lead's first sentence: how many heads became specialists, and of what."""
    n = NUMBER_WORDS.get(len(heads), str(len(heads)))
    specialists = [f"head {i + 1} for {markdown_text(named(h.reason or ''))}" for i, h in enumerate(heads)
                   if h.kind == SPECIALIST]
    became = "became" if so_far is None else ("had become" if so_far.stopped else "has become")
    when = "In this run" if so_far is None else so_far.when
    if {h.owns for h in heads if h.kind == SPECIALIST} == set(REASONS) and len(specialists) == len(heads):
        return f"{when}, each of the {n} heads {became} the specialist of one reason, as the story promised."
    if not specialists:
        return f"{when}, none of the {n} heads {became} a specialist."
    became = became.replace("has", "have") if len(specialists) > 1 else became
    return (f"{when}, {len(specialists)} of the {n} heads {became} "
            f"{'a specialist' if len(specialists) == 1 else 'specialists'}: {_join(specialists)}.")


def _others(heads: Sequence[HeadSpecialization]) -> list[str]:
    """'head 3 is needed by every kind of faulty claim', for each head that is not a specialist; the heads that
    share work said together, once."""
    sharing = [i for i, h in enumerate(heads) if h.kind == SHARES]
    clauses = []
    for index, head in enumerate(heads):
        if head.kind == SPECIALIST or (head.kind == SHARES and index != sharing[0]):
            continue
        clauses.append(_sharing(heads, sharing) if head.kind == SHARES else
                       f"head {index + 1} {head_figures.role_words(head, markdown_text)}")
    return clauses


def _sharing(heads: Sequence[HeadSpecialization], sharing: list[int]) -> str:
    """'heads 1 and 2 share the DOSAGE work, so either can stand in for the other'."""
    units = list(dict.fromkeys(markdown_text(named(u)) for i in sharing for u in heads[i].shared_with))
    outside = sorted({j for i in sharing for p in heads[i].shared_with.values() for j in p} - set(sharing))
    stand = "either can stand in for the other" if len(sharing) + len(outside) == 2 else (
        "one can stand in for another")
    return (f"{head_figures.heads_text(sharing)} {'shares' if len(sharing) == 1 else 'share'} the {_join(units)} "
            f"work{' with ' + head_figures.heads_text(outside) if outside else ''}, so {stand}")


def lead_paragraph(heads: Sequence[HeadSpecialization], accuracy: float | None, so_far: Unfinished | None = None,
                   reference: ReferenceStudy | None = None) -> str:
    """The answer, in one paragraph a reader new to neural networks follows: which heads became specialists, what
    the others became instead, how well the model audits claims, and (from a shipped study of the same recipe) how
    often other runs of it ended with a specialist. Every word rests on the heads' labels
    (engine.interpret.ownership)."""
    sentences = [f"**{_answer(heads, so_far)}**"]
    if any(h.kind != SPECIALIST for h in heads):
        sentences.append("The story this app starts from promised one specialist head for each reason a claim can "
                         "fail: medical sense, dosage, cost and admin.")
    if accuracy is not None and not math.isnan(accuracy):
        judges = "judges" if so_far is not None and not so_far.stopped else "judged"
        sentences.append(f"The model {judges} {_pct(accuracy)} of the test claims correctly.")
    others = _others(heads)
    if others:
        start = "Instead, " if not any(h.kind == SPECIALIST for h in heads) else "Of the others, "
        sentences.append(start + "; ".join(others) + ".")
    if reference is not None:
        sentences.append(_reference_clause(reference))
    if so_far is not None and not so_far.stopped:
        sentences.append("Heads can still change before training ends.")
    return " ".join(sentences)


def _reference_clause(study: ReferenceStudy) -> str:
    return (f"Over {len(study.results)} training runs of this same recipe, differing only in their random start, "
            f"{_with_specialists(study)}.")


def _with_specialists(study: ReferenceStudy) -> str:
    """'2 ended with at least one specialist head and 6 with none', counting the runs that learned the job."""
    learned = [r for r in study.results if r.learned]
    some = sum(r.specialists > 0 for r in learned)
    counted = "" if len(learned) == len(study.results) else f"of the {len(learned)} that learned the job, "
    if not some:
        return f"{counted}none ended with a specialist head"
    if some == len(learned) > 1:
        return f"{counted}every one ended with at least one specialist head"
    return f"{counted}{some} ended with at least one specialist head and {len(learned) - some} with none"


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
    text = (f"Before any training (step {first.step:,}), the model's settings are random. It judged "
            f"**{_pct(first.heldout_accuracy)}** of the test claims correctly (claims it never practises on, kept "
            f"aside to test it): {against_baselines(first.heldout_accuracy, snap)}.")
    if np.nan_to_num(first.heldout_per_class.get(habit, 0.0)) >= 0.8:
        text += (f" It said {head_figures.outcome_text(habit)} to almost everything, which is right only for the "
                 f"claims that really are {habit}.")
    paragraphs.append(text)
    entropy = _entropy(snap, 0)
    if entropy is not None and entropy[1] > 0:  # one-word probe claims have no spread to compare with
        spent, even = entropy
        numbers.update(step0_entropy=spent, even_entropy=even)
        measured = f"their attention was {spent / even:.0%} as spread out as it can possibly be"
        if spent / even >= EVEN_START:
            start = (f"Its four attention heads looked at every word of a claim about equally: {measured}. Nobody was "
                     "looking at anything in particular yet. The chart starts there: each head's shares just follow "
                     "how many words of each kind a claim has.")
        else:
            start = (f"Its four attention heads each started out favouring some words over others, wherever their "
                     f"random starting weights pointed, not where anything mattered: {measured}. The chart starts "
                     "there.")
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
    return (f"Adam kept its two memories (which direction each weight usually moves, and how big its mistakes "
            f"usually are) for every weight separately, so each head got steps sized to its own history: at step "
            f"{points[-1].step:,}, Head {big + 1}'s weights moved {max(steps) / min(steps):.1f}× as far per step as "
            f"Head {small + 1}'s.")


def _race_sentences(snap: Snapshot, race: Snapshot | None) -> list[str]:
    if race is None or not race.loss.steps:
        return []
    sentences = [summaries.race_summary(snap, race)]
    held = {e.step: e.heldout_accuracy for e in race.evals}
    common = [e for e in snap.evals if e.step in held]
    if common:
        e = common[-1]
        sentences.append(f"Test claims judged correctly at step {e.step:,}: {figures.optimizer_name(snap.config)} "
                         f"{_pct(e.heldout_accuracy)}, {figures.optimizer_name(race.config)} {_pct(held[e.step])}.")
    return sentences


def _milestones(snap: Snapshot) -> str:
    """When it first did better than the habit of answering the commonest outcome, and when it passed 90%."""
    levels = [] if snap.chance is None else [(snap.chance + BASELINE_MARGIN, f"did better than {_habit(snap)}")]
    levels.append((0.9, "passed 90%"))
    said = [f"{what} at step {e.step:,}" for level, what in levels if (e := snap.first_reaching(level)) is not None]
    if said:
        return f"On the test claims, it first {_join(said)}."
    if snap.chance is not None:
        return f"So far it has done no better on the test claims than {_habit(snap)}."
    return "So far it has not passed 90% of the test claims."


def _during(snap: Snapshot, race: Snapshot | None) -> Chapter:
    first, last = snap.evals[0], snap.evals[-1]
    numbers = {"first_loss": first.heldout_loss, "last_loss": last.heldout_loss}
    drop = 1 - last.heldout_loss / first.heldout_loss if first.heldout_loss > 0 else 0.0
    paragraphs = [f"Then it practised: {last.step:,} rounds of guess, check, adjust, each on a batch of "
                  f"{snap.config.get('batch_size', '?')} claims. How wrong it was on the test claims, measured as "
                  f"the loss (0 would be always right and sure of it), fell by **{drop:.0%}**, from "
                  f"**{first.heldout_loss:.2f}** to **{last.heldout_loss:.2f}**."]
    paragraphs.append(_milestones(snap))
    learned = {r: _learned_step(snap, r) for r in REASONS}
    numbers.update({f"learned_{r}": float(s) for r, s in learned.items() if s is not None})
    order = sorted((s, r) for r, s in learned.items() if s is not None)
    never = [r for r, s in learned.items() if s is None]
    text = ""
    if order:
        steps = [f"{r} (step {s:,})" for s, r in order]
        text = (f"Reasons it learned (at least {LEARNED:.0%} of their claims right, and staying above {KEPT:.0%}, "
                f"while getting at least {OVERALL:.0%} of all claims right), in order: {_join(steps)}.")
    if never:
        text += f" Not learned yet: {_join(never)}."
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
    per_class = ", ".join(f"{c} {_pct(last.heldout_per_class.get(c, math.nan))}" for c in CLASSES)
    paragraphs = [f"It now judges **{_pct(last.heldout_accuracy)}** of the test claims correctly ({per_class}). "
                  "These claims are made up by this app from a catalog of real diagnosis and procedure codes, drug "
                  "doses and prices, and labelled by its own rules: a score on them is not a score on real claims, "
                  "which are written in more ways and break rules this catalog does not have."]
    habits = [c for c in CLASSES if np.nan_to_num(last.heldout_per_class.get(c, math.nan)) >= LEARNED]
    if last.heldout_accuracy < OVERALL and habits:
        paragraphs[0] += (f" The high score on {_join(habits)} is mostly a habit, not knowledge: it gives that answer "
                          "to most claims, so it is right whenever that answer happens to be the true one.")
    numbers = {"final_accuracy": last.heldout_accuracy}
    heads = measurement.cross if measurement else ()
    if not heads:
        paragraphs.append("The heads have not been measured yet.")
        return Chapter("after", title, tuple(paragraphs), numbers)
    numbers["specialists"] = float(sum(h.kind == SPECIALIST for h in heads))
    taken = head_figures.taken_away([measurement.point])
    paragraphs.append("To see what each head is for, we took claims that break one rule, each beside a twin with the "
                      "wrong field put right, showed one head at a time what it saw on the twin, and measured how "
                      "much of the case for flagging the claim went away. We also took each head away as the model "
                      f"could meet it on a real claim: each head in turn {taken}, and we measured the accuracy each "
                      "kind of claim lost. That finds a head the twins cannot, one that reads what a claim and its "
                      f"twin share (step {measurement.point.step:,}).")
    paragraphs.extend(head_sentence(i, h) for i, h in enumerate(heads))
    paragraphs.append(promise_sentence(heads, unfinished(snap, measurement.point.step)))
    favourites = {max((c for c in h.shares if c != NOTHING), key=h.shares.get) for h in heads}
    if len(favourites) == 1:
        paragraphs.append(f"Attention alone would have misled here: every head looks most at "
                          f"'{markdown_text(favourites.pop())}' "
                          "words, so by attention they all look alike. That is why each head is named only from "
                          "what its removal takes away.")
    return Chapter("after", title, tuple(paragraphs), numbers)


def _in_short(snap: Snapshot, measurement: Measurement, references: References) -> Chapter:
    """The answer first: the lead paragraph over the picture of the heads."""
    heads = measurement.cross
    reference = study_of_run(references.studies, snap.config)
    lead = lead_paragraph(heads, snap.evals[-1].heldout_accuracy, unfinished(snap, measurement.point.step), reference)
    return Chapter("answer", "In short", (lead,), {"specialists": float(sum(h.kind == SPECIALIST for h in heads))})


NO_REFERENCES = References()
REFERENCE_INTRO = ("Which heads specialize is not settled by the recipe alone: runs that differ only in their random "
                   "start can end differently, so one run is one draw. These studies, shipped with Headwatch, trained "
                   "each recipe many times and measured every run's heads as this page measures them.")


def study_paragraph(study: ReferenceStudy) -> str:
    """'Over 8 training runs of the default recipe, differing only in their random start, ...': what a shipped study
    found, in plain words, with its date and the command that reproduces it."""
    learned = [r for r in study.results if r.learned]
    text = (f"Over {len(study.results)} training runs of the **{markdown_text(study.name)}** recipe, differing only "
            "in their random start, ")
    if not learned:
        text += "none learned to audit claims, so no head could specialize."
    else:
        text += f"{_with_specialists(study)}."
        owned = {r: sum(r in result.owns for result in learned) for r in REASONS}
        got = [f"{r} in {owned[r]}" for r in sorted(REASONS, key=lambda r: -owned[r]) if owned[r]]
        missing = [r for r in REASONS if not owned[r]]
        if got:
            text += (f" A reason got a head of its own in these runs: {_join(got)}"
                     f"{'; ' + _join(missing) + ' in none' if missing else ''}.")
    return f"{text} (Trained {markdown_text(study.made)}; to repeat it: {markdown_text(study.command)}.)"


def _beyond(references: References) -> Chapter:
    paragraphs = [REFERENCE_INTRO, *(study_paragraph(s) for s in references.studies)]
    if len(references.studies) > 1:
        means = [f"{markdown_text(s.name)} {s.summary['mean_specialists']:.2f}" for s in references.studies
                 if s.summary["mean_specialists"] is not None]
        paragraphs.append(f"Specialist heads per run, on average, recipe by recipe: {_join(means)}. Recipes that "
                          "differ in one setting show what that setting does to how often heads specialize; with this "
                          "few runs each, a difference of a run or two may be chance.")
    paragraphs.extend(markdown_text(problem) for problem in references.problems)
    return Chapter("reference", "Beyond this run: many runs of each recipe", tuple(paragraphs))


def tell_story(snap: Snapshot, race: Snapshot | None = None, measurement: Measurement | None = None,
               references: References = NO_REFERENCES) -> list[Chapter]:
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


def heads_title(step: int, so_far: Unfinished | None) -> str:
    return (f"The four heads so far (step {step:,}): what each has become" if so_far and not so_far.stopped
            else f"The four heads at step {step:,}: what each became")


def chapter_figures(snap: Snapshot, race: Snapshot | None = None, measurement: Measurement | None = None,
                    references: References = NO_REFERENCES) -> dict[str, list[go.Figure]]:
    """The figures beside each chapter: the heads as cards, the heads sharpening, the curves, what each check needs
    from each head, and the shipped studies."""
    measurement = measurement or latest_measurement(snap)
    during = [figures.loss_figure(snap), figures.accuracy_figure(snap)]
    if race is not None and race.loss.steps:
        during.append(figures.race_figure(snap, race))
    after = [head_figures.necessity_figure([measurement.point])] if measurement else []
    answer = []
    if measurement and measurement.cross:
        step = measurement.point.step
        answer.append(head_figures.heads_figure(measurement.cross, heads_title(step, unfinished(snap, step))))
    return {"answer": answer, "before": [head_figures.shares_figure(snap.specialization, start=0)], "during": during,
            "after": after, "reference": [head_figures.studies_figure(references.studies)] if references.studies
            else []}


EXAMPLES_TITLE = "Some claims, judged by this model"
EXAMPLES_CAPTION = ("The model's answers at step {step:,}, beside what the app's rules say. A confident answer can "
                    "still be wrong: the rules are the reference.")


def judged_examples(predictor: Predictor) -> list[dict[str, object]]:
    """The example claims as this model judges them, beside the rules (the Story's table and the report's)."""
    rows = []
    for text in EXAMPLE_CLAIMS:
        said = predictor.predict(text, with_ablation=False)
        rows.append({"Claim": text, "The model says": head_figures.said_text(said),
                     "How sure": said.confidence if said.judged else None,
                     "The rules say": head_figures.verdict_text(*(said.rules or (None, None)))})
    return rows


def _examples_html(examples: Sequence[dict[str, object]], step: int) -> list[str]:
    header = "".join(f"<th>{html.escape(name)}</th>" for name in examples[0])
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(value))}</td>" for value in row.values()) + "</tr>"
                   for row in examples)
    return [f"<h2>{EXAMPLES_TITLE}</h2>", f"<p>{html.escape(EXAMPLES_CAPTION.format(step=step))}</p>",
            f"<table><thead><tr>{header}</tr></thead><tbody>{rows}</tbody></table>"]


def _cell(value: object) -> str:
    return _pct(value) if isinstance(value, float) else str(value)


def html_report(snap: Snapshot, race: Snapshot | None = None, measurement: Measurement | None = None,
                created: str = "", examples: tuple[Sequence[dict[str, object]], int] | None = None,
                references: References = NO_REFERENCES) -> str:
    """One HTML file with the story, its figures and (when given: rows and the step of the model that judged them)
    the example claims as the model judged them; plotly.js is embedded, so it opens with no internet."""
    chapters = tell_story(snap, race, measurement, references)
    figs = chapter_figures(snap, race, measurement, references)
    title = f"Headwatch: how run {snap.run_id or '(unsaved)'} learned to audit claims"
    body = [f"<h1>{html.escape(title)}</h1>",
            f"<p class='meta'>{html.escape(summaries.config_text(snap.config))}. "
            f"{html.escape(summaries.status_text(snap))} {html.escape(created)}</p>"]
    if not chapters:
        body.append("<p>This run has no measurements yet.</p>")
    embedded = False
    for chapter in chapters:
        body.append(f"<h2>{html.escape(chapter.title)}</h2>")
        body.extend(f"<p>{markdown_html(p)}</p>" for p in chapter.paragraphs)
        for fig in figs.get(chapter.key, []):
            # auto_play off: an animated figure opens at the step it shows (Before: step 0), not played to the end
            body.append(fig.to_html(full_html=False, include_plotlyjs=not embedded, config=figures.CHART_CONFIG,
                                    default_width="100%", auto_play=False))
            embedded = True
    if chapters and examples is not None and examples[0]:
        body.extend(_examples_html(*examples))
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.5}"
             ".meta{color:#666}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;"
             "text-align:left}")
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>")
