"""``aiguard gateway``: serve the gateway with uvicorn.

`register` only touches argparse, so ``aiguard demo`` and friends work without the
``gateway`` extra; `run` reports a missing extra before importing it.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING, Any

from ..doors.gateway.config import (
    DEFAULT_DESTINATION,
    GatewayConfig,
    default_policy,
    hash_key,
    load_config,
)

if TYPE_CHECKING:
    from ..guard import Guard

__all__ = ["COMMANDS", "build_guard", "register", "run"]

COMMANDS = frozenset({"gateway"})


def register(sub: Any) -> None:
    """Add the ``gateway`` subcommand to the ``aiguard`` parser."""
    parser = sub.add_parser(
        "gateway",
        help="serve an OpenAI-compatible proxy that protects every call",
        description="Serve an OpenAI-compatible proxy in front of --upstream: every request "
        "is decided, minimized (values tokenized) and recorded; answers are restored. "
        "The upstream API key is read from the environment (AIGUARD_UPSTREAM_API_KEY by "
        "default), never from the command line.",
    )
    parser.add_argument(
        "--upstream", metavar="URL", help="base URL, e.g. https://api.openai.com/v1"
    )
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 8080)")
    parser.add_argument(
        "--policy", metavar="FILE", help="aiguard.toml (default: the safe default policy)"
    )
    parser.add_argument("--config", metavar="FILE", help="gateway.toml: API keys, limits, timeouts")
    parser.add_argument(
        "--hash-key",
        action="store_true",
        help="read a gateway API key on stdin and print the sha256 to put in gateway.toml",
    )


def _missing_extra() -> list[str]:
    return [
        name
        for name in ("starlette", "uvicorn", "prometheus_client")
        if importlib.util.find_spec(name) is None
    ]


def build_guard(config: GatewayConfig, cwd: Path | None = None) -> tuple[Guard, list[str]]:
    """The guard the gateway runs, and what to say about it at start-up.

    With a policy file: `Guard.from_toml`, with provenance in the working directory when
    the policy sets none. Without one: `default_policy` and a JSONL chain in the working
    directory, written by a background writer off the event loop.
    """
    from ..guard import Guard
    from ..policy.loader import load_policy
    from ..provenance.chain import ProvenanceLog
    from ..provenance.sinks import JsonlSink

    where = (cwd or Path.cwd()) / config.provenance
    notes: list[str] = []
    if config.policy is not None:
        policy = load_policy(config.policy)
        overrides: dict[str, Any] = {}
        if policy.provenance is None:
            overrides["log"] = ProvenanceLog(
                "aiguard-gateway", [JsonlSink(where, fsync="interval")], background=True
            )
            notes.append(f"the policy sets no [provenance]; events go to {where}")
        guard = Guard.from_toml(config.policy, **overrides)
        notes.insert(0, f"policy {config.policy}")
        return guard, notes
    if config.upstream is None:
        raise ValueError("--upstream URL is required without a policy naming the upstream")
    log = ProvenanceLog("aiguard-gateway", [JsonlSink(where, fsync="interval")], background=True)
    guard = Guard(default_policy(config.upstream), log=log)
    notes += [
        "no --policy given: running the safe default policy",
        f"  destination {DEFAULT_DESTINATION!r} = {config.upstream}, approved for purpose "
        "'inference' only",
        "  personal data and secrets (every kind above 'internal') are tokenized on the way "
        "out and restored in answers",
        "  personal data and secrets in an answer that were never sent are redacted "
        "(output_rule_level = 'sensitive')",
        f"  provenance: {where}",
        "  the vault is in memory: tokens restore within this process's lifetime",
    ]
    return guard, notes


def run(args: argparse.Namespace, out: IO[str] | None = None) -> int:
    """Run the server until SIGINT / SIGTERM; 2 on a configuration error."""
    err = out or sys.stderr
    if args.hash_key:
        key = sys.stdin.readline().strip()
        if not key:
            print("aiguard gateway: no key on stdin", file=err)
            return 2
        print(hash_key(key))
        return 0
    missing = _missing_extra()
    if missing:
        print(
            f"aiguard gateway: {', '.join(missing)} not installed; "
            "install the extra: pip install 'aiguard[gateway]'",
            file=err,
        )
        return 2
    from ..errors import AIGuardError

    overrides = {
        "upstream": args.upstream,
        "host": args.host,
        "port": args.port,
        "policy": str(Path(args.policy).resolve()) if args.policy else None,
    }
    try:
        if args.config:
            config = load_config(args.config, **overrides)
        else:
            config = GatewayConfig(**{k: v for k, v in overrides.items() if v is not None})
        guard, notes = build_guard(config)
    except (AIGuardError, ValueError, OSError) as exc:
        print(f"aiguard gateway: {getattr(exc, 'message', exc)}", file=err)
        return 2
    if not config.keys and not config.anonymous_allowed():
        print(
            f"aiguard gateway: no API keys configured and {config.host} is not a loopback "
            "address; add [[keys]] to gateway.toml (or allow_anonymous = true)",
            file=err,
        )
        guard.close()
        return 2
    from ..doors.gateway.app import create_app

    try:
        app = create_app(guard, config, owns_guard=True)
    except ValueError as exc:
        print(f"aiguard gateway: {exc}", file=err)
        guard.close()
        return 2
    gateway = app.state.gateway
    for note in notes:
        print(f"aiguard gateway: {note}", file=err)
    callers = (
        f"{len(config.keys)} API key(s)"
        if config.keys
        else "no API keys: any caller on this loopback address"
    )
    print(
        f"aiguard gateway: http://{config.host}:{config.port}/v1 -> {gateway.upstream} "
        f"(destination {gateway.destination!r}); callers: {callers}; upstream key from "
        f"${config.upstream_key_env}: {'set' if gateway.upstream_key else 'not set'}",
        file=err,
    )
    return _serve(app, config)


class _NoQueryFilter(logging.Filter):
    """Cuts the query string out of uvicorn's access-log lines: callers put data there
    (``?user=<e-mail>``), and a log line is no place for it. The path stays."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            path, mark, _query = args[2].partition("?")
            if mark:
                record.args = (*args[:2], path + "?<query omitted>", *args[3:])
        return True


