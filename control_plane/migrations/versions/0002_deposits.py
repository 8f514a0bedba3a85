"""Top-ups: on-chain deposits (credited once per chain, tx hash, log index) and watch-only
deposit addresses.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _timestamp(name, nullable=False):
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "deposits",
        sa.Column("id", BigId, nullable=False),
        sa.Column("chain", sa.String(length=16), nullable=False),
        sa.Column("tx_hash", sa.String(length=100), nullable=False),
        sa.Column("log_index", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("token_contract", sa.String(length=100), nullable=False),
        sa.Column("amount", sa.String(length=80), nullable=False),
        sa.Column("amount_nano", sa.BigInteger(), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("block_hash", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("transaction_id", BigId, nullable=True),
        _timestamp("created_at"),
        sa.CheckConstraint(
            "status IN ('seen', 'confirmed', 'credited', 'orphaned', 'below_minimum')",
            name=op.f("ck_deposits_status"),
        ),
        sa.CheckConstraint("chain IN ('tron', 'bsc', 'polygon')", name=op.f("ck_deposits_chain")),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_deposits_account_id_accounts")),
        sa.ForeignKeyConstraint(
            ["transaction_id"], ["ledger_transactions.id"],
            name=op.f("fk_deposits_transaction_id_ledger_transactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deposits")),
        sa.UniqueConstraint("chain", "tx_hash", "log_index", name=op.f("uq_deposits_chain_tx_hash_log_index")),
    )
    op.create_index("ix_deposits_account_newest", "deposits", ["account_id", "id"])
    op.create_index("ix_deposits_status", "deposits", ["status"])
    op.create_table(
        "deposit_addresses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("family", sa.String(length=8), nullable=False),
        sa.Column("index", sa.BigInteger(), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        _timestamp("created_at"),
        sa.CheckConstraint("family IN ('evm', 'tron')", name=op.f("ck_deposit_addresses_family")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_deposit_addresses_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deposit_addresses")),
        sa.UniqueConstraint("address", name=op.f("uq_deposit_addresses_address")),
        sa.UniqueConstraint("family", "index", name=op.f("uq_deposit_addresses_family_index")),
        sa.UniqueConstraint("account_id", "family", name=op.f("uq_deposit_addresses_account_id_family")),
    )


def downgrade() -> None:
    op.drop_table("deposit_addresses")
    op.drop_table("deposits")  # drops its indexes with it
