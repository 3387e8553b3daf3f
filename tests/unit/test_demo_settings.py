"""`hub demo` on the embedded defaults starts from an empty database, as the bundled broker starts
empty: the persons' states are in the database now, and a second run would otherwise find every
person of the sample day known already and detect no newcomer."""

from pathlib import Path

from hub.config import Settings
from hub.demo import DEMO_DATABASE, demo_settings


def test_the_embedded_demo_database_is_emptied_before_each_run(tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    first = demo_settings(settings)
    path = tmp_path / "data" / DEMO_DATABASE
    assert first.database_url == f"sqlite:///{path.resolve()}"
    for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        leftover.write_bytes(b"an earlier run")
    assert demo_settings(settings).database_url == first.database_url
    assert not any(p.exists() for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")))


def test_configured_services_are_used_as_they_are(tmp_path):
    db = tmp_path / "mine.sqlite3"
    db.write_bytes(b"keep")
    for settings in (Settings(data_dir=tmp_path, database_url=f"sqlite:///{db}"), Settings(data_dir=tmp_path, kafka_url="kafka://127.0.0.1:9092")):
        assert demo_settings(settings) is settings
    assert db.read_bytes() == b"keep"
