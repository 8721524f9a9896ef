"""Which destination a URL belongs to, and which attempt of a logical call a request is.

Both are pipeline state the guard owns and every door consults: a transport routes the
URL it is given, the gateway routes the upstream it forwards to.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

__all__ = ["Attempts", "Router"]


#: Well-known hosts and their ``gen_ai.provider.name`` (OpenTelemetry GenAI conventions).
_PROVIDERS = (
    ("api.openai.com", "openai"),
    ("openai.azure.com", "azure.ai.openai"),
    ("api.anthropic.com", "anthropic"),
    ("generativelanguage.googleapis.com", "gcp.gemini"),
    ("api.mistral.ai", "mistral_ai"),
    ("api.groq.com", "groq"),
    ("api.deepseek.com", "deepseek"),
    ("api.x.ai", "x_ai"),
)


def _provider(host: str, destination: str) -> str:
    for suffix, name in _PROVIDERS:
        if host == suffix or host.endswith("." + suffix):
            return name
    return destination


class Router:
    """Maps a request URL to the policy destination whose base_url is its longest prefix."""

    def __init__(self, destinations: Mapping[str, Any]) -> None:
        routes = []
        for name, spec in destinations.items():
            parts = urlsplit(spec.base_url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
            routes.append(
                (parts.scheme, (parts.hostname or "").lower(), port, parts.path.rstrip("/"), name)
            )
        routes.sort(key=lambda r: len(r[3]), reverse=True)
        self._routes = routes
        # Every event names its provider: looked up once per destination, not per call.
        self._providers = {name: _provider(self.host_of(name), name) for name in destinations}

    def provider_of(self, destination: str) -> str:
        """OpenTelemetry's ``gen_ai.provider.name`` for a destination, from its host (the
        destination's own name for a host it does not know)."""
        return self._providers.get(destination, destination)

    def host_of(self, destination: str) -> str:
        for _scheme, host, _port, _path, name in self._routes:
            if name == destination:
                return host
        return ""

    def route(self, url: str) -> str | None:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port = parts.port or (443 if parts.scheme == "https" else 80)
        path = parts.path
        for scheme, r_host, r_port, r_path, name in self._routes:
            if (
                scheme == parts.scheme
                and r_host == host
                and r_port == port
                and (path == r_path or path.startswith(r_path + "/") or not r_path)
            ):
                return name
        return None


class Attempts:
    """Links the retries of one logical call to one request id and numbers its attempts.

    The SDK retries above the transport with ``x-stainless-retry-count`` set; an attempt
    whose count is above zero and whose body is the same as a recent one shares its id.
    aiguard's own retries (`RetryPolicy`) run below, and `bump` keeps the numbering
    going so that an SDK retry after them does not reuse an attempt number.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self._lock = threading.Lock()
        self._recent: OrderedDict[str, list[Any]] = OrderedDict()
        self._capacity = capacity

    def resolve(self, key: str, retry_count: int, new_id: str) -> tuple[str, int]:
        with self._lock:
            known = self._recent.get(key)
            if retry_count > 0 and known is not None:
                self._recent.move_to_end(key)
                known[1] += 1
                return str(known[0]), int(known[1])
            self._recent[key] = [new_id, retry_count + 1]
            if len(self._recent) > self._capacity:
                self._recent.popitem(last=False)
            return new_id, retry_count + 1

    def bump(self, key: str, attempt: int) -> None:
        with self._lock:
            known = self._recent.get(key)
            if known is not None:
                known[1] = max(int(known[1]), attempt)
