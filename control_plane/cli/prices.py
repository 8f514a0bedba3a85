"""`tollgate prices`: syncing routes' costs from a machine-readable price list."""
from __future__ import annotations

import click


@click.group()
def prices() -> None:
    """Provider prices from a price list (LiteLLM's or OpenRouter's)."""
