"""Build the root-key provider and the vault a policy's ``[keys]`` section names."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .keys import (
    EnvKeyProvider,
    KeyProvider,
    KeyProviderError,
    LocalKeyFileProvider,
    SecretKeyProvider,
)

if TYPE_CHECKING:
    from ..policy.model import KeysPolicy, Policy

__all__ = [
    "dsn_key",
    "embedded_stores",
    "postgres_pool",
    "postgres_stores",
    "provider_from_policy",
    "vault_from_policy",
]


def provider_from_policy(keys: KeysPolicy, base: Path) -> SecretKeyProvider:
    if keys.provider == "env":
        return EnvKeyProvider(keys.env)
    target = Path(keys.file).expanduser()
    return LocalKeyFileProvider(target if target.is_absolute() else base / target)


def _dsn(keys: KeysPolicy) -> str:
    dsn = keys.dsn or os.environ.get(keys.dsn_env)
    if not dsn:
        raise KeyProviderError(
            f"[keys] vault = 'postgres' needs dsn, or the variable {keys.dsn_env}"
        )
    return dsn


def dsn_key(keys: KeysPolicy) -> str:
    """The policy key a user edits to fix the PostgreSQL DSN."""
    return "[keys] dsn" if keys.dsn else f"[keys] dsn_env (the variable {keys.dsn_env})"


def postgres_pool(keys: KeysPolicy) -> Any:
    """The connection pool of ``[keys] vault = 'postgres'``, with the policy's timeouts."""
    from .postgres import PostgresPool

    return PostgresPool(
        _dsn(keys),
        connect_timeout=keys.connect_timeout,
        statement_timeout=keys.statement_timeout,
        key=dsn_key(keys),
    )


def postgres_stores(policy: Policy, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The consent store and kill switch in PostgreSQL when ``[keys] vault = 'postgres'``.

    They share the vault's connection pool when the vault is a `PostgresVault`, so one
    process opens one pool. Only what ``overrides`` leaves unset (missing or None) is
    returned; nothing when the policy's vault is not PostgreSQL.
    """
    keys = policy.keys
    wanted = [name for name in ("consent", "killswitch") if overrides.get(name) is None]
    if keys is None or keys.vault != "postgres" or not wanted:
        return {}
    from ..consent.postgres import PostgresConsentStore
    from ..policy.killswitch_pg import PostgresKillSwitch
    from .postgres import PostgresVault

    vault = overrides.get("vault")
    pool = vault.pool if isinstance(vault, PostgresVault) else postgres_pool(keys)
    out: dict[str, Any] = {}
    if "consent" in wanted:
        out["consent"] = PostgresConsentStore(pool)
    if "killswitch" in wanted:
        out["killswitch"] = PostgresKillSwitch(pool)
    return out


def vault_from_policy(policy: Policy, base: Path, provider: KeyProvider | None = None) -> Any:
    """The vault of ``[keys]``, or None when it names none (the default vault is used)."""
    keys = policy.keys
    if keys is None:
        return None
    if provider is None:
        provider = provider_from_policy(keys, base)
    retention = None if keys.retention_days is None else timedelta(days=keys.retention_days)
    if keys.vault == "memory":
        from .memory import InMemoryVault

        return InMemoryVault(provider, retention=retention)
    if keys.vault == "postgres":
        from .postgres import PostgresVault

        return PostgresVault(postgres_pool(keys), provider, retention=retention)
    if policy.database is None:
        raise KeyProviderError("[keys] vault = 'sqlite' needs database = '...' in the policy")
    from .sqlite import SQLiteVault

    database = Path(policy.database).expanduser()
    return SQLiteVault(
        database if database.is_absolute() else base / database,
        provider,
        retention=retention,
        timeout=policy.database_timeout,
    )


def embedded_stores(
    path: str | os.PathLike[str], overrides: Mapping[str, Any], *, timeout: float = 10.0
) -> dict[str, Any]:
    """`Guard` keyword arguments for a policy that names a database at ``path``.

    One `SQLiteDatabase` holds the vault, consent records and kill switch; the secret
    comes from ``aiguard.key`` beside it so every process derives the same vault and
    digest keys. Only what ``overrides`` leaves unset (missing or None) is returned.
    """
    from ..consent.sqlite import SQLiteConsentStore
    from ..policy.killswitch import SQLiteKillSwitch
    from ..storage.sqlite import SQLiteDatabase
    from ._crypto import VaultKeys
    from .keyfile import load_or_create_key
    from .sqlite import SQLiteVault

    wanted = {name for name in ("vault", "consent", "killswitch") if overrides.get(name) is None}
    out: dict[str, Any] = {}
    database = Path(path).expanduser()
    secret: bytes | None = overrides.get("secret")
    if secret is None:
        secret = load_or_create_key(database.parent / "aiguard.key")
        out["secret"] = secret
    if not wanted:
        return out
    db = SQLiteDatabase(database, timeout=timeout)
    if "vault" in wanted:
        out["vault"] = SQLiteVault(db, VaultKeys.derive(secret))
    if "consent" in wanted:
        out["consent"] = SQLiteConsentStore(db)
    if "killswitch" in wanted:
        out["killswitch"] = SQLiteKillSwitch(db)
    return out