def install_access_log_filter() -> None:
    """Install the filter on ``uvicorn.access`` (once; `_serve` does it)."""
    logger = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, _NoQueryFilter) for f in logger.filters):
        logger.addFilter(_NoQueryFilter())


def http_protocol(header_timeout: float) -> type:
    """uvicorn's HTTP protocol (httptools when installed, else h11) with a deadline on
    a request's headers: a client that opens a connection, or starts a request, and
    trickles its headers is cut off after ``header_timeout`` seconds. uvicorn itself
    only times out idle keep-alive connections."""
    base: type
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    except ImportError:  # httptools is optional
        from uvicorn.protocols.http.h11_impl import H11Protocol as base

    class HeaderDeadline(base):  # type: ignore[misc]
        _aiguard_timer: Any = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._aiguard_arm()

        def data_received(self, data: bytes) -> None:
            if self._aiguard_timer is None and self._aiguard_waiting():
                self._aiguard_arm()
            super().data_received(data)
            if self._aiguard_timer is not None and not self._aiguard_waiting():
                self._aiguard_timer.cancel()
                self._aiguard_timer = None

        def connection_lost(self, exc: Exception | None) -> None:
            if self._aiguard_timer is not None:
                self._aiguard_timer.cancel()
                self._aiguard_timer = None
            super().connection_lost(exc)

        def _aiguard_waiting(self) -> bool:
            # No request yet, or the last one is answered: the next one's headers
            # are what the connection waits for.
            cycle = getattr(self, "cycle", None)
            return cycle is None or bool(cycle.response_complete)

        def _aiguard_arm(self) -> None:
            self._aiguard_timer = self.loop.call_later(header_timeout, self._aiguard_expire)

        def _aiguard_expire(self) -> None:
            self._aiguard_timer = None
            transport = getattr(self, "transport", None)
            if self._aiguard_waiting() and transport is not None and not transport.is_closing():
                transport.close()

    return HeaderDeadline


def _serve(app: Any, config: GatewayConfig, *, access_log: bool = True) -> int:
    """Serve ``app`` with uvicorn (on uvloop and httptools when installed) until a signal."""
    import gc

    import uvicorn

    gateway = app.state.gateway

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            # Refuse new calls at once; uvicorn then waits for streams in flight
            # (timeout_graceful_shutdown) before the lifespan closes the sinks.
            gateway.draining = True
            super().handle_exit(sig, frame)

    server = Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            lifespan="on",
            timeout_graceful_shutdown=int(config.drain_seconds) or None,
            log_level="info",
            access_log=access_log,
            http=http_protocol(config.header_timeout),
        )
    )
    install_access_log_filter()  # after uvicorn.Config set its logging up
    # The process is the gateway's own: what start-up built (modules, the app, the
    # policy) lives as long as it does. Frozen, it is no longer walked by every full
    # collection, each of which stopped all streams for tens of milliseconds.
    gc.collect()
    gc.freeze()
    server.run()
    return 0
