"""Plan requests to the assessor itself: `disclosures.disclosed` (true for every row already there).

When the authority that made the assessment also makes the integration plan, nothing is disclosed:
the plan request still goes to it and has its row in the plan-request ledger (`hub report` counts
it), but with `disclosed` false, so the disclosure audit (`hub audit`) and revocation notices leave
it out. Additive: a nullable-free boolean with a server default; nothing is rewritten.

Revision ID: 0017_own_plan_requests
Revises: 0015_linear
"""

import sqlalchemy as sa
from alembic import op

revision = "0017_own_plan_requests"
down_revision = "0016_person_circumstances"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("disclosures") as batch:
        batch.add_column(sa.Column("disclosed", sa.Boolean(), nullable=False, server_default=sa.true()))


def downgrade() -> None:
    with op.batch_alter_table("disclosures") as batch:
        batch.drop_column("disclosed")
