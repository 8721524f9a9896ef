"""Reversible tokens and the vaults that hold them."""

from __future__ import annotations

from .memory import InMemoryVault, Vault, VaultKeys
from .tokens import TOKEN_RE, Scope

__all__ = ["TOKEN_RE", "InMemoryVault", "Scope", "Vault", "VaultKeys"]
