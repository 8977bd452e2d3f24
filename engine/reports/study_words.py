"""A study's summary (engine.reports.study_results.summarize) in words, for the command line and the Seeds page:
composed here from its facts, never saved."""

from __future__ import annotations

from data.rules import REASONS


def summary_sentence(summary: dict) -> str:
    """'DOSAGE got its own head in 3 of 5 runs, COST in 1, ... Specialist heads per run: 0.80 on average (95% interval
    0.20 to 1.40, over 5 seeds).'"""
    n, unlearned = summary["learned"], _unlearned(summary["seeds"] - summary["learned"], summary["seeds"])
    if not n:
        return f"{unlearned} No head could specialise: train longer, or try another recipe."
    owned, counts = summary["owned_in"], summary["specialists_per_seed"]
    low, high = summary["interval_95"]
    first, *rest = sorted(REASONS, key=lambda r: -owned[r])
    told = (
        ", ".join(
            [
                f"{first} got its own head in {owned[first]} of {n} run{'s' if n > 1 else ''}",
                *[f"{r} in {owned[r] or 'none'}" for r in rest],
            ]
        )
        if owned[first]
        else (f"No reason got its own head in any of the {n} run{'s' if n > 1 else ''}")
    )
    spread = (
        f"{summary['mean_specialists']:.2f} on average (95% interval {low:.2f} to {high:.2f}, over {n} seeds)"
        if low != high
        else f"{counts[0]} in every one of the {n} runs"
    )
    return (
        f"{unlearned + ' ' if unlearned else ''}{told}.{_leaning(summary['leaned_to_in'])} Specialist heads per "
        f"run: {spread}{_split_admin(counts, summary['reasons_owned_per_seed'])}."
    )


def _unlearned(count: int, total: int) -> str:
    """'2 of the 5 runs did not learn to audit claims (...)' or ''."""
    if not count:
        return ""
    said = (
        f"None of the {total} runs learned to audit claims"
        if count == total
        else f"{count} of the {total} runs did not learn to audit claims"
    )
    return (
        f"{said}: each did no better than answering its commonest outcome to every claim, so "
        f"{'their' if count > 1 else 'its'} heads are neither named nor counted."
    )


def _split_admin(specialists: list[int], reasons_owned: list[int]) -> str:
    """'; ADMIN's patient and provider checks had a head each in 1 run, so 1.20 reasons a run had a head of their
    own' (or '' when no run split ADMIN between two heads)."""
    split = sum(owned < count for owned, count in zip(reasons_owned, specialists, strict=True))
    if not split:
        return ""
    reasons = sum(reasons_owned) / len(reasons_owned)
    return (
        f"; ADMIN's patient and provider checks had a head each in {split} run{'s' if split > 1 else ''}, so "
        f"{reasons:.2f} reasons a run had a head of their own"
    )


def _leaning(leaned: dict[str, int] | None) -> str:
    """' In runs where it had no head of its own, MEDICAL had a head leaning to it in 4, COST in 3.' (or '')"""
    found = sorted((r for r in REASONS if leaned and leaned[r]), key=lambda r: -leaned[r])
    if not found:
        return ""
    first, *rest = found
    return (
        f" In runs where it had no head of its own, {first} had a head leaning to it in {leaned[first]}"
        + "".join(f", {r} in {leaned[r]}" for r in rest)
        + "."
    )
