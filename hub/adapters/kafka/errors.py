"""Is a failure an outage or the record's own? The one place the hub decides, for both Kafka clients
(aiokafka for streams and producers, kafka-python for the admin client), the database and sealed data.

- an outage (`is_outage`): the outside world failed (the broker or the database unreachable, a
  timeout, no leader, a lost connection), or the deployment is not what the code expects (a
  migration not run: `hub db upgrade` fixes it; sealed data that does not open under
  HUB_DATA_KEYS: the operator puts the key back). The same work succeeds later, unchanged: it is
  retried whole and nothing is dead-lettered or parked;
- a record's own failure: the broker or the producer refused the record itself (too large, not a
  valid record, an invalid topic name), the database refused a value, the code could not convert
  it (`failure_reason`: `unprocessable`), or a bug that one record triggers (`internal_error`).
"""

from __future__ import annotations

from aiokafka import errors as aio
from kafka import errors as kp
import sqlalchemy as sa

from hub.adapters import outbox
from hub.adapters.sealing import SealingError

RETRY_PAUSE = 1.0  # seconds before work that failed with an outage is tried again; doubled with each failure in a row
MAX_RETRY_PAUSE = 30.0

KAFKA_ERRORS = (aio.KafkaError, kp.KafkaError)  # any error of either Kafka client


class Outage(Exception):
    """Raised by a handler for a failure of the outside world it found itself (a send the broker did
    not acknowledge): the batch is read again whole, nothing is dead-lettered for it."""


# records the producer or the broker refuses for what they are, with the outbox's park reason
_TOO_LARGE = (aio.MessageSizeTooLargeError, aio.RecordTooLargeError, aio.RecordListTooLargeError,
              kp.MessageSizeTooLargeError, kp.RecordListTooLargeError)
_REFUSED_RECORDS: tuple[tuple[tuple[type[BaseException], ...], str], ...] = (
    (_TOO_LARGE, outbox.RECORD_TOO_LARGE),
    ((aio.CorruptRecordException, aio.UnsupportedForMessageFormatError, aio.InvalidTimestampError,
      kp.CorruptRecordException, kp.UnsupportedForMessageFormatError, kp.InvalidTimestampError), outbox.INVALID_RECORD),
    ((aio.InvalidTopicError, kp.InvalidTopicError), outbox.INVALID_TOPIC),
)
_REFUSED = tuple(cls for classes, _ in _REFUSED_RECORDS for cls in classes)

# the record made the call fail: a value the database refuses (too long, a NUL, a constraint), a
# record the producer or the broker refuses (too large, invalid), a value the code cannot convert
RECORD_ERRORS = (sa.exc.DataError, sa.exc.IntegrityError, sa.exc.StatementError, *_REFUSED, UnicodeError, ValueError, OverflowError)
# the outside world failed, or the deployment is not the one the code expects (see the module's docstring)
_OUTAGE_ERRORS = (Outage, sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.DisconnectionError, sa.exc.TimeoutError,
                  sa.exc.ProgrammingError, SealingError, OSError, TimeoutError)


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` is an outage: the same work succeeds later, unchanged, so it is retried whole and
    nothing is dead-lettered. Every other error is the failure of a record (or of the code on one record)."""
    if isinstance(exc, _REFUSED):
        return False
    if isinstance(exc, KAFKA_ERRORS):  # the clients' other errors: unreachable, no leader, not allowed yet, timed out
        return True
    if getattr(exc, "connection_invalidated", False):  # any database error that lost the connection
        return True
    return isinstance(exc, _OUTAGE_ERRORS)


def too_large(exc: BaseException) -> bool:
    """Whether a send failed because the record is larger than the producer or the broker accepts."""
    return isinstance(exc, _TOO_LARGE)


def failure_reason(exc: BaseException) -> str:
    """The dead-letter reason for a record whose handling failed with `exc` (not an outage):
    `unprocessable` for a value the database, the producer or a conversion refused,
    `internal_error` for anything else (a bug the record triggers)."""
    return "unprocessable" if isinstance(exc, RECORD_ERRORS) else "internal_error"


def unsendable_reason(exc: BaseException | None) -> str | None:
    """The outbox's park reason when a send failed with `exc` (or an error it was raised from)
    because the broker or the producer refused the record itself; None for an outage or anything
    unknown (the relay stops and tries the row again)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        for classes, reason in _REFUSED_RECORDS:
            if isinstance(exc, classes):
                return reason
        exc = exc.__cause__ or exc.__context__
    return None


def is_kafka_error(exc: BaseException) -> bool:
    """Whether `exc` came from a Kafka client (the broker unreachable, a send refused, ...)."""
    return isinstance(exc, KAFKA_ERRORS)


def retry_pause(failures: int) -> float:
    """Seconds to wait after the `failures`-th failure in a row: 1, 2, 4, ... up to 30."""
    return min(RETRY_PAUSE * 2 ** max(0, failures - 1), MAX_RETRY_PAUSE)
