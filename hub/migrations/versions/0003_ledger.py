"""Coordination ledger of referrals: one row per referral, its status history, per-recipient sequences.

Revision ID: 0003_ledger
Revises: 0001_base
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_ledger"
down_revision = "0001_base"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "referral_sequences",
        sa.Column("authority", sa.String(64), primary_key=True),
        sa.Column("last_sequence", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "referrals",
        sa.Column("referral_id", sa.String(64), primary_key=True),
        sa.Column("authority", sa.String(64), nullable=False),
        sa.Column("purpose", sa.String(40), nullable=False),
        sa.Column("rule", sa.String(80), nullable=False),
        sa.Column("rules_version", sa.String(40), nullable=False),
        sa.Column("person_key", sa.String(128), nullable=False),
        sa.Column("newcomer_event_id", sa.String(64), nullable=True),
        sa.Column("due", sa.Date(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("turvakielto", sa.Boolean(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("authority", "sequence", name="uq_referrals_authority_sequence"),
    )
    op.create_index("ix_referrals_authority_state", "referrals", ["authority", "state"])
    op.create_index("ix_referrals_person_key", "referrals", ["person_key"])
    op.create_index("ix_referrals_newcomer_event_id", "referrals", ["newcomer_event_id"])
    op.create_table(
        "referral_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("referral_id", sa.String(64), sa.ForeignKey("referrals.referral_id"), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=True),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("reported_by", sa.String(64), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_referral_events_referral_id", "referral_events", ["referral_id"])


def downgrade() -> None:
    op.drop_index("ix_referral_events_referral_id", table_name="referral_events")
    op.drop_table("referral_events")
    op.drop_index("ix_referrals_newcomer_event_id", table_name="referrals")
    op.drop_index("ix_referrals_person_key", table_name="referrals")
    op.drop_index("ix_referrals_authority_state", table_name="referrals")
    op.drop_table("referrals")
    op.drop_table("referral_sequences")
