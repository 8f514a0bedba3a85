"""The admin console: an admin's second factor (TOTP secret, recovery codes) and admin sessions,
admin API keys, suspended accounts, disabled providers, price sync (each route's id in a price
list, where each price version came from and who made it, changes held for approval) and the
append-only audit log, guarded by triggers that refuse UPDATE and DELETE; the admin overview's
usage rollup per day, model, provider and status (filled from the usage rows there are) and the
reconciliation runs.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

APPEND_ONLY = "audit_log is append-only"


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_constraint(op.f("ck_accounts_status"), type_="check")
        batch.create_check_constraint(op.f("ck_accounts_status"), "status IN ('active', 'disabled', 'suspended')")
        batch.add_column(sa.Column("totp_secret_encrypted", sa.Text(), nullable=True))
        batch.add_column(sa.Column("totp_last_step", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("console_sessions") as batch:
        batch.add_column(sa.Column("admin", sa.Boolean(), nullable=False, server_default=sa.text("false")))
    op.create_table(
        "recovery_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_recovery_codes_account_id_accounts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recovery_codes")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_recovery_codes_code_hash")),
    )
    op.create_index(op.f("ix_recovery_codes_account_id"), "recovery_codes", ["account_id"])
    op.create_table(
        "admin_api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=24), nullable=False),
        sa.Column("read_only", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_admin_api_keys_account_id_accounts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_admin_api_keys_key_hash")),
    )
    op.create_index(op.f("ix_admin_api_keys_account_id"), "admin_api_keys", ["account_id"])
    with op.batch_alter_table("providers") as batch:
        batch.add_column(sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("routes") as batch:
        batch.add_column(sa.Column("price_source_id", sa.String(length=200), nullable=True))
    with op.batch_alter_table("price_versions") as batch:
        batch.add_column(sa.Column("source", sa.String(length=500), nullable=False, server_default=""))
        batch.add_column(sa.Column("created_by", sa.String(length=200), nullable=False, server_default=""))
    op.create_table(
        "price_holds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("route_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=500), nullable=False),
        sa.Column("proposed", sa.Text(), nullable=False),
        sa.Column("current_version_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("state IN ('pending', 'approved', 'rejected')", name=op.f("ck_price_holds_state")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_price_holds")),
    )
    op.create_index(op.f("ix_price_holds_route_id"), "price_holds", ["route_id"])
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "audit_log",
        sa.Column("id", big_id, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("actor_account_id", sa.Integer(), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("entity", sa.String(length=64), nullable=False),
        sa.Column("entity_id", sa.String(length=64), nullable=False),
        sa.Column("before", sa.Text(), nullable=True),
        sa.Column("after", sa.Text(), nullable=True),
        sa.Column("reason", sa.String(length=1000), nullable=False, server_default=""),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(op.f("ix_audit_log_created_at"), "audit_log", ["created_at"])
    op.create_index("ix_audit_log_entity", "audit_log", ["entity", "entity_id"])
    for statement in append_only_triggers(op.get_bind().dialect.name):
        op.execute(statement)
    create_usage_rollup()
    op.create_table(
        "reconcile_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("accounts", sa.Integer(), nullable=False),
        sa.Column("drifting", sa.Integer(), nullable=False),
        sa.Column("keys_drifting", sa.Integer(), nullable=False),
        sa.Column("violations", sa.Integer(), nullable=False),
        sa.Column("quarantined", sa.Integer(), nullable=False),
        sa.Column("undrained", sa.Integer(), nullable=False),
        sa.Column("drift_nano", sa.BigInteger(), nullable=False),
        sa.Column("overage_nano", sa.BigInteger(), nullable=False),
        sa.Column("findings", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconcile_runs")),
    )


ROLLUP_TOKENS = ("input_tokens", "cached_input_tokens", "cache_write_tokens", "cache_write_1h_tokens",
                 "output_tokens", "reasoning_tokens")


def create_usage_rollup() -> None:
    """The table, and its rows from the usage rows there are (a GROUP BY of them, as the drain
    keeps it from now on)."""
    op.create_table(
        "usage_rollup",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("provider", sa.String(length=100), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        *(sa.Column(column, sa.BigInteger(), nullable=False) for column in ROLLUP_TOKENS),
        sa.Column("cost_nano", sa.BigInteger(), nullable=False),
        sa.Column("provider_cost_nano", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", "model", "provider", "status", name=op.f("pk_usage_rollup")),
    )
    day = ("substr(created_at, 1, 10)" if op.get_bind().dialect.name == "sqlite"
           else "CAST(created_at AT TIME ZONE 'UTC' AS date)")
    summed = ("cost_nano", "provider_cost_nano", *ROLLUP_TOKENS)
    op.execute(
        f"INSERT INTO usage_rollup (day, model, provider, status, requests, {', '.join(summed)}) "
        f"SELECT {day}, model, provider, status, COUNT(*), {', '.join(f'SUM({column})' for column in summed)} "
        f"FROM usage GROUP BY {day}, model, provider, status"
    )


def append_only_triggers(dialect: str) -> list[str]:
    """SQL that makes the database itself refuse to change or remove an audit row."""
    if dialect == "sqlite":
        return [f"CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log "
                f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END" for verb in ("UPDATE", "DELETE")]
    return [
        ("CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS "
         f"$$ BEGIN RAISE EXCEPTION '{APPEND_ONLY}'; END $$"),
        ("CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
         "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"),
        ("CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
         "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()"),
    ]


def downgrade() -> None:
    op.drop_table("reconcile_runs")
    op.drop_table("usage_rollup")
    op.drop_table("audit_log")  # and its triggers
    if op.get_bind().dialect.name != "sqlite":
        op.execute("DROP FUNCTION audit_log_append_only()")
    op.drop_index(op.f("ix_price_holds_route_id"), table_name="price_holds")
    op.drop_table("price_holds")
    with op.batch_alter_table("price_versions") as batch:
        batch.drop_column("created_by")
        batch.drop_column("source")
    with op.batch_alter_table("routes") as batch:
        batch.drop_column("price_source_id")
    with op.batch_alter_table("providers") as batch:
        batch.drop_column("disabled_at")
    op.drop_index(op.f("ix_admin_api_keys_account_id"), table_name="admin_api_keys")
    op.drop_table("admin_api_keys")
    op.drop_index(op.f("ix_recovery_codes_account_id"), table_name="recovery_codes")
    op.drop_table("recovery_codes")
    with op.batch_alter_table("console_sessions") as batch:
        batch.drop_column("admin")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("totp_last_step")
        batch.drop_column("totp_secret_encrypted")
        batch.drop_constraint(op.f("ck_accounts_status"), type_="check")
        batch.create_check_constraint(op.f("ck_accounts_status"), "status IN ('active', 'disabled')")
