"""The dashboard /console/: balance, spend, requests, daily spend by model, the last requests."""
from __future__ import annotations
