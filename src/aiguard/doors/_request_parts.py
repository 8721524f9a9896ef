"""What a request carries besides its body: URL path segments, the query string and
headers. The SDKs put caller data there (``extra_query``, ``extra_headers``,
``files.delete(file_id)``), so every door inspects them like body values.

Kept free of any HTTP library: the transports hand in the URL as text and the headers
as (name, value) pairs, and get back what to send.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from ..pipeline.call import Call

__all__ = ["UNINSPECTED_HEADERS", "inspected_header", "protect_headers", "protect_url"]

#: Request headers passed without inspection: the destination's credentials (a token
#: there would break authentication, and the destination is meant to get them), and
#: headers the HTTP library or the SDKs set from their own state, never from call data.
#: Every other header (``Idempotency-Key``, ``X-Request-Id``, whatever ``extra_headers``
#: adds) is inspected like a body value; docs/payloads.md lists both.
UNINSPECTED_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "api-key",
        "x-goog-api-key",
        "host",
        "content-type",
        "content-length",
        "content-encoding",
        "transfer-encoding",
        "accept",
        "accept-encoding",
        "connection",
        "user-agent",
        "openai-organization",
        "openai-project",
        "openai-beta",
        "anthropic-version",
        "anthropic-beta",
        "anthropic-dangerous-direct-browser-access",
        "traceparent",
        "tracestate",
    }
)
_UNINSPECTED_PREFIXES = ("x-stainless-",)


_INSPECTED: dict[str, bool] = {}


def inspected_header(name: str) -> bool:
    known = _INSPECTED.get(name)
    if known is None:
        lower = name.lower()
        known = lower not in UNINSPECTED_HEADERS and not lower.startswith(_UNINSPECTED_PREFIXES)
        if len(_INSPECTED) < 4096:  # header names repeat; values are never kept
            _INSPECTED[name] = known
    return known


def protect_headers(call: Call, headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The headers to send: inspected ones protected (tokenized, or refused per policy)."""
    out = list(headers)
    for i, (name, value) in enumerate(out):
        if value and inspected_header(name):
            out[i] = (name, call.protect_scalar(f"$headers.{name.lower()}", name, value))
    return out


def protect_url(call: Call, url: str) -> str:
    """The URL to send: each path segment and each query name and value protected.

    A query value is read with its name as context (``?email=...`` is an e-mail
    whole). The URL is rebuilt only when something changed, so an untouched URL goes
    out byte for byte as the caller wrote it.
    """
    parts = urlsplit(url)
    changed = False
    segments = parts.path.split("/")
    for i, segment in enumerate(segments):
        if not segment:
            continue
        plain = unquote(segment)
        protected = call.protect_name(f"$url.path[{i}]", plain)
        if protected != plain:
            segments[i] = quote(protected, safe="")
            changed = True
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        new_pairs = []
        for name, value in pairs:
            new_name = call.protect_name("$url.query", name)
            new_value = call.protect_scalar(f"$url.query.{new_name}", name, value)
            new_pairs.append((new_name, new_value))
        if new_pairs != pairs:
            query = urlencode(new_pairs, quote_via=quote)
            changed = True
    if not changed:
        return url
    return urlunsplit((parts.scheme, parts.netloc, "/".join(segments), query, parts.fragment))
