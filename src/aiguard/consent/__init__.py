"""Consent records and stores."""

from __future__ import annotations

from .store import ConsentRecord, ConsentStore, InMemoryConsentStore

__all__ = ["ConsentRecord", "ConsentStore", "InMemoryConsentStore"]
