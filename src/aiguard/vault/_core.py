"""The logic every vault backend shares: key hierarchy, tokens, encryption, erasure, rotation.

A backend (memory, SQLite, PostgreSQL) only stores rows; everything that decides what
a row holds lives here, so a value means the same thing in every backend.

Key hierarchy (docs/keys.md)::

    root (KeyProvider)  --wraps-->  tenant KEK v        (random, one row per version)
                        --wraps-->  tenant index / token keys, the subject-ref key
    tenant KEK v        --wraps-->  DEK (tenant, owner, version)   (random)

A DEK belongs to one owner: a data subject (``s:<subject ref>``) or, for values seen
without a subject, one scope (``c:<scope ref>``). DEKs are random and only stored
wrapped, never derived, so deleting a subject's DEK rows destroys that subject's
originals and nothing else, and no surviving key can bring them back.

Vaults built from a `VaultKeys` (a secret every process derives the same keys from)
keep the index and token keys of that secret, so their tokens equal those of the
first aiguard versions, and they still read entries written before DEKs existed.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar, NamedTuple

from cryptography.exceptions import InvalidTag

from ..errors import VaultError
from ._crypto import (
    VaultKeys,
    _lp,
    _make_cipher,
    blind_index,
    entry_aad,
    token_candidates,
    token_matches,
)
from .keys import KeyProvider, KeyProviderError, SecretKeyProvider
from .tokens import Scope

__all__ = [
    "ERASED",
    "EntryRow",
    "KeyRow",
    "KeyedVault",
    "NewEntry",
    "RotationReport",
    "TokenRequest",
    "parse_scope_key",
]

#: One value to tokenize in `KeyedVault.tokenize_many`: (kind, value, subject or None).
TokenRequest = tuple[str, str, str | None]

#: Per-request arguments of the batched storage primitive `KeyedVault._s_issue_many`:
#: the blind index, the candidate tokens (shortest first) and the entry maker.
IssueRequest = tuple[bytes, Iterator[str], Callable[[str], "NewEntry"]]

#: What an erased subject's token restores to: the data is gone, the answer says so.
ERASED = "[ERASED]"

_CACHE_LIMIT = 200_000


class KeyRow(NamedTuple):
    tenant: str
    purpose: str  # "kek" | "dek" | "index" | "token" | "subject"
    owner: str
    version: int
    wrapped: bytes
    wrapped_by: str  # "root:<key id>" or "kek:<version>"


class EntryRow(NamedTuple):
    kind: str
    key_version: int
    nonce: bytes
    ciphertext: bytes
    dek_owner: str | None  # None: written before DEKs, under the legacy data key
    erased: bool
    created_at: str


@dataclass(frozen=True, slots=True)
class NewEntry:
    token: str
    kind: str
    key_version: int
    nonce: bytes
    ciphertext: bytes
    dek_owner: str
    subject_ref: bytes | None
    created_at: str
    expires_at: str | None


@dataclass(frozen=True, slots=True)
class RotationReport:
    """What `rotate` did: the new data-key version and how many keys were re-wrapped."""

    data_version: int
    tenants: int
    rewrapped: int
    root_key_id: str


def parse_scope_key(key: str) -> Scope:
    """The `Scope` whose ``.key`` is ``key`` (the length prefixes make this unambiguous)."""
    length, _, rest = key.partition(":")
    tenant = rest[: int(length)]
    rest = rest[int(length) + 1 :]
    conv_length, _, conv = rest.partition(":")
    return Scope(tenant, conv[: int(conv_length)] or None)


def _now() -> datetime:
    return datetime.now(timezone.utc)


class KeyedVault:
    """Base of the built-in vaults; subclasses implement the storage methods (``_s_*``)."""

    #: Whether a call should issue one text's tokens together (`tokenize_many`): true
    #: for a backend where each new value costs a query and a transaction of its own.
    prefers_batches: ClassVar[bool] = True

    def __init__(
        self, keys: VaultKeys | KeyProvider, *, retention: timedelta | None = None
    ) -> None:
        if isinstance(keys, VaultKeys):
            self._legacy: VaultKeys | None = keys
            self._legacy_cipher: Any = _make_cipher(keys.data_key)
            root_secret = hmac.new(keys.data_key, b"aiguard/v2/root", hashlib.sha256).digest()
            self._root: KeyProvider = SecretKeyProvider(root_secret, label="secret")
        elif isinstance(keys, KeyProvider):
            self._legacy = None
            self._legacy_cipher = None
            self._root = keys
        else:
            raise TypeError("keys must be VaultKeys or a KeyProvider")
        self.retention = retention
        self._lock = threading.Lock()
        self._tenant_keys: dict[str, VaultKeys] = {}
        self._deks: dict[tuple[str, str, int], Any] = {}
        self._unwrapped: dict[bytes, bytes] = {}
        self._token_cache: dict[tuple[str, bytes], str] = {}
        self._subject_refs: dict[str, bytes] = {}
        self._subject_key = b""
        self._data_version = 1
        #: Seconds a decrypted original stays in the restore cache (0 turns it off).
        #: Only backends that can tell cheaply whether anything was erased since keep
        #: one (SQLite); see `_s_generation`.
        self.restore_cache_ttl = 300.0
        self._plain: dict[tuple[str, str], tuple[str, float, tuple[int, int], str]] = {}
        self._local_generation = 0

    # -- storage primitives (implemented by each backend) ---------------------------

    def _s_get_key(self, tenant: str, purpose: str, owner: str, version: int) -> KeyRow | None:
        raise NotImplementedError

    def _s_add_key(self, row: KeyRow) -> KeyRow:
        """Insert ``row`` unless one with its identity exists; return the stored row."""
        raise NotImplementedError

    def _s_latest_kek(self, tenant: str) -> KeyRow | None:
        raise NotImplementedError

    def _s_transform_keys(
        self, plan: Callable[[list[KeyRow], int], tuple[list[KeyRow], list[KeyRow], int]]
    ) -> int:
        """Atomically: read every key row and the data version, apply ``plan``'s
        (rows to write, rows to delete, new data version); returns rows written."""
        raise NotImplementedError

    def _s_data_version(self) -> int:
        raise NotImplementedError

    def _s_find(self, scope_key: str, index: bytes) -> str | None:
        raise NotImplementedError

    def _s_entry(self, scope_key: str, token: str) -> EntryRow | None:
        raise NotImplementedError

    def _s_issue(
        self,
        scope_key: str,
        index: bytes,
        candidates: Iterable[str],
        make: Callable[[str], NewEntry],
    ) -> str:
        """Store a new entry under the first free candidate token, atomically; if the
        blind index is already stored (another writer won), return its token instead."""
        raise NotImplementedError

    def _s_subject_rows(self, subject_ref: bytes) -> list[tuple[str, str, EntryRow]]:
        raise NotImplementedError

    def _s_find_many(self, scope_key: str, indexes: Sequence[bytes]) -> dict[bytes, str]:
        """The stored token of each blind index that has one (backends batch this)."""
        found: dict[bytes, str] = {}
        for index in indexes:
            token = self._s_find(scope_key, index)
            if token is not None:
                found[index] = token
        return found

    def _s_entries(self, scope_key: str, tokens: Sequence[str]) -> dict[str, EntryRow]:
        """The stored entry of each token that has one (backends batch this)."""
        found: dict[str, EntryRow] = {}
        for token in tokens:
            row = self._s_entry(scope_key, token)
            if row is not None:
                found[token] = row
        return found

    def _s_issue_many(self, scope_key: str, requests: Sequence[IssueRequest]) -> dict[bytes, str]:
        """`_s_issue` for many blind indexes; backends do it in one transaction."""
        return {
            index: self._s_issue(scope_key, index, candidates, make)
            for index, candidates, make in requests
        }

    def _s_get_keys(
        self, tenant: str, purpose: str, owners: Sequence[str], version: int
    ) -> dict[str, KeyRow]:
        found: dict[str, KeyRow] = {}
        for owner in owners:
            row = self._s_get_key(tenant, purpose, owner, version)
            if row is not None:
                found[owner] = row
        return found

    def _s_add_keys(self, rows: Sequence[KeyRow]) -> dict[str, KeyRow]:
        """`_s_add_key` for many rows of one tenant, purpose and version, by owner."""
        return {row.owner: self._s_add_key(row) for row in rows}

    def _s_generation(self) -> int | None:
        """A counter every erasure, scope drop and purge raises, if reading it is cheap.

        None (the default) means the backend cannot tell cheaply, so decrypted
        originals are not cached at all; SQLite answers from ``PRAGMA data_version``.
        """
        return None

    def _s_erase(self, subject_ref: bytes, owner: str, marker: bool) -> int:
        """Delete the owner's DEKs and the subject's entries (or turn them into
        tombstones when ``marker``) in one transaction; returns the entries affected."""
        raise NotImplementedError

    def _s_drop_scope(self, scope_key: str, owner: str) -> int:
        raise NotImplementedError

    def _s_purge(self, now: str) -> int:
        raise NotImplementedError

    # -- keys -------------------------------------------------------------------------

    def _open_keys(self) -> None:
        """Load the subject-ref key (creating it) and the data version; a wrong root fails here."""
        if self._legacy is not None:
            self._subject_key = hmac.new(
                self._legacy.index_key, b"aiguard/v1/subject-ref", hashlib.sha256
            ).digest()
        else:
            self._subject_key = self._root_key("", "subject")
        self._data_version = self._s_data_version()

    def _root_key(self, tenant: str, purpose: str) -> bytes:
        context = _lp(purpose, tenant, "", "1")
        row = self._s_get_key(tenant, purpose, "", 1)
        if row is None:
            fresh = os.urandom(32)
            row = self._s_add_key(
                KeyRow(
                    tenant,
                    purpose,
                    "",
                    1,
                    self._root.wrap(fresh, context),
                    "root:" + self._root.key_id,
                )
            )
        return self._unwrap_root(row, context)

    def _unwrap_root(self, row: KeyRow, context: bytes) -> bytes:
        cached = self._unwrapped.get(row.wrapped)
        if cached is None:
            cached = self._root.unwrap(row.wrapped, context)
            self._remember(self._unwrapped, row.wrapped, cached)
        return cached

    def _tenant(self, tenant: str) -> VaultKeys:
        keys = self._tenant_keys.get(tenant)
        if keys is None:
            if self._legacy is not None:
                keys = self._legacy
            else:
                keys = VaultKeys(
                    1, b"", self._root_key(tenant, "index"), self._root_key(tenant, "token")
                )
            self._tenant_keys[tenant] = keys
        return keys

    def _kek(self, tenant: str, version: int | None) -> tuple[int, bytes]:
        row = (
            self._s_latest_kek(tenant)
            if version is None
            else self._s_get_key(tenant, "kek", "", version)
        )
        if row is None:
            if version is not None:
                raise VaultError(
                    f"tenant key version {version} is missing; the key table is incomplete"
                )
            fresh = os.urandom(32)
            row = self._s_add_key(
                KeyRow(
                    tenant,
                    "kek",
                    "",
                    1,
                    self._root.wrap(fresh, _lp("kek", tenant, "", "1")),
                    "root:" + self._root.key_id,
                )
            )
        return row.version, self._unwrap_root(row, _lp("kek", tenant, "", str(row.version)))

    def _dek(self, tenant: str, owner: str, version: int, create: bool) -> Any:
        """The cipher of a DEK; None when it does not exist (shredded) and ``create`` is False."""
        cache_key = (tenant, owner, version)
        cipher = self._deks.get(cache_key)
        if cipher is not None:
            return cipher
        context = _lp("dek", tenant, owner, str(version))
        row = self._s_get_key(tenant, "dek", owner, version)
        if row is None:
            if not create:
                return None
            row = self._s_add_key(self._new_dek_rows(tenant, [owner], version)[0])
        key = self._unwrap_dek(row, context)
        cipher = _make_cipher(key)
        self._remember(self._deks, cache_key, cipher)
        return cipher

    def _new_dek_rows(self, tenant: str, owners: Sequence[str], version: int) -> list[KeyRow]:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        kek_version, kek = self._kek(tenant, None)
        aead = AESGCM(kek)
        rows = []
        for owner in owners:
            nonce = os.urandom(12)
            context = _lp("dek", tenant, owner, str(version))
            wrapped = b"\x01" + nonce + aead.encrypt(nonce, os.urandom(32), context)
            rows.append(KeyRow(tenant, "dek", owner, version, wrapped, f"kek:{kek_version}"))
        return rows

    def _deks_for(self, tenant: str, owners: Iterable[str], version: int) -> dict[str, Any]:
        """The ciphers of several owners' DEKs, creating the missing ones in one batch.

        A DEK another writer stored first wins (insert-if-absent, then read back), so
        every entry is encrypted under the key that is actually stored.
        """
        ciphers: dict[str, Any] = {}
        missing: list[str] = []
        for owner in dict.fromkeys(owners):
            cipher = self._deks.get((tenant, owner, version))
            if cipher is None:
                missing.append(owner)
            else:
                ciphers[owner] = cipher
        if not missing:
            return ciphers
        rows = self._s_get_keys(tenant, "dek", missing, version)
        new = [owner for owner in missing if owner not in rows]
        if new:
            rows.update(self._s_add_keys(self._new_dek_rows(tenant, new, version)))
        for owner in missing:
            context = _lp("dek", tenant, owner, str(version))
            cipher = _make_cipher(self._unwrap_dek(rows[owner], context))
            self._remember(self._deks, (tenant, owner, version), cipher)
            ciphers[owner] = cipher
        return ciphers

    def _unwrap_dek(self, row: KeyRow, context: bytes) -> bytes:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if not row.wrapped_by.startswith("kek:"):
            raise VaultError("a data key is wrapped by an unknown key; the key table is damaged")
        _version, kek = self._kek(row.tenant, int(row.wrapped_by[4:]))
        blob = row.wrapped
        try:
            return AESGCM(kek).decrypt(blob[1:13], blob[13:], context)
        except (InvalidTag, ValueError):
            raise KeyProviderError(
                "a data key does not unwrap; the key table was tampered with or is incomplete"
            ) from None

    @staticmethod
    def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()  # crude but bounded; a refill costs one read per key
        cache[key] = value

    def subject_ref(self, subject: str) -> bytes:
        """The keyed reference stored for a subject id (the id itself is never stored)."""
        ref = self._subject_refs.get(subject)
        if ref is None:
            ref = hmac.digest(self._subject_key, _lp(subject), "sha256")
            self._remember(self._subject_refs, subject, ref)
        return ref

    def _owner(self, scope: Scope, subject: str | None) -> str:
        if subject is not None:
            return "s:" + self.subject_ref(subject).hex()
        return "c:" + hmac.digest(self._subject_key, _lp("scope", scope.key), "sha256").hex()

    @property
    def key_version(self) -> int:
        """The data-key version new entries are written with (raised by `rotate`)."""
        return self._data_version

    # -- the Vault protocol -------------------------------------------------------------

    def tokenize(
        self,
        scope: Scope,
        kind: str,
        value: str,
        subject: str | None = None,
        *,
        principal: str | None = None,
    ) -> str:
        """The token of ``value``; without a subject, ``principal`` (when given) owns it,
        so `detokenize_for` restores it for that principal only."""
        subject = subject or None  # an empty subject id is no subject (one blind index)
        keys = self._tenant(scope.tenant)
        index = blind_index(keys, scope, kind, value, subject, principal)
        cache_key = (scope.key, index)
        token = self._token_cache.get(cache_key)
        if token is not None:
            return token
        token = self._s_find(scope.key, index)
        if token is None:
            token = self._issue(scope, kind, value, subject, keys, index)
        self._remember(self._token_cache, cache_key, token)
        return token

    def tokenize_many(
        self,
        scope: Scope,
        items: Sequence[TokenRequest],
        *,
        principal: str | None = None,
    ) -> list[str]:
        """Tokens for many ``(kind, value, subject)`` of one scope, in the order given.

        The same tokens `tokenize` gives, one at a time or concurrently: a known value
        keeps its token and a new one gets the token `tokenize` would have issued
        (``principal`` owns the items without a subject, as in `tokenize`). The
        SQLite and PostgreSQL vaults look the batch up in one query and write all of its
        new entries in one transaction (PostgreSQL: one statement per round of token
        collisions), which is what makes bulk loads (`aiguard dataset prepare`) fast.
        """
        keys = self._tenant(scope.tenant)
        out: list[str | None] = [None] * len(items)
        pending: dict[bytes, list[int]] = {}
        wanted: dict[bytes, TokenRequest] = {}
        for position, (kind, value, subject_id) in enumerate(items):
            subject = subject_id or None
            item = (kind, value, subject)
            index = blind_index(keys, scope, kind, value, subject, principal)
            token = self._token_cache.get((scope.key, index))
            if token is not None:
                out[position] = token
            elif index in pending:
                pending[index].append(position)
            else:
                pending[index] = [position]
                wanted[index] = item
        if pending:
            found = self._s_find_many(scope.key, list(pending))
            missing = [index for index in pending if index not in found]
            if missing:
                found.update(self._issue_many(scope, keys, [(i, wanted[i]) for i in missing]))
            for index, positions in pending.items():
                token = found[index]
                self._remember(self._token_cache, (scope.key, index), token)
                for position in positions:
                    out[position] = token
        return [token for token in out if token is not None]

    def _issue_many(
        self, scope: Scope, keys: VaultKeys, wanted: Sequence[tuple[bytes, TokenRequest]]
    ) -> dict[bytes, str]:
        version = self._data_version
        owners = {index: self._owner(scope, request[2]) for index, request in wanted}
        ciphers = self._deks_for(scope.tenant, owners.values(), version)
        now = _now()
        created = now.isoformat()
        expires = None if self.retention is None else (now + self.retention).isoformat()
        requests: list[IssueRequest] = []
        for index, (kind, value, subject) in wanted:
            make = _entry_maker(
                scope,
                kind,
                value.encode("utf-8"),
                owners[index],
                version,
                ciphers[owners[index]],
                None if subject is None else self.subject_ref(subject),
                created,
                expires,
            )
            requests.append((index, token_candidates(keys, scope, kind, index), make))
        return self._s_issue_many(scope.key, requests)

    def _issue(
        self,
        scope: Scope,
        kind: str,
        value: str,
        subject: str | None,
        keys: VaultKeys,
        index: bytes,
    ) -> str:
        owner = self._owner(scope, subject)
        version = self._data_version
        cipher = self._dek(scope.tenant, owner, version, create=True)
        now = _now()
        make = _entry_maker(
            scope,
            kind,
            value.encode("utf-8"),
            owner,
            version,
            cipher,
            None if subject is None else self.subject_ref(subject),
            now.isoformat(),
            None if self.retention is None else (now + self.retention).isoformat(),
        )
        return self._s_issue(scope.key, index, token_candidates(keys, scope, kind, index), make)

    def detokenize(self, scope: Scope, token: str) -> str | None:
        """The original of ``token`` in ``scope``; `ERASED` once its subject was erased.

        Where the backend can tell cheaply that nothing was erased, dropped or purged
        since (`_s_generation`), decrypted originals are cached for
        `restore_cache_ttl` seconds: a cached value is only returned while the
        generation it was read under is still current, in this process and in the
        database, so an erased value never comes back from the cache.
        """
        found = self._read_entry(scope, token)
        return None if found is None else found[0]

    def detokenize_for(
        self, scope: Scope, token: str, subject: str | None, principal: str | None
    ) -> str | None:
        """`detokenize`, but only a token issued to this owner: ``subject``, or without
        one ``principal`` (a token issued with neither restores for callers with neither).

        The row does not say whom it was issued to; the token does: it is a keyed MAC
        of the blind index, which covers the owner. So the original is decrypted and
        the token recomputed for the caller's owner; another owner's token gives None.
        """
        found = self._read_entry(scope, token)
        return None if found is None else self._if_owned(scope, token, found, subject, principal)

    def detokenize_many_for(
        self, scope: Scope, tokens: Sequence[str], subject: str | None, principal: str | None
    ) -> dict[str, str | None]:
        """`detokenize_for` of many tokens of one scope, read in one query (SQLite and
        PostgreSQL): each token's original, or None."""
        found = self._read_entries(scope, tokens)
        return {
            token: (
                None
                if (entry := found.get(token)) is None
                else self._if_owned(scope, token, entry, subject, principal)
            )
            for token in tokens
        }

    def _if_owned(
        self,
        scope: Scope,
        token: str,
        found: tuple[str, str],
        subject: str | None,
        principal: str | None,
    ) -> str | None:
        """The original ``found`` (value, kind) for ``token`` when the token was issued
        to this owner, else None; an erased value is `ERASED` whoever asks."""
        value, kind = found
        if value == ERASED:
            return value
        keys = self._tenant(scope.tenant)
        index = blind_index(keys, scope, kind, value, subject or None, principal)
        return value if token_matches(keys, scope, token, index) else None

    def _read_entries(self, scope: Scope, tokens: Sequence[str]) -> dict[str, tuple[str, str]]:
        """`_read_entry` of many tokens: the restore cache first, the rest in one read."""
        generation = self._s_generation() if self.restore_cache_ttl > 0 else None
        stamp = None if generation is None else (generation, self._local_generation)
        now = time.monotonic()
        out: dict[str, tuple[str, str]] = {}
        missing: list[str] = []
        for token in dict.fromkeys(tokens):
            hit = self._plain.get((scope.key, token)) if stamp is not None else None
            if hit is not None and hit[2] == stamp and hit[1] > now:
                out[token] = (hit[0], hit[3])
            else:
                missing.append(token)
        rows = self._s_entries(scope.key, missing) if missing else {}
        for token, row in rows.items():
            value = self._open(scope, token, row)
            out[token] = (value, row.kind)
            if stamp is not None and not row.erased and value != ERASED:
                entry = (value, now + self.restore_cache_ttl, stamp, row.kind)
                self._remember(self._plain, (scope.key, token), entry)
        return out

    def _read_entry(self, scope: Scope, token: str) -> tuple[str, str] | None:
        generation = self._s_generation() if self.restore_cache_ttl > 0 else None
        if generation is None:
            row = self._s_entry(scope.key, token)
            return None if row is None else (self._open(scope, token, row), row.kind)
        stamp = (generation, self._local_generation)
        key = (scope.key, token)
        now = time.monotonic()
        hit = self._plain.get(key)
        if hit is not None and hit[2] == stamp and hit[1] > now:
            return hit[0], hit[3]
        row = self._s_entry(scope.key, token)
        if row is None:
            return None
        value = self._open(scope, token, row)
        if not row.erased and value != ERASED:
            self._remember(self._plain, key, (value, now + self.restore_cache_ttl, stamp, row.kind))
        return value, row.kind

    def _forget(self) -> None:
        """Invalidate every cache that could hold or lead to an erased value."""
        with self._lock:
            self._local_generation += 1
            self._plain.clear()
            self._token_cache.clear()

    def _open(self, scope: Scope, token: str, row: EntryRow) -> str:
        if row.erased:
            return ERASED
        if row.dek_owner is None:
            return self._open_legacy(scope, token, row)
        cipher = self._dek(scope.tenant, row.dek_owner, row.key_version, create=False)
        if cipher is None:  # the DEK was destroyed: the original is gone for good
            return ERASED
        aad = _entry_aad2(scope, token, row.kind, row.dek_owner, row.key_version)
        try:
            return str(cipher.decrypt(row.nonce, row.ciphertext, aad).decode("utf-8"))
        except InvalidTag:
            raise VaultError(
                "a vault entry failed authentication; the vault may have been tampered with"
            ) from None

    def _open_legacy(self, scope: Scope, token: str, row: EntryRow) -> str:
        if self._legacy is None:
            raise VaultError(
                "a vault entry predates the key hierarchy; open the vault with the VaultKeys "
                "of the secret it was written with to read it"
            )
        if row.key_version != self._legacy.version:
            raise VaultError(
                f"a vault entry was written with key version {row.key_version}, but this vault "
                f"holds version {self._legacy.version}; open it with the keys of that version"
            )
        aad = entry_aad(scope, token, row.kind, row.key_version)
        try:
            return str(self._legacy_cipher.decrypt(row.nonce, row.ciphertext, aad).decode("utf-8"))
        except InvalidTag:
            raise VaultError(
                "a vault entry failed authentication; the vault may have been tampered with"
            ) from None

    # -- data-subject rights, retention, rotation ----------------------------------------

    def export_subject(self, subject: str) -> list[dict[str, Any]]:
        """Every entry issued for ``subject``, decrypted (access and portability requests)."""
        out: list[dict[str, Any]] = []
        for scope_key, token, row in self._s_subject_rows(self.subject_ref(subject)):
            scope = parse_scope_key(scope_key)
            out.append(
                {
                    "tenant": scope.tenant,
                    "conversation": scope.conversation,
                    "token": token,
                    "kind": row.kind,
                    "value": self._open(scope, token, row),
                    "key_version": row.key_version,
                    "created_at": row.created_at,
                }
            )
        return out

    def erase_subject(self, subject: str, *, marker: bool = False) -> int:
        """Crypto-shred ``subject``: destroy its DEKs and its entries; returns how many.

        With ``marker=True`` each entry leaves a tombstone (no ciphertext, no blind
        index, no subject reference), so its token restores as `ERASED` instead of
        staying literal; `aiguard.compliance.dsr` erasure does that. Entries written before
        subject references existed are not found.
        """
        ref = self.subject_ref(subject)
        owner = "s:" + ref.hex()
        try:
            count = self._s_erase(ref, owner, marker)
        finally:  # even a failed erasure may have committed: never trust the caches after
            self._forget()
            with self._lock:
                self._deks = {k: v for k, v in self._deks.items() if k[1] != owner}
        return count

    def drop_scope(self, scope: Scope) -> int:
        """Delete a scope's entries and destroy the DEK of its subject-less values."""
        try:
            count = self._s_drop_scope(scope.key, self._owner(scope, None))
        finally:
            self._forget()
        with self._lock:
            self._deks = {k: v for k, v in self._deks.items() if k[1] != self._owner(scope, None)}
        return count

    def purge_expired(self, now: datetime | None = None) -> int:
        """Delete entries whose retention has run out; returns how many."""
        count = self._s_purge((now or _now()).isoformat())
        if count:
            self._forget()
        return count

    def rotate(self, new_root: KeyProvider | None = None) -> RotationReport:
        """New data-key version for new entries; re-wrap every stored key, re-encrypt nothing.

        Each tenant gets a new KEK version and all of its DEKs are re-wrapped under it;
        the old KEK versions are deleted in the same transaction. Entries keep the DEK
        version they were written with, so every old token still restores. With
        ``new_root``, keys wrapped by the root are re-wrapped under the new root too;
        every process must then be given the new root key.
        """
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        target = new_root or self._root
        tenants: set[str] = set()

        def plan(rows: list[KeyRow], data_version: int) -> tuple[list[KeyRow], list[KeyRow], int]:
            writes: list[KeyRow] = []
            deletes: list[KeyRow] = []
            keks: dict[tuple[str, int], bytes] = {}
            latest: dict[str, int] = {}
            for row in rows:
                if row.purpose == "kek":
                    context = _lp("kek", row.tenant, "", str(row.version))
                    keks[(row.tenant, row.version)] = self._root.unwrap(row.wrapped, context)
                    latest[row.tenant] = max(latest.get(row.tenant, 0), row.version)
                    deletes.append(row)
                elif row.purpose != "dek" and new_root is not None:
                    context = _lp(row.purpose, row.tenant, row.owner, str(row.version))
                    plain = self._root.unwrap(row.wrapped, context)
                    writes.append(
                        row._replace(
                            wrapped=target.wrap(plain, context), wrapped_by="root:" + target.key_id
                        )
                    )
            new_keks: dict[str, tuple[int, bytes]] = {}
            for tenant, version in latest.items():
                fresh = os.urandom(32)
                context = _lp("kek", tenant, "", str(version + 1))
                new_keks[tenant] = (version + 1, fresh)
                writes.append(
                    KeyRow(
                        tenant,
                        "kek",
                        "",
                        version + 1,
                        target.wrap(fresh, context),
                        "root:" + target.key_id,
                    )
                )
            tenants.update(latest)
            for row in rows:
                if row.purpose != "dek":
                    continue
                context = _lp("dek", row.tenant, row.owner, str(row.version))
                old = keks.get((row.tenant, int(row.wrapped_by[4:])))
                if old is None:
                    raise VaultError(
                        "a data key is wrapped by a missing tenant key; rotation stopped"
                    )
                try:
                    plain = AESGCM(old).decrypt(row.wrapped[1:13], row.wrapped[13:], context)
                except InvalidTag:
                    raise KeyProviderError(
                        "a data key does not unwrap; rotation stopped and changed nothing"
                    ) from None
                version, kek = new_keks[row.tenant]
                nonce = os.urandom(12)
                wrapped = b"\x01" + nonce + AESGCM(kek).encrypt(nonce, plain, context)
                writes.append(row._replace(wrapped=wrapped, wrapped_by=f"kek:{version}"))
            return writes, deletes, data_version + 1

        rewrapped = self._s_transform_keys(plan)
        with self._lock:
            self._root = target
            self._unwrapped.clear()
            self._deks.clear()
            self._data_version = self._s_data_version()
        return RotationReport(self._data_version, len(tenants), rewrapped, target.key_id)


