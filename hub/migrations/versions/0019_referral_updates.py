"""Due-date updates of open referrals: what each recipient is told, numbered in its sequence.

Revision ID: 0019_referral_updates
Revises: 0018_referral_withdrawals
"""

import sqlalchemy as sa
from alembic import op

revision = "0019_referral_updates"
down_revision = "0018_referral_withdrawals"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "referral_updates",
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("referral_id", sa.String(64), nullable=False),
        sa.Column("authority", sa.String(64), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("due", sa.Date(), nullable=True),
        sa.Column("previous_due", sa.Date(), nullable=True),
        sa.Column("newcomer_event_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("authority", "sequence", name="uq_referral_updates_authority_sequence"),
    )
    op.create_index("ix_referral_updates_referral_id", "referral_updates", ["referral_id"])
    op.create_index("ix_referral_updates_newcomer_event_id", "referral_updates", ["newcomer_event_id"])


def downgrade() -> None:
    op.drop_index("ix_referral_updates_newcomer_event_id", table_name="referral_updates")
    op.drop_index("ix_referral_updates_referral_id", table_name="referral_updates")
    op.drop_table("referral_updates")
