"""The worker's thread switch interval (hub.streams.switch_interval, HUB_SWITCH_INTERVAL_MS): set when
the app starts, so that the database threads' round trips wait for the GIL at most that long."""

import asyncio
import sys

import pytest

from hub.config import Settings
from hub.streams.switch_interval import set_switch_interval


@pytest.fixture
def restored_interval():
    before = sys.getswitchinterval()
    yield before
    sys.setswitchinterval(before)


def test_zero_leaves_pythons_interval(restored_interval):
    assert set_switch_interval(0) is False
    assert sys.getswitchinterval() == restored_interval


def test_an_interval_in_milliseconds_is_set(restored_interval):
    assert set_switch_interval(2.5) is True
    assert sys.getswitchinterval() == pytest.approx(0.0025)


def test_the_setting_is_read_from_the_environment():
    assert Settings.from_env({}).switch_interval_ms == 1.0
    assert Settings.from_env({"HUB_SWITCH_INTERVAL_MS": "0"}).switch_interval_ms == 0
    assert Settings.from_env({"HUB_SWITCH_INTERVAL_MS": "0.5"}).switch_interval_ms == 0.5


def test_the_app_sets_it_when_it_starts(restored_interval, tmp_path):
    from hub.streams.pipeline import hub_app

    hub = hub_app(Settings(data_dir=tmp_path, switch_interval_ms=3.0, gc_threshold=0), "kafka://127.0.0.1:1")
    assert hub.app.hub_switch_interval_ms == 3.0
    sys.setswitchinterval(0.005)

    hub.app.hub_new_producer = None  # no producer and no batch consumer: the start hook connects to nothing
    asyncio.run(hub.app.on_start())
    assert sys.getswitchinterval() == pytest.approx(0.003)
