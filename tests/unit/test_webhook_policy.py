"""Webhook rules: https only (loopback only with the allowance), backoff with jitter, Standard Webhooks signatures."""

import datetime as dt
import json
import random

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from hub.schemas.envelope import cloudevent_body
from hub.webhooks import policy
from hub.webhooks.policy import WebhookError, check_secret, check_url, headers, new_secret, next_delay


def test_https_required_loopback_only_with_the_allowance():
    assert check_url("https://receiver.example.fi/hook")
    for ok in ("http://127.0.0.1:8080/x", "http://localhost/x", "http://[::1]:9/x"):
        assert check_url(ok, allow_loopback=True)
        with pytest.raises(WebhookError):
            check_url(ok)
    for bad in ("http://receiver.example.fi/hook", "http://10.0.0.1/x", "ftp://x/y", "receiver.example.fi", "https://"):
        with pytest.raises(WebhookError):
            check_url(bad, allow_loopback=True)


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    rng = random.Random(1)
    delays = [next_delay(n, rng, base=1.0, cap=60) for n in range(1, 10)]
    for n, d in enumerate(delays, start=1):
        step = min(60, 2 ** (n - 1))
        assert step / 2 <= d <= step
    assert len({round(next_delay(3, random.Random(seed)), 6) for seed in range(20)}) > 1  # jittered


def test_signature_verifies_with_the_standardwebhooks_library():
    secret = new_secret()
    assert check_secret(secret) == secret
    body = cloudevent_body("Referral", {"event_id": "e-1", "source": "hub:routing", "occurred_at": dt.datetime(2026, 11, 16, tzinfo=dt.timezone.utc)}, {"to": "municipality:091"})
    ts = int(dt.datetime.now(dt.timezone.utc).timestamp())
    h = headers(secret, "e-1", ts, body)
    assert Webhook(secret).verify(body, h) == json.loads(body)
    assert json.loads(body)["id"] == "e-1" and json.loads(body)["time"] == "2026-11-16T00:00:00Z"
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, h)
    with pytest.raises(WebhookError):
        check_secret("whsec_not base64!")


def test_consumer_groups_are_the_deployments_own():
    # under the app id (two deployments on one cluster share no offsets), outside the prefix of the hub's stream
    # groups (`<app id>.<name>`, the hub's ACL): the hub's user cannot join them
    assert policy.consumer_group("integration-hub", 7) == "integration-hub-webhooks.7"
    assert not policy.consumer_group("integration-hub", 7).startswith("integration-hub.")
    assert policy.consumer_group("hub-a", 7) != policy.consumer_group("hub-b", 7)
    assert policy.consumer_group("hub-a", 7).startswith(policy.consumer_group_prefix("hub-a"))
