"""Fault matrix, start-up: every store and sink a policy names, under every fault a
deployment can hit, through `Guard.from_toml` and a real call with the openai SDK.

Cells: a read-only directory, a missing parent directory (created: not a fault), a
parent that is a file, a path that is a directory, a full disk (a 64 KiB tmpfs when
this machine lets us mount one, else an injected ``OSError(ENOSPC)``), a locked SQLite
file or JSONL log, a corrupt file, a PostgreSQL server refusing connections and one
that accepts them and never answers. Targets: the embedded database (vault, consent
store, kill switch), the JSONL, SQLite and HTTP provenance sinks, and the PostgreSQL
vault, consent store, kill switch and sink.

In every faulty cell the error is an `AIGuardError`, raised at start-up or by the
first call; its message names the file (or the masked DSN), what to fix and the
policy key; nothing reaches the model. The hanging-server cells also measure how long
the failure takes: it must stay within the bound the timeouts promise.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from faultkit import MESSAGE, RAW, DoorCall, ThrowawayPostgres, free_port

import aiguard
from aiguard.consent import InMemoryConsentStore
from aiguard.errors import KeyProviderError
from aiguard.testing import FakeModel, assert_no_raw_values
from aiguard.vault import InMemoryVault

DESTINATION = """
[destinations.openai]
base_url = "https://api.openai.com/v1"
approved = true
purposes = ["inference", "third_party_sharing"]
"""

#: Seconds libpq may take to connect in the PostgreSQL cells (its minimum is 2).
CONNECT_TIMEOUT = 2.0

FIX = {
    "readonly_dir": r"read-only|permission|writable",
    "parent_is_file": r"not a directory|is a file|fix the path",
    "path_is_dir": r"is a directory|directory",
    "disk_full": r"disk is full|full",
    "locked": r"lock",
    "corrupt": r"not a valid|damaged|not valid JSON|restore|changed outside",
    "refusing": r"cannot connect|refused|reachable",
    "hanging": r"connect timeout|timeout expired|in time|answering",
}


# -- the file-system faults ------------------------------------------------------------


def _mount_tmpfs(target: Path, options: str) -> bool:
    if os.geteuid() != 0:
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


def _umount(target: Path) -> None:
    # Until nothing is mounted there: a handle the garbage collector has not closed yet
    # keeps a mount busy, so fall back to a lazy unmount (freed with the last handle).
    for _ in range(5):
        if not os.path.ismount(target):
            return
        done = subprocess.run(["umount", str(target)], capture_output=True, check=False)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)


@pytest.fixture
def readonly_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory nobody may write to: a read-only tmpfs as root (root ignores modes)."""
    target = tmp_path / "readonly"
    target.mkdir()
    if os.geteuid() == 0:
        if not _mount_tmpfs(target, "ro,size=64k"):
            pytest.skip("running as root without mount: cannot make a read-only directory")
        try:
            yield target
        finally:
            _umount(target)
        return
    target.chmod(0o500)
    try:
        yield target
    finally:
        target.chmod(0o700)


@dataclass
class FullDisk:
    directory: Path
    injected: bool


