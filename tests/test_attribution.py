"""Causal attribution of reasons to heads, checked on models whose truth is known by construction."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from data.catalog import load_catalog
from data.generator import generate_claims
from data.rules import CLASSES, REASONS, check_claim
from data.tokenizer import Tokenizer
from data.vocabulary import CATEGORIES
from engine.cache import Cache
from engine.interpret.attribution import HeadAttribution, attribute, reference_claims
from engine.interpret.direct_logit import direct_effects, logit_directions
from engine.interpret.inference import Predictor
from engine.interpret.labels import head_evidence, head_label, role_label
from engine.interpret.ownership import (
    GENERALIST,
    LITTLE_EFFECT,
    NOT_PATCHED,
    OWNED,
    UNITS,
    UNOWNED,
    need,
    owners,
    unit_reason,
)
from engine.interpret.pairs import CHECKS, minimal_pairs, pair_batch, reason_of, run_pairs
from engine.interpret.patching import heads_chosen, patched_runner
from engine.interpret.specialization import analysed_names
from engine.model.transformer import ModelConfig
from engine.reports.analyze import analyze_run
from engine.task.claims_model import TARGET_ID, ClaimsTransformer, greedy_outcomes
from engine.task.dataset import ClaimTensors, encode_claims

CROSS = "decoder.0.cross"
WIRED = ("dose", "amount", "diagnosis", "specialty")  # head k reads only this field


@pytest.fixture(scope="module")
def setting():
    catalog = load_catalog()
    tokenizer = Tokenizer.from_catalog(catalog)
    pairs = minimal_pairs(catalog, tokenizer, per_check=12)
    claims = encode_claims(generate_claims(200, 5, catalog), tokenizer, 48)
    return catalog, tokenizer, pairs, claims, pair_batch(pairs, tokenizer, 48), reference_claims(tokenizer, 48)


def random_model(tokenizer: Tokenizer) -> ClaimsTransformer:
    torch.manual_seed(0)
    model = ClaimsTransformer(ModelConfig(vocab_size=len(tokenizer.vocab), d_model=32, d_ff=64))
    for param in model.parameters():
        torch.nn.init.normal_(param, std=0.3)
    return model.eval()


def wired_model(tokenizer: Tokenizer, wired: tuple[str | tuple[str, ...], ...] = WIRED) -> ClaimsTransformer:
    """Each cross-attention head looks only at the words of its fields (`wired`: one field, or several, per head; at
    nothing when the claim has none), and the encoder passes each word on unmixed, so a head's output depends on
    its fields alone."""
    model = random_model(tokenizer)
    with torch.no_grad():
        model.category_embedding.weight.zero_()
        model.token_embedding.weight[:, : len(CATEGORIES)] = 0.0
        for category in range(len(CATEGORIES)):
            model.category_embedding.weight[category, category] = 10.0  # dimension c marks field c
        encoder = model.encoder[0]
        for linear in (encoder.attention.out, encoder.ff.down):
            linear.weight.zero_()
            linear.bias.zero_()
        model.norm_keys.weight.fill_(1.0)
        model.norm_keys.bias.zero_()
        cross = model.decoder[0].cross_attention
        cross.null_key.zero_()  # scores 0: above every other field's words, far below the head's own
        cross.query.weight.zero_()
        cross.query.bias.fill_(1.0)
        cross.key.weight.zero_()
        cross.key.bias.zero_()
        width = cross.head_dim
        for head, fields in enumerate(wired):
            for field in (fields,) if isinstance(fields, str) else fields:
                cross.key.weight[head * width : (head + 1) * width, CATEGORIES.index(field)] = 1000.0
    return model


def test_minimal_pairs_differ_in_the_one_field_their_check_is_about(setting) -> None:
    catalog, _, pairs, _, _, _ = setting
    assert {p.check for p in pairs} == set(CHECKS)
    for pair in pairs:
        (violation,) = check_claim(pair.invalid.fields, catalog)
        assert (violation.kind if violation.reason == "ADMIN" else violation.reason) == pair.check
        assert not check_claim(pair.valid.fields, catalog)
        valid, invalid = vars(pair.valid.fields), vars(pair.invalid.fields)
        changed = [name for name in valid if valid[name] != invalid[name]]
        assert len(changed) == 1, pair


def test_patching_a_head_with_its_own_output_changes_nothing(setting) -> None:
    _, tokenizer, _, claims, _, _ = setting
    model = random_model(tokenizer)
    for attention in (model.decoder[0].cross_attention, model.encoder[0].attention):
        run = patched_runner(model, claims, attention)
        log_probs, outputs = run()
        assert torch.allclose(log_probs, model.class_log_probs(claims.tokens, claims.categories), atol=1e-6)
        for head in range(attention.n_heads):
            assert torch.equal(run(outputs, heads_chosen(4, head))[0], log_probs)  # the hook only reads
        assert not torch.allclose(run(outputs.flip(0), heads_chosen(4, 0))[0], log_probs)  # another claim's does


def test_a_head_that_reads_one_field_carries_exactly_the_checks_on_that_field(setting) -> None:
    _, tokenizer, _, claims, batch, reference = setting
    heads = attribute(wired_model(tokenizer), CROSS, claims, batch, reference)
    field_of = {
        "MEDICAL": "diagnosis",
        "DOSAGE": "dose",
        "COST": "amount",
        "sex": "sex",
        "age": "age",
        "specialty": "specialty",
        "place": "place",
    }
    for head, field in enumerate(WIRED):
        for check in CHECKS:
            expected = 1.0 if field_of[check] == field else 0.0
            assert heads[head].necessity[check] == pytest.approx(expected, abs=1e-3), (head, check)
            assert heads[head].sufficiency[check] == pytest.approx(expected, abs=1e-3), (head, check)


def pinned(model: ClaimsTransformer) -> ClaimsTransformer:
    """The model with every answer pinned to INVALID: COST by a large bias, so that no head taken away can change an
    answer (resampling costs no class anything) while the logit differences twins are measured by move as before:
    its heads' names then rest on the wiring alone."""
    with torch.no_grad():
        model.output.bias[TARGET_ID["INVALID"]] += 50.0
        model.output.bias[TARGET_ID["COST"]] += 50.0
    return model


