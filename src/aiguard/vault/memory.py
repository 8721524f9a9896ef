"""The vault protocols and the in-memory vault.

Originals are encrypted with an authenticated cipher (AES-256-GCM-SIV where the
OpenSSL build has it, else AES-256-GCM) under a random data key of their subject (or
of their scope when the call named no subject), with associated data that binds the
scope, token, kind and key; lookups go through a keyed blind index, never the
plaintext. The key logic is shared with the other backends (`_core.KeyedVault`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar, Protocol, runtime_checkable

from ..errors import VaultError
from ._core import EntryRow, KeyedVault, KeyRow, NewEntry, RotationReport
from ._crypto import VaultKeys, normalize
from .keys import KeyProvider
from .tokens import Scope

# normalize and VaultKeys are re-exported: they lived here first and callers import them.
__all__ = [
    "BatchVault",
    "InMemoryVault",
    "OwnerVault",
    "SubjectVault",
    "Vault",
    "VaultKeys",
    "normalize",
]


@runtime_checkable
class Vault(Protocol):
    """Stores reversible tokens. Implementations must be safe to call from many threads."""

    def tokenize(self, scope: Scope, kind: str, value: str, subject: str | None = None) -> str:
        """Return the token for ``value`` in ``scope``, issuing one if needed.

        The same (scope, subject, kind, value) always gets the same token.
        """
        ...

    def detokenize(self, scope: Scope, token: str) -> str | None:
        """The original of a token issued in ``scope``, or None for any other text."""
        ...


@runtime_checkable
class OwnerVault(Vault, Protocol):
    """A vault that can say whom a token was issued to (every built-in vault).

    Without a subject, ``principal`` owns a value; `detokenize_for` restores a token only
    for its owner. Restoring through a vault that is not one is limited to the tokens a
    call sent itself.
    """

    def tokenize(
        self,
        scope: Scope,
        kind: str,
        value: str,
        subject: str | None = None,
        *,
        principal: str | None = None,
    ) -> str: ...

    def detokenize_for(
        self, scope: Scope, token: str, subject: str | None, principal: str | None
    ) -> str | None: ...


@runtime_checkable
class SubjectVault(Vault, Protocol):
    """A vault that can answer data-subject requests, expire entries and rotate keys.

    Every built-in vault is one; `aiguard.compliance.dsr` needs it for export and erasure.
    """

    def export_subject(self, subject: str) -> list[dict[str, Any]]: ...

    def erase_subject(self, subject: str, *, marker: bool = False) -> int: ...

    def drop_scope(self, scope: Scope) -> int: ...

    def purge_expired(self, now: datetime | None = None) -> int: ...

    def rotate(self, new_root: KeyProvider | None = None) -> RotationReport: ...


@runtime_checkable
class BatchVault(Vault, Protocol):
    """A vault that tokenizes many values of one scope at once (every built-in vault).

    ``items`` are ``(kind, value, subject)``; the result holds the token of each, in
    order, exactly the tokens `Vault.tokenize` would give. SQLite and PostgreSQL write
    a batch's new entries in one transaction; `aiguard.doors.dataset` uses it.
    """

    def tokenize_many(
        self, scope: Scope, items: Sequence[tuple[str, str, str | None]]
    ) -> list[str]: ...


class _Stored:
    __slots__ = ("entry", "index", "subject_ref")

    def __init__(self, entry: EntryRow, index: bytes | None, subject_ref: bytes | None) -> None:
        self.entry = entry
        self.index = index
        self.subject_ref = subject_ref


class InMemoryVault(KeyedVault):
    """A vault in process memory: fast, thread-safe, gone when the process ends.

    ``keys`` is a `VaultKeys` (tokens equal to other vaults built from the same
    secret) or a `KeyProvider` root key; random keys when omitted.
    """

    #: Every value is a dictionary lookup away: nothing to save by batching.
    prefers_batches: ClassVar[bool] = False

    def __init__(
        self, keys: VaultKeys | KeyProvider | None = None, *, retention: timedelta | None = None
    ) -> None:
        super().__init__(keys or VaultKeys.generate(), retention=retention)
        self._store_lock = threading.RLock()
        self._entries: dict[tuple[str, str], _Stored] = {}
        self._index: dict[tuple[str, bytes], str] = {}
        self._expiry: dict[tuple[str, str], str] = {}
        self._keys: dict[tuple[str, str, str, int], KeyRow] = {}
        self._version = 1
        self._open_keys()

    # -- storage ---------------------------------------------------------------------

    def _s_get_key(self, tenant: str, purpose: str, owner: str, version: int) -> KeyRow | None:
        return self._keys.get((tenant, purpose, owner, version))

    def _s_add_key(self, row: KeyRow) -> KeyRow:
        with self._store_lock:
            return self._keys.setdefault((row.tenant, row.purpose, row.owner, row.version), row)

    def _s_latest_kek(self, tenant: str) -> KeyRow | None:
        with self._store_lock:
            keks = [r for r in self._keys.values() if r.tenant == tenant and r.purpose == "kek"]
        return max(keks, key=lambda r: r.version) if keks else None

    def _s_transform_keys(
        self, plan: Callable[[list[KeyRow], int], tuple[list[KeyRow], list[KeyRow], int]]
    ) -> int:
        with self._store_lock:
            writes, deletes, version = plan(list(self._keys.values()), self._version)
            for row in deletes:
                self._keys.pop((row.tenant, row.purpose, row.owner, row.version), None)
            for row in writes:
                self._keys[(row.tenant, row.purpose, row.owner, row.version)] = row
            self._version = version
            return len(writes)

    def _s_data_version(self) -> int:
        return self._version

    def _s_find(self, scope_key: str, index: bytes) -> str | None:
        return self._index.get((scope_key, index))

    def _s_entry(self, scope_key: str, token: str) -> EntryRow | None:
        stored = self._entries.get((scope_key, token))
        return None if stored is None else stored.entry

    def _s_issue(
        self,
        scope_key: str,
        index: bytes,
        candidates: Iterable[str],
        make: Callable[[str], NewEntry],
    ) -> str:
        with self._store_lock:
            existing = self._index.get((scope_key, index))
            if existing is not None:
                return existing
            for token in candidates:
                if (scope_key, token) not in self._entries:
                    break
            else:  # pragma: no cover - 2^-130 territory
                raise VaultError("could not issue a unique token in this scope")
            new = make(token)
            entry = EntryRow(
                new.kind,
                new.key_version,
                new.nonce,
                new.ciphertext,
                new.dek_owner,
                False,
                new.created_at,
            )
            self._entries[(scope_key, token)] = _Stored(entry, index, new.subject_ref)
            self._index[(scope_key, index)] = token
            if new.expires_at is not None:
                self._expiry[(scope_key, token)] = new.expires_at
            return token

    def _s_subject_rows(self, subject_ref: bytes) -> list[tuple[str, str, EntryRow]]:
        with self._store_lock:
            return [
                (scope_key, token, stored.entry)
                for (scope_key, token), stored in self._entries.items()
                if stored.subject_ref == subject_ref
            ]

    def _remove(self, where: Callable[[str, _Stored], bool], marker: bool) -> int:
        count = 0
        for key, stored in list(self._entries.items()):
            if not where(key[0], stored):
                continue
            count += 1
            if stored.index is not None:
                self._index.pop((key[0], stored.index), None)
            self._expiry.pop(key, None)
            if marker:
                erased = stored.entry._replace(
                    nonce=b"", ciphertext=b"", dek_owner=None, erased=True
                )
                self._entries[key] = _Stored(erased, None, None)
            else:
                del self._entries[key]
        return count

    def _s_erase(self, subject_ref: bytes, owner: str, marker: bool) -> int:
        with self._store_lock:
            for key in [k for k in self._keys if k[1] == "dek" and k[2] == owner]:
                del self._keys[key]
            return self._remove(lambda _scope, stored: stored.subject_ref == subject_ref, marker)

    def _s_drop_scope(self, scope_key: str, owner: str) -> int:
        with self._store_lock:
            for key in [k for k in self._keys if k[1] == "dek" and k[2] == owner]:
                del self._keys[key]
            return self._remove(lambda scope, _stored: scope == scope_key, False)

    def _s_purge(self, now: str) -> int:
        with self._store_lock:
            expired = {key for key, at in self._expiry.items() if at <= now}
            return sum(self._remove_key(key) for key in expired)

    def _remove_key(self, key: tuple[str, str]) -> int:
        stored = self._entries.pop(key, None)
        self._expiry.pop(key, None)
        if stored is None:
            return 0
        if stored.index is not None:
            self._index.pop((key[0], stored.index), None)
        return 1

    def __len__(self) -> int:
        with self._store_lock:
            return sum(1 for stored in self._entries.values() if not stored.entry.erased)
