"""Webhook signing secrets and delivery bodies sealed at rest (hub.adapters.sealing, HUB_DATA_KEYS):
both columns become binary Fernet tokens; the rows already there are sealed in place.

Revision ID: 0014_webhook_secrets
Revises: 0013_sealed_personal_data, 0007_webhooks (whose tables it changes)
"""

import sqlalchemy as sa
from alembic import op

from hub.adapters import sealing

revision = "0014_webhook_secrets"
# 0007_webhooks is a parent rather than a `depends_on` (see 0011_outbox_parking): the version table
# holds the same rows either way.
down_revision = ("0013_sealed_personal_data", "0007_webhooks")
branch_labels = None
depends_on = None

BATCH = 500
# (table, column, its type in clear, nullable)
COLUMNS = (("webhook_subscriptions", "secret", sa.String(128)), ("webhook_deliveries", "body", sa.Text()))


def _convert(table: str, column: str, old_type, new_type, transform) -> None:
    """Rewrite `column` of `table` as `new_type`, each value through `transform`: a new column is
    filled in batches, the old one dropped and the new one renamed.

    SQLite: with native ALTER TABLE statements, never a copy of the table (a copy would be dropped
    while the deliveries and attempts still reference its rows); the new column gets an empty
    default so that it can be NOT NULL from the start.
    """
    staging = f"{column}_new"
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    if sqlite:
        ddl = new_type.compile(dialect=bind.dialect)
        empty = "x''" if isinstance(new_type, sa.LargeBinary) else "''"
        op.execute(f"ALTER TABLE {table} ADD COLUMN {staging} {ddl} NOT NULL DEFAULT {empty}")
    else:
        op.add_column(table, sa.Column(staging, new_type, nullable=True))
    t = sa.table(table, sa.column("id", sa.Integer()), sa.column(column, old_type), sa.column(staging, new_type))
    last = 0
    while True:
        rows = bind.execute(sa.select(t.c.id, t.c[column]).where(t.c.id > last).order_by(t.c.id).limit(BATCH)).all()
        if not rows:
            break
        for row_id, value in rows:
            bind.execute(sa.update(t).where(t.c.id == row_id).values({staging: transform(value)}))
        last = rows[-1][0]
    if sqlite:
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        op.execute(f"ALTER TABLE {table} RENAME COLUMN {staging} TO {column}")
    else:
        op.drop_column(table, column)
        op.alter_column(table, staging, new_column_name=column, existing_type=new_type, nullable=False)


def _sealer() -> sealing.Sealer:
    """The process's sealer; when the caller has not configured one (a command that migrates on the
    way, e.g. `hub retention`), the keys from the environment: never the demo key by omission."""
    current = sealing.current()
    if not current.is_demo:
        return current
    from hub.config import Settings

    return sealing.Sealer(Settings.from_env().data_keys)


def upgrade() -> None:
    sealer = _sealer()
    for table, column, clear_type in COLUMNS:
        _convert(table, column, clear_type, sa.LargeBinary(), lambda value: sealer.seal_text(value))


def downgrade() -> None:
    sealer = _sealer()
    for table, column, clear_type in COLUMNS:
        _convert(table, column, sa.LargeBinary(), clear_type, lambda value: sealer.open_text(None if value is None else bytes(value)))
