"""Payload adapters: which strings of a provider's JSON carry data, and which are structure."""

from __future__ import annotations

from .walk import STRUCTURAL_KEYS, map_strings

__all__ = ["STRUCTURAL_KEYS", "map_strings"]