def test_a_head_that_reads_only_sex_and_age_is_the_patient_admin_specialist(setting) -> None:
    _, tokenizer, _, claims, batch, reference = setting
    model = pinned(wired_model(tokenizer, ("dose", "amount", ("sex", "age"), "diagnosis")))
    heads = owners(attribute(model, CROSS, claims, batch, reference))
    patient = heads[2]
    assert patient.necessity["sex"] == pytest.approx(1.0, abs=1e-3)
    assert patient.necessity["age"] == pytest.approx(1.0, abs=1e-3)
    assert all(patient.necessity[c] == pytest.approx(0.0, abs=1e-3) for c in ("MEDICAL", "DOSAGE", "COST", "place"))
    assert (patient.owns, head_label(patient)) == ("ADMIN", "ADMIN (sex, age) specialist")
    assert patient.selectivity == pytest.approx(1.0, abs=1e-3)


def test_two_heads_reading_the_dose_alike_are_both_flagged_as_sharing_dosage(setting) -> None:
    _, tokenizer, _, claims, batch, reference = setting
    model = pinned(wired_model(tokenizer, ("dose", "dose", "diagnosis", "amount")))
    cross = model.decoder[0].cross_attention
    width = cross.head_dim
    with torch.no_grad():  # head 1 a copy of head 0, down to what it writes: a backup
        cross.value.weight[width : 2 * width] = cross.value.weight[:width]
        cross.value.bias[width : 2 * width] = cross.value.bias[:width]
        cross.out.weight[:, width : 2 * width] = cross.out.weight[:, :width]
    heads = owners(attribute(model, CROSS, claims, batch, reference))
    first, second = heads[0], heads[1]
    assert first.pair_necessity["1"]["DOSAGE"] == pytest.approx(1.0, abs=1e-3)  # both away: all of DOSAGE goes
    assert first.necessity["DOSAGE"] == pytest.approx(second.necessity["DOSAGE"], abs=1e-4)  # alike
    assert first.necessity["DOSAGE"] <= 0.8  # one alone leaves a good part to the other
    assert (first.shared_with, second.shared_with) == ({"DOSAGE": (1,)}, {"DOSAGE": (0,)})
    assert (head_label(first), head_label(second)) == ("shares DOSAGE with head 2", "shares DOSAGE with head 1")
    assert first.owns is None and second.owns is None


