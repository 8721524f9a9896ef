"""Helpers and fixtures of the fault matrix: a throwaway PostgreSQL that can go down and come back,
fault-injecting wrappers around real stores and sinks, and the three doors.

The shared server on port 5432 is never stopped: the restart faults run against a
private server started here (initdb in a temporary directory, a free port on
127.0.0.1) and removed at the end of the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import aiguard
from aiguard.policy.model import DestinationPolicy, Policy
from aiguard.provenance.chain import EventRecord
from aiguard.testing import InMemorySink

openai = pytest.importorskip("openai")

PG_BIN = Path(os.environ.get("AIGUARD_PG_BIN", "/usr/lib/postgresql/15/bin"))

#: Raw values every fault call carries; none may reach the upstream or any log.
RAW = {
    "email": "fault.victim@example.org",
    "card": "4111 1111 1111 1111",
    "ssn": "123-45-6780",
}
MESSAGE = f"Mail {RAW['email']}, card {RAW['card']}, SSN {RAW['ssn']}."
DOORS = ("sync", "async", "decorator")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- a throwaway PostgreSQL ------------------------------------------------------------


@dataclass
class ThrowawayPostgres:
    """A private PostgreSQL 15 cluster this test session may stop and start at will."""

    directory: Path
    port: int

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        command = [str(PG_BIN / "pg_ctl"), "-D", str(self.directory / "data"), *args]
        if args[0] in ("start", "restart"):
            command += ["-o", options, "-l", str(self.directory / "server.log")]
        subprocess.run(_as_postgres(command), check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        self._ctl("start", "-w")

    def stop(self) -> None:
        self._ctl("stop", "-w", "-m", "fast")

    @property
    def running(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def execute(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]


def _as_postgres(command: Sequence[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["su", "postgres", "-c", " ".join(_quote(c) for c in command)]
    return list(command)


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


@pytest.fixture(scope="session")
def throwaway_pg() -> Iterator[ThrowawayPostgres]:
    """A private PostgreSQL server on a free port, removed at the end of the session."""
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"initdb not found in {PG_BIN} (set AIGUARD_PG_BIN); PostgreSQL faults skipped")
    pytest.importorskip("psycopg")
    pytest.importorskip("psycopg_pool")
    directory = Path(tempfile.mkdtemp(prefix="aiguard-faults-pg-"))
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
    server = ThrowawayPostgres(directory, free_port())
    try:
        subprocess.run(
            _as_postgres(
                [
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(directory / "data"),
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "--no-sync",
                ]
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
        server.start()
    except (subprocess.CalledProcessError, OSError) as exc:
        shutil.rmtree(directory, ignore_errors=True)
        pytest.skip(f"could not start a throwaway PostgreSQL: {exc}")
    try:
        yield server
    finally:
        if server.running:
            with contextlib.suppress(subprocess.CalledProcessError):
                server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def pg_schema(throwaway_pg: ThrowawayPostgres) -> Iterator[ThrowawayPostgres]:
    """The throwaway server, running and emptied of aiguard's tables before the test."""
    if not throwaway_pg.running:
        throwaway_pg.start()
    throwaway_pg.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    yield throwaway_pg
    if not throwaway_pg.running:
        throwaway_pg.start()


# -- fault injection -----------------------------------------------------------------


