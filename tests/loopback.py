"""
Loopback nodes for tests that run a daemon: one serving a Prometheus
page, and a port that refuses connections.
"""

from __future__ import annotations

import socket
import threading
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from typing import Iterator

from tests.support import pageHandler


def closedPort() -> int:
    """
    A loopback port nothing listens on (right now).
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def pageNode(body: bytes) -> Iterator[str]:
    """
    A loopback node answering every GET with C{body} as a Prometheus text
    page, in a thread, as C{host:port}; stopped on leaving.
    """
    server = ThreadingHTTPServer(("127.0.0.1", 0), pageHandler(body))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
