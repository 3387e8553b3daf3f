"""Every reason-coded rejection of the hub has one shape: `reason` (a stable code) and `message`."""

import pytest

from hub.adapters.dvv.mapping import MalformedMuutos
from hub.adapters.dvv.page import MalformedPage
from hub.consent.model import InvalidConsent
from hub.domain.clock import FutureDate
from hub.domain.errors import Rejected
from hub.domain.hetu import InvalidHetu
from hub.routing.model import InputError
from hub.routing.referrals import TransitionError
from hub.schemas.bounds import OutOfBounds
from hub.schemas.codec import CodecError

CASES = [
    (CodecError("undecodable", "not Avro"), "undecodable", "not Avro"),
    (InputError("invalid_field", "bad field"), "invalid_field", "bad field"),
    (TransitionError("invalid_transition", "cannot go back"), "invalid_transition", "cannot go back"),
    (FutureDate("too late"), "future_date", "too late"),
    (InvalidConsent("invalid_authority", "not an authority"), "invalid_authority", "not an authority"),
    (InvalidHetu("invalid_checksum", "wrong check character"), "invalid_checksum", "wrong check character"),
    (OutOfBounds("Consent.recipients", "too many"), "out_of_bounds", "too many"),
    (MalformedPage("GET muutokset", "not JSON"), "malformed_page", "not JSON"),
    (MalformedMuutos("muutos.x must be a list"), "malformed_record", "muutos.x must be a list"),
]


@pytest.mark.parametrize(("exc", "reason", "message"), CASES, ids=[type(c[0]).__name__ for c in CASES])
def test_one_shape(exc, reason, message):
    assert isinstance(exc, Rejected) and isinstance(exc, ValueError)
    assert (exc.reason, exc.message) == (reason, message)


def test_the_text_of_codec_and_page_errors_keeps_its_prefix():
    assert str(CodecError("undecodable", "not Avro")) == "undecodable: not Avro"
    assert str(MalformedPage("GET muutokset", "not JSON")) == "GET muutokset: not JSON"
    assert str(InputError("invalid_field", "bad field")) == "bad field"
