"""The real pipeline in-process, fed known population changes; /metrics scraped over HTTP and parsed.

The metrics registry is process-global (other tests count into it too), so every check compares
the value after the run with the value scraped before it.
"""

import asyncio
import datetime as dt
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hub.adapters.database import create_engine
from hub.adapters.referral_ledger import ReferralLedger
from hub.config import Settings
from hub.domain import hetu
from hub.schemas import topics
from hub.schemas.envelope import envelope
from hub.streams.pipeline import build
from hub.streams.runner import running, wait_for
from tests.personal_data import identity_code_in

pytestmark = pytest.mark.integration
SECRET = "metrics-test-secret"


def health(metrics_url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(metrics_url.removesuffix("/metrics") + "/health", timeout=5) as resp:
        return resp.status, resp.read()


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics as {(name, sorted labels): value}."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for fam in text_string_to_metric_families(text) for s in fam.samples}


def delta(before: dict, after: dict, name: str, **labels) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def change(pid: str, muni: str, **kw) -> dict:
    rec = envelope("dvv:test", dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=2))
    rec.update(person_id=pid, change_type="immigration", municipality_code=muni, previous_country="SY", nationalities=["SY"], mother_tongue="ar",
               move_date=dt.date.today() - dt.timedelta(days=5))
    rec.update(kw)
    return rec


def test_metrics_served_over_http_count_a_known_input(fresh_kafka_url, tmp_path):
    database_url = f"sqlite:///{tmp_path / 'hub.sqlite3'}"
    settings = Settings(app_id="metrics-it", person_key_secret=SECRET, metrics_port=0, database_url=database_url)
    pipeline = build(settings, fresh_kafka_url)
    helsinki = [hetu.make(dt.date(1985, 1, 1 + i), 900 + i) for i in range(2)]
    espoo = hetu.make(dt.date.today().replace(day=1) - dt.timedelta(days=13 * 365), 910)  # an unaccompanied minor
    bad_code = helsinki[0][:-1] + ("A" if helsinki[0][-1] != "A" else "B")  # fails the check character

    async def scenario():
        async with running(pipeline.hub) as hub:
            endpoint = pipeline.ops.endpoint
            assert endpoint.port and endpoint.port != 0 and endpoint.addr == "127.0.0.1"
            before = scrape(endpoint.url)
            await wait_for(lambda: all(c.alive for c in hub.batch_consumers), 30, "every batch consumer to run")
            assert health(endpoint.url) == (200, b"ok\n")  # every batch consumer processing
            for pid, muni in ((helsinki[0], "091"), (helsinki[1], "091")):
                await hub.publisher.publish(topics.POPULATION_CHANGES, "PopulationChange", change(pid, muni), key=hetu.person_key(pid, SECRET))
            await hub.publisher.publish(topics.POPULATION_CHANGES, "PopulationChange", change(espoo, "049", guardian_in_finland=False), key=hetu.person_key(espoo, SECRET))
            await hub.publisher.publish(topics.POPULATION_CHANGES, "PopulationChange", change(bad_code, "091"), key=b"bad")
            await hub.producer.send_and_wait(topics.POPULATION_CHANGES, b"\x00\x00\x00\x03\xe7not avro", b"junk")
            await wait_for(lambda: pipeline.newcomers.consumed >= 5, 60, "detection to take all five records")
            await wait_for(lambda: sum(n for (t, _), n in pipeline.routing.consumed.items() if t == topics.NEWCOMERS) >= 3, 60, "routing to take the three newcomers")
            # the municipality reports the minor's initial assessment done
            assessment = next(r for r in ReferralLedger(create_engine(database_url)).open_referrals("municipality:049") if r.purpose == "initial_assessment")
            for state in ("accepted", "completed"):
                status = envelope("municipality:049")
                status.update(referral_id=assessment.referral_id, authority="municipality:049", status=state, reason=None)
                await hub.publisher.publish(topics.REFERRAL_STATUS, "ReferralStatus", status, key=assessment.referral_id)
            await wait_for(lambda: pipeline.routing.consumed[(topics.REFERRAL_STATUS, "applied")] >= 2, 60, "both statuses applied")
            # the lag gauge: refreshed by the timer; 0 once the offsets of everything are committed
            await wait_for(lambda: pipeline.ops.lag.by_topic.get(topics.POPULATION_CHANGES) == 0 and pipeline.ops.lag.by_topic.get(topics.NEWCOMERS) == 0,
                           60, "the consumer lag to be measured as 0 after processing")
            return before, scrape(endpoint.url)

    before, after = asyncio.run(scenario())
    assert pipeline.ops.endpoint.port is None or pipeline.ops.endpoint._server is None  # stopped with the app

    # newcomers by municipality
    assert delta(before, after, "hub_newcomers_total", municipality="091") == 2
    assert delta(before, after, "hub_newcomers_total", municipality="049") == 1
    # events consumed by topic and outcome
    assert delta(before, after, "hub_events_consumed_total", topic=topics.POPULATION_CHANGES, outcome="newcomer") == 3
    assert delta(before, after, "hub_events_consumed_total", topic=topics.POPULATION_CHANGES, outcome="dead_letter") == 2
    assert delta(before, after, "hub_events_consumed_total", topic=topics.NEWCOMERS, outcome="routed") == 3
    # dead letters by reason
    assert delta(before, after, "hub_dead_letters_total", reason="invalid_person_id") == 1
    assert delta(before, after, "hub_dead_letters_total", reason="unknown_schema_id") == 1
    # referrals by authority and purpose: the same numbers as the ledger holds
    ledger = ReferralLedger(create_engine(database_url))
    by_authority: dict[tuple[str, str], int] = {}
    for r in ledger.open_referrals():
        by_authority[(r.authority, r.purpose)] = by_authority.get((r.authority, r.purpose), 0) + 1
    assert by_authority[("municipality:091", "outreach")] == 2 and by_authority[("municipality:049", "outreach")] == 1
    assert ("wellbeing_area:03", "unaccompanied_minor") in by_authority
    assert ledger.count() == sum(by_authority.values()) + 1  # + the completed assessment
    for (authority, purpose), n in by_authority.items():
        assert delta(before, after, "hub_referrals_total", authority=authority, reason=purpose) == n
    # gauges: open referrals from the ledger, lag per consumed topic
    assert after[("hub_referrals_open", (("authority", "municipality:091"),))] == 2
    assert after[("hub_consumer_lag_messages", (("topic", topics.POPULATION_CHANGES),))] == 0
    assert after[("hub_consumer_lag_messages", (("topic", topics.NEWCOMERS),))] == 0
    lag_topics = {dict(labels)["topic"] for name, labels in after if name == "hub_consumer_lag_messages"}
    assert not any("changelog" in t or "__assignor" in t for t in lag_topics), lag_topics
    # histograms: one registration -> referral per routed newcomer, one latency sample per change
    assert delta(before, after, "hub_registration_to_referral_seconds_count") == 3
    assert delta(before, after, "hub_registration_to_referral_seconds_bucket", le="86400.0") == 0  # occurred two days ago
    assert delta(before, after, "hub_registration_to_referral_seconds_bucket", le="259200.0") == 3
    assert delta(before, after, "hub_events_consumed_total", topic=topics.REFERRAL_STATUS, outcome="applied") == 2
    assert delta(before, after, "hub_referral_to_assessment_seconds_count") == 1
    assert delta(before, after, "hub_processing_latency_seconds_count", topic=topics.POPULATION_CHANGES) == 3
    # never an identity code in the exposition
    text = "\n".join(f"{n} {labels}" for n, labels in after)
    assert not identity_code_in(text)
