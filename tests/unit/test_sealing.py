"""Personal data at rest: sealed columns are encrypted under HUB_DATA_KEYS, keys rotate, bad keys are named."""

import pytest
import sqlalchemy as sa

from hub.adapters import sealing
from hub.config import Settings


@pytest.fixture(autouse=True)
def _restore_sealer():
    before = sealing.current()
    yield
    sealing._current = before


def test_round_trip_and_ciphertext_hides_the_value():
    s = sealing.Sealer([sealing.new_key()])
    token = s.seal(b"010190-900P")
    assert b"010190" not in token
    assert s.open(token) == b"010190-900P"
    assert not s.is_demo


def test_rotation_first_key_encrypts_old_key_still_opens():
    old, new = sealing.new_key(), sealing.new_key()
    sealed_with_old = sealing.Sealer([old]).seal(b"x")
    rotated = sealing.Sealer([new, old])
    assert rotated.open(sealed_with_old) == b"x"
    assert sealing.Sealer([new]).open(rotated.seal(b"y")) == b"y"
    with pytest.raises(sealing.SealingError, match="does not open"):
        sealing.Sealer([new]).open(sealed_with_old)


def test_bad_key_is_named_not_a_traceback():
    with pytest.raises(sealing.SealingError, match="HUB_DATA_KEYS"):
        sealing.Sealer(["not-a-key"])


def test_default_is_the_demo_key():
    assert sealing.Sealer().is_demo
    assert Settings.from_env({}).data_keys == ()
    k1, k2 = sealing.new_key(), sealing.new_key()
    assert Settings.from_env({"HUB_DATA_KEYS": f" {k1}, {k2} "}).data_keys == (k1, k2)


def test_sealed_columns_store_ciphertext():
    sealing.configure([sealing.new_key()])
    meta = sa.MetaData()
    t = sa.Table("t", meta, sa.Column("id", sa.Integer, primary_key=True), sa.Column("b", sealing.Sealed()), sa.Column("s", sealing.SealedText()))
    engine = sa.create_engine("sqlite://")
    meta.create_all(engine)
    with engine.begin() as c:
        c.execute(t.insert().values(id=1, b=b"bytes-010190-900P", s="text-010190-900P"))
        c.execute(t.insert().values(id=2, b=None, s=None))
    with engine.connect() as c:
        raw = c.execute(sa.text("select b, s from t where id = 1")).one()
        assert b"010190" not in raw[0] and b"010190" not in raw[1]
        row = c.execute(sa.select(t.c.b, t.c.s).where(t.c.id == 1)).one()
        assert row == (b"bytes-010190-900P", "text-010190-900P")
        assert c.execute(sa.select(t.c.b, t.c.s).where(t.c.id == 2)).one() == (None, None)
