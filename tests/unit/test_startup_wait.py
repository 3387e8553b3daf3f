"""The start-up wait (hub.adapters.health.wait_until): bounded by its timeout, progress per failed
attempt, one error naming the service and the fix. Pure: a fake clock and probe."""

import pytest

from hub.adapters.health import Check, ServiceUnavailable, wait_until


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_a_service_that_comes_up_is_waited_for_with_progress():
    clock, lines, answers = Clock(), [], iter([False, False, True])

    def probe(timeout):
        clock.now += 1.0  # each attempt takes a second
        return Check("database", next(answers), "db unreachable: OperationalError")

    check = wait_until(probe, "the database", "db", 60, "start it", lines.append, clock=clock, sleep=clock.sleep)
    assert check.ok
    assert lines == ["waiting for the database at db (attempt 1, 1 s of 60)", "waiting for the database at db (attempt 2, 2 s of 60)"]


def test_a_service_that_stays_down_is_refused_after_the_timeout():
    clock, lines, probes = Clock(), [], []

    def probe(timeout):
        probes.append(timeout)
        clock.now += timeout
        return Check("kafka", False, "h:1 unreachable: KafkaTimeoutError")

    with pytest.raises(ServiceUnavailable) as err:
        wait_until(probe, "the broker", "h:1", 10, "check HUB_KAFKA_URL", lines.append, clock=clock, sleep=clock.sleep)
    assert str(err.value) == "the broker at h:1 did not answer within 10 s (unreachable: KafkaTimeoutError); check HUB_KAFKA_URL"
    assert 10 <= clock.now <= 12.5 and all(t <= 2.0 for t in probes) and len(lines) == len(probes) - 1