def test_one_head_doing_everything_is_one_generalist(setting) -> None:
    _, tokenizer, _, claims, batch, reference = setting
    model = random_model(tokenizer)
    cross = model.decoder[0].cross_attention
    with torch.no_grad():
        cross.out.weight[:, cross.head_dim :] = 0.0  # only head 0 reaches the answer
    heads = owners(attribute(model, CROSS, claims, batch, reference))
    assert all(heads[0].necessity[c] == pytest.approx(1.0, abs=1e-4) for c in CHECKS)
    assert all(h.necessity[c] == pytest.approx(0.0, abs=1e-6) for h in heads[1:] for c in CHECKS)
    assert [h.owns for h in heads] == [None] * 4  # head 0 carries every reason: a generalist, not a specialist
    assert [h.kind for h in heads] == [GENERALIST] + [LITTLE_EFFECT] * 3


def _head(
    necessity: dict[str, float],
    valid_drop: float = 0.0,
    drops: dict[str, float] | None = None,
    pairs: dict[int, dict[str, float]] | None = None,
) -> HeadAttribution:
    """A head measured so: necessity per check (a reason's value for each of its checks), accuracy drops when
    resampled, and necessity patched together with other heads (their index -> per check or reason)."""

    def full(values: dict[str, float]) -> dict[str, float]:
        return {c: values.get(c, values.get(reason_of(c), 0.0)) for c in CHECKS}

    ablation = {"VALID": valid_drop, **(drops or {})}
    together = {str(j): full(v) for j, v in (pairs or {}).items()}
    return HeadAttribution(
        full(necessity),
        full(necessity),
        {},
        ablation,
        {},
        pair_necessity=together,
        pair_ablation={j: {} for j in together},
    )


def test_ownership_needs_one_reason_only_valid_untouched_and_no_rival() -> None:
    dosage = _head({"DOSAGE": 0.9})
    assert [h.owns for h in owners([dosage, _head({"COST": 0.7})])] == ["DOSAGE", "COST"]
    assert owners([_head({"DOSAGE": 0.9, "COST": OWNED})])[0].owns is None  # two reasons depend on it
    assert owners([_head({"DOSAGE": 0.9, "sex": 0.3})])[0].owns is None  # so does an ADMIN check
    assert owners([_head({"DOSAGE": 0.9}, valid_drop=0.5)])[0].owns is None  # valid claims break without it
    assert owners([_head({"DOSAGE": 0.9}, drops={"COST": 0.4})])[0].owns is None  # COST's claims break without it
    assert [h.owns for h in owners([dosage, dosage])] == [None, None]  # two heads for one reason: shared
    assert owners([_head({"sex": 0.9, "age": 0.9, "specialty": 0.9, "place": 0.9})])[0].owns == "ADMIN"


def test_each_of_admins_two_families_can_have_its_own_specialist_counted_as_admin() -> None:
    patient, provider = _head({"sex": 0.9, "age": 0.8}), _head({"specialty": 0.7, "place": 0.6})
    labelled = owners([patient, provider])
    assert [h.owns for h in labelled] == ["ADMIN", "ADMIN"]
    assert [head_label(h) for h in labelled] == ["ADMIN (sex, age) specialist", "ADMIN (specialty, place) specialist"]
    assert [h.reason for h in labelled] == ["sex, age", "specialty, place"]
    assert "85%" in head_evidence(labelled[0])  # the family's mean
    everything = _head({"sex": 0.9, "age": 0.9, "specialty": 0.9, "place": 0.9})
    assert [h.owns for h in owners([patient, everything])] == [None, None]  # both carry sex and age: rivals
    assert head_label(owners([_head({"sex": 0.9, "age": 0.9, "place": 0.3})])[0]) == "ADMIN specialist"  # ADMIN's alone
    assert owners([_head({"sex": 0.9, "age": 0.9, "MEDICAL": 0.3})])[0].owns is None  # another reason needs it


