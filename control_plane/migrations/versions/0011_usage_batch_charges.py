"""A usage transaction charges one account's requests of a drained batch, and its usage rows name
it: the index that finds a transaction's rows (the request log of a transaction, statements).
Transactions recorded before keep their one request each (`usage:<request id>`).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_usage_transaction", "usage", ["transaction_id"])


def downgrade() -> None:
    op.drop_index("ix_usage_transaction", table_name="usage")
