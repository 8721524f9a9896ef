"""The data minimization gateway: an OpenAI-compatible proxy built on the same core.

``aiguard gateway --upstream URL`` serves it (``pip install "aiguard[gateway]"``);
`create_app` returns the ASGI app for mounting in another server. See docs/gateway.md.

Importing this package does not import starlette, uvicorn or prometheus-client; only
`create_app` (and ``aiguard.doors.gateway.app``) does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import (
    DEFAULT_DESTINATION,
    ApiKey,
    GatewayConfig,
    Principal,
    default_policy,
    hash_key,
    load_config,
)

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from ...pipeline.host import GuardHost

__all__ = [
    "DEFAULT_DESTINATION",
    "ApiKey",
    "GatewayConfig",
    "Principal",
    "create_app",
    "default_policy",
    "hash_key",
    "load_config",
]


def create_app(
    guard: GuardHost,
    config: GatewayConfig | None = None,
    *,
    upstream: str | None = None,
    transport: Any = None,
    owns_guard: bool = False,
) -> Starlette:
    """The gateway as an ASGI (Starlette) app; see `aiguard.doors.gateway.app.create_app`."""
    from .app import create_app as _create_app

    return _create_app(guard, config, upstream=upstream, transport=transport, owns_guard=owns_guard)
