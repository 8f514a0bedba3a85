"""Routes: a model is served by one or more provider routes, each with its own cost versions; a
model is charged at the serving route's cost or at its own fixed customer price; aliases; keys
that cap fallback prices; usage rows that name the route, its cost and the attempts.

Each existing model becomes a fixed-price model (at_cost false: its price versions stay its
customer price, so records still in the streams keep their meaning) with one route, its old
provider and upstream model, whose cost version is a copy of its current price. Usage rows
recorded before this revision were asked for by their model's name.

Downgrading puts each model's first route back as its provider and upstream model; the price
versions of its routes then count as the model's own (the newest is current).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

PRICE_COLUMNS = ("input", "cached_input", "cache_write", "cache_write_1h", "output", "reasoning")


def upgrade() -> None:
    op.create_table(
        "routes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("provider_id", sa.Integer(), nullable=False),
        sa.Column("upstream_model", sa.String(length=200), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("weight", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name=op.f("fk_routes_model_id_models"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["provider_id"], ["providers.id"], name=op.f("fk_routes_provider_id_providers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_routes")),
        sa.UniqueConstraint("model_id", "provider_id", "upstream_model",
                            name=op.f("uq_routes_model_id_provider_id_upstream_model")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_routes_model_id"), "routes", ["model_id"])
    op.create_table(
        "aliases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name=op.f("fk_aliases_model_id_models"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_aliases")),
        sa.UniqueConstraint("name", name=op.f("uq_aliases_name")),
    )
    op.create_index(op.f("ix_aliases_model_id"), "aliases", ["model_id"])
    with op.batch_alter_table("price_versions") as batch:
        batch.add_column(sa.Column("route_id", sa.Integer(), nullable=True))
        batch.create_index("ix_price_versions_route_newest", ["route_id", "id"])
    with op.batch_alter_table("models") as batch:
        batch.add_column(sa.Column("at_cost", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.add_column(sa.Column("retry_on", sa.String(length=64), server_default="429,500,502,503,504,529",
                                   nullable=False))

    op.execute("INSERT INTO routes (model_id, provider_id, upstream_model, priority, weight, created_at) "
               "SELECT id, provider_id, upstream_model, 0, 1, created_at FROM models")
    # Each route's cost version: a copy of its model's current price.
    op.execute(
        f"INSERT INTO price_versions (model_id, route_id, {', '.join(PRICE_COLUMNS)}, created_at) "
        f"SELECT price.model_id, route.id, {', '.join(f'price.{column}' for column in PRICE_COLUMNS)}, "
        "price.created_at FROM price_versions price JOIN routes route ON route.model_id = price.model_id "
        "WHERE price.id = (SELECT max(newest.id) FROM price_versions newest WHERE newest.model_id = price.model_id)"
    )

    with op.batch_alter_table("models") as batch:
        batch.drop_index("ix_models_provider_id")
        batch.drop_constraint("fk_models_provider_id_providers", type_="foreignkey")
        batch.drop_column("provider_id")
        batch.drop_column("upstream_model")
        # Models added from now on are charged at cost unless given a price.
        batch.alter_column("at_cost", server_default=sa.true())
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("cap_fallback_price", sa.Boolean(), server_default=sa.false(), nullable=False))
    with op.batch_alter_table("usage") as batch:
        batch.add_column(sa.Column("requested_model", sa.String(length=200), server_default="", nullable=False))
        batch.add_column(sa.Column("route_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("cost_version_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("provider_cost_nano", sa.BigInteger(), server_default="0", nullable=False))
        batch.add_column(sa.Column("attempts", sa.Integer(), server_default="1", nullable=False))
        batch.add_column(sa.Column("failed_statuses", sa.String(length=64), server_default="", nullable=False))
        batch.create_foreign_key(op.f("fk_usage_cost_version_id_price_versions"), "price_versions",
                                 ["cost_version_id"], ["id"])
    op.execute("UPDATE usage SET requested_model = model")


def downgrade() -> None:
    with op.batch_alter_table("usage") as batch:
        batch.drop_constraint("fk_usage_cost_version_id_price_versions", type_="foreignkey")
        for column in ("failed_statuses", "attempts", "provider_cost_nano", "cost_version_id", "route_id",
                       "requested_model"):
            batch.drop_column(column)
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("cap_fallback_price")
    with op.batch_alter_table("models") as batch:
        batch.add_column(sa.Column("provider_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("upstream_model", sa.String(length=200), nullable=True))
    first_route = ("(SELECT route.{column} FROM routes route WHERE route.model_id = models.id "
                   "ORDER BY route.priority, route.id LIMIT 1)")
    op.execute(f"UPDATE models SET provider_id = {first_route.format(column='provider_id')}, "
               f"upstream_model = {first_route.format(column='upstream_model')}")
    with op.batch_alter_table("models") as batch:
        batch.alter_column("provider_id", existing_type=sa.Integer(), nullable=False)
        batch.alter_column("upstream_model", existing_type=sa.String(length=200), nullable=False)
        batch.create_foreign_key(op.f("fk_models_provider_id_providers"), "providers", ["provider_id"], ["id"])
        batch.create_index("ix_models_provider_id", ["provider_id"])
        batch.drop_column("retry_on")
        batch.drop_column("at_cost")
    with op.batch_alter_table("price_versions") as batch:
        batch.drop_index("ix_price_versions_route_newest")
        batch.drop_column("route_id")
    op.drop_table("aliases")
    op.drop_table("routes")
