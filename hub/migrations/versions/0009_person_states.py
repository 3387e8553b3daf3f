"""Newcomer detection's per-person state, moved out of the worker's memory (it was a faust table
with a changelog topic): one row per pseudonymous person key, the state as compact JSON text.

Revision ID: 0009_person_states
Revises: 0001_base
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_person_states"
down_revision = "0001_base"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "person_states",
        sa.Column("person_key", sa.String(128), primary_key=True),
        sa.Column("state", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("person_states")
