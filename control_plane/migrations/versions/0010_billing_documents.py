"""Statements, invoices, credit policies and alerts: billing profiles, numbered invoices and credit
notes (immutable: triggers refuse UPDATE and DELETE) in gapless series, the `fee` and `expiry`
ledger kinds with their system accounts (and an index of the top-ups, for credit expiry), each
account's time zone and balance alert, each key's limit alert, and the outbox of alert mails.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

IMMUTABLE = "an issued invoice cannot be changed"
NEW_SYSTEM_ACCOUNTS = ("system:fees", "system:expired")
KINDS = "kind IN ('deposit', 'bonus', 'usage', 'refund', 'adjustment', 'fee', 'expiry')"
OLD_KINDS = "kind IN ('deposit', 'bonus', 'usage', 'refund', 'adjustment')"


def upgrade() -> None:
    _ledger_kinds(KINDS)
    op.create_index("ix_ledger_transactions_account_topups", "ledger_transactions", ["account_id", "created_at"],
                    postgresql_where=sa.text("kind IN ('deposit', 'bonus')"),
                    sqlite_where=sa.text("kind IN ('deposit', 'bonus')"))
    op.bulk_insert(sa.table("ledger_accounts", sa.column("code", sa.String)),
                   [{"code": code} for code in NEW_SYSTEM_ACCOUNTS])
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("time_zone", sa.String(length=64), nullable=False, server_default="UTC"))
        batch.add_column(sa.Column("balance_alert_nano", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("balance_alert_sent", sa.Boolean(), nullable=False,
                                   server_default=sa.text("false")))
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("limit_alert_percent", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "billing_profiles",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("legal_name", sa.String(length=200), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("tax_id", sa.String(length=64), nullable=False),
        sa.Column("invoice_email", sa.String(length=320), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"],
                                name=op.f("fk_billing_profiles_account_id_accounts")),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_billing_profiles")),
    )
    op.create_table(
        "invoice_series",
        sa.Column("prefix", sa.String(length=64), nullable=False),
        sa.Column("last_number", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("prefix", name=op.f("pk_invoice_series")),
    )
    op.create_table(
        "invoices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=80), nullable=False),
        sa.Column("prefix", sa.String(length=64), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("transaction_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=True),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("time_zone", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.Column("customer", sa.Text(), nullable=False),
        sa.Column("lines", sa.Text(), nullable=False),
        sa.Column("tax_rate", sa.String(length=16), nullable=False),
        sa.Column("reverse_charge", sa.Boolean(), nullable=False),
        sa.Column("net_nano", sa.BigInteger(), nullable=False),
        sa.Column("tax_nano", sa.BigInteger(), nullable=False),
        sa.Column("total_nano", sa.BigInteger(), nullable=False),
        sa.Column("payment", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.CheckConstraint("kind IN ('invoice', 'credit_note')", name=op.f("ck_invoices_kind")),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_invoices_account_id_accounts")),
        sa.ForeignKeyConstraint(["transaction_id"], ["ledger_transactions.id"],
                                name=op.f("fk_invoices_transaction_id_ledger_transactions")),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"], name=op.f("fk_invoices_invoice_id_invoices")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoices")),
        sa.UniqueConstraint("number", name=op.f("uq_invoices_number")),
        sa.UniqueConstraint("prefix", "sequence", name="uq_invoices_prefix_sequence"),
        sa.UniqueConstraint("transaction_id", name=op.f("uq_invoices_transaction_id")),
    )
    op.create_index("ix_invoices_account_newest", "invoices", ["account_id", "id"])
    for statement in _immutable_triggers(op.get_bind().dialect.name):
        op.execute(statement)
    op.create_table(
        "notices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("dedupe_key", sa.String(length=200), nullable=False),
        sa.Column("to_address", sa.String(length=320), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_notices_account_id_accounts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notices")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_notices_dedupe_key")),
    )
    op.create_index(op.f("ix_notices_account_id"), "notices", ["account_id"])
    op.create_index("ix_notices_unsent", "notices", ["id"], postgresql_where=sa.text("sent_at IS NULL"),
                    sqlite_where=sa.text("sent_at IS NULL"))


def _ledger_kinds(condition: str) -> None:
    """The ledger's kind constraint (SQLite rebuilds the table: its partial index is made again,
    as a rebuild need not keep the WHERE)."""
    op.drop_index("ix_ledger_transactions_unpublished", table_name="ledger_transactions")
    with op.batch_alter_table("ledger_transactions") as batch:
        batch.drop_constraint(op.f("ck_ledger_transactions_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_ledger_transactions_kind"), condition)
    op.create_index("ix_ledger_transactions_unpublished", "ledger_transactions", ["id"],
                    postgresql_where=sa.text("NOT published"), sqlite_where=sa.text("published = 0"))


def _immutable_triggers(dialect: str) -> list[str]:
    if dialect == "sqlite":
        return [f"CREATE TRIGGER invoices_no_{verb.lower()} BEFORE {verb} ON invoices "
                f"BEGIN SELECT RAISE(ABORT, '{IMMUTABLE}'); END" for verb in ("UPDATE", "DELETE")]
    return [
        ("CREATE FUNCTION invoices_immutable() RETURNS trigger LANGUAGE plpgsql AS "
         f"$$ BEGIN RAISE EXCEPTION '{IMMUTABLE}'; END $$"),
        ("CREATE TRIGGER invoices_immutable BEFORE UPDATE OR DELETE ON invoices "
         "FOR EACH ROW EXECUTE FUNCTION invoices_immutable()"),
        ("CREATE TRIGGER invoices_no_truncate BEFORE TRUNCATE ON invoices "
         "FOR EACH STATEMENT EXECUTE FUNCTION invoices_immutable()"),
    ]


def downgrade() -> None:
    op.drop_index("ix_notices_unsent", table_name="notices")
    op.drop_table("notices")
    op.drop_table("invoices")  # and its triggers
    if op.get_bind().dialect.name != "sqlite":
        op.execute("DROP FUNCTION invoices_immutable()")
    op.drop_table("invoice_series")
    op.drop_table("billing_profiles")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("limit_alert_percent")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("balance_alert_sent")
        batch.drop_column("balance_alert_nano")
        batch.drop_column("time_zone")
    codes = ", ".join(f"'{code}'" for code in NEW_SYSTEM_ACCOUNTS)
    op.execute(f"DELETE FROM ledger_accounts WHERE code IN ({codes})")
    op.drop_index("ix_ledger_transactions_account_topups", table_name="ledger_transactions")
    _ledger_kinds(OLD_KINDS)