def test_selectivity_is_what_the_top_reason_needs_minus_the_most_any_other_needs() -> None:
    assert owners([_head({"DOSAGE": 0.9, "COST": 0.15})])[0].selectivity == pytest.approx(0.75)
    assert owners([_head({"MEDICAL": 0.6, "DOSAGE": 0.55})])[0].selectivity == pytest.approx(0.05)
    assert owners([_head({"sex": 0.8, "age": 0.6, "MEDICAL": 0.1})])[0].selectivity == pytest.approx(0.6)
    # the other ADMIN family is the same reason: it does not count against it
    assert owners([_head({"sex": 0.8, "age": 0.8, "place": 0.4})])[0].selectivity == pytest.approx(0.8)


def test_a_backup_pair_shares_its_reason_instead_of_hiding_as_not_a_specialist() -> None:
    # each head alone takes 40% of DOSAGE's evidence, the two together all of it: either can stand in for the other
    first = _head({"DOSAGE": 0.4}, pairs={1: {"DOSAGE": 1.0}})
    second = _head({"DOSAGE": 0.4}, pairs={0: {"DOSAGE": 1.0}})
    labelled = owners([first, second, _head({"COST": 0.9})])
    assert [head_label(h) for h in labelled] == [
        "shares DOSAGE with head 2",
        "shares DOSAGE with head 1",
        "COST specialist",
    ]
    assert [h.shared_with for h in labelled] == [{"DOSAGE": (1,)}, {"DOSAGE": (0,)}, {}]
    # a specialist whose removal together with another head takes no more than it alone does shares nothing
    alone = owners([_head({"DOSAGE": 0.9}, pairs={1: {"DOSAGE": 0.95}}), _head({}, pairs={0: {"DOSAGE": 0.95}})])
    assert [head_label(h) for h in alone] == ["DOSAGE specialist", "little effect"]
    # a specialist of one reason that backs up another head's reason is not that reason's alone
    backing = owners(
        [
            _head({"DOSAGE": 0.9}, pairs={1: {"DOSAGE": 0.9, "COST": 0.9}}),
            _head({"COST": 0.6}, pairs={0: {"DOSAGE": 0.9, "COST": 0.9}}),
        ]
    )
    assert backing[0].kind == "leans" and "shares COST with head 2" in head_evidence(backing[0])


def test_labels_say_what_the_measurement_found() -> None:
    dosage, cost = _head({"DOSAGE": 0.9}), _head({"COST": 0.7, "sex": 0.3})
    heads = [dosage, cost, _head({"MEDICAL": 0.6, "DOSAGE": 0.6}), _head({"place": 0.4}), _head({"place": 0.1})]
    labelled = owners(heads)
    assert [head_label(h) for h in labelled] == [
        "DOSAGE specialist",
        "leans COST",
        "generalist",
        "helps ADMIN (place)",
        "little effect",
    ]
    assert [(h.kind, h.reason) for h in labelled] == [
        ("specialist", "DOSAGE"),
        ("leans", "COST"),
        ("generalist", None),
        ("helps", "place"),
        ("little effect", None),
    ]
    patient = owners([_head({"sex": 0.4, "age": 0.3})])[0]  # only ADMIN needs it, two of its checks: not a generalist
    assert (head_label(patient), patient.kind, patient.reason) == ("helps ADMIN (sex, age)", "helps", "sex, age")
    assert "40% of sex's and 30% of age's evidence" in head_evidence(patient)
    generalist = owners([_head({"MEDICAL": 0.3, "sex": 0.3})])[0]  # needed by checks of two reasons
    assert head_label(generalist) == "generalist"
    assert head_evidence(generalist) == "Several reasons need it. Twins: MEDICAL 30%, ADMIN (sex) 30%."
    shared = owners([dosage, dosage])
    assert [head_label(h) for h in shared] == ["leans DOSAGE"] * 2
    assert "Head 2 carries DOSAGE as well" in head_evidence(shared[0])
    assert "90%" in head_evidence(owners([dosage])[0])


