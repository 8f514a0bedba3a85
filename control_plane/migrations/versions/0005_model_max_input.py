"""Models get their context window (max_input), which holds requests whose input the provider
may fetch or keep beyond the request body.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.add_column(sa.Column("max_input", sa.Integer(), server_default="200000", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.drop_column("max_input")
