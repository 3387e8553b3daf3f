"""A partial index of the webhook deliveries still waiting (pending or parked), so the delivery
service's periodic reads (the queue gauges, each queue's head, a lane's pending deliveries) read
those rows and not the ledger of delivered and withdrawn ones, which stay for the replay horizon.

Revision ID: 0023_webhook_waiting_index
Revises: 0022_pending_indexes
"""

import sqlalchemy as sa
from alembic import op

revision = "0023_webhook_waiting_index"
down_revision = "0022_pending_indexes"
branch_labels = None
depends_on = None

WAITING = "state IN ('pending', 'parked')"


def upgrade() -> None:
    op.create_index("ix_webhook_deliveries_waiting", "webhook_deliveries", ["subscription_id", "state", "id"],
                    postgresql_where=sa.text(WAITING), sqlite_where=sa.text(WAITING))


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_waiting", table_name="webhook_deliveries")
