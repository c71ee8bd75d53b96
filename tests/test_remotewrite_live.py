"""
Remote write from a real sender: vmagent (built from the Go module proxy,
see L{tests.peers}) scrapes an exporter on loopback every second and
writes to a real meetrd daemon and, beside it, to a recorder here that
keeps every request it is sent.  Every sample the recorder got is then
looked up in meetrd through its JSON API and through the Prometheus
C{query_range}, value for value, including across 20 s during which
meetrd was down.
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from meetrd.remotewrite import decodeWriteRequest, pointsOf
from meetrd.settings import Limits
from meetrd.timestamps import parseTimestamp
from tests.peers import peer
from tests.promserver import promQuery
from tests.support import (
    Daemon,
    daemonSettings,
    pageHandler,
    uniqueKeyspace,
    waitFor,
)

pytestmark = pytest.mark.cassandra

Series = tuple[str, tuple[tuple[str, str], ...]]


class Exporter(ThreadingHTTPServer):
    """
    A Prometheus exporter on loopback whose counter and gauge move at
    every scrape.
    """

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), pageHandler(self.page))
        self.scrapes = 0

    def page(self) -> bytes:
        """
        The next scrape's page: counters that grow and a gauge that moves
        with every scrape.
        """
        self.scrapes += 1
        n = self.scrapes
        return (
            "# TYPE rwtest_requests_total counter\n"
            f'rwtest_requests_total{{path="/a"}} {n * 3}\n'
            f'rwtest_requests_total{{path="/b"}} {n * 5 + 0.5}\n'
            "# TYPE rwtest_temperature gauge\n"
            f'rwtest_temperature{{room="r1"}} {20 + (n % 7) / 4}\n').encode()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


class Recorder(ThreadingHTTPServer):
    """
    A remote write receiver that keeps every sample it is sent, as the
    sender sent it.
    """

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), RecorderPage)
        self.lock = threading.Lock()
        self.samples: dict[Series, dict[int, float]] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/api/v1/write"

    def sampleCount(self) -> int:
        with self.lock:
            return sum(map(len, self.samples.values()))

    def snapshot(self) -> dict[Series, dict[int, float]]:
        with self.lock:
            return {key: dict(values) for key, values in self.samples.items()}


class RecorderPage(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        server: Any = self.server
        body = self.rfile.read(int(self.headers["Content-Length"]))
        received = pointsOf(decodeWriteRequest(body, 1 << 26),
                            Limits(max_batch_points=10**7, max_future="30d"),
                            int(time.time() * 1000))
        with server.lock:
            for point in received.points:
                server.samples.setdefault(
                    (point.metric, point.tags), {})[point.ts_ms] = point.value
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def serve(server: ThreadingHTTPServer) -> ThreadingHTTPServer:
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class VMAgent:
    """
    A vmagent process scraping one target every second and writing to
    some remote write URLs.
    """

    def __init__(self, workdir: Path, target: str, urls: list[str]) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "scrape.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n"
            "scrape_configs:\n  - job_name: rwtest\n"
            f"    static_configs:\n      - targets: ['{target}']\n")
        self.logPath = workdir / "vmagent.log"
        self._log = open(self.logPath, "ab")
        self.process = subprocess.Popen(
            [str(peer("vmagent")), f"-promscrape.config={config}",
             *(f"-remoteWrite.url={url}" for url in urls),
             f"-remoteWrite.tmpDataPath={workdir / 'queue'}",
             "-remoteWrite.forcePromProto", "-remoteWrite.flushInterval=500ms",
             "-httpListenAddr=127.0.0.1:0"],
            cwd=workdir, stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def log(self) -> str:
        return self.logPath.read_text(errors="replace")[-4000:]


def stored(daemon: Daemon, metric: str, tags: tuple[tuple[str, str], ...],
           fromMs: int, toMs: int) -> dict[int, float]:
    """
    The samples of one series meetrd holds in C{[fromMs, toMs]}, read
    through its JSON API one millisecond an interval.
    """
    reply = daemon.get("/1.0/metrics", metric=metric, aggregation="max",
                       interval="1ms", **{"from": str(fromMs), "to": str(toMs)},
                       tag=[f"{key}:{value}" for key, value in tags])
    assert reply.status == 200, reply.body
    return {parseTimestamp(start): value
            for start, value in reply.json().get("points", [])}


def missing(daemon: Daemon, sent: dict[Series, dict[int, float]],
            untilMs: int) -> list[str]:
    """
    The samples sent up to C{untilMs} that meetrd does not hold, or holds
    with another value.
    """
    wrong = []
    for (metric, tags), samples in sorted(sent.items()):
        wanted = {ts: v for ts, v in samples.items() if ts <= untilMs}
        if not wanted:
            continue
        found = stored(daemon, metric, tags, min(wanted), max(wanted))
        for ts, value in sorted(wanted.items()):
            if found.get(ts) != value:
                wrong.append(f"{metric}{dict(tags)} @{ts}: sent {value}, "
                             f"stored {found.get(ts)}")
    return wrong


def throughQueryRange(daemon: Daemon, metric: str,
                      tags: tuple[tuple[str, str], ...], fromMs: int,
                      toMs: int) -> dict[int, float]:
    """
    The samples of one series meetrd holds in C{[fromMs, toMs]}, read
    through the Prometheus query API: C{last_over_time(series[1ms])} at
    a step of 1 ms answers a value exactly at each sample's millisecond
    (in chunks of 10,000 steps, under Prometheus's 11,000).
    """
    matchers = ",".join(
        [f'__name__="{metric}"'] + [
            f'{key}="' + value.replace("\\", "\\\\").replace('"', '\\"')
            + '"' for key, value in tags])
    found: dict[int, float] = {}
    for start in range(fromMs, toMs + 1, 10_000):
        end = min(toMs, start + 9_999)
        status, body = promQuery(daemon.base, "/api/v1/query_range", {
            "query": f"last_over_time({{{matchers}}}[1ms])",
            "start": start / 1000, "end": end / 1000, "step": "0.001"})
        assert status == 200, body
        for series in body["data"]["result"]:
            assert series["metric"] == {"__name__": metric, **dict(tags)}
            found.update((round(t * 1000), float(v))
                         for t, v in series["values"])
    return found


def missingThroughQueryRange(daemon: Daemon,
                             sent: dict[Series, dict[int, float]],
                             untilMs: int) -> list[str]:
    """
    The samples sent up to C{untilMs} that C{query_range} does not
    answer, or answers with another value (or at another instant).
    """
    wrong = []
    for (metric, tags), samples in sorted(sent.items()):
        wanted = {ts: v for ts, v in samples.items() if ts <= untilMs}
        if not wanted:
            continue
        found = throughQueryRange(daemon, metric, tags, min(wanted),
                                  max(wanted))
        if found != wanted:
            wrong.append(f"{metric}{dict(tags)}: sent {wanted}, query_range "
                         f"{found}")
    return wrong


def assertAllStored(daemon: Daemon, sent: dict[Series, dict[int, float]],
                    untilMs: int, timeout: float, agent: "VMAgent") -> None:
    """
    Wait until meetrd holds every sample sent up to C{untilMs}; fail
    with the first missing ones and the sender's log after C{timeout}.
    """
    deadline = time.monotonic() + timeout
    while True:
        problems = missing(daemon, sent, untilMs)
        if not problems or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert problems == [], (len(problems), problems[:10], agent.log())


@pytest.fixture()
def harness(tmp_path, node):
    """
    An exporter, a recorder and a meetrd daemon on a fresh keyspace;
    the test starts vmagent.
    """
    exporter, recorder = serve(Exporter()), serve(Recorder())
    keyspace = uniqueKeyspace("rw")
    daemon = Daemon(tmp_path / "meetrd", daemonSettings(keyspace, node))
    stopping: list[Any] = [daemon]
    try:
        daemon.start().waitReady()
        yield exporter, recorder, daemon, tmp_path, stopping
    finally:
        for process in reversed(stopping):
            process.stop()
        exporter.shutdown()
        recorder.shutdown()


def test_everySampleVMAgentSendsIsStored(harness):
    """
    vmagent scrapes the exporter for a few seconds: every sample it sent
    (the exporter's series and vmagent's own C{up} and C{scrape_*}, with
    the C{job} and C{instance} labels it adds) is in meetrd, at its
    millisecond, with its value.
    """
    exporter, recorder, daemon, workdir, stopping = harness
    agent = VMAgent(workdir / "vmagent", exporter.target,
                    [daemon.base + "/api/v1/write", recorder.url])
    stopping.append(agent)
    waitFor(lambda: exporter.scrapes >= 6, 60, "six scrapes", interval=0.5)
    waitFor(lambda: recorder.sampleCount() >= 30, 30,
            "samples at the recorder")
    sent = recorder.snapshot()
    metrics = {metric for metric, _ in sent}
    assert {"rwtest_requests_total", "rwtest_temperature", "up"} <= metrics
    assert all(dict(tags).get("job") == "rwtest" for _, tags in sent)
    untilMs = max(ts for samples in sent.values() for ts in samples)
    assertAllStored(daemon, sent, untilMs, 30, agent)
    assert missingThroughQueryRange(daemon, sent, untilMs) == []
    written = re.search(rb"^meetr_points_written_total (\S+)$",
                        daemon.get("/metrics").body, re.M)
    assert float(written.group(1)) >= sum(map(len, sent.values()))


def test_senderRetriesFillAnOutage(harness):
    """
    meetrd stopped for 20 s while vmagent writes, then started again on
    the same port: vmagent's retries bring every sample of the outage, and
    meetrd holds every sample the recorder got up to a few seconds after
    it came back.
    """
    exporter, recorder, daemon, workdir, stopping = harness
    agent = VMAgent(workdir / "vmagent", exporter.target,
                    [daemon.base + "/api/v1/write", recorder.url])
    stopping.append(agent)
    waitFor(lambda: exporter.scrapes >= 4, 60, "four scrapes")
    port = daemon.port
    downAt = int(time.time() * 1000)
    daemon.stop()
    time.sleep(20)
    again = Daemon(workdir / "meetrd-again",
                   configText=daemon.config.read_text().replace(
                       "tcp:0:interface=127.0.0.1",
                       f"tcp:{port}:interface=127.0.0.1"))
    stopping.insert(1, again)
    again.start().waitReady()
    upAt = int(time.time() * 1000)
    waitFor(lambda: any(ts > upAt for samples in recorder.snapshot().values()
                        for ts in samples), 30,
            "a sample scraped after the restart", interval=0.5)
    sent = recorder.snapshot()
    during = sum(1 for samples in sent.values() for ts in samples
                 if downAt < ts < upAt)
    assert during >= 40, during
    assertAllStored(again, sent, upAt, 150, agent)
    assert missingThroughQueryRange(again, sent, upAt) == []
