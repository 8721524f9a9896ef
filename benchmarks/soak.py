"""A bounded soak: threads, asyncio tasks and processes on one SQLite and one PostgreSQL store.

    python benchmarks/soak.py [--seconds 120] [--processes 3] [--threads 4] [--tasks 8]
                              [--postgres DSN] [--json] [--keep]

Every worker process (a subprocess of this interpreter) builds two guards with
`Guard.from_toml` and calls a local echo model through the wrapped HTTP clients, from
``--threads`` threads (sync client) and ``--tasks`` asyncio tasks (async client) at once,
half of them on each guard, until the time is up:

* SQLite: ``database = "aiguard.db"`` (vault, consent, kill switch) shared by every
  process; each process's provenance chain goes into the same file through a
  `SqliteSink` with its own log name (one writer per log), mirrored to a JSONL file of
  its own (one writing process per file), written by a background writer.
* PostgreSQL (with ``--postgres`` or ``AIGUARD_TEST_POSTGRES_DSN``): a scratch database
  created for the run and dropped afterwards, with ``[keys] vault = "postgres"`` and a
  ``[provenance]`` PostgreSQL sink that every process appends to (one shared log), with
  a background writer (a synchronous one commits once per call under the log's head
  lock, which serializes every process).

Each message carries two e-mail addresses of one subject from a fixed pool, so early on
processes race to issue the same new tokens and later they look existing ones up. The
echo model returns the protected text and names the tokens it saw in a header.

Afterwards: every log verifies (``verify_records`` over ``read_sqlite`` and
``read_postgres``, ``verify_file`` over the JSONL mirrors) and holds one ``call`` event
per call made; every value got exactly one token across all processes, threads and
tasks, distinct values got distinct tokens, the vault holds exactly one entry per value
used, and every answer came back restored to the text sent; and each process's resident
memory, sampled every second, stays flat (first sample after the warm-up vs the last).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

BACKENDS = ("sqlite", "postgres")
BASE_URL = "https://model.soak.invalid/v1"
URL = BASE_URL + "/chat/completions"
SUBJECTS = 100
PER_SUBJECT = 20

POLICY = f"""
[destinations.model]
base_url = "{BASE_URL}"
approved = true
purposes = ["inference"]
"""


def value_of(subject: int, k: int) -> str:
    return f"s{subject}.mail{k}@example.com"


def rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# -- the worker process --------------------------------------------------------------------


def echo_transport() -> Any:
    """A stateless model: answers with the last user message and names its tokens."""
    import httpx

    from aiguard.vault.tokens import TOKEN_RE

    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.read())
        text = body["messages"][-1]["content"]
        tokens = ",".join(m.group(0) for m in TOKEN_RE.finditer(text))
        answer = {
            "id": "chatcmpl-soak",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model", "m"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
        }
        return httpx.Response(200, json=answer, headers={"x-soak-tokens": tokens})

    return httpx.MockTransport(handle)


class Tally:
    """What one backend saw in one process: calls, failures, tokens per value."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls = 0
        self.mismatches = 0
        self.errors = 0
        self.first_errors: list[str] = []
        self.tokens: dict[str, set[str]] = {}

    def record(self, values: tuple[str, str], message: str, response: Any) -> None:
        tokens = response.headers.get("x-soak-tokens", "").split(",")
        restored = response.json()["choices"][0]["message"]["content"]
        with self.lock:
            self.calls += 1
            if restored != message or len(tokens) != 2:
                self.mismatches += 1
            for value, token in zip(values, tokens, strict=False):
                self.tokens.setdefault(value, set()).add(token)

    def error(self, exc: BaseException) -> None:
        with self.lock:
            self.errors += 1
            if len(self.first_errors) < 5:
                self.first_errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")

    def summary(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "mismatches": self.mismatches,
            "errors": self.errors,
            "first_errors": self.first_errors,
            "tokens": {value: sorted(tokens) for value, tokens in self.tokens.items()},
        }


def pick(rng: random.Random) -> tuple[str, tuple[str, str], str]:
    subject = rng.randrange(SUBJECTS)
    a, b = rng.sample(range(PER_SUBJECT), 2)
    values = (value_of(subject, a), value_of(subject, b))
    message = f"Please write to {values[0]} and copy {values[1]} about the invoice."
    return f"cust-{subject}", values, message


def body(message: str) -> dict[str, Any]:
    return {"model": "soak-model", "messages": [{"role": "user", "content": message}]}


