"""Consent registry: append-only consent history, held items, the outbox, the disclosure audit.

Revision ID: 0002_consent
Revises: 0001_base
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_consent"
down_revision = "0001_base"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "consent_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(64), nullable=False, unique=True),
        sa.Column("consent_id", sa.String(128), nullable=False, index=True),
        sa.Column("person_id", sa.String(11), nullable=False, index=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("purpose", sa.String(64), nullable=False),
        sa.Column("data_categories", sa.Text, nullable=False),
        sa.Column("recipients", sa.Text, nullable=False),
        sa.Column("valid_from", TS, nullable=True),
        sa.Column("valid_until", TS, nullable=True),
        sa.Column("evidence", sa.Text, nullable=True),
        sa.Column("recorded_by", sa.String(64), nullable=False),
        sa.Column("recorded_at", TS, nullable=False),
        sa.Column("stored_at", TS, nullable=False),
    )
    op.create_table(
        "held_items",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("assessment_event_id", sa.String(64), nullable=False, unique=True),
        sa.Column("assessment_id", sa.String(128), nullable=False),
        sa.Column("person_id", sa.String(11), nullable=False, index=True),
        sa.Column("assessor", sa.String(64), nullable=False),
        sa.Column("recipient", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("assessment", sa.LargeBinary, nullable=False),
        sa.Column("held_at", TS, nullable=False),
        sa.Column("released_at", TS, nullable=True, index=True),
        sa.Column("request_id", sa.String(64), nullable=True),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("key", sa.LargeBinary, nullable=True),
        sa.Column("schema_name", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("value", sa.LargeBinary, nullable=False),
        sa.Column("headers", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("sent_at", TS, nullable=True, index=True),
    )
    op.create_table(
        "disclosures",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False, unique=True),
        sa.Column("person_id", sa.String(11), nullable=False, index=True),
        sa.Column("person_key", sa.String(64), nullable=False),
        sa.Column("recipient", sa.String(64), nullable=False),
        sa.Column("assessor", sa.String(64), nullable=False),
        sa.Column("assessment_id", sa.String(128), nullable=False),
        sa.Column("data_categories", sa.Text, nullable=False),
        sa.Column("consent_id", sa.String(128), nullable=True, index=True),
        sa.Column("legal_basis", sa.Text, nullable=True),
        sa.Column("disclosed_at", TS, nullable=False),
        sa.Column("outbox_id", sa.Integer, sa.ForeignKey("outbox.id"), nullable=False),
    )


def downgrade() -> None:
    for table in ("disclosures", "outbox", "held_items", "consent_events"):
        op.drop_table(table)
