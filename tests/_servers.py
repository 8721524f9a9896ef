"""An ASGI app served for real on 127.0.0.1, for the tests that need a socket between
the client and the gateway or a loopback upstream."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def serve(app: Any, **options: Any) -> Iterator[tuple[str, Any]]:
    """Serve ``app`` with uvicorn in a thread on 127.0.0.1 and a free port.

    Yields the base URL and the `uvicorn.Server` (tests that check shutdown use it).
    """
    import uvicorn

    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", **options
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.should_exit = True
        thread.join(15)
