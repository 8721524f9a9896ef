"""Reversible tokens and the vaults that hold them."""

from __future__ import annotations

from .keyfile import load_or_create_key
from .memory import InMemoryVault, Vault, VaultKeys
from .sqlite import SQLiteVault
from .tokens import TOKEN_RE, Scope

__all__ = [
    "TOKEN_RE",
    "InMemoryVault",
    "SQLiteVault",
    "Scope",
    "Vault",
    "VaultKeys",
    "load_or_create_key",
]
