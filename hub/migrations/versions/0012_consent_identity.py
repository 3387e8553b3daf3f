"""A consent's identity is its person and its consent id together; ended consents leave a tombstone.

Consent ids are free text from the publishers, so two persons may share one: lookups by consent id
go through the person (index on person_id, consent_id). `consent_tombstones` keeps, per ended
consent whose history retention removed, the person key, consent id and end (no identity code), so
a replay of its events cannot bring it back.

Revision ID: 0012_consent_identity
Revises: 0011_outbox_parking
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_consent_identity"
down_revision = "0011_outbox_parking"
branch_labels = None
depends_on = ("0002_consent",)


def upgrade() -> None:
    op.create_table(
        "consent_tombstones",
        sa.Column("person_key", sa.String(64), primary_key=True),
        sa.Column("consent_id", sa.String(128), primary_key=True),
        sa.Column("ended_action", sa.String(16), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_consent_tombstones_last_seen_at", "consent_tombstones", ["last_seen_at"])
    with op.batch_alter_table("consent_events") as batch:
        batch.create_index("ix_consent_events_person_consent", ["person_id", "consent_id"])


def downgrade() -> None:
    with op.batch_alter_table("consent_events") as batch:
        batch.drop_index("ix_consent_events_person_consent")
    op.drop_index("ix_consent_tombstones_last_seen_at", table_name="consent_tombstones")
    op.drop_table("consent_tombstones")
