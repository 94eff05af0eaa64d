"""Serve the app from a thread of this process (uvicorn on 127.0.0.1, a free port): for tests and benchmarks that
want a real HTTP server over a ``Database`` they already hold. ``tessera serve`` is the way to run the service."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.applications import Starlette


@contextmanager
def live_server(app: Starlette, start_seconds: float = 30.0) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 (a free port) in a daemon thread; yields the base URL, stops on exit."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", access_log=False, ws="none", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="tessera-live-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_seconds
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
