"""Consent records and stores."""

from __future__ import annotations

from .sqlite import SQLiteConsentStore
from .store import ConsentRecord, ConsentStore, InMemoryConsentStore

__all__ = ["ConsentRecord", "ConsentStore", "InMemoryConsentStore", "SQLiteConsentStore"]
