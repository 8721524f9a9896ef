"""The gateway's asyncio network backend for httpcore2: plain and TLS upstreams, servers
that close idle connections, deadlines, and errors mapped to httpx2's types."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

httpx2 = pytest.importorskip("httpx2")
pytest.importorskip("httpcore2")
if sys.version_info < (3, 11):
    pytest.skip("the asyncio backend needs Python 3.11", allow_module_level=True)

from aiguard.doors.gateway._netstream import use_asyncio_backend  # noqa: E402

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def serving(handler: Handler, tls: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.close()


async def answer_ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Keep-alive HTTP/1.1: one short answer per request until the client leaves."""
    try:
        while True:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def client(**options: Any) -> Any:
    transport = httpx2.AsyncHTTPTransport(**options)
    assert use_asyncio_backend(transport)
    return httpx2.AsyncClient(transport=transport)


def test_plain_requests_reuse_the_connection() -> None:
    connections = 0

    async def counting(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await answer_ok(reader, writer)

    async def main() -> None:
        async with serving(counting) as port, client() as http:
            for _ in range(5):
                response = await http.get(f"http://127.0.0.1:{port}/")
                assert response.status_code == 200 and response.text == "ok"

    asyncio.run(main())
    assert connections == 1


def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    connections = 0

    async def one_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()  # keep-alive promised, then dropped

    async def main() -> None:
        async with serving(one_answer) as port, client() as http:
            for _ in range(3):
                assert (await http.get(f"http://127.0.0.1:{port}/")).text == "ok"
                await asyncio.sleep(0.05)  # the close reaches the idle connection

    asyncio.run(main())
    assert connections == 3


def test_a_silent_upstream_times_out_with_httpx2s_error() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)
        writer.close()

    async def main() -> None:
        async with serving(silent) as port, client() as http:
            with pytest.raises(httpx2.ReadTimeout):
                await http.get(f"http://127.0.0.1:{port}/", timeout=0.2)

    asyncio.run(main())


def _paced(gaps: list[float]) -> Handler:
    """A chunked answer whose pieces come after the given pauses."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            for gap in gaps:
                await writer.drain()
                await asyncio.sleep(gap)
                writer.write(b"2\r\nok\r\n")
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    return handler


async def _read_all(port: int, timeout: float) -> bytes:
    async with client() as http, http.stream(
        "GET", f"http://127.0.0.1:{port}/", timeout=timeout
    ) as response:
        return b"".join([piece async for piece in response.aiter_raw()])


def test_the_read_deadline_is_per_read_not_per_answer() -> None:
    """Pieces 0.1 s apart under a 0.3 s read timeout: the answer takes 0.8 s and does
    not time out (each read has its own deadline, kept by one timer per connection);
    a 0.6 s pause after quick pieces does."""

    async def main() -> None:
        async with serving(_paced([0.1] * 8)) as port:
            assert await _read_all(port, 0.3) == b"ok" * 8
        async with serving(_paced([0.02] * 5 + [0.6] + [0.02])) as port:
            with pytest.raises(httpx2.ReadTimeout):
                await _read_all(port, 0.3)

    asyncio.run(main())


def test_a_read_cancelled_from_outside_is_a_cancellation_not_a_timeout() -> None:
    async def main() -> None:
        async with serving(_paced([5.0])) as port:
            reading = asyncio.ensure_future(_read_all(port, 0.3))
            await asyncio.sleep(0.1)
            reading.cancel()
            with pytest.raises(asyncio.CancelledError):
                await reading
            # The deadline that was set for that read does not fire into anything later.
            await asyncio.sleep(0.4)
            assert asyncio.current_task() is not None and not asyncio.current_task().cancelling()

    asyncio.run(main())


def test_a_refused_connection_is_a_connect_error() -> None:
    async def main() -> None:
        async with serving(answer_ok) as port:
            pass  # closed again: nothing listens on the port now
        async with client() as http:
            with pytest.raises(httpx2.ConnectError):
                await http.get(f"http://127.0.0.1:{port}/")

    asyncio.run(main())


def _self_signed(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context trusting only that server's certificate)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    trusting = ssl.create_default_context(cafile=str(cert_file))
    return server, trusting


def test_https_upstreams_handshake_and_verify(tmp_path: Path) -> None:
    server_tls, trusting = _self_signed(tmp_path)

    async def main() -> None:
        async with serving(answer_ok, tls=server_tls) as port:
            async with client(verify=trusting) as http:
                response = await http.get(f"https://127.0.0.1:{port}/")
                assert response.status_code == 200 and response.text == "ok"
                assert response.extensions["network_stream"].get_extra_info("ssl_object")
            # A client that does not trust the certificate refuses the upstream.
            async with client() as untrusting:
                with pytest.raises(httpx2.ConnectError):
                    await untrusting.get(f"https://127.0.0.1:{port}/")

    asyncio.run(main())
