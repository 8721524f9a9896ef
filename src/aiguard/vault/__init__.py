"""Reversible tokens and the vaults that hold them."""

from __future__ import annotations

from ._core import ERASED, RotationReport
from .keyfile import load_or_create_key
from .memory import BatchVault, InMemoryVault, OwnerVault, SubjectVault, Vault, VaultKeys
from .sqlite import SQLiteVault
from .tokens import TOKEN_RE, Scope

# PostgresVault lives in aiguard.vault.postgres: importing it here would make psycopg
# a dependency of `import aiguard`.
__all__ = [
    "ERASED",
    "BatchVault",
    "TOKEN_RE",
    "InMemoryVault",
    "RotationReport",
    "SQLiteVault",
    "Scope",
    "OwnerVault",
    "SubjectVault",
    "Vault",
    "VaultKeys",
    "load_or_create_key",
]
