"""Initial schema: accounts, keys, catalog, double-entry ledger, usage.

Revision ID: 0001
Revises:
Create Date: 2025-11-25
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Ledger accounts every installation has; wallets are created with their customer account.
SYSTEM_LEDGER_ACCOUNTS = ("system:usage", "system:adjustments", "system:deposits", "system:bonuses")

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _timestamp(name, nullable=False):
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("balance_nano", sa.BigInteger(), nullable=False),
        sa.Column("rpm", sa.Integer(), nullable=True),
        sa.Column("tpm", sa.Integer(), nullable=True),
        _timestamp("created_at"),
        sa.CheckConstraint("status IN ('active', 'disabled')", name=op.f("ck_accounts_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("email", name=op.f("uq_accounts_email")),
    )
    op.create_table(
        "providers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("protocol", sa.String(length=16), nullable=False),
        sa.Column("base_url", sa.String(length=2000), nullable=False),
        sa.Column("api_key_encrypted", sa.Text(), nullable=False),
        _timestamp("created_at"),
        sa.CheckConstraint("protocol IN ('openai', 'anthropic')", name=op.f("ck_providers_protocol")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_providers")),
        sa.UniqueConstraint("name", name=op.f("uq_providers_name")),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("limit_nano", sa.BigInteger(), nullable=True),
        sa.Column("rpm", sa.Integer(), nullable=True),
        sa.Column("tpm", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        _timestamp("created_at"),
        _timestamp("revoked_at", nullable=True),
        sa.CheckConstraint("status IN ('active', 'revoked')", name=op.f("ck_api_keys_status")),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_api_keys_account_id_accounts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.create_index(op.f("ix_api_keys_account_id"), "api_keys", ["account_id"])
    ledger_accounts = op.create_table(
        "ledger_accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=100), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_ledger_accounts_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_accounts")),
        sa.UniqueConstraint("account_id", name=op.f("uq_ledger_accounts_account_id")),
        sa.UniqueConstraint("code", name=op.f("uq_ledger_accounts_code")),
    )
    op.bulk_insert(ledger_accounts, [{"code": code} for code in SYSTEM_LEDGER_ACCOUNTS])
    op.create_table(
        "ledger_transactions",
        sa.Column("id", BigId, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("published", sa.Boolean(), nullable=False),
        _timestamp("created_at"),
        sa.CheckConstraint(
            "kind IN ('deposit', 'bonus', 'usage', 'refund', 'adjustment')",
            name=op.f("ck_ledger_transactions_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_ledger_transactions_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_transactions")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_ledger_transactions_idempotency_key")),
    )
    op.create_index("ix_ledger_transactions_account_newest", "ledger_transactions", ["account_id", "id"])
    op.create_index(
        "ix_ledger_transactions_unpublished",
        "ledger_transactions",
        ["id"],
        postgresql_where=sa.text("NOT published"),
        sqlite_where=sa.text("published = 0"),
    )
    op.create_table(
        "models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("provider_id", sa.Integer(), nullable=False),
        sa.Column("upstream_model", sa.String(length=200), nullable=False),
        sa.Column("max_output", sa.Integer(), nullable=False),
        _timestamp("created_at"),
        sa.ForeignKeyConstraint(["provider_id"], ["providers.id"], name=op.f("fk_models_provider_id_providers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_models")),
        sa.UniqueConstraint("name", name=op.f("uq_models_name")),
    )
    op.create_index(op.f("ix_models_provider_id"), "models", ["provider_id"])
    op.create_table(
        "ledger_entries",
        sa.Column("id", BigId, nullable=False),
        sa.Column("transaction_id", BigId, nullable=False),
        sa.Column("ledger_account_id", sa.Integer(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["ledger_account_id"],
            ["ledger_accounts.id"],
            name=op.f("fk_ledger_entries_ledger_account_id_ledger_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_ledger_entries_transaction_id_ledger_transactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_entries")),
    )
    op.create_index(
        "ix_ledger_entries_ledger_account_newest", "ledger_entries", ["ledger_account_id", "transaction_id"]
    )
    op.create_index(op.f("ix_ledger_entries_transaction_id"), "ledger_entries", ["transaction_id"])
    op.create_table(
        "price_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("input", sa.BigInteger(), nullable=False),
        sa.Column("cached_input", sa.BigInteger(), nullable=True),
        sa.Column("cache_write", sa.BigInteger(), nullable=True),
        sa.Column("cache_write_1h", sa.BigInteger(), nullable=True),
        sa.Column("output", sa.BigInteger(), nullable=False),
        sa.Column("reasoning", sa.BigInteger(), nullable=True),
        _timestamp("created_at"),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name=op.f("fk_price_versions_model_id_models")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_price_versions")),
    )
    op.create_index("ix_price_versions_model_newest", "price_versions", ["model_id", "id"])
    op.create_table(
        "usage",
        sa.Column("id", BigId, nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("upstream_model", sa.String(length=200), nullable=False),
        sa.Column("provider", sa.String(length=100), nullable=False),
        sa.Column("price_version_id", sa.Integer(), nullable=True),
        sa.Column("endpoint", sa.String(length=64), nullable=False),
        sa.Column("stream", sa.Boolean(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("billing_basis", sa.String(length=16), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cached_input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_write_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_write_1h_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("reasoning_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_nano", sa.BigInteger(), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=True),
        sa.Column("ttfb_ms", sa.Integer(), nullable=True),
        sa.Column("node", sa.String(length=100), nullable=False),
        _timestamp("created_at"),
        sa.Column("transaction_id", BigId, nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_usage_account_id_accounts")),
        sa.ForeignKeyConstraint(["key_id"], ["api_keys.id"], name=op.f("fk_usage_key_id_api_keys")),
        sa.ForeignKeyConstraint(
            ["price_version_id"], ["price_versions.id"], name=op.f("fk_usage_price_version_id_price_versions")
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"], ["ledger_transactions.id"], name=op.f("fk_usage_transaction_id_ledger_transactions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage")),
        sa.UniqueConstraint("request_id", name=op.f("uq_usage_request_id")),
    )
    op.create_index("ix_usage_account_newest", "usage", ["account_id", "id"])
    op.create_index("ix_usage_key_id", "usage", ["key_id"])


def downgrade() -> None:
    for table in (
        "usage",
        "price_versions",
        "ledger_entries",
        "models",
        "ledger_transactions",
        "ledger_accounts",
        "api_keys",
        "providers",
        "accounts",
    ):
        op.drop_table(table)  # drops the table's indexes with it
