"""The open and overdue referrals per recipient as a table kept by the transactions that change them
(the gauges read it; nothing recounts the ledger): `referral_counts`, `referral_counts_day` (the day
overdue counts against) and an index on `referrals.due` for the referrals falling due between two
days. The counts are filled once here from the referrals there are, overdue as of today in Finland.

Revision ID: 0021_referral_counts
Revises: 0020_outbox_sequences
"""

import datetime as dt
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from alembic import op

revision = "0021_referral_counts"
down_revision = "0020_outbox_sequences"
branch_labels = None
depends_on = None

CLOSED = ("declined", "completed", "superseded")  # hub.routing.referrals.CLOSED when this was written


def upgrade() -> None:
    op.create_table(
        "referral_counts",
        sa.Column("authority", sa.String(64), primary_key=True),
        sa.Column("open_count", sa.BigInteger(), nullable=False),
        sa.Column("overdue_count", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "referral_counts_day",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("day", sa.Date(), nullable=False),
    )
    op.create_index("ix_referrals_due", "referrals", ["due"])
    day = dt.datetime.now(ZoneInfo("Europe/Helsinki")).date()
    referrals = sa.table("referrals", sa.column("authority", sa.String), sa.column("state", sa.String), sa.column("due", sa.Date))
    is_open = referrals.c.state.not_in(CLOSED)
    counted = sa.select(
        referrals.c.authority,
        sa.func.sum(sa.case((is_open, 1), else_=0)),
        sa.func.sum(sa.case((sa.and_(is_open, referrals.c.due < sa.bindparam("day", type_=sa.Date)), 1), else_=0)),
    ).group_by(referrals.c.authority)
    counts = sa.table("referral_counts", sa.column("authority"), sa.column("open_count"), sa.column("overdue_count"))
    bind = op.get_bind()
    bind.execute(counts.insert().from_select(["authority", "open_count", "overdue_count"], counted), {"day": day})
    bind.execute(sa.table("referral_counts_day", sa.column("id"), sa.column("day", sa.Date)).insert().values(id=1, day=day))


def downgrade() -> None:
    op.drop_index("ix_referrals_due", table_name="referrals")
    op.drop_table("referral_counts_day")
    op.drop_table("referral_counts")
