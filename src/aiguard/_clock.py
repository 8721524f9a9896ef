"""The one clock every store stamps records with (timezone-aware UTC)."""

from __future__ import annotations

from datetime import datetime, timezone

__all__ = ["utcnow"]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