def thread_worker(guard: Any, tenant: str, tally: Tally, end: float, seed: int) -> None:
    rng = random.Random(seed)
    with guard.http_client(transport=echo_transport()) as client:
        while time.monotonic() < end:
            subject, values, message = pick(rng)
            try:
                with guard.context(subject=subject, tenant=tenant, purpose="inference"):
                    response = client.post(URL, json=body(message))
                response.raise_for_status()
                tally.record(values, message, response)
            except Exception as exc:
                tally.error(exc)


async def task_worker(
    client: Any, guard: Any, tenant: str, tally: Tally, end: float, seed: int
) -> None:
    rng = random.Random(seed)
    while time.monotonic() < end:
        subject, values, message = pick(rng)
        try:
            with guard.context(subject=subject, tenant=tenant, purpose="inference"):
                response = await client.post(URL, json=body(message))
            response.raise_for_status()
            tally.record(values, message, response)
        except Exception as exc:
            tally.error(exc)


async def run_tasks(
    guards: dict[str, Any],
    tenant: str,
    tallies: dict[str, Tally],
    tasks: int,
    end: float,
    index: int,
) -> None:
    clients = {name: g.async_http_client(transport=echo_transport()) for name, g in guards.items()}
    names = list(guards)
    try:
        await asyncio.gather(
            *(
                task_worker(
                    clients[names[t % len(names)]],
                    guards[names[t % len(names)]],
                    tenant,
                    tallies[names[t % len(names)]],
                    end,
                    index * 10_000 + 5_000 + t,
                )
                for t in range(tasks)
            )
        )
    finally:
        for client in clients.values():
            await client.aclose()


