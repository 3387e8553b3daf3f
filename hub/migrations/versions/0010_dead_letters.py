"""Dead letters too large for the dead-letter topic, kept whole (`hub.adapters.dead_letter_store`):
the original's key and value sealed at rest.

Revision ID: 0010_dead_letters
Revises: 0009_person_states
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_dead_letters"
down_revision = "0009_person_states"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("original_topic", sa.String(255), nullable=True),
        sa.Column("original_partition", sa.Integer(), nullable=True),
        sa.Column("original_offset", sa.BigInteger(), nullable=True),
        sa.Column("original_key", sa.LargeBinary(), nullable=True),  # sealed (Fernet token)
        sa.Column("original_value", sa.LargeBinary(), nullable=False),  # sealed (Fernet token)
        sa.Column("location", sa.Text(), nullable=True),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("dead_letters")
