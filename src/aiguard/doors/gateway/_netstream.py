"""An asyncio network backend for httpcore2, the gateway's upstream connections.

httpcore2's default backend goes through anyio: every read and write opens a cancel
scope and asks sniffio which event loop runs, and checking whether an idle pooled
connection was closed by the server costs a ``poll`` system call plus anyio's
attribute lookup. At a hundred streams that was a quarter of the gateway's CPU. This
backend uses asyncio streams directly: ``asyncio.timeout`` for deadlines, the stream's
own end-of-file state for idle checks.

It needs Python 3.11 (``asyncio.timeout``, ``StreamWriter.start_tls``); on older
Pythons, or without httpcore2, the gateway keeps the library's default backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import sys
import weakref
from collections.abc import Iterable
from typing import Any

__all__ = ["asyncio_backend", "use_asyncio_backend"]

#: httpcore's socket option type: (level, option, value).
SocketOption = tuple[int, int, int | bytes] | tuple[int, int, None, int]

#: ``asyncio.timeout`` (Python 3.11 and later; the backend is not used before), else None.
asyncio_timeout: Any = getattr(asyncio, "timeout", None)


def _upgrade(writer: asyncio.StreamWriter) -> Any:
    """``writer.start_tls`` (Python 3.11 and later)."""
    return writer.start_tls  # type: ignore[attr-defined,unused-ignore]


def asyncio_backend() -> Any | None:
    """A new backend instance, or None where it cannot run (Python < 3.11, no httpcore2)."""
    if sys.version_info < (3, 11):
        return None
    try:
        import httpcore2
    except ImportError:
        return None
    return _build(httpcore2)()


def use_asyncio_backend(transport: Any) -> bool:
    """Put the backend under an ``httpx2.AsyncHTTPTransport``'s pool; False if it cannot."""
    pool = getattr(transport, "_pool", None)
    backend = asyncio_backend()
    if backend is None or pool is None or not hasattr(pool, "_network_backend"):
        return False
    pool._network_backend = backend
    return True


def _check(ref: weakref.ref[Any], loop: asyncio.AbstractEventLoop) -> None:
    """A connection's read deadline timer fired (see ``AsyncioStream``)."""
    stream = ref()
    if stream is not None:
        stream.check_deadline(loop)


