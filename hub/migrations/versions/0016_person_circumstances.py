"""Routing's per-person circumstances: the facts other authorities report (jobseeker status,
residence permit, service needs) and a snapshot of the person's last Newcomer, by person key.

Revision ID: 0016_person_circumstances
Revises: 0015_linear
"""

import sqlalchemy as sa
from alembic import op

revision = "0016_person_circumstances"
down_revision = "0015_linear"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "person_circumstances",
        sa.Column("person_key", sa.String(128), primary_key=True),
        sa.Column("facts", sa.Text(), nullable=False),
        sa.Column("newcomer", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("person_circumstances")
