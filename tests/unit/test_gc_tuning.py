"""The worker's collector setting (hub.streams.gc_tuning): frozen start-up objects, gen0 threshold."""

import gc

import pytest

from hub.config import Settings
from hub.streams.gc_tuning import tune_gc


@pytest.fixture
def restored_threshold():
    before = gc.get_threshold()
    yield before
    gc.set_threshold(*before)


def test_zero_leaves_the_collector_as_it_is(restored_threshold):
    assert tune_gc(0) is False
    assert gc.get_threshold() == restored_threshold


def test_a_threshold_freezes_what_is_alive_and_sets_gen0_only(restored_threshold):
    assert tune_gc(12_345) is True
    assert gc.get_threshold() == (12_345, *restored_threshold[1:])
    assert gc.get_freeze_count() > 0
    assert tune_gc(777) is True  # a second app in the same process: the threshold moves, the freeze is not repeated
    assert gc.get_threshold()[0] == 777


def test_the_setting_is_read_from_the_environment():
    assert Settings.from_env({}).gc_threshold == 10_000
    assert Settings.from_env({"HUB_GC_THRESHOLD": "0"}).gc_threshold == 0
    with pytest.raises(ValueError, match="HUB_GC_THRESHOLD='lots' is not an integer"):
        Settings.from_env({"HUB_GC_THRESHOLD": "lots"})
