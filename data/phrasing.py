"""Claim fields written as free text, the many ways a clerk or doctor might type them.

The model is judged on hand-written claims in phrasings this module never produces, so breadth matters more
than realism: random templates, field order, separators, abbreviations, number formats, synonyms, letter case.
Separators between fields are always hard ones ("," ";" "|" "+" newline, full stop) so that two neighbouring
fields can never read as one longer catalog name.
"""

from __future__ import annotations

import random

from data.catalog import Catalog
from data.rules import ClaimFields
from data.text import RESERVED_WORDS, phrase_key
from data.tokenizer import AGE_WORDS, MONEY_WORDS, NUMBER_WORDS
from data.vocabulary import WORDS

# Template words must be in the tokenizer's WORDS (a test checks that any <unk> in generated text is junk).
# fmt: off
DX = ("{}", "{}", "{}", "dx {}", "dx: {}", "diagnosis: {}", "diagnosed with {}", "{} patient",
      "patient with {}", "pt with {}", "hx of {}", "history of {}", "known {}", "w/ {}", "presenting with {}",
      "suffering from {}", "due to {}", "{} dx", "for {}")
DX_CODE = ("{} ({})", "{} - icd {}", "{} icd-10 {}")
DRUG_DOSE = ("{d} {q}", "{d} {q}", "{d} {q}", "rx {d} {q}", "rx: {d} {q}", "prescribed {d} {q}",
             "{d} {q} daily", "{d} {q} per day", "{d} {q}/day", "{d} {q} a day", "{d} {q} once daily",
             "{d} {q} qd", "{q} {d}", "{q} of {d}", "{q} {d} daily", "medication: {d} {q}",
             "started on {d} {q}", "refill {d} {q}", "{d} ({q})", "{d}, {q}", "on {d} {q}", "given {d} {q}",
             "taking {d} {q}", "drug: {d}, dose: {q}", "{d} {q} po daily", "{d} {q} tablets daily")
DRUG_ONLY = ("{d}", "{d}", "rx {d}", "prescribed {d}", "refill {d}", "{d} refill", "medication: {d}",
             "started on {d}", "drug: {d}")
PROC = ("{p}", "{p}", "{p}", "underwent {p}", "{p} performed", "procedure: {p}", "{p} ({c})", "cpt {c}",
        "{c} {p}", "{p} cpt {c}", "s/p {p}", "had {p}", "{p} done", "billed for {p}", "service: {p}",
        "received {p}", "scheduled {p}", "cpt code {c} ({p})")
AMOUNT = ("{}", "{}", "{}", "billed {}", "cost {}", "costs {}", "charge: {}", "charged {}", "total {}",
          "total charges {}", "amount: {}", "amount billed {}", "{} billed", "{} total", "price {}",
          "claim amount {}", "fee {}", "billed at {}", "{} charge", "paid {}")
AMOUNT_CENTS = ("${:.2f}", "${:,.2f}", "{:.2f} USD", "{:,.2f} dollars", "USD {:.2f}")
AMOUNT_WHOLE = ("${:,}", "${:,}", "${}", "${:,}.00", "{} USD", "{:,} USD", "{:,} dollars", "USD {:,}", "{}$",
                "$ {:,}")
AMOUNT_THOUSANDS = ("${}k", "${}K", "{}k USD")
DOSE_MCG = ("{} mcg", "{}mcg", "{} micrograms", "{} ug")
DOSE_G = ("{} g", "{}g", "{} grams", "{} gm")
DOSE_MG = ("{}mg", "{} mg", "{}mg", "{} mg", "{} milligrams", "{} MG")
AGE = ("{}yo", "{} yo", "{} y/o", "{}-year-old", "{} year old", "age {}", "aged {}", "age: {}",
       "{} years old", "{} yrs", "{}y", "{} y.o.", "{} yrs old", "{} years of age")
SEX = {"M": ("M", "male", "man", "Male"), "F": ("F", "female", "woman", "Female")}
SEX_CHILD = {"M": "boy", "F": "girl"}
SEX_LABEL = ("sex: {}", "gender: {}", "sex {}")
PATIENT_SHAPES = ("{age_text} {word}", "{age_text} {word}", "{word} {age_text}", "{age}{sex}", "{age}yo{sex}",
                  "{sex}/{age}", "{word}, age {age}", "{age} {sex}", "{age_text}, {labelled}")
SPECIALTY = ("by {}", "seen by {}", "{}", "provider: {}", "billed by {}", "rendering: {}", "ordered by {}",
             "per {}", "specialty: {}", "from {}", "performed by {}")
PRESCRIBER = ("prescribed by {}", "per {}", "{}", "provider: {}", "by {}")
PLACE = ("at {}", "in {}", "pos: {}", "place of service: {}", "{}", "setting: {}", "location: {}",
         "in the {}", "at the {}")