@pytest.fixture
def full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FullDisk]:
    """A 64 KiB tmpfs filled to the last block, or (where mounting is not allowed) every
    directory creation and file open below ``directory`` failing with ENOSPC."""
    target = tmp_path / "full"
    target.mkdir()
    if _mount_tmpfs(target, "size=64k"):
        try:
            with contextlib.suppress(OSError), open(target / "filler", "wb") as handle:
                while True:
                    handle.write(b"\0" * 4096)
                    handle.flush()
            yield FullDisk(target, injected=False)
        finally:
            _umount(target)
        return
    real_mkdir = Path.mkdir

    def mkdir(self: Path, *args: Any, **kwargs: Any) -> None:
        if str(self).startswith(str(target)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    yield FullDisk(target / "sub", injected=True)


def _lock_sqlite(path: Path) -> sqlite3.Connection:
    """An existing aiguard-style WAL file held exclusively by another connection."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS holder (x)")
    conn.execute("PRAGMA locking_mode = EXCLUSIVE")
    conn.execute("BEGIN EXCLUSIVE")
    conn.execute("INSERT INTO holder VALUES (1)")
    return conn


# -- targets ---------------------------------------------------------------------------


@dataclass
class Target:
    """One store or sink: its policy text for a location, and the policy key it uses."""

    name: str
    policy: Callable[[str], str]
    key: str
    #: file name inside the directory under test; None for a directory (spool).
    filename: str | None
    overrides: Callable[[], dict[str, Any]] = field(default=dict)
    purpose: str = "inference"


def _database(location: str) -> str:
    return f'database = "{location}"\ndatabase_timeout = 0.5\n' + DESTINATION


def _jsonl(location: str) -> str:
    return DESTINATION + f'[provenance]\njsonl = "{location}"\n'


def _sqlite_sink(location: str) -> str:
    return (
        DESTINATION
        + f'[[provenance.sinks]]\ntype = "sqlite"\npath = "{location}"\nlock_timeout = 0.5\n'
    )


def _http_sink(location: str) -> str:
    return (
        DESTINATION
        + '[[provenance.sinks]]\ntype = "http"\nurl = "http://127.0.0.1:9/events"\n'
        + f'spool_dir = "{location}"\n'
    )


FILE_TARGETS = [
    Target("vault (database)", _database, "database", "aiguard.db"),
    Target(
        "consent store (database)",
        _database,
        "database",
        "aiguard.db",
        lambda: {"vault": InMemoryVault()},
        "third_party_sharing",
    ),
    Target(
        "kill switch (database)",
        _database,
        "database",
        "aiguard.db",
        lambda: {"vault": InMemoryVault(), "consent": InMemoryConsentStore()},
    ),
    Target("jsonl sink", _jsonl, "[provenance] jsonl", "events.jsonl"),
    Target("sqlite sink", _sqlite_sink, "[[provenance.sinks]] #1 path", "events.db"),
    Target("http sink spool", _http_sink, "[[provenance.sinks]] #1 spool_dir", None),
]


@dataclass
class Outcome:
    error: aiguard.AIGuardError | None
    stage: str
    seconds: float
    fake: FakeModel


def _run(tmp_path: Path, target: Target, policy_text: str) -> Outcome:
    """Build the guard from the policy file, then make one call through the openai SDK."""
    policy_file = tmp_path / "aiguard.toml"
    policy_file.write_text(policy_text)
    fake = FakeModel()
    started = time.monotonic()
    try:
        guard = aiguard.Guard.from_toml(policy_file, **target.overrides())
    except aiguard.AIGuardError as exc:
        return Outcome(exc, "start-up", time.monotonic() - started, fake)
    try:
        started = time.monotonic()
        DoorCall("sync", guard, transport=fake.transport, purpose=target.purpose)()
    except aiguard.AIGuardError as exc:
        return Outcome(exc, "call", time.monotonic() - started, fake)
    finally:
        with contextlib.suppress(aiguard.AIGuardError):
            guard.close()
    return Outcome(None, "call", time.monotonic() - started, fake)


def _assert_fails_closed(outcome: Outcome, named: str, key: str, fault: str) -> None:
    error = outcome.error
    assert error is not None, "the fault went unnoticed"
    assert isinstance(error, aiguard.AIGuardError)
    text = str(error)
    assert named in text, f"{text!r} does not name {named!r}"
    assert key in text, f"{text!r} does not name the policy key {key!r}"
    assert re.search(FIX[fault], text, re.IGNORECASE), f"{text!r} does not say what to fix"
    if outcome.stage == "start-up":
        assert error.__cause__ is not None, "the original error is lost"
    # Nothing reached the model: not the values, not even a tokenized request.
    assert outcome.fake.requests == []
    for value in RAW.values():
        assert value not in text


def _location(directory: Path, target: Target) -> Path:
    return directory / (target.filename or "spool")


@pytest.fixture(params=FILE_TARGETS, ids=lambda t: t.name.replace(" ", "-"))
def target(request: pytest.FixtureRequest) -> Target:
    return request.param  # type: ignore[no-any-return]


def test_read_only_directory(tmp_path: Path, readonly_dir: Path, target: Target) -> None:
    outcome = _run(tmp_path, target, target.policy(str(_location(readonly_dir, target))))
    _assert_fails_closed(outcome, str(readonly_dir), target.key, "readonly_dir")


def test_missing_parent_directory_is_created(tmp_path: Path, target: Target) -> None:
    """Not a fault: every file-backed store creates its parent directories."""
    location = _location(tmp_path / "not" / "yet", target)
    outcome = _run(tmp_path, target, target.policy(str(location)))
    if target.name.startswith("http"):
        # The spool opens; delivery to the (closed) collector port is what fails later.
        assert (tmp_path / "not" / "yet" / "spool").is_dir()
        return
    if target.purpose == "third_party_sharing":
        # The store opened and answered: this subject simply has no consent recorded.
        assert isinstance(outcome.error, aiguard.ConsentRequired)
        assert "no valid consent" in str(outcome.error)
        assert location.exists()
        return
    assert outcome.error is None, outcome.error
    assert outcome.fake.requests and location.exists()
    assert_no_raw_values(outcome.fake, RAW.values())


def test_parent_is_a_file(tmp_path: Path, target: Target) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    location = _location(tmp_path / "a-file", target)
    outcome = _run(tmp_path, target, target.policy(str(location)))
    _assert_fails_closed(outcome, str(tmp_path / "a-file"), target.key, "parent_is_file")


def test_path_is_a_directory(tmp_path: Path, target: Target) -> None:
    if target.filename is None:
        # A spool is a directory; the fault is the opposite: a file where it should be.
        (tmp_path / "spool").write_text("a file")
        outcome = _run(tmp_path, target, target.policy(str(tmp_path / "spool")))
        _assert_fails_closed(outcome, str(tmp_path / "spool"), target.key, "parent_is_file")
        return
    location = tmp_path / target.filename
    location.mkdir()
    outcome = _run(tmp_path, target, target.policy(str(location)))
    _assert_fails_closed(outcome, str(location), target.key, "path_is_dir")


def test_disk_full(tmp_path: Path, full_disk: FullDisk, target: Target) -> None:
    location = _location(full_disk.directory, target)
    outcome = _run(tmp_path, target, target.policy(str(location)))
    _assert_fails_closed(outcome, str(full_disk.directory), target.key, "disk_full")


def test_locked_file(tmp_path: Path, target: Target) -> None:
    location = _location(tmp_path / "locked", target)
    location.parent.mkdir()
    holders: list[Any] = []
    if target.filename is None:
        location.mkdir()
        handle = open(location / "spool.lock", "a+b")  # noqa: SIM115 - held by the test
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        holders.append(handle)
    elif target.filename.endswith(".jsonl"):
        handle = open(location, "ab")  # noqa: SIM115 - held by the test
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        holders.append(handle)
    else:
        holders.append(_lock_sqlite(location))
    try:
        outcome = _run(tmp_path, target, target.policy(str(location)))
    finally:
        for holder in holders:
            holder.close()
    _assert_fails_closed(outcome, str(location.parent), target.key, "locked")


def test_corrupt_file(tmp_path: Path, target: Target) -> None:
    location = _location(tmp_path / "damaged", target)
    location.parent.mkdir()
    if target.filename is None:
        location.mkdir()
        (location / "delivered.json").write_text("{not json")
    elif target.filename.endswith(".jsonl"):
        location.write_bytes(b'{"seq":0,"type":"genesis"}\n{this is not a record}\n')
    else:
        location.write_bytes(b"this is not a SQLite database at all. " * 200)
    outcome = _run(tmp_path, target, target.policy(str(location)))
    _assert_fails_closed(outcome, str(location.parent), target.key, "corrupt")


# -- PostgreSQL --------------------------------------------------------------------


class HangingServer:
    """A loopback port that accepts connections and never says a word."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port: int = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self.accepted:
            conn.close()
        self.sock.close()


@pytest.fixture
def hanging() -> Iterator[HangingServer]:
    server = HangingServer()
    try:
        yield server
    finally:
        server.close()


def _pg_keys(dsn: str) -> str:
    return (
        f'[keys]\nvault = "postgres"\ndsn = "{dsn}"\nconnect_timeout = {CONNECT_TIMEOUT}\n'
        + DESTINATION
    )


def _pg_sink(dsn: str) -> str:
    return (
        DESTINATION
        + f'[[provenance.sinks]]\ntype = "postgres"\ndsn = "{dsn}"\n'
        + f"connect_timeout = {CONNECT_TIMEOUT}\n"
    )


PG_TARGETS = [
    Target("pg vault", _pg_keys, "[keys] dsn", None),
    Target(
        "pg consent store",
        _pg_keys,
        "[keys] dsn",
        None,
        lambda: {"vault": InMemoryVault()},
        "third_party_sharing",
    ),
    Target(
        "pg kill switch",
        _pg_keys,
        "[keys] dsn",
        None,
        lambda: {"vault": InMemoryVault(), "consent": InMemoryConsentStore()},
    ),
    Target("pg sink", _pg_sink, "[[provenance.sinks]] #1 dsn", None),
]


@pytest.fixture(params=PG_TARGETS, ids=lambda t: t.name.replace(" ", "-"))
def pg_target(request: pytest.FixtureRequest) -> Target:
    pytest.importorskip("psycopg")
    pytest.importorskip("psycopg_pool")
    return request.param  # type: ignore[no-any-return]


def test_postgres_refusing_connections(tmp_path: Path, pg_target: Target) -> None:
    port = free_port()  # nothing listens there
    dsn = f"postgresql://aiguard:hunter2-secret@127.0.0.1:{port}/aiguard"
    outcome = _run(tmp_path, pg_target, pg_target.policy(dsn))
    _assert_fails_closed(
        outcome, f"postgresql://aiguard:***@127.0.0.1:{port}/aiguard", pg_target.key, "refusing"
    )
    assert "hunter2-secret" not in str(outcome.error)


@pytest.mark.slow
def test_postgres_hanging_fails_within_the_bound(
    tmp_path: Path, pg_target: Target, hanging: HangingServer
) -> None:
    """The server accepts the connection and never answers: start-up fails closed within
    the pool's wait plus one direct connection attempt, each ``connect_timeout``."""
    dsn = f"postgresql://aiguard:hunter2-secret@127.0.0.1:{hanging.port}/aiguard"
    outcome = _run(tmp_path, pg_target, pg_target.policy(dsn))
    _assert_fails_closed(
        outcome,
        f"postgresql://aiguard:***@127.0.0.1:{hanging.port}/aiguard",
        pg_target.key,
        "hanging",
    )
    bound = 2 * CONNECT_TIMEOUT + 1.5
    assert outcome.seconds < bound, f"took {outcome.seconds:.2f} s, bound {bound} s"
    print(f"\n{pg_target.name}: hanging server failed closed in {outcome.seconds:.2f} s")


def test_postgres_lock_held_fails_the_call_within_statement_timeout(
    tmp_path: Path, pg_schema: ThrowawayPostgres
) -> None:
    """Connected, but another session holds the vault's table: ``statement_timeout`` from
    the policy cancels the statement, the call fails closed and is not retried."""
    import psycopg

    policy = _pg_keys(pg_schema.dsn).replace("[keys]\n", "[keys]\nstatement_timeout = 0.5\n", 1)
    (tmp_path / "aiguard.toml").write_text(policy)
    guard = aiguard.Guard.from_toml(tmp_path / "aiguard.toml")
    fake = FakeModel()
    call = DoorCall("sync", guard, transport=fake.transport)
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        with psycopg.connect(pg_schema.dsn) as conn:
            conn.execute("LOCK TABLE aiguard_vault_entry IN ACCESS EXCLUSIVE MODE")
            locked.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(10)
        started = time.monotonic()
        with pytest.raises(aiguard.VaultError, match="statement timeout") as caught:
            call()
        seconds = time.monotonic() - started
        assert fake.requests == []
        assert "[keys] dsn" in str(caught.value)
    finally:
        release.set()
        holder.join(10)
    assert seconds < 0.5 + 1.5, f"took {seconds:.2f} s"
    print(f"\nlock held: the call failed closed in {seconds:.2f} s (statement_timeout 0.5 s)")
    assert call() == "Echo: " + MESSAGE
    guard.close()


def test_tmpfs_or_injection_is_reported(full_disk: FullDisk) -> None:
    """Which disk-full mechanism this run used (shown with -s); both are real faults."""
    print(f"\ndisk full: {'injected ENOSPC' if full_disk.injected else 'a full 64 KiB tmpfs'}")
    assert full_disk.directory.parent.exists()


# -- the disk fills while calls go on ------------------------------------------------


def test_jsonl_disk_fills_after_start_then_recovers(tmp_path: Path) -> None:
    """A real full disk under a running JSONL log: the call whose event cannot be
    written fails typed, the next is refused before anything is sent, a partial line is
    never left behind, and once space is freed the backlog lands and the log verifies."""
    from aiguard.provenance import verify_file

    disk = tmp_path / "disk"
    disk.mkdir()
    if not _mount_tmpfs(disk, "size=64k"):
        pytest.skip("cannot mount a tmpfs here")
    try:
        log = disk / "events.jsonl"
        (tmp_path / "aiguard.toml").write_text(_jsonl(str(log)))
        guard = aiguard.Guard.from_toml(tmp_path / "aiguard.toml")
        fake = FakeModel()
        call = DoorCall("sync", guard, transport=fake.transport)
        assert call() == "Echo: " + MESSAGE
        filler = disk / "filler"
        with contextlib.suppress(OSError), open(filler, "wb") as handle:
            while True:
                handle.write(os.urandom(1024))
                handle.flush()
        # The log's last page may still have room for a few records; then it is full.
        failure: aiguard.ProvenanceError | None = None
        for _ in range(64):
            try:
                call()
            except aiguard.ProvenanceError as exc:
                failure = exc
                break
        assert failure is not None, "the disk never filled"
        assert re.search("disk is full", str(failure)), failure
        assert str(log) in str(failure) and "[provenance] jsonl" in str(failure)
        sent = len(fake.requests)
        with pytest.raises(aiguard.ProvenanceError, match="refused until it recovers"):
            call()
        assert len(fake.requests) == sent  # refused before sending
        assert log.read_bytes().endswith(b"\n")  # no torn line left by the failed write
        filler.unlink()
        assert call() == "Echo: " + MESSAGE
        guard.close()
        report = verify_file(log)
        assert report.ok, report
        assert_no_raw_values(fake, RAW.values())
    finally:
        _umount(disk)


# -- a store locked after start ----------------------------------------------------


@pytest.mark.parametrize("component", ["vault", "consent store", "kill switch"])
def test_database_locked_after_start_fails_writes_typed(tmp_path: Path, component: str) -> None:
    """The guard started fine; then another process holds the file's write lock. Every
    write fails within ``database_timeout`` with a typed error naming the file, the fix
    and the key; a call that needs a write (a new token) is not sent; reads go on (WAL:
    readers never wait for a writer)."""
    database = tmp_path / "aiguard.db"
    (tmp_path / "aiguard.toml").write_text(_database(str(database)))
    guard = aiguard.Guard.from_toml(tmp_path / "aiguard.toml")
    fake = FakeModel()
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("CREATE TABLE holder (x)")
    expected: type[aiguard.AIGuardError] = aiguard.StoreError
    try:
        started = time.monotonic()
        with pytest.raises(aiguard.AIGuardError) as caught:
            if component == "vault":
                expected = aiguard.VaultError
                DoorCall("sync", guard, transport=fake.transport)()
            elif component == "consent store":
                guard.consent.grant("cust-7", "third_party_sharing", terms_version="t1")
            else:
                guard.revoke("openai", "incident")
        seconds = time.monotonic() - started
        if component != "vault":
            # Reading the store while the writer holds the file still works.
            DoorCall("sync", guard, transport=fake.transport)("no personal data here")
    finally:
        holder.close()
        guard.close()
    assert isinstance(caught.value, expected), caught.value
    text = str(caught.value)
    assert str(database) in text and "policy key database" in text and "lock" in text
    if component == "vault":
        assert fake.requests == []
    # database_timeout = 0.5 per attempt, a few attempts for the vault's retries.
    assert seconds < 0.5 * 4 + 2.0, f"took {seconds:.2f} s"


# -- the database itself, behind a key that is already there -------------------------
#
# In the cells above the embedded stores fail on ``aiguard.key``, created beside the
# database before it opens. A deployment that provisions the key (a secret mount) gets
# as far as the SQLite file: these cells fault the database itself.

DATABASE_TARGETS = [t for t in FILE_TARGETS if t.key == "database"]


def _provision_key(directory: Path) -> None:
    from aiguard.vault.keyfile import load_or_create_key

    load_or_create_key(directory / "aiguard.key")


@pytest.fixture
def readonly_dir_with_key(tmp_path: Path) -> Iterator[Path]:
    """A read-only directory that already holds ``aiguard.key`` (a read-only bind mount
    as root, else mode 0500)."""
    source = tmp_path / "provisioned"
    source.mkdir()
    _provision_key(source)
    if os.geteuid() != 0:
        source.chmod(0o500)
        try:
            yield source
        finally:
            source.chmod(0o700)
        return
    target = tmp_path / "readonly"
    target.mkdir()
    bound = subprocess.run(
        ["mount", "--bind", str(source), str(target)], capture_output=True, check=False
    )
    if bound.returncode != 0:
        pytest.skip("running as root without mount: cannot make a read-only directory")
    try:
        remounted = subprocess.run(
            ["mount", "-o", "remount,bind,ro", str(target)], capture_output=True, check=False
        )
        if remounted.returncode != 0:
            pytest.skip("cannot remount a bind mount read-only here")
        yield target
    finally:
        # Not `_umount`: a bind mount of a directory on the same file system is not
        # something `os.path.ismount` recognizes.
        done = subprocess.run(["umount", str(target)], capture_output=True, check=False)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)


