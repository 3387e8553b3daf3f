"""Plan requests and notices are numbered per recipient and stream, like referrals: the outbox row
keeps its recipient, stream and sequence (what `hub resend --stream plan-requests|notices` sends
again), and `outbox_sequences` holds each (recipient, stream)'s last number (the row every worker
locks to take the next one).

Revision ID: 0020_outbox_sequences
Revises: 0019_referral_updates
"""

import sqlalchemy as sa
from alembic import op

revision = "0020_outbox_sequences"
down_revision = "0019_referral_updates"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox_sequences",
        sa.Column("recipient", sa.String(64), primary_key=True),
        sa.Column("stream", sa.String(32), primary_key=True),
        sa.Column("last_sequence", sa.BigInteger(), nullable=False),
    )
    # plain ALTER TABLE ADD COLUMN and a unique index: on SQLite a batch (table copy) would drop the
    # outbox table, which the disclosures' foreign key forbids once there are rows
    op.add_column("outbox", sa.Column("recipient", sa.String(64), nullable=True))
    op.add_column("outbox", sa.Column("stream", sa.String(32), nullable=True))
    op.add_column("outbox", sa.Column("sequence", sa.BigInteger(), nullable=True))
    op.create_index("uq_outbox_recipient_stream_sequence", "outbox", ["recipient", "stream", "sequence"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_outbox_recipient_stream_sequence", table_name="outbox")
    for column in ("sequence", "stream", "recipient"):  # ALTER TABLE DROP COLUMN (SQLite 3.35 and later)
        op.drop_column("outbox", column)
    op.drop_table("outbox_sequences")
