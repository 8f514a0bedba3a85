"""`tollgate audit`: the audit log of every change to money and configuration."""
from __future__ import annotations

import click


@click.command("audit")
def audit_command() -> None:
    """The audit log."""