@pytest.mark.parametrize("db_target", DATABASE_TARGETS, ids=lambda t: t.name.replace(" ", "-"))
def test_read_only_directory_with_a_provisioned_key(
    tmp_path: Path, readonly_dir_with_key: Path, db_target: Target
) -> None:
    location = readonly_dir_with_key / "aiguard.db"
    outcome = _run(tmp_path, db_target, db_target.policy(str(location)))
    _assert_fails_closed(outcome, str(location), "policy key database", "readonly_dir")
    # The database itself, not the key file (a `KeyProviderError` is a `VaultError`).
    assert isinstance(outcome.error, aiguard.StoreError), outcome.error


@pytest.mark.parametrize("db_target", DATABASE_TARGETS, ids=lambda t: t.name.replace(" ", "-"))
def test_disk_full_with_a_provisioned_key(tmp_path: Path, db_target: Target) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    if not _mount_tmpfs(disk, "size=64k"):
        pytest.skip("cannot mount a tmpfs here")
    try:
        _provision_key(disk)
        with contextlib.suppress(OSError), open(disk / "filler", "wb") as handle:
            while True:
                handle.write(b"\0" * 4096)
                handle.flush()
        location = disk / "aiguard.db"
        outcome = _run(tmp_path, db_target, db_target.policy(str(location)))
        _assert_fails_closed(outcome, str(location), "policy key database", "disk_full")
        assert isinstance(outcome.error, aiguard.StoreError), outcome.error
    finally:
        _umount(disk)