class Fault:
    """What a dependency does now: ``ok``, ``down``, ``slow`` (sleep past the timeout),
    ``midway`` (``budget`` more operations succeed, then it fails) or ``garbage``."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.budget = 0
        self.delay = 0.0
        self._lock = threading.Lock()

    def set(self, mode: str, *, budget: int = 0, delay: float = 0.0) -> None:
        self.mode, self.budget, self.delay = mode, budget, delay

    def gate(self, what: str) -> None:
        """Raise as a broken dependency would; return when the operation may go ahead."""
        with self._lock:
            mode = self.mode
            if mode == "midway":
                if self.budget > 0:
                    self.budget -= 1
                    return
                raise ConnectionError(f"{what}: connection lost midway")
        if mode == "down":
            raise ConnectionRefusedError(f"{what}: connection refused")
        if mode == "slow":
            time.sleep(self.delay)
            raise TimeoutError(f"{what}: timed out")


class FaultyVault:
    """A real in-memory vault behind a switchable fault."""

    def __init__(self, fault: Fault) -> None:
        from aiguard.vault import InMemoryVault

        self.inner = InMemoryVault()
        self.fault = fault

    def tokenize(
        self,
        scope: Any,
        kind: str,
        value: str,
        subject: str | None = None,
        *,
        principal: str | None = None,
    ) -> str:
        self.fault.gate("vault")
        if self.fault.mode == "garbage":
            return "\x00garbage"
        return self.inner.tokenize(scope, kind, value, subject, principal=principal)

    def detokenize(self, scope: Any, token: str) -> str | None:
        self.fault.gate("vault")
        return self.inner.detokenize(scope, token)

    def detokenize_for(
        self, scope: Any, token: str, subject: str | None, principal: str | None
    ) -> str | None:
        self.fault.gate("vault")
        return self.inner.detokenize_for(scope, token, subject, principal)


class FaultyConsent:
    """A real in-memory consent store behind a switchable fault."""

    def __init__(self, fault: Fault) -> None:
        from aiguard.consent import InMemoryConsentStore

        self.inner = InMemoryConsentStore()
        self.fault = fault

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def current(self, subject: str, purpose: str, *, tenant: str | None = None) -> Any:
        self.fault.gate("consent store")
        if self.fault.mode == "garbage":
            return {"granted": "yes, trust me"}
        return self.inner.current(subject, purpose, tenant=tenant)


class FaultySink(InMemorySink):
    """An in-memory sink that fails while its fault says so."""

    def __init__(self, fault: Fault, *, required: bool = True) -> None:
        super().__init__(required=required)
        self.fault = fault

    def emit(self, record: EventRecord) -> None:
        self.fault.gate("sink")
        super().emit(record)

    def emit_batch(self, records: Sequence[EventRecord]) -> None:
        self.fault.gate("sink")
        super().emit_batch(records)


# -- guards and doors ------------------------------------------------------------------


def fault_policy(base_url: str = "https://api.openai.com/v1", **destination: Any) -> Policy:
    purposes = ["inference", "third_party_sharing"]
    return Policy(
        destinations={
            "openai": DestinationPolicy(
                base_url=base_url, approved=True, purposes=purposes, **destination
            )
        }
    )


@dataclass
class DoorCall:
    """How a test calls the model through one door."""

    door: str
    guard: aiguard.Guard
    base_url: str = "https://api.openai.com/v1"
    transport: Any = None
    purpose: str = "inference"
    timeout: float = 10.0
    max_retries: int = 0
    stream: bool = False

    def __call__(self, content: str = MESSAGE) -> str:
        if self.door == "async":
            return asyncio.run(self._async(content))
        client = openai.OpenAI(
            http_client=self.guard.http_client(transport=self.transport),
            base_url=self.base_url,
            api_key="sk-test-not-a-secret",
            max_retries=self.max_retries,
            timeout=self.timeout,
        )
        try:
            if self.door == "decorator":
                purpose = self.purpose

                @self.guard.endpoint(
                    purpose=purpose, destination="openai", subject_from="customer_id"
                )
                def faults_door_handler(customer_id: str, text: str) -> str:
                    return self._sync_chat(client, text)

                return faults_door_handler("cust-7", content)
            with self.guard.context(
                subject="cust-7", tenant="default", purpose=self.purpose, destination="openai"
            ):
                return self._sync_chat(client, content)
        finally:
            client.close()

    def _sync_chat(self, client: Any, content: str) -> str:
        messages = [{"role": "user", "content": content}]
        if self.stream:
            parts = client.chat.completions.create(
                model="gpt-4o-mini", messages=messages, stream=True
            )
            return "".join(c.choices[0].delta.content or "" for c in parts if c.choices)
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
        return str(reply.choices[0].message.content)

    async def _async(self, content: str) -> str:
        client = openai.AsyncOpenAI(
            http_client=self.guard.async_http_client(transport=self.transport),
            base_url=self.base_url,
            api_key="sk-test-not-a-secret",
            max_retries=self.max_retries,
            timeout=self.timeout,
        )
        try:
            with self.guard.context(
                subject="cust-7", tenant="default", purpose=self.purpose, destination="openai"
            ):
                messages = [{"role": "user", "content": content}]
                if self.stream:
                    parts = await client.chat.completions.create(
                        model="gpt-4o-mini", messages=messages, stream=True
                    )
                    out = []
                    async for chunk in parts:
                        if chunk.choices:
                            out.append(chunk.choices[0].delta.content or "")
                    return "".join(out)
                reply = await client.chat.completions.create(model="gpt-4o-mini", messages=messages)
                return str(reply.choices[0].message.content)
        finally:
            await client.close()


@pytest.fixture(params=DOORS)
def door(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def call_events(sink: InMemorySink) -> list[dict[str, Any]]:
    """Events about calls (allowed, refused or failed)."""
    return sink.calls()


MakeCall = Callable[..., DoorCall]
