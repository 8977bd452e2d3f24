"""What the heads became, in words for a reader new to neural networks: each head's role and the measurement behind
it, the answer in one paragraph, whether the seed story's promise held, and what the shipped studies found.
Every sentence rests on the heads' labels (engine.interpret.ownership), never on attention alone."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from dashboard.measurement import Unfinished
from dashboard.untrusted import markdown_text
from data.rules import CLASSES, REASONS
from engine.interpret.labels import head_evidence, head_label, heads_text, joined, named
from engine.interpret.ownership import GENERALIST, HELPS, LEANS, LITTLE_EFFECT, NEEDED, SHARES, SPECIALIST
from engine.reports.reference_studies import ReferenceStudy
from engine.telemetry import HeadSpecialization

SEED_PROMISE = "four specialists: medical, dosage, cost and admin"
NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 8: "eight"}


def role_words(head: HeadSpecialization, escape: Callable[[str], str] = str) -> str:
    """What a head became, in words for a reader new to neural networks, to follow 'It' or 'Head 3': 'works for
    DOSAGE claims alone', 'is needed by every kind of faulty claim', 'changes little when taken away'. `escape`
    makes a run's own text (its labels and reasons) safe where it is shown."""
    unit = escape(named(head.reason or ""))
    if head.kind == SPECIALIST:
        return f"works for {unit} claims alone"
    if head.kind == SHARES:
        partners = sorted({j for heads in head.shared_with.values() for j in heads})
        return (
            f"shares its work with {heads_text(partners)}: "
            f"{'either can stand in for the other' if len(partners) == 1 else 'one can stand in for another'}"
        )
    if head.kind == LEANS:
        return f"works mostly for {unit}, though not for it alone"
    if head.kind == GENERALIST:
        return "works for several reasons at once"
    if head.kind == HELPS:
        return f"helps a little with {unit}"
    if head.kind == NEEDED:
        return f"is needed by {_claims_text((head.reason or '').split(', '), escape)}"
    if head.kind == LITTLE_EFFECT:
        return "changes little when taken away"
    return f"is labelled '{escape(head_label(head))}'"  # runs saved before heads had kinds


def _claims_text(classes: Sequence[str], escape: Callable[[str], str]) -> str:
    if set(CLASSES) <= set(classes):
        return "every kind of claim, valid ones included"
    if set(REASONS) <= set(classes):
        return "every kind of faulty claim"
    return joined(["valid claims" if c == "VALID" else f"{escape(c)} claims" for c in classes])


def head_sentence(index: int, head: HeadSpecialization) -> str:
    """'**Head 2: COST specialist.** Only COST needs it: ...': the engine's label and the measurement behind it (read
    from the run's files: plain text)."""
    return f"**Head {index + 1}: {markdown_text(head_label(head))}.** {markdown_text(head_evidence(head))}"


def selectivity_sentence(head: HeadSpecialization) -> str:
    """'Selectivity +62%: what the reason that needs it most needs of it, minus the most any other reason needs.',
    or '' where it was not measured (encoder heads, runs saved before it)."""
    if head.selectivity is None:
        return ""
    return (
        f"Selectivity {head.selectivity:+.0%}: what the reason that needs it most needs of it, minus the most any "
        "other reason needs."
    )


def reads_sentence(head: HeadSpecialization) -> str:
    top = sorted(head.shares.items(), key=lambda kv: -kv[1])[:2]
    return (
        "Reads mostly "
        + " and ".join(f"{markdown_text(c)} ({s:.0%})" for c, s in top)
        + " (what it looks at, not what it is for)."
    )


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
        verdict = (
            f"The story promised {SEED_PROMISE}. In this run {count} of the {len(heads)} heads became a "
            f"specialist ({joined(specialists)}), so the promise was only partly borne out."
        )
    else:
        verdict = (
            f"The story promised {SEED_PROMISE}. In this run none of the {len(heads)} heads became a "
            "specialist, so the promise was not borne out."
        )
    if leaning:
        verdict += f" Leaning (a clear but partial dependence): {joined(leaning)}."
    return verdict


def _so_far_sentence(heads: Sequence[HeadSpecialization], specialists: list[str], so_far: Unfinished) -> str:
    count, promised = len(specialists), f"The story promises {SEED_PROMISE}."
    has = "had" if so_far.stopped else "has"
    if {h.owns for h in heads if h.kind == SPECIALIST} == set(REASONS):
        found = f"each reason {has} a head of its own"
    elif count:
        found = (
            f"{count} of the {len(heads)} heads {'have' if count > 1 and not so_far.stopped else has} become a "
            f"specialist ({joined(specialists)})"
        )
    else:
        found = f"none of the {len(heads)} heads {has} become a specialist"
    later = "" if so_far.stopped else " Heads can still change before training ends."
    return f"{promised} {so_far.when}, {found}.{later}"


