"""Outbox rows that cannot be sent are parked with a reason (and plan requests withdrawn when their
consent or legal basis no longer holds at the moment of sending); withdrawals of plan requests are
kept for the disclosure audit.

Revision ID: 0011_outbox_parking
Revises: 0010_dead_letters, 0002_consent (which creates the outbox)
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_outbox_parking"
# 0002_consent is a parent, not only a dependency (`depends_on`): Alembic cannot merge a revision
# that a dependency has taken out of the version table, and 0015_linear merges every branch.
# The version table holds the same rows either way.
down_revision = ("0010_dead_letters", "0002_consent")
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("parked_at", TS, nullable=True))
        batch.add_column(sa.Column("parked_reason", sa.String(64), nullable=True))
        batch.add_column(sa.Column("parked_detail", sa.Text(), nullable=True))
    op.create_table(
        "disclosure_withdrawals",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False, index=True),
        sa.Column("recipient", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("withdrawn_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("disclosure_withdrawals")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("parked_detail")
        batch.drop_column("parked_reason")
        batch.drop_column("parked_at")
