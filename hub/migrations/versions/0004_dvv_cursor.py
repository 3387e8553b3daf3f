"""The DVV change-feed cursor: the last record key (viimeisinKirjausavain) whose page is in Kafka.

Revision ID: 0004_dvv_cursor
Revises: 0001_base
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_dvv_cursor"
down_revision = "0001_base"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dvv_cursor",
        sa.Column("feed", sa.String(64), primary_key=True),
        sa.Column("record_key", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("dvv_cursor")
