"""Personal data at rest: no identity code in clear, assessment data and outgoing records sealed.

- person_states: the stored state loses its `person_id` (the row is keyed by the person key; every
  change brings the identity code).
- consent_events: `person_key` (how a person's history is found) is added, `person_id` is sealed;
  a consent is found by (person_key, consent_id).
- held_items: `person_id` is replaced by `person_key`; the held assessment is sealed.
- disclosures: `person_id` is dropped; the audit is found by `person_key` (recomputed from the
  identity code, so that it is the hub's own key).
- outbox: `value` is sealed (plan requests carry identity codes and assessment data).

Existing rows are converted with HUB_PERSON_KEY_SECRET and HUB_DATA_KEYS from the environment, the
values the worker runs with; a database holding such rows is not converted under the demo values.
Sealing is `hub.adapters.sealing` (Fernet). Not reversible (a backup is).

Revision ID: 0013_sealed_personal_data
Revises: 0012_consent_identity
"""

import sqlalchemy as sa
from alembic import op

revision = "0013_sealed_personal_data"
down_revision = "0012_consent_identity"
branch_labels = None
depends_on = "0002_consent"  # the consent tables it converts

CHUNK = 500


def _keys():
    """(person key function, sealer) from the environment; refuses the demo values."""
    from hub.adapters.sealing import Sealer
    from hub.config import DemoSecrets, Settings
    from hub.domain import hetu

    settings = Settings.from_env()
    try:
        settings.require_production_secrets()
    except DemoSecrets as exc:
        raise DemoSecrets(f"migration 0013 keys and seals the personal data this database holds, with the worker's values: {exc}") from None
    secret = settings.person_key_secret
    return (lambda code: hetu.person_key(code, secret)), Sealer(settings.data_keys)


def _has_rows(bind, *tables: str) -> bool:
    return any(bind.execute(sa.text(f"SELECT 1 FROM {t} LIMIT 1")).first() is not None for t in tables)


def _rewrite(bind, table: str, columns: str, convert) -> None:
    """Every row of `table` (by id, in chunks): `convert(row)` -> the values to set."""
    last = 0
    while True:
        rows = bind.execute(sa.text(f"SELECT id, {columns} FROM {table} WHERE id > :last ORDER BY id LIMIT {CHUNK}"), {"last": last}).all()
        if not rows:
            return
        for row in rows:
            values = convert(row)
            sets = ", ".join(f"{k} = :{k}" for k in values)
            bind.execute(sa.text(f"UPDATE {table} SET {sets} WHERE id = :id"), {**values, "id": row[0]})
        last = rows[-1][0]


def _strip_person_ids(bind) -> None:
    if bind.dialect.name == "postgresql":
        bind.execute(sa.text("UPDATE person_states SET state = (state::jsonb - 'person_id')::text WHERE state LIKE '%\"person_id\"%'"))
    else:
        bind.execute(sa.text("UPDATE person_states SET state = json_remove(state, '$.person_id') WHERE state LIKE '%\"person_id\"%'"))


def upgrade() -> None:
    bind = op.get_bind()
    key = sealer = None
    if _has_rows(bind, "consent_events", "held_items", "disclosures", "outbox"):
        key, sealer = _keys()  # before any change: refused, the database stays as it was
    _strip_person_ids(bind)

    op.drop_index("ix_consent_events_person_id", table_name="consent_events")
    op.drop_index("ix_consent_events_person_consent", table_name="consent_events")  # 0012's, on the clear person_id
    op.drop_index("ix_held_items_person_id", table_name="held_items")
    op.drop_index("ix_disclosures_person_id", table_name="disclosures")
    with op.batch_alter_table("consent_events") as batch:
        batch.add_column(sa.Column("person_key", sa.String(64), nullable=True))
        batch.add_column(sa.Column("person_id_sealed", sa.LargeBinary(), nullable=True))
    with op.batch_alter_table("held_items") as batch:
        batch.add_column(sa.Column("person_key", sa.String(64), nullable=True))
    if key is not None:
        _rewrite(bind, "consent_events", "person_id",
                 lambda r: {"person_key": key(r[1]), "person_id_sealed": sealer.seal_text(r[1])})
        _rewrite(bind, "held_items", "person_id, assessment",
                 lambda r: {"person_key": key(r[1]), "assessment": sealer.seal(bytes(r[2]))})
        _rewrite(bind, "disclosures", "person_id", lambda r: {"person_key": key(r[1])})
        _rewrite(bind, "outbox", "value", lambda r: {"value": sealer.seal(bytes(r[1]))})
    with op.batch_alter_table("consent_events") as batch:
        batch.drop_column("person_id")
    with op.batch_alter_table("consent_events") as batch:
        batch.alter_column("person_id_sealed", new_column_name="person_id", existing_type=sa.LargeBinary(), nullable=False)
        batch.alter_column("person_key", existing_type=sa.String(64), nullable=False)
        batch.create_index("ix_consent_events_person_key", ["person_key"])
        batch.create_index("ix_consent_events_person_consent", ["person_key", "consent_id"])
    with op.batch_alter_table("held_items") as batch:
        batch.drop_column("person_id")
        batch.alter_column("person_key", existing_type=sa.String(64), nullable=False)
        batch.create_index("ix_held_items_person_key", ["person_key"])
    with op.batch_alter_table("disclosures") as batch:
        batch.drop_column("person_id")
        batch.create_index("ix_disclosures_person_key", ["person_key"])


def downgrade() -> None:
    raise RuntimeError("0013_sealed_personal_data is not undone: the identity codes it removed from held items, disclosures and "
                       "person states are kept nowhere in clear; restore the backup taken before the upgrade")
