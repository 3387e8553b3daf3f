"""The poison soak's population, its bad records, and what the hub must make of them: an oracle that
knows the expected outcome of every generated person by construction.

Nothing here imports the hub's detection, routing or consent code. The expectations are a small
restatement of the rules for the few kinds of persons generated:

- an adult who arrives from abroad (not a Finnish citizen, arrival within 3 years): one referral,
  outreach, to the municipality of residence (681/2023 § 10; the only rule an adult with unknown
  labour-force status, no service needs and an unknown or EU residence basis meets);
- an unaccompanied minor (under 18, no guardian in Finland, a non-EU nationality: the register gives
  no residence basis, which the unaccompanied-minor rules count in, while an EU citizen's registered
  right of residence is not a basis they name): outreach and initial assessment to the
  municipality, and the wellbeing area (unaccompanied minor);
- an adult who then moves to another municipality: outreach from both municipalities;
- a Finnish citizen, or an arrival more than 3 years before the change: no newcomer, no referral.

Consents (assessor: the employment authority; plan-making authority: the municipality):
- A: grant, then assessment -> a plan request to the municipality, no notice;
- B: assessment, no consent -> held: a consent-required notice to the assessor, no plan request;
- C: assessment, then grant -> notice, then the held item released: a plan request;
- D: grant, assessment (plan request), revocation -> a consent-revoked notice to the municipality;
  a second assessment afterwards -> consent-required notice, never a plan request.
Plus canaries (good persons published while poison records are in flight) and the bad records of
issue 23, each with the isolation the hub owes it (`POISON_KINDS`).

The person key is restated from its documented contract (HMAC-SHA256 of the identity code under
HUB_PERSON_KEY_SECRET, hex, first 32 characters), the identity code from its public definition.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import random
import uuid
from dataclasses import dataclass, field

from aiokafka.partitioner import murmur2

from tests.soak import wire
from hub.schemas import topics  # topic names only

CHECK_CHARS = "0123456789ABCDEFHJKLMNPRSTUVWXY"
# municipality -> (its wellbeing area, its employment authority): the 2025 classifications, as
# `hub authorities --municipality CODE` prints them
AREAS = {
    "049": ("wellbeing_area:03", "employment_authority:01"),
    "179": ("wellbeing_area:15", "employment_authority:09"),
    "564": ("wellbeing_area:19", "employment_authority:24"),
    "837": ("wellbeing_area:08", "employment_authority:39"),
    "853": ("wellbeing_area:05", "employment_authority:41"),
}
GOOD_MUNICIPALITIES = tuple(AREAS)
POISON_MUNICIPALITY = "092"  # the ~1 MB assessment's plan-making authority: no good person uses it
POISON_ASSESSOR = "employment_authority:43"
CATEGORIES = ["education", "work_history", "language_skills", "literacy", "service_needs", "recommended_path"]
NATIONALITIES = ["SY", "AF", "IQ", "SO", "UA", "RU", "IN", "CN", "VN", "EE", "SE", "TH", "PH", "NG", "IR"]
NON_EU_NATIONALITIES = [n for n in NATIONALITIES if n not in ("EE", "SE")]
TONGUES = ["ar", "fa", "so", "uk", "ru", "en", "zh", "vi", "et", "th"]
# 70 real ISO 3166-1 alpha-2 codes: a nationality list longer than any column the hub declares
SEVENTY = ("AD AE AF AG AL AM AO AR AT AU AZ BA BB BD BE BF BG BH BI BJ BN BO BR BS BT BW BY BZ CA CD CF CG CH CI CL "
           "CM CN CO CR CU CV CY CZ DE DJ DK DM DO DZ EC EE EG ER ES ET FJ FR GA GB GD GE GH GM GN GQ GR GT GW GY HN").split()
assert len(set(SEVENTY)) == 70

STATUS_TOPIC = topics.REFERRAL_STATUS


def check_char(digits: str) -> str:
    return CHECK_CHARS[int(digits) % 31]


def identity_code(born: dt.date, serial: int) -> str:
    """DDMMYYCZZZQ; century sign '-' (1900s) or 'A' (2000s); serials 900-999 are test codes."""
    sign = "-" if born.year < 2000 else "A"
    digits = born.strftime("%d%m%y") + f"{serial:03d}"
    return f"{digits[:6]}{sign}{digits[6:]}{check_char(digits)}"


def person_key(code: str, secret: str) -> str:
    return hmac.new(secret.encode(), code.encode(), hashlib.sha256).hexdigest()[:32]


def fullwidth(code: str) -> str:
    """The same code with its date part in fullwidth digits (U+FF10-FF19): not the canonical form
    (the check character stays as it is, so only the digits' form is wrong)."""
    return "".join(chr(ord(c) + 0xFEE0) for c in code[:6]) + code[6:]


def partition_of(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner (and the hub's) gives `key`."""
    return 0 if partitions == 1 else (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


@dataclass
class Person:
    pid: str
    key: str
    kind: str  # adult, minor, mover, citizen, old; or a role in the consent or poison scenarios
    municipality: str
    born: dt.date
    consent_plan: str | None = None  # A, B, C, D (good path); canary, race, fullwidth, victim, poison
    consent_id: str | None = None
    moved_to: str | None = None

    @property
    def plan_authority(self) -> str:
        return f"municipality:{self.municipality}"

    @property
    def assessor(self) -> str:
        return POISON_ASSESSOR if self.municipality == POISON_MUNICIPALITY else AREAS[self.municipality][1]


Item = tuple  # (topic, key bytes | None, value bytes, headers, partition | None)


@dataclass
class Poison:
    """One bad record: its kind, the topic it goes to, and (after publishing) where it landed."""

    kind: str
    item: Item
    person_key: str | None = None  # the person it concerns (a derived record's dead letter names it)
    event_id: str | None = None
    assessment_id: str | None = None  # assessments that must never become a plan request
    landed: tuple[str, int, int] | None = None  # (topic, partition, offset)


# Every kind of bad record of issue 23 the soak mixes in, and what the hub owes it. A kind's check
# names it, so the report says which kind failed.
POISON_KINDS = {
    "population-change-70-nationalities": "a PopulationChange with 70 nationalities is dead-lettered (itself, or its Newcomer)",
    "newcomer-70-nationalities": "a Newcomer with 70 nationalities is dead-lettered",
    "newcomer-person-key-200": "a Newcomer whose person_key has 200 characters is dead-lettered",
    "newcomer-nul": "a Newcomer with a NUL character (person_key) is dead-lettered",
    "status-nul-id": "a ReferralStatus whose referral_id holds a NUL is dead-lettered; later statuses are applied",
    "consent-nul": "a Consent whose consent_id holds a NUL is dead-lettered",
    "assessment-nul": "an AssessmentCompleted whose assessment_id holds a NUL is dead-lettered",
    "population-change-invalid-1mb": "an undecodable ~1 MB record on the population changes is dead-lettered (kept whole in the database when too big)",
    "assessment-invalid-1mb": "an undecodable ~1 MB record on the assessments is dead-lettered (kept whole in the database when too big)",
    "deep-nested": "2 KB of 1,000 nested brackets on the population changes and the consents are dead-lettered",
    "assessment-valid-1mb": "a valid ~1 MB assessment whose plan request is too big to send never blocks plan requests and notices to other recipients",
    "revocation-fullwidth-digits": "a revocation whose identity code has fullwidth digits is dead-lettered",
    "revocation-before-assessment": "a revocation queued on hub.consents.v1 before an assessment on hub.assessments.v1: no plan request for it",
    "assessment-person-key-mismatch": "an assessment whose person_key is not its person_id's is dead-lettered, never a plan request",
    "cli-deep-nested": "`hub route` and `hub ingest dvv --dry-run` answer the lines after 1,000 nested brackets, without a traceback",
}
DEAD_LETTER_KINDS = set(POISON_KINDS) - {"assessment-valid-1mb", "revocation-before-assessment", "cli-deep-nested"}
ONE_MB = 1_048_400  # just under Kafka's default message.max.bytes (1,048,588 per batch): the broker takes it, its dead letter does not fit


@dataclass
class Scenario:
    now: dt.datetime
    secret: str
    partitions: int
    persons: list[Person] = field(default_factory=list)
    phases: dict[str, list[Item]] = field(default_factory=dict)
    # -- expectations --------------------------------------------------------------------------
    checked_keys: set[str] = field(default_factory=set)  # persons whose referrals, plans and notices are compared exactly
    referrals: set[tuple[str, str, str]] = field(default_factory=set)  # (person key, recipient, purpose)
    plans: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # assessment id -> (person key, recipient, person id)
    forbidden_plans: dict[str, str] = field(default_factory=dict)  # assessment id -> why no plan request may go out
    notices: set[tuple[str, str, str, str]] = field(default_factory=set)  # (type, to, person key, assessment or consent id)
    unchecked_notice_keys: set[str] = field(default_factory=set)
    phase_outputs: dict[str, dict] = field(default_factory=dict)  # phase -> {"referrals": set, "plans": set, "notices": set}
    grants_by_phase: dict[str, int] = field(default_factory=dict)
    poison: list[Poison] = field(default_factory=list)
    canaries: list[Person] = field(default_factory=list)
    canary_items: list[Item] = field(default_factory=list)
    race_fillers: list[Item] = field(default_factory=list)
    race_revocations: list[Item] = field(default_factory=list)
    race_assessments: list[Item] = field(default_factory=list)
    status_canary_persons: list[Person] = field(default_factory=list)
    replayed: int = 0
    assessments_published: int = 0


class Builder:
    def __init__(self, n_events: int, seed: int, secret: str, now: dt.datetime, partitions: int, kinds: set[str]):
        self.rng = random.Random(seed)
        self.s = Scenario(now=now, secret=secret, partitions=partitions)
        self.kinds = kinds
        self._adults, self._minors = self._code_stream(False), self._code_stream(True)
        self.n = 0
        self._build(n_events)

    # -- persons -------------------------------------------------------------------------------
    def _code_stream(self, minor: bool):
        """Unique identity codes by construction: test serials 900-999 over shuffled birth days
        (adults born 1960-1999; minors 11-16 years old on the day of the run)."""
        if minor:
            first, days = self.s.now.date() - dt.timedelta(days=int(16.9 * 365)), int(5.5 * 365)
        else:
            first, days = dt.date(1960, 1, 1), 40 * 365
        order = list(range(days))
        self.rng.shuffle(order)
        for day in order:
            for serial in range(900, 1000):
                yield first + dt.timedelta(days=day), serial

    def _person(self, kind: str, municipality: str | None = None, minor: bool = False) -> Person:
        born, serial = next(self._minors if minor else self._adults)
        pid = identity_code(born, serial)
        p = Person(pid=pid, key=person_key(pid, self.s.secret), kind=kind, municipality=municipality or self.rng.choice(GOOD_MUNICIPALITIES), born=born)
        self.s.persons.append(p)
        return p

    def _envelope(self, source: str, occurred: dt.datetime | None = None) -> dict:
        return {"event_id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)), "occurred_at": occurred or self.s.now,
                "recorded_at": self.s.now, "source": source, "schema_version": 1}

    def _item(self, topic: str, name: str, record: dict, key: str | None, partition: int | None = None) -> Item:
        return (topic, key.encode() if key is not None else None, wire.encode(name, record), wire.headers(name, record), partition)

    def change(self, p: Person, change_type: str = "immigration", municipality: str | None = None, previous: str | None = None,
               arrived_days_ago: int | None = None, nationalities: list[str] | None = None, guardian: bool | None = None) -> tuple[Item, dict]:
        nat = nationalities or [self.rng.choice(NATIONALITIES)]
        days = arrived_days_ago if arrived_days_ago is not None else self.rng.randint(2, 60)
        move = self.s.now.date() - dt.timedelta(days=days)
        rec = self._envelope("dvv", self.s.now - dt.timedelta(hours=self.rng.randint(1, 20)))
        rec.update(person_id=p.pid, change_type=change_type, municipality_code=municipality or p.municipality, previous_municipality_code=previous,
                   previous_country=nat[0] if change_type == "immigration" else None, nationalities=nat, mother_tongue=self.rng.choice(TONGUES),
                   birth_date=p.born, move_date=max(move, p.born), contact_language=self.rng.choice([None, "en", "fi"]), dvv_batch_ref=None,
                   previous_person_id=None, guardian_in_finland=guardian, turvakielto=False, data_group=None, destination_country=None, death_date=None)
        return self._item(topics.POPULATION_CHANGES, "PopulationChange", rec, p.key), rec

    def grant(self, p: Person) -> Item:
        p.consent_id = p.consent_id or f"C-{p.key[:16]}"
        rec = self._envelope(p.plan_authority, self.s.now - dt.timedelta(minutes=30))
        rec.update(consent_id=p.consent_id, person_id=p.pid, action="granted", purpose="integration_plan", data_categories=CATEGORIES,
                   recipients=[p.plan_authority], valid_from=self.s.now - dt.timedelta(days=1), valid_until=self.s.now + dt.timedelta(days=365),
                   evidence="signed form", recorded_by=p.plan_authority)
        return self._item(topics.CONSENTS, "Consent", rec, p.key)

    def revocation(self, p: Person, person_id: str | None = None) -> Item:
        rec = self._envelope(p.plan_authority)
        rec.update(consent_id=p.consent_id, person_id=person_id or p.pid, action="revoked", purpose="integration_plan", data_categories=[],
                   recipients=[], valid_from=None, valid_until=None, evidence="revoked in writing", recorded_by=p.plan_authority)
        return self._item(topics.CONSENTS, "Consent", rec, p.key)

    def assessment(self, p: Person, *, key: str | None = None, person_id: str | None = None, assessment_id: str | None = None,
                   work_history: str = "3 years in nursing") -> tuple[Item, str]:
        self.n += 1
        aid = assessment_id or f"A-{self.n}-{p.key[:8]}"
        rec = self._envelope(p.assessor, self.s.now - dt.timedelta(minutes=5))
        rec.update(assessment_id=aid, person_key=key or p.key, person_id=person_id or p.pid, assessor=p.assessor, plan_authority=p.plan_authority,
                   referral_id=None, education="secondary", work_history=work_history,
                   language_skills=[{"language": "fi", "skill": "overall", "cefr_level": "A2"}], literacy="literate",
                   recommended_path="integration training", service_needs=[])
        self.s.assessments_published += 1
        return self._item(topics.ASSESSMENTS, "AssessmentCompleted", rec, key or p.key), aid

    # -- the run's records and expectations ----------------------------------------------------
    def _expect_referrals(self, p: Person) -> set:
        m = f"municipality:{p.municipality}"
        if p.kind in ("citizen", "old"):
            return set()
        out = {(p.key, m, "outreach")}
        if p.kind == "minor":
            out |= {(p.key, m, "initial_assessment"), (p.key, AREAS[p.municipality][0], "unaccompanied_minor")}
        if p.kind == "mover":
            out.add((p.key, f"municipality:{p.moved_to}", "outreach"))
        return out

    def _outputs(self, phase: str) -> dict:
        return self.s.phase_outputs.setdefault(phase, {"referrals": set(), "plans": set(), "notices": set()})

    def _persons_per_partition(self, kind: str, per_partition: int, municipality: str | None = None) -> list[Person]:
        """Fresh persons, `per_partition` on each partition (by their key)."""
        want = {p: per_partition for p in range(self.s.partitions)}
        out = []
        while any(want.values()):
            p = self._person(kind, municipality)
            part = partition_of(p.key, self.s.partitions)
            if want[part]:
                want[part] -= 1
                out.append(p)
            else:
                self.s.persons.pop()  # the one just made
        return out

    def _build(self, n_events: int) -> None:
        s, rng = self.s, self.rng
        P = s.partitions
        # phase 1: the population (3 % of the changes delivered twice) and the grants that come first
        n_people = max(40, int(n_events * 0.8))
        population, grants1 = [], []
        people = []
        for _ in range(n_people):
            kind = rng.choices(["adult", "minor", "mover", "citizen", "old"], weights=[75, 8, 7, 5, 5])[0]
            p = self._person(kind, minor=kind == "minor")
            people.append(p)
            if kind == "citizen":
                population.append(self.change(p, nationalities=["FI"])[0])
            elif kind == "old":
                population.append(self.change(p, arrived_days_ago=5 * 365 + rng.randint(0, 300))[0])
            elif kind == "minor":
                population.append(self.change(p, guardian=False, nationalities=[rng.choice(NON_EU_NATIONALITIES)])[0])
            else:
                population.append(self.change(p, arrived_days_ago=rng.randint(20, 60))[0])
                if kind == "mover":
                    p.moved_to = rng.choice([m for m in GOOD_MUNICIPALITIES if m != p.municipality])
                    population.append(self.change(p, change_type="move_in", municipality=p.moved_to, previous=p.municipality, arrived_days_ago=rng.randint(0, 10))[0])
            s.checked_keys.add(p.key)
            s.referrals |= self._expect_referrals(p)
            self._outputs("1")["referrals"] |= self._expect_referrals(p)
        replays = rng.sample(range(len(population)), int(len(population) * 0.03))
        for i in replays:  # the same bytes again, later (a publisher's retry)
            population.insert(rng.randrange(i + 1, len(population) + 1), population[i])
        s.replayed = len(replays)

        adults = [p for p in people if p.kind == "adult"]
        rng.shuffle(adults)
        n_consent = max(8, int(n_events * 0.12))
        plans = [rng.choices("ABCD", weights=[35, 20, 25, 20])[0] for _ in range(min(n_consent, len(adults) - 4))]
        assess2, assess4, grants3, revokes3 = [], [], [], []
        for p, plan in zip(adults, plans):
            p.consent_plan = plan
            if plan in "AD":
                grants1.append(self.grant(p))
            item, aid = self.assessment(p)
            assess2.append(item)
            if plan in "ACD":
                s.plans[aid] = (p.key, p.plan_authority, p.pid)
                self._outputs("2" if plan != "C" else "3")["plans"].add(aid)
            if plan in "BC":
                n = ("consent_required", p.assessor, p.key, aid)
                s.notices.add(n)
                self._outputs("2")["notices"].add(n)
            if plan == "C":
                grants3.append(self.grant(p))
            if plan == "D":
                revokes3.append(self.revocation(p))
                n = ("consent_revoked", p.plan_authority, p.key, p.consent_id)
                s.notices.add(n)
                self._outputs("3")["notices"].add(n)
                item4, aid4 = self.assessment(p)
                assess4.append(item4)
                s.forbidden_plans[aid4] = "assessed after the consent's revocation was applied (good path)"
                n = ("consent_required", p.assessor, p.key, aid4)
                s.notices.add(n)
                self._outputs("4")["notices"].add(n)

        # canaries: good persons (grant now) whose change and assessment go out behind the poison, >= 2 per partition
        s.canaries = [p for p in self._persons_per_partition("adult", 2)]
        for p in s.canaries:
            p.consent_plan = "canary"
            s.checked_keys.add(p.key)
            grants1.append(self.grant(p))
            s.canary_items.append(self.change(p, arrived_days_ago=rng.randint(20, 60))[0])
            s.referrals |= self._expect_referrals(p)
            item, aid = self.assessment(p)
            s.canary_items.append(item)
            s.plans[aid] = (p.key, p.plan_authority, p.pid)
        # status canaries: referrals of the population accepted by their recipient, after the poison statuses
        s.status_canary_persons = [p for p in people if p.kind == "adult" and p.consent_plan is None][: 2 * P]

        poison = []
        if "revocation-before-assessment" in self.kinds:
            race = self._persons_per_partition("adult", 2)
            fillers = [self._person("adult") for _ in range(800)]  # seconds of work for the consent agent, whatever the size
            for p in race:
                p.consent_plan = "race"
                s.unchecked_notice_keys.add(p.key)
                grants1.append(self.grant(p))
                s.race_revocations.append(self.revocation(p))
                item, aid = self.assessment(p)
                s.race_assessments.append(item)
                s.forbidden_plans[aid] = "its revocation was queued on hub.consents.v1 before it (revocation-before-assessment)"
            for p in fillers:  # a backlog on the consents topic ahead of the revocations
                p.consent_plan = "filler"
                s.race_fillers.append(self.grant(p))
        if "revocation-fullwidth-digits" in self.kinds:
            for p in self._persons_per_partition("adult", 1):
                p.consent_plan = "fullwidth"
                s.checked_keys.add(p.key)  # no notice for it: the revocation is not a valid one
                grants1.append(self.grant(p))
                item, aid = self.assessment(p)
                assess2.append(item)
                s.plans[aid] = (p.key, p.plan_authority, p.pid)
                self._outputs("2")["plans"].add(aid)
                poison.append(Poison("revocation-fullwidth-digits", self.revocation(p, person_id=fullwidth(p.pid)), person_key=p.key))
        if "assessment-person-key-mismatch" in self.kinds:
            owners = self._persons_per_partition("adult", 1)
            for owner in owners:
                victim = self._person("adult")
                victim.consent_plan = "victim"
                s.checked_keys |= {owner.key, victim.key}
                grants1.append(self.grant(victim))
                item, aid = self.assessment(victim, key=owner.key)
                s.forbidden_plans[aid] = "its person_key is another person's (assessment-person-key-mismatch)"
                poison.append(Poison("assessment-person-key-mismatch", item, person_key=owner.key, assessment_id=aid))
        if "assessment-valid-1mb" in self.kinds:
            big = self._person("adult", POISON_MUNICIPALITY)
            big.consent_plan = "poison"
            grants1.append(self.grant(big))
            item, aid = self.assessment(big, work_history="w" * (ONE_MB + 60_000))
            poison.append(Poison("assessment-valid-1mb", item, person_key=big.key, assessment_id=aid))
        poison += self._poison_records()
        s.poison = poison
        s.grants_by_phase = {"1": len(grants1), "3": len(grants3)}
        s.phases = {"1": population + grants1, "2": assess2, "3": grants3 + revokes3, "4": assess4}

    def _poison_records(self) -> list[Poison]:
        s, P, out = self.s, self.s.partitions, []

        def newcomer(p: Person, **changes) -> tuple[Item, dict]:
            rec = self._envelope("hub:newcomer-detection")
            rec.update(person_key=p.key, person_id=p.pid, change="arrived", municipality_code=p.municipality, previous_municipality_code=None,
                       birth_date=p.born, arrival_date=s.now.date() - dt.timedelta(days=30), residence_basis="unknown", labour_force_status="unknown",
                       guardian_in_finland=None, service_needs=[], mother_tongue="ar", contact_language=None, nationalities=["SY"], turvakielto=False,
                       detected_from=None)
            rec.update(changes)
            return self._item(topics.NEWCOMERS, "Newcomer", rec, rec["person_key"]), rec

        if "population-change-70-nationalities" in self.kinds:
            for p in self._persons_per_partition("poison", 1):
                item, rec = self.change(p, nationalities=list(SEVENTY))
                out.append(Poison("population-change-70-nationalities", item, person_key=p.key, event_id=str(rec["event_id"])))
        if "newcomer-70-nationalities" in self.kinds:
            for p in self._persons_per_partition("poison", 1):
                item, rec = newcomer(p, nationalities=list(SEVENTY))
                out.append(Poison("newcomer-70-nationalities", item, person_key=p.key, event_id=str(rec["event_id"])))
        if "newcomer-person-key-200" in self.kinds:
            for part in range(P):
                p = self._person("poison")
                item, rec = newcomer(p, person_key=(p.key * 7)[:200])
                out.append(Poison("newcomer-person-key-200", item[:4] + (part,), person_key=rec["person_key"], event_id=str(rec["event_id"])))
        if "newcomer-nul" in self.kinds:
            for part in range(P):
                p = self._person("poison")
                item, rec = newcomer(p, person_key=p.key[:16] + "\x00" + p.key[16:])
                out.append(Poison("newcomer-nul", item[:4] + (part,), person_key=rec["person_key"], event_id=str(rec["event_id"])))
        if "status-nul-id" in self.kinds:
            for part in range(P):
                rec = self._envelope("municipality:049")
                rec.update(referral_id=f"R-{part}\x00-nul", authority="municipality:049", status="accepted", reason=None)
                out.append(Poison("status-nul-id", self._item(STATUS_TOPIC, "ReferralStatus", rec, None, part)))
        if "consent-nul" in self.kinds:
            for p in self._persons_per_partition("poison", 1):
                p.consent_id = f"C-nul\x00{p.key[:8]}"
                out.append(Poison("consent-nul", self.grant(p), person_key=p.key))
        if "assessment-nul" in self.kinds:
            for p in self._persons_per_partition("poison", 1):
                item, aid = self.assessment(p, assessment_id=f"A-nul\x00{p.key[:8]}")
                out.append(Poison("assessment-nul", item, person_key=p.key, assessment_id=aid))
        junk = b"\x00" + (1).to_bytes(4, "big") + bytes(self.rng.getrandbits(8) for _ in range(64)) + b"\xff" * (ONE_MB - 69)
        for kind, topic in (("population-change-invalid-1mb", topics.POPULATION_CHANGES), ("assessment-invalid-1mb", topics.ASSESSMENTS)):
            if kind in self.kinds:
                for part in range(P):
                    out.append(Poison(kind, (topic, f"junk-{part}".encode(), junk, [], part)))
        if "deep-nested" in self.kinds:
            nested = b"[" * 1000 + b"]" * 1000
            for topic in (topics.POPULATION_CHANGES, topics.CONSENTS):
                for part in range(P):
                    out.append(Poison("deep-nested", (topic, f"nested-{part}".encode(), nested, [], part)))
        return out

    # -- statuses (need the referral ids the hub made, read from the recipients' topics) -------
    def status(self, referral_id: str, authority: str, partition: int) -> Item:
        rec = self._envelope(authority)
        rec.update(referral_id=referral_id, authority=authority, status="accepted", reason=None)
        return self._item(STATUS_TOPIC, "ReferralStatus", rec, None, partition)


def build(n_events: int, seed: int, secret: str, now: dt.datetime, partitions: int, kinds: set[str]) -> tuple[Scenario, Builder]:
    b = Builder(n_events, seed, secret, now, partitions, kinds)
    return b.s, b
