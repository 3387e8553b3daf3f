"""Partial indexes for the outbox relay's periodic queries, so they read the rows still waiting and
not the ledger: the pending rows (unsent, unparked, by id) and the parked ones (by reason). The index
of `sent_at` alone also finds every parked and withdrawn row, and withdrawn rows stay for good. And an
index on `consent_events.valid_until`, for the consent sweep's grants past their end.

Revision ID: 0022_pending_indexes
Revises: 0021_referral_counts
"""

import sqlalchemy as sa
from alembic import op

revision = "0022_pending_indexes"
down_revision = "0021_referral_counts"
branch_labels = None
depends_on = None

PENDING = "sent_at IS NULL AND parked_at IS NULL"
PARKED = "parked_at IS NOT NULL AND sent_at IS NULL"


def _partial(name: str, table: str, columns: list[str], where: str) -> None:
    op.create_index(name, table, columns, postgresql_where=sa.text(where), sqlite_where=sa.text(where))


def upgrade() -> None:
    _partial("ix_outbox_pending", "outbox", ["id"], PENDING)
    _partial("ix_outbox_parked", "outbox", ["parked_reason"], PARKED)
    op.create_index("ix_consent_events_valid_until", "consent_events", ["valid_until"])


def downgrade() -> None:
    op.drop_index("ix_consent_events_valid_until", table_name="consent_events")
    op.drop_index("ix_outbox_parked", table_name="outbox")
    op.drop_index("ix_outbox_pending", table_name="outbox")