class Replay:
    """An iterator of candidate tokens that can be iterated again from the start
    (a retried transaction must try the same tokens in the same order)."""

    __slots__ = ("_seen", "_source")

    def __init__(self, source: Iterator[str]) -> None:
        self._source = source
        self._seen: list[str] = []

    def __iter__(self) -> Iterator[str]:
        yield from list(self._seen)
        for token in self._source:
            self._seen.append(token)
            yield token


def _entry_maker(
    scope: Scope,
    kind: str,
    plaintext: bytes,
    owner: str,
    version: int,
    cipher: Any,
    subject_ref: bytes | None,
    created: str,
    expires: str | None,
) -> Callable[[str], NewEntry]:
    def make(token: str) -> NewEntry:
        nonce = os.urandom(12)
        aad = _entry_aad2(scope, token, kind, owner, version)
        return NewEntry(
            token,
            kind,
            version,
            nonce,
            cipher.encrypt(nonce, plaintext, aad),
            owner,
            subject_ref,
            created,
            expires,
        )

    return make


def _entry_aad2(scope: Scope, token: str, kind: str, owner: str, version: int) -> bytes:
    # Binds tenant and scope (scope.key holds both), token, kind and the DEK identity.
    return _lp("ag2", scope.key, token, kind, owner, str(version))