def test_a_head_twins_cannot_see_is_named_by_what_resampling_it_costs() -> None:
    # it reads what twins share (the billed item): patching between twins moves nothing, resampling does
    hub = owners([_head({}, drops={"DOSAGE": 0.4, "COST": 0.25, "MEDICAL": 0.23, "ADMIN": 0.17})])[0]
    assert (hub.kind, head_label(hub)) == ("needed by", "needed by DOSAGE, COST and MEDICAL")
    assert "DOSAGE 40%, COST 25%, MEDICAL 23%" in head_evidence(hub) and "twin" in head_evidence(hub)
    everyone = owners([_head({}, drops={"DOSAGE": 0.4, "COST": 0.25, "MEDICAL": 0.23, "ADMIN": 0.21})])[0]
    assert head_label(everyone) == "needed by every reason"
    assert head_label(owners([_head({}, valid_drop=0.3)])[0]) == "needed by valid claims"
    # one reason by its twins, others by resampling: several reasons need it
    assert head_label(owners([_head({"place": 0.4}, drops={"DOSAGE": 0.3})])[0]) == "generalist"
    assert head_label(owners([_head({}, drops={"DOSAGE": 0.2})])[0]) == "little effect"  # at the threshold: not above


def test_resampling_shows_where_answers_go_and_encoder_heads_are_not_patched(setting) -> None:
    _, tokenizer, _, claims, batch, reference = setting
    model = random_model(tokenizer)
    cross = attribute(model, CROSS, claims, batch, reference)
    for head in cross:
        shares = [sum(answered.values()) for answered in head.answers.values() if any(answered.values())]
        assert shares and all(share == pytest.approx(1.0) for share in shares)
        assert head.ablation["VALID"] == pytest.approx(head.valid_drop)
    encoder = owners(attribute(model, "encoder.0.self", claims, batch, reference))
    assert all(not h.necessity and h.owns is None and h.kind == NOT_PATCHED for h in encoder)


def test_direct_logit_attribution_adds_up_exactly_with_the_rest_of_the_residual(setting) -> None:
    _, tokenizer, _, claims, _, _ = setting
    model = random_model(tokenizer)
    cross = model.decoder[0].cross_attention
    reasons = torch.randint(0, len(REASONS), (len(claims),), generator=torch.Generator().manual_seed(0))
    final: list[torch.Tensor] = []
    handle = model.norm_out.register_forward_pre_hook(lambda _m, args: final.append(args[0]))
    with torch.no_grad():
        memory = model.encode(claims.tokens, claims.categories)
        targets = torch.tensor([[TARGET_ID["<bos>"], TARGET_ID["INVALID"]]]).expand(len(claims), 2)
        logits = model.decode(targets, memory)  # (B, 2, V)
        heads = direct_effects(model, cross, claims, reasons)  # (B, H)
    handle.remove()
    rows = [TARGET_ID[r] for r in REASONS]
    chosen = logits[:, 1, rows].gather(1, reasons[:, None]).squeeze(1)
    actual = (
        logits[:, 0, TARGET_ID["INVALID"]]
        - logits[:, 0, TARGET_ID["VALID"]]
        + chosen
        - (logits[:, 1, rows].sum(1) - chosen) / (len(REASONS) - 1)
    )
    # everything else in the final residual, read the same way: the residual minus the heads' writes, plus the
    # LayerNorm's and the unembedding's constants
    residual = final[-1]
    sigma = (residual.var(-1, unbiased=False, keepdim=True) + model.norm_out.eps).sqrt()
    verdict, reason = logit_directions(model, reasons)
    directions = torch.stack([verdict, reason], dim=1)  # (B, 2, C)
    bias = model.output.bias
    constants = (
        bias[TARGET_ID["INVALID"]]
        - bias[TARGET_ID["VALID"]]
        + bias[rows].gather(0, reasons)
        - (bias[rows].sum() - bias[rows].gather(0, reasons)) / (len(REASONS) - 1)
    )
    constants = constants + (directions * model.norm_out.bias).sum((1, 2))
    total = ((residual - residual.mean(-1, keepdim=True)) / sigma * model.norm_out.weight * directions).sum((1, 2))
    assert torch.allclose(total + constants, actual, atol=1e-4)  # the frozen-LayerNorm reading is exact
    _, outputs = patched_runner(model, claims, cross)()  # (B, H, S, hd)
    written = torch.einsum("bhsd,chd->bsc", outputs, cross.out.weight.view(-1, 4, cross.head_dim))
    rest = residual - written  # the residual without the heads
    rest_read = ((rest - rest.mean(-1, keepdim=True)) / sigma * model.norm_out.weight * directions).sum((1, 2))
    assert torch.allclose(heads.sum(1) + rest_read + constants, actual, atol=1e-4)