def _answer(heads: Sequence[HeadSpecialization], so_far: Unfinished | None) -> str:
    """The lead's first sentence: how many heads became specialists, and of what."""
    n = NUMBER_WORDS.get(len(heads), str(len(heads)))
    specialists = [
        f"head {i + 1} for {markdown_text(named(h.reason or ''))}" for i, h in enumerate(heads) if h.kind == SPECIALIST
    ]
    became = "became" if so_far is None else ("had become" if so_far.stopped else "has become")
    when = "In this run" if so_far is None else so_far.when
    if {h.owns for h in heads if h.kind == SPECIALIST} == set(REASONS) and len(specialists) == len(heads):
        return f"{when}, each of the {n} heads {became} the specialist of one reason, as the story promised."
    if not specialists:
        return f"{when}, none of the {n} heads {became} a specialist."
    became = became.replace("has", "have") if len(specialists) > 1 else became
    return (
        f"{when}, {len(specialists)} of the {n} heads {became} "
        f"{'a specialist' if len(specialists) == 1 else 'specialists'}: {joined(specialists)}."
    )


def _others(heads: Sequence[HeadSpecialization]) -> list[str]:
    """'head 3 is needed by every kind of faulty claim', for each head that is not a specialist; the heads that
    share work said together, once."""
    sharing = [i for i, h in enumerate(heads) if h.kind == SHARES]
    clauses = []
    for index, head in enumerate(heads):
        if head.kind == SPECIALIST or (head.kind == SHARES and index != sharing[0]):
            continue
        clauses.append(
            _sharing(heads, sharing) if head.kind == SHARES else f"head {index + 1} {role_words(head, markdown_text)}"
        )
    return clauses


def _sharing(heads: Sequence[HeadSpecialization], sharing: list[int]) -> str:
    """'heads 1 and 2 share the DOSAGE work, so either can stand in for the other'."""
    units = list(dict.fromkeys(markdown_text(named(u)) for i in sharing for u in heads[i].shared_with))
    outside = sorted({j for i in sharing for p in heads[i].shared_with.values() for j in p} - set(sharing))
    stand = (
        "either can stand in for the other" if len(sharing) + len(outside) == 2 else ("one can stand in for another")
    )
    return (
        f"{heads_text(sharing)} {'shares' if len(sharing) == 1 else 'share'} the {joined(units)} "
        f"work{' with ' + heads_text(outside) if outside else ''}, so {stand}"
    )


def lead_paragraph(
    heads: Sequence[HeadSpecialization],
    accuracy: float | None,
    so_far: Unfinished | None = None,
    reference: ReferenceStudy | None = None,
) -> str:
    """The answer, in one paragraph a reader new to neural networks follows: which heads became specialists, what
    the others became instead, how well the model audits claims, and (from a shipped study of the same recipe) how
    often other runs of it ended with a specialist. Every word rests on the heads' labels
    (engine.interpret.ownership)."""
    sentences = [f"**{_answer(heads, so_far)}**"]
    if any(h.kind != SPECIALIST for h in heads):
        sentences.append(
            "The story this app starts from promised one specialist head for each reason a claim can "
            "fail: medical sense, dosage, cost and admin."
        )
    if accuracy is not None and not math.isnan(accuracy):
        judges = "judges" if so_far is not None and not so_far.stopped else "judged"
        sentences.append(f"The model {judges} {accuracy:.0%} of the test claims correctly.")
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
    return (
        f"Over {len(study.results)} training runs of this same recipe, differing only in their random start, "
        f"{_with_specialists(study)}."
    )


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


def study_paragraph(study: ReferenceStudy) -> str:
    """'Over 8 training runs of the default recipe, differing only in their random start, ...': what a shipped study
    found, in plain words, with its date and the command that reproduces it."""
    learned = [r for r in study.results if r.learned]
    text = (
        f"Over {len(study.results)} training runs of the **{markdown_text(study.name)}** recipe, differing only "
        "in their random start, "
    )
    if not learned:
        text += "none learned to audit claims, so no head could specialize."
    else:
        text += f"{_with_specialists(study)}."
        owned = {r: sum(r in result.owns for result in learned) for r in REASONS}
        got = [f"{r} in {owned[r]}" for r in sorted(REASONS, key=lambda r: -owned[r]) if owned[r]]
        missing = [r for r in REASONS if not owned[r]]
        if got:
            text += (
                f" A reason got a head of its own in these runs: {joined(got)}"
                f"{'; ' + joined(missing) + ' in none' if missing else ''}."
            )
    return f"{text} (Trained {markdown_text(study.made)}; to repeat it: {markdown_text(study.command)}.)"


def heads_title(step: int, so_far: Unfinished | None) -> str:
    return (
        f"The four heads so far (step {step:,}): what each has become"
        if so_far and not so_far.stopped
        else f"The four heads at step {step:,}: what each became"
    )
