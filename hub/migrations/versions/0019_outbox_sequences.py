"""Plan requests and notices are numbered per recipient and stream, like referrals: the outbox row
keeps its recipient, stream and sequence (what `hub resend --stream plan-requests|notices` sends
again), and `outbox_sequences` holds each (recipient, stream)'s last number (the row every worker
locks to take the next one).

Revision ID: 0019_outbox_sequences
Revises: 0018_referral_withdrawals
"""

import sqlalchemy as sa
from alembic import op

revision = "0019_outbox_sequences"
down_revision = "0018_referral_withdrawals"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox_sequences",
        sa.Column("recipient", sa.String(64), primary_key=True),
        sa.Column("stream", sa.String(32), primary_key=True),
        sa.Column("last_sequence", sa.BigInteger(), nullable=False),
    )
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("recipient", sa.String(64), nullable=True))
        batch.add_column(sa.Column("stream", sa.String(32), nullable=True))
        batch.add_column(sa.Column("sequence", sa.BigInteger(), nullable=True))
        batch.create_unique_constraint("uq_outbox_recipient_stream_sequence", ["recipient", "stream", "sequence"])


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_constraint("uq_outbox_recipient_stream_sequence", type_="unique")
        batch.drop_column("sequence")
        batch.drop_column("stream")
        batch.drop_column("recipient")
    op.drop_table("outbox_sequences")
