"""The request log /console/logs, its CSV and a request's detail."""
from __future__ import annotations
