"""Withdrawals of superseded referrals: what each old recipient is told, numbered in its sequence.

Revision ID: 0018_referral_withdrawals
Revises: 0017_own_plan_requests
"""

import sqlalchemy as sa
from alembic import op

revision = "0018_referral_withdrawals"
down_revision = "0017_own_plan_requests"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "referral_withdrawals",
        sa.Column("referral_id", sa.String(64), primary_key=True),
        sa.Column("event_id", sa.String(64), nullable=False, unique=True),
        sa.Column("authority", sa.String(64), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("cause", sa.String(32), nullable=False),
        sa.Column("newcomer_event_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("authority", "sequence", name="uq_referral_withdrawals_authority_sequence"),
    )
    op.create_index("ix_referral_withdrawals_newcomer_event_id", "referral_withdrawals", ["newcomer_event_id"])


def downgrade() -> None:
    op.drop_index("ix_referral_withdrawals_newcomer_event_id", table_name="referral_withdrawals")
    op.drop_table("referral_withdrawals")