SEPARATORS = (", ", ", ", ", ", "; ", " | ", " + ", "\n", ". ", " ,")
PREFIXES = ("", "", "", "", "claim: ", "pt: ", "patient: ", "please review: ", "re: ", "new claim - ",
            "billing: ", "audit: ", "review: ", "claim submitted: ")
SUFFIXES = ("", "", "", "", ".", " - please review", ", pls review", ". thanks", " (urgent)", "?",
            ". please verify")
KV_KEYS = {
    "dx": ("Dx", "Diagnosis", "DX"), "drug": ("Rx", "Drug", "Medication", "Med"),
    "dose": ("Dose", "Dosage", "Strength"), "proc": ("Procedure", "Proc", "Service", "CPT"),
    "amount": ("Amount", "Amt", "Billed", "Charge", "Total"), "agesex": ("Patient", "Pt", "Member"),
    "spec": ("Provider", "Specialty", "Rendering"), "place": ("POS", "Place", "Setting", "Location"),
}
KV_SEPARATORS = (" | ", "; ", ", ", "\n", " ; ")
KV_COLONS = (": ", ": ", " - ", "=")
DRUG_VERBS = ("prescribed", "given", "started on", "on", "taking", "refilled", "rx")
PROC_VERBS = ("underwent", "had", "received", "scheduled for", "billed for", "s/p")
AMOUNT_TAILS = (", billed {}", " for {}", "; total {}", " at a cost of {}", " ({})", ", {}", ". amount {}",
                ", charge {}")
SPEC_TAILS = (" by {}", ", seen by {}", " per {}", ", {}", ", ordered by {}")
PLACE_TAILS = (" at {}", " in {}", ", pos: {}", " at the {}", ", setting: {}")
ENDINGS = ("", "", ".", ". please review.", " - pls review", "?", ". thanks")
WHO = ("patient", "pt", "member", "patient", "")
# Where a drug is given or prescribed (the rules check no place for drugs): a clinic, a video visit, a hospital.
DRUG_PLACES = ("office", "telehealth", "outpatient", "inpatient", "er")
# Words outside the vocabulary (names, places, jargon), sprinkled in so the model learns to read past <unk>.
JUNK_WORDS = ("smith", "garcia", "nguyen", "johnson", "okafor", "kowalski", "rm", "bldg", "acme", "asap",
              "fyi", "tbd", "mary", "joseph", "riverside", "mercy", "memorial", "northside", "valley", "ste",
              "ext", "batch", "ticket", "ehr", "epic", "cerner", "fax", "scanned", "handwritten", "illegible")
# fmt: on
NOISE_RATE = 0.25  # share of claims that get filler words or junk
# Share of claims written as their fields alone ("Asthma, montelukast 10 mg, $30"): with a template word or filler
# in nearly every claim, a model never learns to judge a claim that has none.
BARE_RATE = 0.2


def fmt_number(value: float) -> str:
    return f"{value:.6f}".rstrip("0").rstrip(".")