def test_run_pairs_are_made_once_per_tokenizer(setting) -> None:
    _, tokenizer, _, _, _, _ = setting
    first = run_pairs(tokenizer, 48)
    assert run_pairs(tokenizer, 48) is first and len(first.checks) > 100
    other = Tokenizer(tokenizer.vocab, dict(list(tokenizer.aliases.items())[1:]))  # one name fewer
    assert run_pairs(other, 48) is not first  # other aliases read claims otherwise: their own pairs


@pytest.mark.parametrize(
    ("label", "kind", "reason"),
    [
        ("DOSAGE specialist", "specialist", "DOSAGE"),
        ("leans COST", "leans", "COST"),
        ("helps ADMIN (age)", "helps", "age"),
        ("helps ADMIN (sex, age)", "helps", "sex, age"),
        ("helps MEDICAL", "helps", "MEDICAL"),
        ("generalist", "generalist", None),
        ("needed by DOSAGE and valid claims", "needed by", "DOSAGE, VALID"),
        ("needed by every reason", "needed by", "MEDICAL, DOSAGE, COST, ADMIN"),
    ],
)
def test_runs_saved_before_heads_had_a_kind_read_it_from_their_label(label: str, kind: str, reason: str | None) -> None:
    from engine.runs.reading import specialization_point

    head = {
        "shares": {"dose": 1.0},
        "entropy": 0.1,
        "confidence": 0.9,
        "importance": 0.0,
        "ablation": {},
        "label": label,
        "evidence": "numbers",
    }
    [read] = specialization_point({"step": 5, "heads": {CROSS: [head]}}).heads[CROSS]
    assert (read.kind, read.reason) == (kind, reason)
    assert head_label(read) == label  # the same words as a run that records its kind


@pytest.mark.parametrize(
    ("label", "shared_with"),
    [
        ("shares DOSAGE with head 2", {"DOSAGE": (1,)}),
        ("shares DOSAGE with heads 3 and 4, ADMIN (sex, age) with head 4", {"DOSAGE": (2, 3), "sex, age": (3,)}),
        (
            "shares MEDICAL with head 1, ADMIN (sex, age) with heads 1, 2 and 4",
            {"MEDICAL": (0,), "sex, age": (0, 1, 3)},
        ),
    ],
)
def test_labels_of_heads_that_share_read_back_as_the_heads_they_share_with(
    label: str, shared_with: dict[str, tuple[int, ...]]
) -> None:
    from engine.runs.formats import role_from_label

    role = role_from_label(label)
    assert (role["kind"], role["shared_with"]) == ("shares", shared_with)
    assert role_label(role["kind"], role["reason"], role["shared_with"]) == label


