"""The public /models page: every model and alias with its current price per 1M tokens."""
from __future__ import annotations
