"""How long a store takes to fail closed when its server or file does not answer.

Run: python benchmarks/bench_faults.py [--connect-timeout 2] [--repeat 3] [--json]

Bounds (issue 18, docs/storage.md "Bounded waits"): a PostgreSQL server that accepts
connections and never answers fails the pooled stores (vault, consent, kill switch)
within ~2 x ``[keys] connect_timeout`` (pool wait, then one direct attempt), and the
PostgreSQL sink within ``connect_timeout``; a SQLite file locked by another process
fails within ``database_timeout``. Only loopback sockets and temporary files are used.
"""

from __future__ import annotations

import argparse
import socket
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _report import report

import aiguard


class _Silent:
    """A loopback port that accepts connections and never says a word."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.port: int = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                continue

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        for conn in self.held:
            conn.close()
        self.sock.close()


def _seconds_to_fail(work: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.monotonic()
        try:
            work()
        except aiguard.AIGuardError:
            times.append(time.monotonic() - start)
        else:
            raise SystemExit("the store did not fail")
    return statistics.median(times)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    timeout = args.connect_timeout
    print(f"{'fault':<58} {'median s':>9} {'bound s':>8}")
    try:
        from aiguard.provenance.postgres import PostgresSink
        from aiguard.vault import VaultKeys
        from aiguard.vault.postgres import PostgresPool, PostgresVault
    except ImportError:  # pragma: no cover - without the postgres extra
        print("psycopg not installed: PostgreSQL rows skipped")
    else:
        silent = _Silent()
        dsn = f"postgresql://bench@127.0.0.1:{silent.port}/bench"
        try:

            def vault() -> None:
                PostgresVault(
                    PostgresPool(dsn, connect_timeout=timeout), VaultKeys.derive(b"k" * 32)
                )

            def sink() -> None:
                PostgresSink(dsn, connect_timeout=timeout)

            for name, work, bound in (
                ("pg_vault_hanging_s", vault, 2 * max(2.0, timeout)),
                ("pg_sink_hanging_s", sink, max(2.0, timeout)),
            ):
                figures[name] = _seconds_to_fail(work, args.repeat)
                print(f"{name:<58} {figures[name]:>9.2f} {bound:>8.1f}")
        finally:
            silent.close()
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "aiguard.db"
        from aiguard.storage.sqlite import SQLiteDatabase

        SQLiteDatabase(path).close()
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("PRAGMA locking_mode = EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("CREATE TABLE IF NOT EXISTS holder (x)")
        try:
            figures["sqlite_locked_s"] = _seconds_to_fail(
                lambda: SQLiteDatabase(path, timeout=0.5), args.repeat
            )
        finally:
            holder.close()
        print(f"{'sqlite_locked_s (database_timeout 0.5)':<58} {figures['sqlite_locked_s']:>9.2f}")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connect-timeout", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="figures as JSON on stdout")
    args = parser.parse_args(argv)
    return report(lambda: measure(args), args.json)


if __name__ == "__main__":
    sys.exit(main())
