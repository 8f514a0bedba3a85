"""Usage rows keep the request's hold and its overage; usage records the worker cannot record go
to a quarantine table instead of blocking their stream entry.

Rows recorded before this revision get hold = cost and overage 0, as their records are read.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("usage") as batch:
        batch.add_column(sa.Column("hold_nano", sa.BigInteger(), server_default="0", nullable=False))
        batch.add_column(sa.Column("overage_nano", sa.BigInteger(), server_default="0", nullable=False))
    op.execute("UPDATE usage SET hold_nano = cost_nano")
    op.create_table(
        "usage_quarantine",
        sa.Column("id", BigId, nullable=False),
        sa.Column("stream", sa.String(length=100), nullable=False),
        sa.Column("entry_id", sa.String(length=64), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("record", sa.String(length=1000), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("key_id", sa.Integer(), nullable=True),
        sa.Column("cost_nano", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_quarantine")),
        sa.UniqueConstraint("stream", "entry_id", "line", name=op.f("uq_usage_quarantine_stream_entry_id_line")),
    )


def downgrade() -> None:
    op.drop_table("usage_quarantine")
    with op.batch_alter_table("usage") as batch:
        batch.drop_column("overage_nano")
        batch.drop_column("hold_nano")
