"""The customer console: people's accounts (a verified email, their console sessions, deletion
that keeps the ledger), keys with allowed models, an expiry and rotation, usage
rows that keep the error a failed request answered, and each account's daily usage per model
(the dashboard reads it instead of the usage table).

Accounts that exist already were made by an operator: their emails count as verified. The daily
usage is filled from the usage rows there are.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("email_verified_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE accounts SET email_verified_at = created_at")
    op.create_table(
        "console_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_console_sessions_account_id_accounts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_sessions")),
    )
    op.create_index(op.f("ix_console_sessions_account_id"), "console_sessions", ["account_id"])
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("allowed_models", sa.Text(), nullable=True))
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("rotated_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("usage") as batch:
        batch.add_column(sa.Column("error_code", sa.String(length=64), nullable=False, server_default=""))
        batch.add_column(sa.Column("error_message", sa.String(length=500), nullable=False, server_default=""))
    op.create_table(
        "usage_daily",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("cost_nano", sa.BigInteger(), nullable=False),
        sa.Column("first_usage_id", sa.BigInteger(), nullable=False),
        sa.Column("last_usage_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_usage_daily_account_id_accounts")),
        sa.PrimaryKeyConstraint("account_id", "day", "model", name=op.f("pk_usage_daily")),
    )
    day = ("substr(created_at, 1, 10)" if op.get_bind().dialect.name == "sqlite"
           else "CAST(created_at AT TIME ZONE 'UTC' AS date)")
    op.execute(
        "INSERT INTO usage_daily (account_id, day, model, requests, errors, cost_nano, first_usage_id, last_usage_id) "
        f"SELECT account_id, {day}, model, COUNT(*), SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END), "
        f"SUM(cost_nano), MIN(id), MAX(id) FROM usage GROUP BY account_id, {day}, model"
    )


def downgrade() -> None:
    op.drop_table("usage_daily")
    op.drop_index(op.f("ix_console_sessions_account_id"), table_name="console_sessions")
    op.drop_table("console_sessions")
    with op.batch_alter_table("usage") as batch:
        batch.drop_column("error_message")
        batch.drop_column("error_code")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("rotated_at")
        batch.drop_column("expires_at")
        batch.drop_column("allowed_models")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("deleted_at")
        batch.drop_column("email_verified_at")
