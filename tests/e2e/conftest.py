"""The e2e tests run the hub's production commands (`hub worker`, `hub ingest dvv`, `hub consent`, ...)
as a deployment does: with HUB_PERSON_KEY_SECRET and HUB_DATA_KEYS set (the commands refuse the demo
values). A test that needs them unset, or other values, says so in the environment it passes."""

import pytest

from tests.conftest import TEST_DATA_KEY  # the in-process sealer's key too

TEST_PERSON_KEY_SECRET = "e2e-test-person-key-secret"


@pytest.fixture(autouse=True)
def production_secrets(monkeypatch):
    import os

    if not os.environ.get("HUB_PERSON_KEY_SECRET"):
        monkeypatch.setenv("HUB_PERSON_KEY_SECRET", TEST_PERSON_KEY_SECRET)
    if not os.environ.get("HUB_DATA_KEYS"):
        monkeypatch.setenv("HUB_DATA_KEYS", TEST_DATA_KEY)


@pytest.fixture(autouse=True)
def free_dvv_metrics_port(monkeypatch):
    """`hub ingest dvv --poll` serves /metrics; on a free port, so that runs on one host never collide."""
    import os

    if not os.environ.get("HUB_DVV_METRICS_PORT"):
        monkeypatch.setenv("HUB_DVV_METRICS_PORT", "0")
