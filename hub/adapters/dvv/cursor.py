"""The record-key cursor of the DVV change feed (viimeisinKirjausavain), kept in the database.

It is advanced only after the broker acknowledged every event of the page that ended at that key,
so a crash re-reads a page rather than skipping one (downstream removes duplicates by event id).
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from hub.domain.clock import utcnow
from hub.adapters.database import Base, create_engine

DEFAULT_FEED = "muutokset"


class DvvCursor(Base):
    """One row per feed (the default feed, or e.g. a municipality restriction of its own)."""

    __tablename__ = "dvv_cursor"
    feed: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    record_key: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    updated_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), nullable=False)


class CursorStore:
    """Read and advance the cursor of one feed in the hub's database."""

    def __init__(self, engine: sa.Engine, feed: str = DEFAULT_FEED):
        self.engine = engine
        self.feed = feed

    @classmethod
    def from_url(cls, url: str, feed: str = DEFAULT_FEED) -> "CursorStore":
        return cls(create_engine(url), feed)

    def load(self) -> int | None:
        """The stored record key, or None when the feed has never been read."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(DvvCursor.record_key).where(DvvCursor.feed == self.feed)).scalar_one_or_none()

    def saved_at(self) -> dt.datetime | None:
        """When the key was last stored (the last page read from DVV and acknowledged), or None."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(DvvCursor.updated_at).where(DvvCursor.feed == self.feed)).scalar_one_or_none()

    def save(self, record_key: int) -> None:
        """Store the key to continue from (call only after the broker acknowledged the page)."""
        now = utcnow()
        with self.engine.begin() as conn:
            updated = conn.execute(sa.update(DvvCursor).where(DvvCursor.feed == self.feed).values(record_key=int(record_key), updated_at=now)).rowcount
            if not updated:
                conn.execute(sa.insert(DvvCursor).values(feed=self.feed, record_key=int(record_key), updated_at=now))

    def dispose(self) -> None:
        self.engine.dispose()
