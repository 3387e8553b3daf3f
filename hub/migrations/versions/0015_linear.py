"""One linear history from here on: merges every head the history had until now.

Until this revision the concerns branched from 0001 (consent, ledger -> newcomer facts, DVV cursor,
webhooks, retention, person states -> dead letters -> ... -> webhook secrets), so the history had
several heads and `head` was not a revision. Consent (0002) and webhooks (0007) are parents of
0011 and 0014, so the four heads left are merged here. This merge changes no table; a database at any combination of those
heads upgrades to it, and every later migration has it (or a later one) as its down_revision.

Revision ID: 0015_linear
Revises: 0004_dvv_cursor, 0005_newcomer_facts, 0008_retention, 0014_webhook_secrets
"""

revision = "0015_linear"
down_revision = ("0004_dvv_cursor", "0005_newcomer_facts", "0008_retention", "0014_webhook_secrets")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
