"""Newcomer facts for the programme indicators (`hub report`): municipality, mother tongue,
nationalities, arrival and registration time per pseudonymous person key. No identity code.

Revision ID: 0005_newcomer_facts
Revises: 0003_ledger
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_newcomer_facts"
down_revision = "0003_ledger"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "newcomers",
        sa.Column("person_key", sa.String(128), primary_key=True),
        sa.Column("municipality", sa.String(3), primary_key=True),
        sa.Column("mother_tongue", sa.String(8), nullable=True),
        sa.Column("nationalities", sa.String(200), nullable=True),
        sa.Column("arrival_date", sa.Date(), nullable=True),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("newcomer_event_id", sa.String(64), nullable=True),
    )
    op.create_index("ix_newcomers_municipality_registered_at", "newcomers", ["municipality", "registered_at"])


def downgrade() -> None:
    op.drop_index("ix_newcomers_municipality_registered_at", table_name="newcomers")
    op.drop_table("newcomers")
