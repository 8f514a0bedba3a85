"""Top up /console/topup: deposit addresses with QR codes, card checkout, deposits."""
from __future__ import annotations