# -- key providers, the signing key and the checkpoint file ---------------------------


def _signed(key: str, checkpoint: str | None = None) -> str:
    text = DESTINATION + f'[provenance]\nsigning_key = "{key}"\ncheckpoint_every = 1\n'
    return text + (f'checkpoint_file = "{checkpoint}"\n' if checkpoint else "")


SIGNED = Target("signing key", _signed, "[provenance] signing_key", "sign.key")


def test_signing_key_faults(tmp_path: Path, readonly_dir: Path) -> None:
    """Read-only, parent a file, path a directory, damaged: typed, named, nothing sent."""
    (tmp_path / "a-file").write_text("not a directory")
    (tmp_path / "key-dir").mkdir()
    damaged = tmp_path / "damaged.key"
    damaged.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot a key\n")
    damaged.chmod(0o600)
    cells = [
        (readonly_dir / "sign.key", "readonly_dir"),
        (tmp_path / "a-file" / "sign.key", "parent_is_file"),
        (tmp_path / "key-dir", "path_is_dir"),
        (damaged, "corrupt"),
    ]
    for path, fault in cells:
        outcome = _run(tmp_path, SIGNED, _signed(str(path)))
        assert isinstance(outcome.error, aiguard.ProvenanceError), (fault, outcome.error)
        assert outcome.stage == "start-up", fault
        _assert_fails_closed(outcome, str(path), SIGNED.key, fault)


