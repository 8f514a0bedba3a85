"""Indexes for the request log's filters (console /console/logs, its CSV, /api/v1/usage): each
filter's rows newest first, read from an index that ends with the row id, so a page of a
million-row account reads one page of index entries instead of the account's rows (measured in
bench/console_logs.py). The key's index gains the id (it replaces the key_id one); failed rows
get a partial index of their own, which also serves an exact error status: they are few, and
succeeded ones most (those are read from the account's own index, ix_usage_account_newest).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_usage_key_id", table_name="usage")
    op.create_index("ix_usage_key_newest", "usage", ["key_id", "id"])
    op.create_index("ix_usage_account_model_newest", "usage", ["account_id", "model", "id"])
    op.create_index("ix_usage_account_errors_newest", "usage", ["account_id", "id"],
                    postgresql_where=sa.text("status >= 400"), sqlite_where=sa.text("status >= 400"))


def downgrade() -> None:
    op.drop_index("ix_usage_account_errors_newest", table_name="usage")
    op.drop_index("ix_usage_account_model_newest", table_name="usage")
    op.drop_index("ix_usage_key_newest", table_name="usage")
    op.create_index("ix_usage_key_id", "usage", ["key_id"])
