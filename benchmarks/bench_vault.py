"""Vault throughput and restore latency. Run: python benchmarks/bench_vault.py [--postgres DSN].

Targets (issue 6): existing values >= 100,000/s (memory, SQLite cache); new values
>= 20,000/s into SQLite with batched transactions, >= 5,000/s into PostgreSQL from one
client and more with 4; restoring 20 same-call tokens < 20 µs, 20 earlier-turn tokens
from the vault < 200 µs warm.

Reported beside them (issue 17, a cheaper call where the vault is shared): what
``guard.protect`` of a message holding four new values costs on the SQLite and
PostgreSQL vaults, with the message's values issued in one batch (what a call does)
and one at a time (what it did before), and what ``guard.restore`` of an answer
holding 20 earlier-turn tokens costs on PostgreSQL, read in one query (what a call
does) and one by one; medians of interleaved rounds.

With ``--json`` the table goes to stderr and stdout gets the figures as one JSON object
keyed by stable names (what benchmarks/run_all.py reads).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aiguard.vault import InMemoryVault, Scope, SQLiteVault
from aiguard.vault.keys import SecretKeyProvider

SCOPE = Scope("acme", "conv-1")
BATCH = 1_000
PG_ROOT = b"r" * 32  # the tests' root key: a database holds one root
#: Every figure printed, by a stable name (for ``--json``).
FIGURES: dict[str, float] = {}


def rate(label: str, n: int, work: Callable[[], Any], key: str | None = None) -> float:
    start = time.perf_counter()
    work()
    per_second = n / (time.perf_counter() - start)
    print(f"{label:<56} {per_second:>12,.0f} /s")
    FIGURES[key or label] = per_second
    return per_second


def micros(label: str, reps: int, work: Callable[[], Any], key: str | None = None) -> float:
    start = time.perf_counter()
    for _ in range(reps):
        work()
    each = (time.perf_counter() - start) / reps * 1e6
    print(f"{label:<56} {each:>12,.1f} µs")
    FIGURES[key or label] = each
    return each


def batched(vault: Any, scope: Scope, values: Sequence[str]) -> None:
    for start in range(0, len(values), BATCH):
        vault.tokenize_many(scope, [("email", v, "s") for v in values[start : start + BATCH]])


def restore_twenty(vault: Any, values: Sequence[str]) -> None:
    tokens = [vault.tokenize(SCOPE, "email", v, "s") for v in values[:20]]

    def restore() -> None:
        for token in tokens:
            vault.detokenize(SCOPE, token)

    restore()  # warm: connection, statements, data keys
    name = type(vault).__name__
    micros(f"{name}: restore 20 earlier-turn tokens (warm)", 500, restore, f"{name}.restore20_us")
    ttl = vault.restore_cache_ttl
    vault.restore_cache_ttl = 0
    micros(f"{name}:   the same, restore cache off", 500, restore, f"{name}.restore20_nocache_us")
    vault.restore_cache_ttl = ttl


def protect_new_values(label: str, key: str, open_vault: Callable[[bool], Any]) -> None:
    """``guard.protect`` of a message with four new values (two e-mails, a phone number,
    an account id) and its event, median µs: batched as a call does, then one at a time."""
    import aiguard
    from aiguard.testing import InMemorySink

    policy = aiguard.policy.parse_policy(
        '[destinations.openai]\nbase_url = "https://api.openai.com/v1"\napproved = true\n'
        'purposes = ["inference"]\n[[patterns]]\nkind = "account"\nlevel = "sensitive"\n'
        'regex = "ACC-[0-9]{8}"\n'
    )
    ctx = aiguard.CallContext(
        subject="cust-1", tenant="acme", purpose="inference", destination="openai"
    )
    guards = {
        batch: aiguard.Guard(policy, sinks=[InMemorySink()], vault=open_vault(batch))
        for batch in (True, False)
    }
    run = time.time_ns()
    samples: dict[bool, list[float]] = {True: [], False: []}
    for i in range(400):
        for batch, guard in guards.items():
            n = f"{run}{i}{int(batch)}"
            message = (
                f"Hi, this is Maria. Reply to maria.{n}@example.com or m.{n}@example.org, "
                f"or call +49 30 {int(n[-7:]):07d}. Account ACC-{int(n[-8:]):08d}, thanks!"
            )
            start = time.perf_counter()
            guard.protect(message, ctx)
            if i >= 20:  # the first rounds open connections and make data keys
                samples[batch].append((time.perf_counter() - start) * 1e6)
    for guard in guards.values():
        guard.vault.close()  # type: ignore[attr-defined]
    for batch, name in ((True, "batched"), (False, "one at a time")):
        value = statistics.median(samples[batch])
        print(f"{label + ', ' + name:<56} {value:>12,.1f} µs")
        FIGURES[f"{key}.protect4_new_{'batched' if batch else 'single'}_us"] = value


def restore_earlier(label: str, key: str, open_vault: Callable[[bool], Any]) -> None:
    """``guard.restore`` of an answer holding 20 tokens an earlier call issued, median
    µs: read in one query as a call does, then one token at a time."""
    import aiguard
    from aiguard.testing import InMemorySink

    policy = aiguard.policy.parse_policy(
        '[destinations.openai]\nbase_url = "https://api.openai.com/v1"\napproved = true\n'
        'purposes = ["inference"]\n'
    )
    ctx = aiguard.CallContext(
        subject="cust-1",
        tenant=f"restore-{time.time_ns()}",
        purpose="inference",
        destination="openai",
    )
    guards = {}
    answers = {}
    for batch in (True, False):
        guard = aiguard.Guard(policy, sinks=[InMemorySink()], vault=open_vault(batch))
        emails = " ".join(f"user{i}.{int(batch)}@example.com" for i in range(20))
        earlier = guard.protect(emails, ctx)
        guards[batch] = (guard, guard.protect("Any news?", ctx))
        answers[batch] = "On file: " + ", ".join(earlier.tokens) + "."
    samples: dict[bool, list[float]] = {True: [], False: []}
    for i in range(220):
        for batch, (guard, now) in guards.items():
            start = time.perf_counter()
            guard.restore(answers[batch], now)
            if i >= 20:
                samples[batch].append((time.perf_counter() - start) * 1e6)
    for guard, _now in guards.values():
        guard.vault.close()  # type: ignore[attr-defined]
    for batch, name in ((True, "1 query"), (False, "a query each")):
        value = statistics.median(samples[batch])
        print(f"{label + ', ' + name:<56} {value:>12,.1f} µs")
        FIGURES[f"{key}.restore20_answer_{'batched' if batch else 'single'}_us"] = value


def _one_at_a_time(cls: type[Any]) -> type[Any]:
    return type(cls.__name__, (cls,), {"prefers_batches": False})


def _pg_client(args: tuple[str, str, list[str], Any]) -> float:
    from aiguard.vault.postgres import PostgresVault

    dsn, tenant, values, barrier = args
    vault = PostgresVault(dsn, SecretKeyProvider(PG_ROOT), max_connections=2)
    vault.tokenize(Scope(tenant), "email", "warm-up@example.com", "s")
    barrier.wait()
    start = time.perf_counter()
    batched(vault, Scope(tenant), values)
    elapsed = time.perf_counter() - start
    vault.close()
    return elapsed


def postgres(dsn: str, values: Sequence[str], n: int) -> None:
    from aiguard.vault.postgres import PostgresVault

    pg = PostgresVault(dsn, SecretKeyProvider(PG_ROOT))
    run = f"bench-{os.getpid()}-{time.time_ns()}"
    m = min(n, 2_000)
    rate(
        f"postgres: new values, one client, one at a time (n={m})",
        m,
        lambda: [pg.tokenize(Scope(run + "-a"), "email", v, "s") for v in values[:m]],
        "postgres.new_single_per_s",
    )
    rate(
        f"postgres: new values, one client, batches of {BATCH} (n={n})",
        n,
        lambda: batched(pg, Scope(run + "-b"), values),
        "postgres.new_batched_per_s",
    )
    rate(
        "postgres: existing values (in-process cache)",
        n,
        lambda: batched(pg, Scope(run + "-b"), values),
        "postgres.existing_per_s",
    )
    pg.close()
    protect_new_values(
        "postgres: guard.protect, 4 new values",
        "postgres",
        lambda batch: (PostgresVault if batch else _one_at_a_time(PostgresVault))(
            dsn, SecretKeyProvider(PG_ROOT)
        ),
    )
    restore_earlier(
        "postgres: guard.restore, 20 earlier tokens",
        "postgres",
        lambda batch: (PostgresVault if batch else _one_at_a_time(PostgresVault))(
            dsn, SecretKeyProvider(PG_ROOT)
        ),
    )
    clients = 4
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        barrier = manager.Barrier(clients)
        jobs = [
            (dsn, f"{run}-c{i}", [f"c{i}-{v}" for v in values], barrier) for i in range(clients)
        ]
        with context.Pool(clients) as pool:
            elapsed = pool.map(_pg_client, jobs)
    total = clients * len(values) / max(elapsed)
    label = f"postgres: new values, {clients} clients, batches of {BATCH} (n={clients}x{n})"
    print(f"{label:<56} {total:>12,.0f} /s")
    FIGURES[f"postgres.new_batched_{clients}_clients_per_s"] = total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgres", default=os.environ.get("AIGUARD_TEST_POSTGRES_DSN"))
    parser.add_argument("-n", type=int, default=20_000)
    parser.add_argument("--json", action="store_true", help="figures as JSON on stdout")
    args = parser.parse_args()
    if not args.json:
        measure(args)
        return
    with contextlib.redirect_stdout(sys.stderr):
        measure(args)
    print(json.dumps(FIGURES))


def measure(args: argparse.Namespace) -> None:
    n = args.n
    root = SecretKeyProvider(os.urandom(32))
    values = [f"user{i}@example.com" for i in range(n)]
    memory = InMemoryVault(root)
    rate(
        "memory: new values",
        n,
        lambda: [memory.tokenize(SCOPE, "email", v, "s") for v in values],
        "memory.new_per_s",
    )
    rate(
        "memory: existing values",
        n,
        lambda: [memory.tokenize(SCOPE, "email", v, "s") for v in values],
        "memory.existing_per_s",
    )
    restore_twenty(memory, values)
    with tempfile.TemporaryDirectory() as tmp:
        vault = SQLiteVault(Path(tmp) / "b.db", root)
        m = min(n, 2_000)
        rate(
            f"sqlite: new values, one transaction each (n={m})",
            m,
            lambda: [vault.tokenize(Scope("one"), "email", v, "s") for v in values[:m]],
            "sqlite.new_single_per_s",
        )
        rate(
            f"sqlite: new values, batches of {BATCH} (n={n})",
            n,
            lambda: batched(vault, SCOPE, values),
            "sqlite.new_batched_per_s",
        )
        rate(
            "sqlite: existing values (in-process cache)",
            n * 5,
            lambda: [vault.tokenize(SCOPE, "email", v, "s") for _ in range(5) for v in values],
            "sqlite.existing_per_s",
        )
        restore_twenty(vault, values)
        tokens = [vault.tokenize(SCOPE, "email", v, "s") for v in values[:20]]
        issued = dict(zip(tokens, values[:20], strict=True))
        micros(
            "same call: 20 tokens from the call's own mapping",
            5_000,
            lambda: [issued.get(t) for t in tokens],
            "same_call.restore20_us",
        )
        vault.close()
        protect_new_values(
            "sqlite: guard.protect, 4 new values",
            "sqlite",
            lambda batch: (SQLiteVault if batch else _one_at_a_time(SQLiteVault))(
                Path(tmp) / f"p{int(batch)}.db", root
            ),
        )
    if args.postgres:
        postgres(args.postgres, values, n)
    else:
        print("postgres: skipped (pass --postgres DSN or set AIGUARD_TEST_POSTGRES_DSN)")


if __name__ == "__main__":
    main()
