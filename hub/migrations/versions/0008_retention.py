"""Retention runs: each run of the retention job is itself recorded (when, cut-off, what it removed).

Revision ID: 0008_retention
Revises: 0001_base
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_retention"
down_revision = "0001_base"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "retention_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cutoff", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_by", sa.String(128), nullable=False),
        sa.Column("removed", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("retention_runs")