class Writer:
    def __init__(self, catalog: Catalog, rng: random.Random) -> None:
        self.catalog, self.rng = catalog, rng
        self.filler = _filler_words(catalog)
        names = {
            **{("dx", k): (*d.aliases, d.name) for k, d in catalog.diagnoses.items()},
            **{("drug", k): (*d.aliases, d.name) for k, d in catalog.drugs.items()},
            **{("proc", k): (*p.aliases, p.name) for k, p in catalog.procedures.items()},
            **{("spec", k): (*s.aliases, s.name) for k, s in catalog.specialties.items()},
            **{("place", k): (*p.aliases, p.name) for k, p in catalog.places.items()},
        }
        # every way name() may case each name, made once rather than on every claim
        self.names = {key: tuple(map(_casings, texts)) for key, texts in names.items()}

    # ---- entity names, numbers, patient --------------------------------------------------------------------

    def name(self, kind: str, key: str) -> str:
        lower, title, upper, capitalized = self.rng.choice(self.names[kind, key])
        roll = self.rng.random()
        if roll < 0.5:
            return lower
        if roll < 0.72:
            return title
        if roll < 0.82 and upper is not None:
            return upper
        return capitalized

    def dose(self, mg: float) -> str:
        """A daily dose in its natural unit: 400 mcg or 0.4 mg, 1 g or 1000 mg."""
        rng = self.rng
        if mg < 1 and rng.random() < 0.6:
            return rng.choice(DOSE_MCG).format(fmt_number(mg * 1000))
        if mg >= 1000 and rng.random() < 0.35:
            return rng.choice(DOSE_G).format(fmt_number(mg / 1000))
        number = f"{mg:,.0f}" if mg >= 1000 and mg == int(mg) and rng.random() < 0.3 else fmt_number(mg)
        return rng.choice(DOSE_MG).format(number)

    def amount(self, usd: float) -> str:
        rng = self.rng
        if usd != int(usd):
            return rng.choice(AMOUNT_CENTS).format(usd)
        whole = int(usd)
        if whole >= 1000 and whole % 1000 == 0 and rng.random() < 0.2:
            return rng.choice(AMOUNT_THOUSANDS).format(whole // 1000)
        return rng.choice(AMOUNT_WHOLE).format(whole)

    def sex_word(self, sex: str, age: int | None) -> str:
        if age is not None and age < 18 and self.rng.random() < 0.4:
            return SEX_CHILD[sex]
        return self.rng.choice(SEX[sex])

    def patient(self, age: int | None, sex: str | None) -> str:
        rng = self.rng
        if age is None and sex is None:
            return ""
        if age is None:
            word = self.sex_word(sex, None)
            return rng.choice(SEX_LABEL).format(word) if rng.random() < 0.3 else word
        age_text = rng.choice(AGE).format(age)
        if sex is None:
            return age_text
        word = self.sex_word(sex, age)
        labelled = rng.choice(SEX_LABEL).format(word)
        return rng.choice(PATIENT_SHAPES).format(age_text=age_text, word=word, age=age, sex=sex, labelled=labelled)

    # ---- fields as phrases ---------------------------------------------------------------------------------

    def dx_phrase(self, key: str) -> str:
        if self.rng.random() < 0.1:
            return self.rng.choice(DX_CODE).format(self.name("dx", key), self.catalog.diagnoses[key].icd10cm)
        return self.rng.choice(DX).format(self.name("dx", key))

    def drug_phrase(self, key: str, dose_mg: float | None) -> str:
        name = self.name("drug", key)
        if dose_mg is None:
            return self.rng.choice(DRUG_ONLY).format(d=name)
        return self.rng.choice(DRUG_DOSE).format(d=name, q=self.dose(dose_mg))

    def proc_phrase(self, key: str) -> str:
        return self.rng.choice(PROC).format(p=self.name("proc", key), c=key)

    def item_phrase(self, s: ClaimFields) -> str | None:
        if s.drug is not None:
            return self.drug_phrase(s.drug, s.dose_mg)
        return None if s.procedure is None else self.proc_phrase(s.procedure)

    def item_name(self, s: ClaimFields) -> str | None:
        if s.drug is not None:
            return self._bare_drug(s)
        return None if s.procedure is None else self.name("proc", s.procedure)

    # ---- whole claims --------------------------------------------------------------------------------------

    def text(self, s: ClaimFields) -> str:
        rng = self.rng
        if rng.random() < BARE_RATE:
            return self._bare(s)
        roll = rng.random()
        if s.diagnosis is not None and roll < 0.35:
            text = self._sentence(s)
        elif roll < 0.55:
            text = self._key_values(s)
        else:
            text = self._list(s)
        text = text.strip()
        if rng.random() < NOISE_RATE:
            text = self._add_noise(text)
        case = rng.random()
        if case < 0.12:
            return text.lower()
        if case < 0.16:
            return text.upper()
        return text[:1].upper() + text[1:] if rng.random() < 0.6 else text

    def _list(self, s: ClaimFields) -> str:
        rng = self.rng
        parts = [phrase for phrase in (self.item_phrase(s),) if phrase]
        if s.diagnosis is not None:
            parts.append(self.dx_phrase(s.diagnosis))
        if s.amount_usd is not None:
            parts.append(rng.choice(AMOUNT).format(self.amount(s.amount_usd)))
        if s.age is not None or s.sex is not None:
            parts.append(self.patient(s.age, s.sex))
        if s.specialty is not None:
            templates = SPECIALTY if s.procedure is not None else PRESCRIBER
            parts.append(rng.choice(templates).format(self.name("spec", s.specialty)))
        if s.place is not None:
            parts.append(rng.choice(PLACE).format(self.name("place", s.place)))
        rng.shuffle(parts)
        return rng.choice(PREFIXES) + rng.choice(SEPARATORS).join(parts) + rng.choice(SUFFIXES)

    def _bare(self, s: ClaimFields) -> str:
        """The fields alone, in any order, behind hard separators."""
        parts = [name for name in (self.item_name(s),) if name]
        if s.diagnosis is not None:
            parts.append(self.name("dx", s.diagnosis))
        if s.amount_usd is not None:
            parts.append(self.amount(s.amount_usd))
        if s.age is not None or s.sex is not None:
            parts.append(self.patient(s.age, s.sex))
        if s.specialty is not None:
            parts.append(self.name("spec", s.specialty))
        if s.place is not None:
            parts.append(self.name("place", s.place))
        self.rng.shuffle(parts)
        return self.rng.choice(SEPARATORS).join(parts)

    def _key_values(self, s: ClaimFields) -> str:
        rng = self.rng
        pairs = []
        if s.diagnosis is not None:
            pairs.append(("dx", self.name("dx", s.diagnosis)))
        if s.drug is not None:
            if s.dose_mg is not None and rng.random() < 0.5:
                pairs += [("drug", self.name("drug", s.drug)), ("dose", self.dose(s.dose_mg))]
            else:
                pairs.append(("drug", self.drug_phrase(s.drug, s.dose_mg)))
        elif s.procedure is not None:
            code = self.name("proc", s.procedure) if rng.random() < 0.7 else s.procedure
            pairs.append(("proc", code))
        if s.amount_usd is not None:
            pairs.append(("amount", self.amount(s.amount_usd)))
        if s.age is not None or s.sex is not None:
            pairs.append(("agesex", self.patient(s.age, s.sex)))
        if s.specialty is not None:
            pairs.append(("spec", self.name("spec", s.specialty)))
        if s.place is not None:
            pairs.append(("place", self.name("place", s.place)))
        if rng.random() < 0.6:
            rng.shuffle(pairs)
        colon = rng.choice(KV_COLONS)
        return rng.choice(KV_SEPARATORS).join(f"{rng.choice(KV_KEYS[k])}{colon}{v}" for k, v in pairs)

    def _sentence(self, s: ClaimFields) -> str:
        rng = self.rng
        who = self.patient(s.age, s.sex) or rng.choice(WHO)
        dx = self.name("dx", s.diagnosis)
        if s.drug is not None:
            drug = self.drug_phrase(s.drug, s.dose_mg) if rng.random() < 0.3 else self._bare_drug(s)
            item = f"{rng.choice(DRUG_VERBS)} {drug}"
        elif s.procedure is not None:
            item = f"{rng.choice(PROC_VERBS)} {self.name('proc', s.procedure)}"
        else:
            item = rng.choice(("seen", "visit"))
        tails = ""
        if s.amount_usd is not None:
            tails += rng.choice(AMOUNT_TAILS).format(self.amount(s.amount_usd))
        if s.specialty is not None:
            tails += rng.choice(SPEC_TAILS).format(self.name("spec", s.specialty))
        if s.place is not None:
            tails += rng.choice(PLACE_TAILS).format(self.name("place", s.place))
        shape = rng.random()
        if shape < 0.4:
            text = f"{who} with {dx} {item}{tails}"
        elif shape < 0.6:
            text = f"{dx}: {item}{tails}" + (f". {who}" if who and who not in WHO else "")
        elif shape < 0.8:
            head = f"claim for {self.item_name(s) or 'a visit'}"
            subject = f"a {who}" if who and who not in WHO else "patient"
            text = f"{head}{tails} for {subject} with {dx}"
        else:
            text = f"{who + ', ' if who else ''}{dx}, {item}{tails}"
        return text + rng.choice(ENDINGS)

    def _add_noise(self, text: str) -> str:
        """Filler words or junk before or after the claim, behind a hard separator so no field changes."""
        rng = self.rng
        if rng.random() < 0.4:
            noise = rng.choice(JUNK_WORDS) + (f" {rng.choice(self.filler)}" if rng.random() < 0.5 else "")
        else:
            noise = " ".join(rng.choice(self.filler) for _ in range(rng.randint(1, 3)))
        if rng.random() < 0.5:
            return f"{noise}: {text}"
        return f"{text}, {noise}"

    def _bare_drug(self, s: ClaimFields) -> str:
        name = self.name("drug", s.drug)
        return name if s.dose_mg is None else f"{name} {self.dose(s.dose_mg)}"


def _casings(text: str) -> tuple[str, str, str | None, str]:
    """text in lower case, in Title Case, in upper case (None if longer than an abbreviation) and capitalized."""
    title = " ".join(word[:1].upper() + word[1:] for word in text.split(" "))
    return text.lower(), title, text.upper() if len(text) <= 6 else None, text[:1].upper() + text[1:]


def _filler_words(catalog: Catalog) -> list[str]:
    """Vocabulary words that cannot change what a claim says: not the start of a catalog name, not a sex,
    unit, age or money word, not a single letter."""
    groups = (catalog.diagnoses, catalog.drugs, catalog.procedures, catalog.specialties, catalog.places)
    names = [name for group in groups for item in group.values() for name in (item.name, *item.aliases)]
    codes = [*catalog.procedures, *(d.icd10cm for d in catalog.diagnoses.values())]
    starts = {phrase_key(name)[0] for name in names + codes}
    banned = starts | RESERVED_WORDS | AGE_WORDS | MONEY_WORDS | set(NUMBER_WORDS)
    return [w for w in WORDS if len(w) > 1 and w.isalpha() and w not in banned]