def test_signing_key_missing_parent_is_created(tmp_path: Path) -> None:
    location = tmp_path / "not" / "yet" / "sign.key"
    outcome = _run(tmp_path, SIGNED, _signed(str(location)))
    assert outcome.error is None, outcome.error
    assert location.exists()


def test_checkpoint_file_faults_fail_the_start(tmp_path: Path, readonly_dir: Path) -> None:
    """The latest note is written on every checkpoint: a location it cannot be written to
    fails the start (not the call that happens to seal a checkpoint), typed and named."""
    key = tmp_path / "sign.key"
    (tmp_path / "a-file").write_text("not a directory")
    (tmp_path / "note-dir").mkdir()
    cells = [
        (readonly_dir / "latest.checkpoint", str(readonly_dir), "readonly_dir"),
        (tmp_path / "a-file" / "latest", str(tmp_path / "a-file"), "parent_is_file"),
        (tmp_path / "note-dir", str(tmp_path / "note-dir"), "path_is_dir"),
    ]
    checkpoint = Target("checkpoint file", lambda _: "", "[provenance] checkpoint_file", None)
    for path, named, fault in cells:
        outcome = _run(tmp_path, checkpoint, _signed(str(key), str(path)))
        assert isinstance(outcome.error, aiguard.ProvenanceError), (fault, outcome.error)
        assert outcome.stage == "start-up", fault
        _assert_fails_closed(outcome, named, checkpoint.key, fault)
    fine = tmp_path / "not" / "yet" / "latest.checkpoint"
    outcome = _run(tmp_path, checkpoint, _signed(str(key), str(fine)))
    assert outcome.error is None, outcome.error
    assert fine.read_text().startswith("aiguard\n")  # written by the call's checkpoint
    assert list(fine.parent.iterdir()) == [fine]  # the start-up check left nothing