def _contradictions(head: dict) -> list[str]:
    """What in a head's label the numbers shown beside it (analyze's JSON: twins' necessity per check, accuracy lost
    per class when it is resampled) do not bear out."""
    kind, reason = head["kind"], head["reason"]
    needed = {c for c, v in head["necessity"].items() if v > UNOWNED}
    lost = {c for c, v in head["ablation"].items() if v > UNOWNED}
    reasons = {reason_of(c) for c in needed} | (lost - {"VALID"})
    named = {reason_of(c) for c in (reason or "").split(", ") if c}
    found = []
    if kind == "little effect" and (needed or lost):
        found.append(f"little effect, but {sorted(needed | lost)} need it")
    if kind == "specialist" and (reasons - {head["owns"]} or "VALID" in lost):
        found.append(f"{head['label']}, but {sorted(reasons | lost)} need it")
    if kind == "helps" and reasons - named:
        found.append(f"{head['label']}, but {sorted(reasons)} need it")
    if kind == "generalist" and len(reasons) < 2:
        found.append(f"generalist, but only {sorted(reasons)} need it")
    if kind == "leans" and max(need(head["necessity"], u) for u in UNITS if unit_reason(u) in named) < OWNED:
        found.append(f"{head['label']}, but it needs less than {OWNED:.0%}")
    if kind == "needed by" and (needed or set(reason.split(", ")) != lost):
        found.append(f"{head['label']}, but twins need it for {sorted(needed)} and resampling costs {sorted(lost)}")
    return found


def test_on_a_trained_model_no_label_contradicts_its_own_numbers(trained_run_folder) -> None:
    report = analyze_run(trained_run_folder)
    heads = [(name, h) for name, specs in report["heads"].items() for h in specs]
    assert len(heads) == 8 and {h["kind"] for name, h in heads if name.startswith("encoder.")} == {"not patched"}
    found = {f"{name} head {h['head'] + 1}": _contradictions(h) for name, h in heads}
    assert not any(found.values()), found


def test_inspects_switched_off_answer_is_the_specialization_measurement_of_that_head_and_claim(
    trained_run_folder,
) -> None:
    predictor = Predictor.from_run(trained_run_folder)
    model, catalog = predictor.model, predictor.catalog
    written = generate_claims(300, 77, catalog)
    claims = encode_claims(written, predictor.tokenizer, model.config.max_len)
    with torch.no_grad():
        answered = greedy_outcomes(model.class_log_probs(claims.tokens, claims.categories))
    # one claim of each class that the model answers right: its answer is then the class it is resampled from
    rows = [next(i for i in range(len(written)) if claims.classes[i] == c == answered[i]) for c in range(5)]
    chosen = claims.subset(torch.tensor(rows))
    reference = reference_claims(predictor.tokenizer, model.config.max_len)
    for name in analysed_names(model):
        measured = attribute(model, name, chosen, None, reference)
        for row, true in zip(rows, CLASSES, strict=True):
            switched_off = predictor.predict(written[row].text).ablation[name]
            expected = [max(h.answers[true], key=h.answers[true].get) for h in measured]
            assert list(switched_off) == expected, (name, written[row].text)
            assert all(max(h.answers[true].values()) == 1.0 for h in measured)  # one claim: one answer


