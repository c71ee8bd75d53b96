"""
Real HTTP nodes on loopback for the hunter's tests: a Twisted site with
pages good and bad, a server that never answers, a prometheus_client
exporter, and a separate process that can be killed mid-run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from twisted.internet.protocol import Factory, Protocol
from twisted.web.resource import Resource
from twisted.web.server import Site

ARTEMIS_PAGE = {"cpu": {"core1": "80%", "core2": "33%"},
                "mem": {"used": "1234M", "free": "6666M"}}


class Page(Resource):
    """
    A fixed answer.
    """

    isLeaf = True

    def __init__(self, body: bytes, contentType: bytes = b"text/plain",
                 code: int = 200) -> None:
        super().__init__()
        self.body = body
        self.contentType = contentType
        self.code = code
        self.hits = 0

    def render_GET(self, request: Any) -> bytes:
        self.hits += 1
        request.setResponseCode(self.code)
        request.setHeader(b"content-type", self.contentType)
        return self.body


def nodeSite(maxBody: int) -> tuple[Site, dict[str, Page]]:
    """
    A site with one page per behaviour.
    """
    pages = {
        "artemis": Page(json.dumps(ARTEMIS_PAGE).encode(), b"application/json"),
        "points": Page(json.dumps([
            {"metric_id": "meetr.point", "ts": "2003-12-18 12:18:18+0530",
             "value": 5}]).encode(), b"application/json"),
        "garbage": Page(b"this is { not a metrics page\n\x00\x01",
                        b"text/plain"),
        "error": Page(b"oops", b"text/plain", 500),
        "huge": Page(b"x 1\n" * (maxBody // 4 + 100), b"text/plain"),
    }
    root = Resource()
    for name, page in pages.items():
        root.putChild(name.encode(), page)
    return Site(root), pages


class Silent(Protocol):
    """
    Accepts a connection and never answers.
    """


def silentFactory() -> Factory:
    """
    A factory of connections that never answer.
    """
    return Factory.forProtocol(Silent)


def startExporter() -> tuple[Any, int]:
    """
    A prometheus_client exporter on loopback, in a thread of its own, with
    a counter, a gauge and a histogram.
    """
    from prometheus_client import (
        CollectorRegistry,
        Counter,
        Gauge,
        Histogram,
        start_http_server,
    )

    registry = CollectorRegistry()
    requests = Counter("demo_requests", "Requests.", ["method"],
                       registry=registry)
    requests.labels("get").inc(7)
    requests.labels("post").inc(3)
    Gauge("demo_temperature_celsius", "Temperature.",
          registry=registry).set(21.5)
    latency = Histogram("demo_latency_seconds", "Latency.", registry=registry,
                        buckets=(0.1, 1.0))
    latency.observe(0.05)
    latency.observe(0.5)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    return server, server.server_port


class NodeProcess:
    """
    A node in a process of its own (Python's http.server over a folder
    holding a JSON page), so that it can really go away.
    """

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "metrics").write_text(json.dumps({"alive": 1}))
        self.process = subprocess.Popen(
            [sys.executable, "-u", "-m", "http.server", "0", "--bind",
             "127.0.0.1", "--directory", str(folder)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL, text=True)
        deadline = time.monotonic() + 20
        line = ""
        while "port" not in line and time.monotonic() < deadline:
            line = self.process.stdout.readline()
        self.port = int(line.split("port ")[1].split()[0])

    def kill(self) -> None:
        """
        End the process, by its PID.
        """
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