def test_checkpoint_file_lost_after_start_fails_typed(tmp_path: Path) -> None:
    """The directory goes away under a running log: the next checkpoint fails the call
    with a typed error naming the file and the key (the checkpoint record itself is in
    the log; only its published copy could not be written)."""
    import shutil

    notes = tmp_path / "notes"
    (tmp_path / "aiguard.toml").write_text(
        _signed(str(tmp_path / "sign.key"), str(notes / "latest.checkpoint"))
    )
    guard = aiguard.Guard.from_toml(tmp_path / "aiguard.toml")
    fake = FakeModel()
    call = DoorCall("sync", guard, transport=fake.transport)
    assert call() == "Echo: " + MESSAGE
    shutil.rmtree(notes)
    (tmp_path / "notes").write_text("a file now")
    with pytest.raises(aiguard.ProvenanceError) as caught:
        call()
    assert_no_raw_values(fake, RAW.values())
    text = str(caught.value)
    assert str(notes / "latest.checkpoint") in text
    assert "[provenance] checkpoint_file" in text and "not a directory" in text
    assert isinstance(caught.value.__cause__, OSError)
    with contextlib.suppress(aiguard.AIGuardError):
        guard.close()


def test_key_provider_faults_name_their_policy_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A damaged key file, an unsafe one, an unusable variable: typed, with the fix and
    the policy key, never the key material."""
    short = tmp_path / "root.key"
    short.write_bytes(b"short")
    short.chmod(0o600)
    shared = tmp_path / "shared.key"
    shared.write_bytes(os.urandom(32))
    shared.chmod(0o644)
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "aiguard.key").write_bytes(b"x" * 31)
    (tmp_path / "db" / "aiguard.key").chmod(0o600)
    monkeypatch.setenv("AIGUARD_FAULT_KEY", "c2hvcnQ=")
    keys = Target("key", lambda _: "", "", None)
    cells = [
        (f'[keys]\nvault = "memory"\nfile = "{short}"\n', str(short), "[keys] file", "restore"),
        (f'[keys]\nvault = "memory"\nfile = "{shared}"\n', str(shared), "[keys] file", "chmod"),
        (
            '[keys]\nvault = "memory"\nprovider = "env"\nenv = "AIGUARD_FAULT_KEY"\n',
            "AIGUARD_FAULT_KEY",
            "[keys] env",
            "openssl rand",
        ),
        (
            f'database = "{tmp_path / "db" / "aiguard.db"}"\n',
            str(tmp_path / "db" / "aiguard.key"),
            "policy key database",
            "restore",
        ),
    ]
    for policy, named, key, fix in cells:
        outcome = _run(tmp_path, keys, policy + DESTINATION)
        error = outcome.error
        assert isinstance(error, KeyProviderError), (named, error)
        text = str(error)
        assert named in text and key in text and fix in text, text
        assert "c2hvcnQ=" not in text
        assert outcome.fake.requests == []