def worker(args: argparse.Namespace) -> int:
    import aiguard
    from aiguard.provenance import JsonlSink, ProvenanceLog
    from aiguard.sinks import SqliteSink

    workdir = Path(args.dir)
    guards: dict[str, Any] = {}
    name = f"soak-sqlite-p{args.index}"
    log = ProvenanceLog(
        name,
        [
            JsonlSink(workdir / f"events-p{args.index}.jsonl"),
            SqliteSink(workdir / "aiguard.db", log=name),
        ],
        background=True,
    )
    guards["sqlite"] = aiguard.Guard.from_toml(workdir / "sqlite.toml", log=log)
    if (workdir / "postgres.toml").exists():
        guards["postgres"] = aiguard.Guard.from_toml(workdir / "postgres.toml")
    tallies = {name: Tally() for name in guards}
    samples: list[tuple[float, int]] = []

    while time.monotonic() < args.start_at:
        time.sleep(0.01)
    start = time.monotonic()
    end = start + args.seconds
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append((time.monotonic() - start, rss_bytes()))
            stop.wait(1.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    names = list(guards)
    threads = [
        threading.Thread(
            target=thread_worker,
            args=(
                guards[names[t % len(names)]],
                args.tenant,
                tallies[names[t % len(names)]],
                end,
                args.index * 10_000 + t,
            ),
        )
        for t in range(args.threads)
    ]
    for thread in threads:
        thread.start()
    asyncio.run(run_tasks(guards, args.tenant, tallies, args.tasks, end, args.index))
    for thread in threads:
        thread.join()
    stop.set()
    sampler.join()
    samples.append((time.monotonic() - start, rss_bytes()))
    for guard in guards.values():
        guard.close()
    out = {
        "index": args.index,
        "sqlite_log": name,
        "elapsed": time.monotonic() - start,
        "rss": samples,
        "backends": {name: tally.summary() for name, tally in tallies.items()},
    }
    print(json.dumps(out))
    return 0


# -- the parent ----------------------------------------------------------------------------


def scratch_database(dsn: str, run: str) -> str:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    name = f"aiguard_soak_{run}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    host = conninfo_to_dict(dsn).get("host")
    if host not in {None, "127.0.0.1", "localhost", "::1"}:
        print(f"note: the PostgreSQL server is at {host}", file=sys.stderr)
    return make_conninfo(dsn, dbname=name)


def drop_database(dsn: str, scratch: str) -> None:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    name = conninfo_to_dict(scratch)["dbname"]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def setup(workdir: Path, scratch: str | None) -> None:
    """Create the key files and schemas once, before the processes race for them."""
    import aiguard

    (workdir / "sqlite.toml").write_text('database = "aiguard.db"\n' + POLICY, encoding="utf-8")
    aiguard.Guard.from_toml(workdir / "sqlite.toml").close()
    if scratch is not None:
        (workdir / "postgres.toml").write_text(
            POLICY
            + f"""
[keys]
provider = "file"
file = "postgres-root.key"
vault = "postgres"
dsn = {json.dumps(scratch)}

[provenance]
log = "soak-pg"
background = true

[[provenance.sinks]]
type = "postgres"
dsn = {json.dumps(scratch)}
""",
            encoding="utf-8",
        )
        aiguard.Guard.from_toml(workdir / "postgres.toml").close()


def count_calls(records: Any) -> tuple[int, Any]:
    from aiguard.provenance import verify_records

    calls = 0

    def counted() -> Any:
        nonlocal calls
        for record in records:
            if record.document.get("type") == "call":
                calls += 1
            yield record

    report = verify_records(counted())
    return calls, report


def check_tokens(workers: list[dict[str, Any]], backend: str) -> dict[str, Any]:
    per_value: dict[str, set[str]] = {}
    for w in workers:
        for value, tokens in w["backends"][backend]["tokens"].items():
            per_value.setdefault(value, set()).update(tokens)
    several = {v: sorted(t) for v, t in per_value.items() if len(t) != 1}
    owners: dict[str, str] = {}
    shared = 0
    for value, tokens in per_value.items():
        for token in tokens:
            if owners.setdefault(token, value) != value:
                shared += 1
    return {"values": len(per_value), "several_tokens": several, "shared_tokens": shared}


def vault_entries_sqlite(path: Path) -> int:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM aiguard_vault_entry").fetchone()[0])
    finally:
        conn.close()


def vault_entries_postgres(dsn: str) -> int:
    import psycopg

    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM aiguard_vault_entry").fetchone()
    return int(row[0]) if row else 0


def soak(args: argparse.Namespace) -> dict[str, Any]:
    from aiguard.provenance import verify_file
    from aiguard.sinks import read_postgres, read_sqlite

    run = f"{os.getpid()}_{time.time_ns() % 10**9}"
    workdir = Path(tempfile.mkdtemp(prefix=f"aiguard-soak-{run}-"))
    scratch = scratch_database(args.postgres, run) if args.postgres else None
    result: dict[str, Any] = {
        "seconds": args.seconds,
        "processes": args.processes,
        "threads": args.threads,
        "tasks": args.tasks,
        "workdir": str(workdir),
    }
    try:
        setup(workdir, scratch)
        start_at = time.monotonic() + 4.0  # every process imports and opens its stores first
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--role=worker",
                    f"--index={i}",
                    f"--dir={workdir}",
                    f"--seconds={args.seconds}",
                    f"--threads={args.threads}",
                    f"--tasks={args.tasks}",
                    f"--tenant=soak-{run}",
                    f"--start-at={start_at}",
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            for i in range(args.processes)
        ]
        workers = []
        for proc in procs:
            out, _ = proc.communicate(timeout=args.seconds + 180)
            if proc.returncode != 0:
                raise RuntimeError(f"a worker process exited with {proc.returncode}")
            workers.append(json.loads(out.strip().splitlines()[-1]))

        # -- the SQLite vault and its logs --
        db = workdir / "aiguard.db"
        problems: list[str] = []
        calls = sum(w["backends"]["sqlite"]["calls"] for w in workers)
        verified = True
        events_match = True
        for w in workers:
            made = w["backends"]["sqlite"]["calls"]
            logged, report = count_calls(read_sqlite(db, log=w["sqlite_log"]))
            mirror = verify_file(workdir / f"events-p{w['index']}.jsonl")
            if not (report.ok and mirror.ok):
                verified = False
                problems.append(f"{w['sqlite_log']}: {report.failure or mirror.failure}")
            if logged != made or mirror.records != report.records:
                events_match = False
                problems.append(
                    f"{w['sqlite_log']}: {made} calls, {logged} call events, "
                    f"{report.records} records in SQLite, {mirror.records} in JSONL"
                )
        result["sqlite"] = backend_result(
            workers, "sqlite", calls, verified, events_match, vault_entries_sqlite(db), problems
        )
        result["sqlite"]["logs"] = f"{len(workers)} chains in aiguard.db + {len(workers)} JSONL"

        # -- the PostgreSQL vault and its shared log --
        if scratch is not None:
            problems = []
            calls = sum(w["backends"]["postgres"]["calls"] for w in workers)
            logged, report = count_calls(read_postgres(scratch, "soak-pg"))
            if not report.ok:
                problems.append(f"soak-pg: {report.failure}")
            if logged != calls:
                problems.append(f"soak-pg: {calls} calls, {logged} call events")
            result["postgres"] = backend_result(
                workers,
                "postgres",
                calls,
                report.ok,
                logged == calls,
                vault_entries_postgres(scratch),
                problems,
            )
            result["postgres"]["logs"] = f"one shared log, {report.records} records"
        else:
            result["postgres"] = {"skipped": "pass --postgres DSN or set AIGUARD_TEST_POSTGRES_DSN"}

        # -- memory --
        warm = args.seconds / 4  # token issuing and caches settle first
        growths, lines = [], []
        for w in workers:
            samples = w["rss"]
            steady = [s for s in samples if s[0] >= warm] or samples[-1:]
            first, last = steady[0][1], steady[-1][1]
            peak = max(s[1] for s in samples)
            growths.append((last - first) / 2**20)
            lines.append(
                f"p{w['index']}: {samples[0][1] / 2**20:.0f} MiB at start, "
                f"{first / 2**20:.1f} at {steady[0][0]:.0f} s, {last / 2**20:.1f} at "
                f"{steady[-1][0]:.0f} s (peak {peak / 2**20:.1f})"
            )
        result["rss_growth_mib"] = max(growths)
        result["rss_limit_mib"] = args.rss_limit_mib
        result["rss_flat"] = max(growths) <= args.rss_limit_mib
        result["rss_summary"] = "; ".join(lines)
        result["ok"] = (
            result["rss_flat"]
            and result["sqlite"]["ok"]
            and (scratch is None or result["postgres"]["ok"])
        )
    finally:
        if scratch is not None and args.postgres:
            drop_database(args.postgres, scratch)
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return result