def test_specialization_records_keep_selectivity_pairs_and_how_heads_were_taken_away() -> None:
    import json

    from engine.runs.reading import encode_record, specialization_point
    from engine.telemetry import HeadSpecialization, SpecializationPoint

    older = {
        "shares": {"dose": 1.0},
        "entropy": 0.1,
        "confidence": 0.9,
        "importance": 0.0,
        "ablation": {},
        "label": "little effect",
        "evidence": "numbers",
    }
    [zeroed] = specialization_point({"step": 5, "heads": {CROSS: [older]}}).heads[CROSS]
    assert (zeroed.selectivity, zeroed.shared_with, zeroed.pair_ablation, zeroed.intervention) == (
        None,
        {},
        {},
        "zeroed",
    )
    [mean] = specialization_point(
        {"step": 5, "heads": {CROSS: [older | {"answers": {"VALID": {"VALID": 1.0}}}]}}
    ).heads[CROSS]
    assert mean.intervention == "mean"  # saved after answers were recorded, before resampling
    head = HeadSpecialization(
        shares={"dose": 1.0},
        entropy=0.1,
        confidence=0.9,
        importance=0.0,
        ablation={"DOSAGE": 0.1},
        pair_necessity={"1": {"DOSAGE": 1.0}},
        pair_ablation={"1": {"DOSAGE": 0.4}},
        selectivity=0.4,
        shared_with={"DOSAGE": (1,)},
        kind="shares",
        reason="DOSAGE",
        rivals=(2,),
    )
    written = json.loads(json.dumps(encode_record(SpecializationPoint(7, {CROSS: (head,)}))))
    assert specialization_point(written).heads[CROSS] == (head,)
    assert not {"label", "evidence"} & set(written["heads"][CROSS][0])  # facts only: the pages word them
    for hostile in ({"intervention": "rm -rf"}, {"shared_with": {"DOSAGE": [10**9]}}, {"selectivity": "high"}):
        with pytest.raises(ValueError):
            specialization_point({"step": 5, "heads": {CROSS: [written["heads"][CROSS][0] | hostile]}})


def made_by_two_threads_at_once(
    cached: Callable[[int], object], monkeypatch: pytest.MonkeyPatch, module: object, cache: str, maker: str
) -> dict[int, object]:
    """`cached(max_len)` for max_len 40 and 41, each in its own thread, with the module's cache (emptied, bound to one
    entry) full, and `maker` (the module's function the value is made with) entered by both threads together where
    they may: both evict, and keep what they made, at once. What each returned, or raised."""
    import contextlib
    import threading

    kept = getattr(module, cache)
    monkeypatch.setattr(module, cache, Cache(kept.name, 1, kept.key, kept.weak))
    cached(39)
    both_making, made = threading.Barrier(2), getattr(module, maker)

    def at_once(*args: object) -> object:
        with contextlib.suppress(threading.BrokenBarrierError):  # one at a time, had the cache kept out the second
            both_making.wait(timeout=2)
        return made(*args)

    monkeypatch.setattr(module, maker, at_once)
    got: dict[int, object] = {}

    def get(max_len: int) -> None:
        try:
            got[max_len] = cached(max_len)
        except Exception as error:
            got[max_len] = error

    threads = [threading.Thread(target=get, args=(max_len,)) for max_len in (40, 41)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return got


def test_run_pairs_made_by_two_training_threads_at_once_are_each_their_own_and_kept_within_bounds(
    monkeypatch: pytest.MonkeyPatch, setting
) -> None:
    import engine.interpret.pairs as pairs_module

    monkeypatch.setattr(pairs_module, "minimal_pairs", lambda catalog, tokenizer: [])
    monkeypatch.setattr(pairs_module, "pair_batch", lambda pairs, tokenizer, max_len, device: max_len)
    got = made_by_two_threads_at_once(
        lambda max_len: run_pairs(setting[1], max_len), monkeypatch, pairs_module, "_RUN_PAIRS", "pair_batch"
    )
    assert got == {40: 40, 41: 41} and len(pairs_module._RUN_PAIRS) == 1


def test_reference_claims_made_by_two_threads_at_once_are_each_their_own_and_kept_within_bounds(
    monkeypatch: pytest.MonkeyPatch, setting
) -> None:
    import engine.interpret.attribution as attribution_module

    got = made_by_two_threads_at_once(
        lambda max_len: reference_claims(setting[1], max_len),
        monkeypatch,
        attribution_module,
        "_REFERENCES",
        "generate_claims",
    )
    assert all(isinstance(claims, ClaimTensors) for claims in got.values()) and got[40] is not got[41], got
    assert len(attribution_module._REFERENCES) == 1
