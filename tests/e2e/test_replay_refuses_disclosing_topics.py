"""`hub replay` never re-discloses: a plan-request, referral or notice topic is refused, on a real
broker holding records on that topic, and nothing is appended to it."""

import asyncio
import os
import subprocess
import sys
import uuid

import pytest

from hub.adapters.replay import ReplayRefused, check_replayable
from hub.schemas import topics
from tests.kafka_helpers import produce, read_topic

pytestmark = pytest.mark.integration


def test_replay_of_a_plan_request_topic_is_refused_and_appends_nothing(kafka_url, tmp_path):
    authority = "employment_authority:" + str(70 + uuid.uuid4().int % 20)  # a topic name only; nothing routes to it here
    topic = topics.plan_request_topic(authority)
    asyncio.run(produce(kafka_url, topic, [(b"k", b"a plan request already disclosed once")]))
    assert len(asyncio.run(read_topic(kafka_url, topic, min_count=1))) == 1
    env = {**os.environ, "HUB_KAFKA_URL": kafka_url, "HUB_DATA_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "hub.cli", "replay", "--topic", topic, "--from-offset", "0"],
                         capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, env=env)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert topic in out.stderr and "hub.assessments.v1" in out.stderr and "audit" in out.stderr
    assert len(asyncio.run(read_topic(kafka_url, topic, min_count=1, settle=2.0))) == 1  # nothing republished


@pytest.mark.parametrize("topic, advice", [
    (topics.referral_topic("municipality:091"), "hub resend"),
    (topics.notice_topic("municipality:091"), "hub.consents.v1"),
    (topics.plan_request_topic("municipality:091"), "hub.assessments.v1"),
])
def test_every_disclosing_topic_is_refused_as_source_and_target(topic, advice):
    with pytest.raises(ReplayRefused, match=advice):
        check_replayable(topic)
    with pytest.raises(ReplayRefused, match="target"):
        check_replayable(topic, "target")


@pytest.mark.parametrize("topic", [topics.ASSESSMENTS, topics.CONSENTS, topics.NEWCOMERS, topics.POPULATION_CHANGES, topics.REFERRAL_STATUS])
def test_input_topics_stay_replayable(topic):
    check_replayable(topic)
