"""
A real Prometheus server for tests (built from the Go module proxy, see
L{tests.peers}), with its remote write receiver on, and the few HTTP
helpers to write to it and query it.

Prometheus's TSDB takes remote-written samples only in time order per
series and only near its newest data: the out-of-order window is 0 by
default, so a sample older than the newest stored one of its series is
refused ("out of order sample"), and one more than an hour older than
the newest sample the head holds, in any series, is refused too ("out of
bounds"; an empty TSDB takes anything first).  Callers should write
samples from the last hour, oldest first, and never go back in time
within a series across requests (a sample at a timestamp already
stored is refused too, unless it has the same value).  One refused sample makes the request
answer 400 with the reason as text, and none of its samples is kept.
Within one request, a sample older than an earlier one of the same
series is dropped silently (the request still answers 204), as are
series without a C{__name__}.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import cramjam

from meetrd.proto import remote_pb2
from tests.peers import peer

Series = tuple[dict[str, str], list[tuple[int, float]]]

READY_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


def freePort() -> int:
    """
    A loopback TCP port nobody listens on right now (the kernel's pick;
    another process could take it before the caller binds it).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrometheusServer:
    """
    A real Prometheus process on a loopback port, with no scrape
    configuration and its remote write receiver on, for the length of a
    C{with} block.

    @ivar url: its base URL, C{http://127.0.0.1:PORT}.
    """

    def __init__(self, folder: Path) -> None:
        """
        @param folder: where its configuration, TSDB and log go.
        """
        self.folder = folder
        self.config = folder / "prometheus.yml"
        self.dataPath = folder / "data"
        self.logPath = folder / "prometheus.log"
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def url(self) -> str:
        """
        The server's base URL.
        """
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "PrometheusServer":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> "PrometheusServer":
        """
        Write the configuration, start the process and return once
        C{/-/ready} answers 200.
        """
        binary = peer("prometheus")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.config.write_text("global:\n  scrape_interval: 15s\n")
        for attempt in range(3):
            self.port = freePort()
            self._log = open(self.logPath, "ab")
            offset = self._log.tell()
            self.process = subprocess.Popen(
                [str(binary), f"--config.file={self.config}",
                 f"--storage.tsdb.path={self.dataPath}",
                 f"--web.listen-address=127.0.0.1:{self.port}",
                 "--web.enable-remote-write-receiver",
                 "--query.lookback-delta=5m"],
                cwd=self.folder, stdout=self._log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL)
            try:
                self._waitReady()
                return self
            except BaseException:
                self.stop()
                # Another process took the port between freePort and
                # the bind: try another one.
                taken = (b"address already in use"
                         in self.logPath.read_bytes()[offset:])
                if not taken or attempt == 2:
                    raise
        return self

    def _waitReady(self) -> None:
        """
        Poll C{/-/ready} until it answers 200; raise with the end of the
        log if the process exits or C{READY_TIMEOUT} passes.
        """
        assert self.process is not None
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited "
                                   f"{self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready",
                                            timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"prometheus not ready in {READY_TIMEOUT}s:\n"
                           f"{self.log()}")

    def stop(self) -> int | None:
        """
        SIGTERM to the process, SIGKILL if it has not exited after
        C{STOP_TIMEOUT}; its exit code.
        """
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        return process.returncode

    def log(self, tail: int = 4000) -> str:
        """
        The last C{tail} characters the process logged.
        """
        try:
            return self.logPath.read_text(errors="replace")[-tail:]
        except FileNotFoundError:
            return ""


def writeRequestBody(series: list[Series]) -> bytes:
    """
    A remote write 1.0 request body: a C{WriteRequest} of the given
    series, protobuf-serialised and snappy-compressed (raw block format).

    @param series: C{(labels, samples)} pairs, C{labels} a name to value
        mapping (C{__name__} included) and C{samples} C{(timestampMs,
        value)} pairs.  Labels go in sorted by name, as the protocol
        requires.
    """
    request = remote_pb2.WriteRequest()
    for labels, samples in series:
        timeseries = request.timeseries.add()
        for name, value in sorted(labels.items()):
            timeseries.labels.add(name=name, value=value)
        for timestampMs, value in samples:
            timeseries.samples.add(timestamp=int(timestampMs),
                                   value=float(value))
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


def _request(method: str, url: str, body: bytes | None,
             headers: dict[str, str]) -> tuple[int, bytes]:
    """
    One HTTP request; an error status is an answer, not an exception.
    """
    request = urllib.request.Request(url, data=body, method=method,
                                     headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.read()


def pushRemoteWrite(url: str, body: bytes,
                    headers: dict[str, str] | None = None
                    ) -> tuple[int, str]:
    """
    POST a remote write 1.0 body to C{url + "/api/v1/write"}.

    @param body: as L{writeRequestBody} makes it.
    @param headers: more headers (an C{Authorization}, say); they win
        over the protocol's.
    @return: the status and the answer's body as text (Prometheus says
        there why it refused samples).
    """
    status, answer = _request("POST", url + "/api/v1/write", body, {
        "Content-Encoding": "snappy",
        "Content-Type": "application/x-protobuf",
        "X-Prometheus-Remote-Write-Version": "0.1.0",
        **(headers or {})})
    return status, answer.decode("utf-8", "replace")


def promQuery(url: str, path: str,
              params: dict[str, Any] | list[tuple[str, Any]],
              method: str = "GET", headers: dict[str, str] | None = None
              ) -> tuple[int, Any]:
    """
    A Prometheus HTTP API call: C{params} in the query string for a
    GET, as a form body for a POST.

    @param path: under C{url}, C{"/api/v1/query_range"} for example.
    @return: the status and the decoded JSON answer (C{None} if the body
        is not JSON).
    """
    encoded = urllib.parse.urlencode(params, doseq=True)
    headers = dict(headers or {})
    if method.upper() == "GET":
        target = url + path + ("?" + encoded if encoded else "")
        body = None
    else:
        target = url + path
        body = encoded.encode("ascii")
        headers.setdefault("Content-Type",
                           "application/x-www-form-urlencoded")
    status, answer = _request(method.upper(), target, body, headers)
    try:
        return status, json.loads(answer)
    except ValueError:
        return status, None
