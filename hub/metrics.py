"""Every Prometheus metric of the hub, defined once.

Names follow the Prometheus conventions (`hub_<thing>_<unit>`, counters end in `_total`,
durations in `_seconds`). Labels are bounded: topic, outcome, municipality code, authority id,
reason code, kind. Never a person id or anything derived from one.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

# step durations run from milliseconds (processing) to weeks (referral -> assessment)
STEP_BUCKETS = (0.01, 0.1, 1, 10, 60, 600, 3600, 6 * 3600, 86400, 3 * 86400, 7 * 86400, 14 * 86400, 30 * 86400, 60 * 86400, 90 * 86400, 180 * 86400, 365 * 86400)
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

events_consumed = Counter("hub_events_consumed_total", "Events consumed, by topic and outcome", ["topic", "outcome"], registry=REGISTRY)
dead_letters = Counter(
    "hub_dead_letters_total", "Dead letters that exist (acknowledged by the broker, or kept in the database when too large for the topic), by reason",
    ["reason"], registry=REGISTRY)
newcomers = Counter("hub_newcomers_total", "Newcomers detected, by municipality code", ["municipality"], registry=REGISTRY)
referrals = Counter("hub_referrals_total", "Referrals made, by recipient authority and purpose", ["authority", "reason"], registry=REGISTRY)
referrals_withdrawn = Counter("hub_referrals_withdrawn_total", "Referrals superseded and withdrawn, by their recipient and the cause", ["authority", "cause"],
                              registry=REGISTRY)
referrals_updated = Counter("hub_referrals_updated_total", "Open referrals given another due date (ReferralUpdated), by their recipient", ["authority"],
                            registry=REGISTRY)
disclosures = Counter("hub_disclosures_total", "Disclosures of assessment data, by recipient authority", ["recipient"], registry=REGISTRY)
consent_held = Gauge("hub_consent_held_items", "Items held because no consent covers them", registry=REGISTRY)
unknown_data_groups = Counter("hub_dvv_unknown_data_groups_total", "DVV data groups the hub does not map, by group name", ["group"], registry=REGISTRY)
dvv_pages = Counter("hub_dvv_pages_total", "DVV pages (muutokset responses, or saved files) processed and acknowledged by the broker", registry=REGISTRY)
dvv_changes = Counter("hub_dvv_changes_total", "DVV changes (muutos) read, published or dead-lettered", registry=REGISTRY)
dvv_last_page = Gauge(
    "hub_dvv_last_page_timestamp_seconds",
    "Unix time the DVV change feed last gave a page that was published and its record key stored (at start: the stored cursor's time), by feed",
    ["feed"], registry=REGISTRY)
dvv_poll_failures = Counter(
    "hub_dvv_poll_failures_total", "Polls of the DVV change feed that stopped before it was up to date (DVV unavailable after the retries)",
    registry=REGISTRY)
open_referrals = Gauge("hub_referrals_open", "Open referrals, by authority", ["authority"], registry=REGISTRY)
overdue_referrals = Gauge("hub_referrals_overdue", "Open referrals past their due date, by authority", ["authority"], registry=REGISTRY)
registration_to_referral = Histogram(
    "hub_registration_to_referral_seconds", "Seconds from move-in registration to referral", buckets=STEP_BUCKETS, registry=REGISTRY
)
referral_to_assessment = Histogram(
    "hub_referral_to_assessment_seconds", "Seconds from referral to completed initial assessment", buckets=STEP_BUCKETS, registry=REGISTRY
)
assessment_to_plan_request = Histogram(
    "hub_assessment_to_plan_request_seconds", "Seconds from assessment to plan request", buckets=STEP_BUCKETS, registry=REGISTRY
)
processing_latency = Histogram(
    "hub_processing_latency_seconds", "Seconds from a record's timestamp to its processing, by topic", ["topic"], buckets=LATENCY_BUCKETS, registry=REGISTRY
)
webhook_deliveries = Counter(
    "hub_webhook_deliveries_total", "Webhook delivery attempts, by recipient authority and outcome (delivered, failed, parked, withdrawn; undecodable: a record never queued)", ["recipient", "outcome"], registry=REGISTRY
)
webhook_queue = Gauge("hub_webhook_deliveries_queued", "Webhook deliveries waiting (pending) or parked, by recipient authority", ["recipient", "state"], registry=REGISTRY)
webhook_delivery_lag = Histogram(
    "hub_webhook_delivery_lag_seconds", "Seconds from a record's publication (its Kafka timestamp) to its webhook delivery (the 2xx answer)",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800, 3600, 6 * 3600, 86400, 2 * 86400), registry=REGISTRY,
)
webhook_oldest_pending = Gauge(
    "hub_webhook_oldest_pending_seconds", "Age of the oldest pending webhook delivery (since its record was published), by recipient authority; 0 when none",
    ["recipient"], registry=REGISTRY,
)
consumer_rereads = Counter(
    "hub_consumer_rereads_total",
    "Times a partition was read again from its last commit because a fetched record was never processed, or a batch's handling failed, by topic",
    ["topic"],
    registry=REGISTRY,
)
outbox_parked = Gauge(
    "hub_outbox_parked_messages", "Outbox rows that cannot be sent (too large, not encodable) and wait for an operator, by reason", ["reason"], registry=REGISTRY
)
disclosures_withdrawn = Counter(
    "hub_disclosures_withdrawn_total",
    "Plan requests not sent (channel kafka: the outbox relay) or not delivered (channel webhook) because their consent or legal basis no longer held, by reason",
    ["reason", "channel"],
    registry=REGISTRY,
)
consumer_lag = Gauge("hub_consumer_lag_messages", "Messages behind the end of the topic, by topic", ["topic"], registry=REGISTRY)


def serve(port: int, addr: str = "127.0.0.1", stopped=None):
    """Serve /metrics on `port` (0 picks a free one). Returns (server, thread).

    With `stopped` (a callable returning the names of what is not running), `/health` answers 200
    when it returns none and 503 with those names otherwise."""
    from prometheus_client import make_wsgi_app

    from hub.adapters.http_server import serve_wsgi  # idle connections time out; connections are bounded

    metrics_app = make_wsgi_app(REGISTRY)
    if stopped is None:
        return serve_wsgi(metrics_app, port, addr)

    def app(environ, start_response):
        if environ.get("PATH_INFO") != "/health":
            return metrics_app(environ, start_response)
        names = list(stopped())
        body = (("not running: " + ", ".join(names)) if names else "ok").encode() + b"\n"
        start_response("503 Service Unavailable" if names else "200 OK", [("Content-Type", "text/plain; charset=utf-8")])
        return [body]

    return serve_wsgi(app, port, addr)