def _build(httpcore2: Any) -> type:
    class AsyncioStream(httpcore2.AsyncNetworkStream):  # type: ignore[misc]
        """One upstream connection. A read's deadline is kept lazily: a streamed answer
        reads once per event, and a timer set and cancelled per read (what
        ``asyncio.timeout`` does) cost more than the read. Each read notes its deadline;
        one timer per connection fires at the earliest deadline it knows of, cancels
        the read still waiting past its own deadline, and otherwise moves itself to the
        pending read's deadline (or lapses when no read waits)."""

        __slots__ = (
            "_expired",
            "_read_by",
            "_reader",
            "_reading",
            "_watch",
            "_writer",
        )

        def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._reader = reader
            self._writer = writer
            self._reading: asyncio.Task[Any] | None = None
            self._read_by = 0.0
            self._watch: asyncio.TimerHandle | None = None
            self._expired = False

        async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            try:
                if timeout is None:
                    return await self._reader.read(max_bytes)
                return await self._read_within(max_bytes, timeout)
            except TimeoutError:
                raise httpcore2.ReadTimeout("timed out reading from the upstream") from None
            except OSError as exc:
                raise httpcore2.ReadError(str(exc) or type(exc).__name__) from exc

        async def _read_within(self, max_bytes: int, timeout: float) -> bytes:
            loop = asyncio.get_running_loop()
            task = asyncio.current_task()
            assert task is not None
            self._read_by = loop.time() + timeout
            self._reading = task
            if self._watch is None:
                # By weak reference: a connection dropped without being closed is not
                # kept open by its timer.
                self._watch = loop.call_at(self._read_by, _check, weakref.ref(self), loop)
            try:
                return await self._reader.read(max_bytes)
            except asyncio.CancelledError:
                if self._expired:
                    self._expired = False
                    # Python 3.11+ only, as this backend (the deadline's cancel undone).
                    if task.uncancel() == 0:  # type: ignore[attr-defined,unused-ignore]
                        raise TimeoutError from None
                raise
            finally:
                self._reading = None

        def check_deadline(self, loop: asyncio.AbstractEventLoop) -> None:
            self._watch = None
            task = self._reading
            if task is None:
                return  # no read waits: the next one sets the timer again
            if loop.time() >= self._read_by:
                self._expired = True
                task.cancel()
            else:
                self._watch = loop.call_at(self._read_by, _check, weakref.ref(self), loop)

        async def write(self, buffer: bytes, timeout: float | None = None) -> None:
            if not buffer:
                return
            try:
                self._writer.write(buffer)
                if timeout is None:
                    await self._writer.drain()
                    return
                async with asyncio_timeout(timeout):
                    await self._writer.drain()
            except TimeoutError:
                raise httpcore2.WriteTimeout("timed out writing to the upstream") from None
            except OSError as exc:
                raise httpcore2.WriteError(str(exc) or type(exc).__name__) from exc

        async def aclose(self) -> None:
            if self._watch is not None:
                self._watch.cancel()
                self._watch = None
            self._writer.close()
            # Closing a connection the peer already dropped is not an error.
            with contextlib.suppress(OSError, ssl.SSLError):
                await self._writer.wait_closed()

        async def start_tls(
            self,
            ssl_context: ssl.SSLContext,
            server_hostname: str | None = None,
            timeout: float | None = None,
        ) -> Any:
            try:
                await _upgrade(self._writer)(
                    ssl_context, server_hostname=server_hostname, ssl_handshake_timeout=timeout
                )
            except TimeoutError:
                await self.aclose()
                raise httpcore2.ConnectTimeout("timed out in the TLS handshake") from None
            except (OSError, ssl.SSLError) as exc:
                await self.aclose()
                raise httpcore2.ConnectError(str(exc) or type(exc).__name__) from exc
            return self

        def get_extra_info(self, info: str) -> Any:
            if info == "is_readable":
                # An idle pooled connection is "readable" when the server closed it or sent
                # something unasked; the transport has already read either into the stream.
                reader = self._reader
                return (
                    reader.at_eof()
                    or self._writer.is_closing()
                    or bool(getattr(reader, "_buffer", b""))
                )
            if info == "ssl_object":
                return self._writer.get_extra_info("ssl_object")
            if info == "client_addr":
                return self._writer.get_extra_info("sockname")
            if info == "server_addr":
                return self._writer.get_extra_info("peername")
            if info == "socket":
                return self._writer.get_extra_info("socket")
            return None

    class AsyncioBackend(httpcore2.AsyncNetworkBackend):  # type: ignore[misc]
        def __init__(self) -> None:
            self._fallback = httpcore2.AnyIOBackend()

        async def connect_tcp(
            self,
            host: str,
            port: int,
            timeout: float | None = None,
            local_address: str | None = None,
            socket_options: Iterable[SocketOption] | None = None,
        ) -> Any:
            local = (local_address, 0) if local_address else None
            try:
                async with asyncio_timeout(timeout):
                    reader, writer = await asyncio.open_connection(
                        host, port, local_addr=local, limit=1 << 20
                    )
            except TimeoutError:
                raise httpcore2.ConnectTimeout(f"timed out connecting to {host}:{port}") from None
            except OSError as exc:
                raise httpcore2.ConnectError(str(exc) or type(exc).__name__) from exc
            sock = writer.get_extra_info("socket")
            for option in socket_options or ():
                sock.setsockopt(*option)
            return AsyncioStream(reader, writer)

        async def connect_unix_socket(
            self,
            path: str,
            timeout: float | None = None,
            socket_options: Iterable[SocketOption] | None = None,
        ) -> Any:
            return await self._fallback.connect_unix_socket(path, timeout, socket_options)

        async def sleep(self, seconds: float) -> None:
            await asyncio.sleep(seconds)

    return AsyncioBackend
