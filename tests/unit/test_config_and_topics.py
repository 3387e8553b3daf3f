import pytest

from hub.config import Settings
from hub.schemas import topics


def test_defaults_use_embedded_broker_and_sqlite(tmp_path):
    s = Settings.from_env({"HUB_DATA_DIR": str(tmp_path)})
    assert s.kafka_url is None
    assert s.resolved_database_url().startswith("sqlite:///") and str(tmp_path) in s.resolved_database_url()
    assert (s.session_timeout, s.rebalance_timeout, s.heartbeat_interval) == (6.0, 6.0, 1.0)


def test_environment_overrides():
    s = Settings.from_env({"HUB_KAFKA_URL": "kafka://k:9092", "HUB_DATABASE_URL": "postgresql://x/y", "HUB_KAFKA_SESSION_TIMEOUT": "30"})
    assert s.kafka_url == "kafka://k:9092" and s.resolved_database_url() == "postgresql://x/y" and s.session_timeout == 30.0


def test_bad_number_names_the_variable():
    with pytest.raises(ValueError, match="HUB_TOPIC_PARTITIONS"):
        Settings.from_env({"HUB_TOPIC_PARTITIONS": "many"})


def test_per_recipient_topic_names():
    assert topics.referral_topic("wellbeing_area:05") == "hub.referrals.wellbeing_area.05.v1"
    assert topics.plan_request_topic("municipality:091") == "hub.plan-requests.municipality.091.v1"
    assert topics.notice_topic("municipality:091") == "hub.notices.municipality.091.v1"
    with pytest.raises(ValueError):
        topics.referral_topic("mayor:091")
    with pytest.raises(ValueError):
        topics.notice_topic("mayor:091")


def test_production_secrets_are_required_and_the_demo_values_refused():
    import pytest

    from hub.adapters.sealing import demo_key, new_key
    from hub.config import DEMO_PERSON_KEY_SECRET, DemoSecrets, Settings

    with pytest.raises(DemoSecrets, match="HUB_PERSON_KEY_SECRET"):
        Settings.from_env({}).require_production_secrets()
    with pytest.raises(DemoSecrets, match="HUB_PERSON_KEY_SECRET"):
        Settings.from_env({"HUB_PERSON_KEY_SECRET": DEMO_PERSON_KEY_SECRET, "HUB_DATA_KEYS": new_key()}).require_production_secrets()
    with pytest.raises(DemoSecrets, match="HUB_DATA_KEYS"):
        Settings.from_env({"HUB_PERSON_KEY_SECRET": "ours"}).require_production_secrets()
    with pytest.raises(DemoSecrets, match="HUB_DATA_KEYS"):
        Settings.from_env({"HUB_PERSON_KEY_SECRET": "ours", "HUB_DATA_KEYS": demo_key()}).require_production_secrets()
    Settings.from_env({"HUB_PERSON_KEY_SECRET": "ours", "HUB_DATA_KEYS": f"{new_key()},{demo_key()}"}).require_production_secrets()