def backend_result(
    workers: list[dict[str, Any]],
    backend: str,
    calls: int,
    verified: bool,
    events_match: bool,
    entries: int,
    problems: list[str],
) -> dict[str, Any]:
    tokens = check_tokens(workers, backend)
    mismatches = sum(w["backends"][backend]["mismatches"] for w in workers)
    errors = sum(w["backends"][backend]["errors"] for w in workers)
    first_errors = [e for w in workers for e in w["backends"][backend]["first_errors"]][:5]
    consistent = (
        not tokens["several_tokens"]
        and tokens["shared_tokens"] == 0
        and entries == tokens["values"]
        and mismatches == 0
        and errors == 0
    )
    if tokens["several_tokens"]:
        problems.append(f"values with several tokens: {list(tokens['several_tokens'])[:3]}")
    if entries != tokens["values"]:
        problems.append(f"{entries} vault entries for {tokens['values']} values")
    problems += first_errors
    rate = calls / max(1e-9, *(w["elapsed"] for w in workers))
    summary = (
        f"{calls:,} calls ({rate:,.0f}/s), {errors} errors, {mismatches} answers not restored; "
        f"{tokens['values']:,} values -> {tokens['values'] - len(tokens['several_tokens']):,} "
        f"with one token, {entries:,} vault entries"
    )
    return {
        "calls": calls,
        "calls_per_s": rate,
        "errors": errors,
        "mismatches": mismatches,
        "values": tokens["values"],
        "vault_entries": entries,
        "logs_verified": verified,
        "events_match": events_match,
        "tokens_consistent": consistent,
        "ok": verified and events_match and consistent,
        "problems": problems,
        "summary": summary,
    }


def report(result: dict[str, Any]) -> None:
    print(
        f"soak: {result['seconds']:g} s, {result['processes']} processes x "
        f"({result['threads']} threads + {result['tasks']} asyncio tasks), "
        "half on each backend"
    )
    for backend in BACKENDS:
        b = result[backend]
        if "skipped" in b:
            print(f"  {backend}: skipped ({b['skipped']})")
            continue
        print(f"  {backend}: {b['summary']}")
        print(
            f"    logs ({b['logs']}) verify: {b['logs_verified']}; one call event per call: "
            f"{b['events_match']}; tokens consistent: {b['tokens_consistent']}"
        )
        for problem in b["problems"]:
            print(f"    problem: {problem}")
    print(
        f"  memory (RSS per process): {result['rss_summary']}; largest growth "
        f"{result['rss_growth_mib']:+.1f} MiB (flat: <= {result['rss_limit_mib']:g} MiB: "
        f"{result['rss_flat']})"
    )
    print(f"  {'PASS' if result['ok'] else 'FAIL'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--postgres", default=os.environ.get("AIGUARD_TEST_POSTGRES_DSN"))
    parser.add_argument("--rss-limit-mib", type=float, default=8.0)
    parser.add_argument("--json", action="store_true", help="figures as JSON on stdout")
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    parser.add_argument("--role", choices=("parent", "worker"), default="parent")
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--dir", default="")
    parser.add_argument("--tenant", default="soak")
    parser.add_argument("--start-at", type=float, default=0.0)
    args = parser.parse_args(argv)
    if args.role == "worker":
        return worker(args)
    if args.json:
        with contextlib.redirect_stdout(sys.stderr):
            result = soak(args)
            report(result)
        print(json.dumps(result))
    else:
        result = soak(args)
        report(result)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
