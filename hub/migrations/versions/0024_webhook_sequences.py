"""The record's `sequence` on each webhook delivery, indexed per subscription and topic, so that
`hub webhooks redeliver --stream S --from N` finds a recipient's delivered records by number.
Deliveries queued before this column have it empty; the command reads their numbers from their
stored bodies (sealed, so not here) the first time it is asked for them.

Revision ID: 0024_webhook_sequences
Revises: 0023_webhook_waiting_index
"""

import sqlalchemy as sa
from alembic import op

revision = "0024_webhook_sequences"
down_revision = "0023_webhook_waiting_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.add_column(sa.Column("sequence", sa.BigInteger(), nullable=True))
    op.create_index("ix_webhook_deliveries_sequence", "webhook_deliveries", ["subscription_id", "topic", "sequence"])


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_sequence", table_name="webhook_deliveries")
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.drop_column("sequence")
