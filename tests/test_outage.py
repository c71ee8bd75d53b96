"""
Cassandra outages, for real: a second local node of the test run's own is
absent when meetrd starts, appears, is stopped during steady ingest and
hunting, and comes back.  meetrd answers 503 within its timeout while the
node is away, records failed scrapes, never crashes, and recovers by
itself.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from tests.support import REPO, Daemon, daemonSettings, nodeFarm, waitFor
from tests.test_operations import Streamer, storedStamps

pytestmark = [pytest.mark.cassandra, pytest.mark.daemon]

REQUEST_TIMEOUT = 2.0


def freePort():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SpareNode:
    """
    A second Cassandra node, on ports of its own, sharing the jars of the
    project's node; started and stopped with C{tools.devnode}.
    """

    def __init__(self, home):
        home.mkdir(parents=True, exist_ok=True)
        mainLib = REPO / ".cassandra" / "lib"
        if mainLib.is_dir() and not (home / "lib").exists():
            (home / "lib").symlink_to(mainLib)
        self.port = freePort()
        self.env = dict(os.environ, MEETR_NODE_HOME=str(home),
                        MEETR_NODE_PORT=str(self.port),
                        MEETR_NODE_STORAGE_PORT=str(freePort()),
                        MEETR_NODE_HEAP="384m",
                        PYTHONPATH=str(REPO))

    def run(self, command):
        result = subprocess.run(
            [sys.executable, "-m", "tools.devnode", command], env=self.env,
            capture_output=True, text=True, timeout=300,
            stdin=subprocess.DEVNULL)
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    def start(self):
        self.run("start")

    def stop(self):
        self.run("stop")


@pytest.fixture
def spare(tmp_path):
    """
    The second node, stopped at the end whatever happens.
    """
    node = SpareNode(tmp_path / "spare")
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def farm():
    """
    One hunted node in a process of its own, ended by its PID.
    """
    with nodeFarm(1, 3, "json") as nodes:
        yield nodes[0]


def test_outageAndRecovery(tmp_path, spare, farm):
    """
    Started without Cassandra, meetrd says why on /ready and serves once
    the node appears; when the node stops during ingest and hunting, writes
    answer 503 within the timeout, scrapes fail, the process lives on; when
    it is back, meetrd recovers within 10 seconds without a restart, and
    every acknowledged point is stored.
    """
    settings = daemonSettings(
        "meetr_outage", ("127.0.0.1", spare.port),
        cassandra={"request_timeout": f"{REQUEST_TIMEOUT}s",
                   "connect_timeout": "1s"},
        hunter={"targets": [{"job": "outage", "nodes": [farm],
                             "interval": "500ms"}]})
    daemon = Daemon(tmp_path / "daemon", settings).start()
    try:
        ready = waitFor(lambda: (lambda r: r if "cannot reach" in
                                 r.json()["error"] else None)(
            daemon.get("/ready")), 30, "a failed connection")
        assert ready.status == 503
        assert f"cannot reach Cassandra at 127.0.0.1:{spare.port}" in \
            ready.json()["error"]

        spare.start()
        nodeUp = time.monotonic()
        waitFor(lambda: daemon.get("/ready").status == 200, 30, "readiness")
        firstServed = time.monotonic() - nodeUp

        streamer = Streamer(daemon, "outage", batchSize=20)
        streamer.maxFailures = 10**9
        latencies = []
        streamer.onAnswer = lambda status, seconds: latencies.append(
            (time.monotonic(), status, seconds))
        streamer.start()
        waitFor(lambda: len(streamer.acked) >= 200, 30, "writes")
        waitFor(lambda: daemon.get("/targets").json()["targets"][0]["health"]
                == "up", 30, "a healthy scrape")

        spare.stop()
        stopped = time.monotonic()
        waitFor(lambda: any(s == 503 for t, s, _ in latencies if t > stopped),
                30, "503 during the outage")

        def duringOutage():
            return [(s, secs) for t, s, secs in latencies
                    if t > stopped + 0.5]

        waitFor(lambda: len(duringOutage()) >= 5, 30,
                "five answers during the outage")
        during = duringOutage()
        assert during and all(s == 503 for s, _ in during), during[:5]
        assert max(secs for _, secs in during) < REQUEST_TIMEOUT + 2.5
        target = waitFor(lambda: next(
            (t for t in daemon.get("/targets").json()["targets"]
             if t["health"] == "down"), None), 30, "a failed scrape")
        assert "store" in target["last_error"]
        waitFor(lambda: daemon.get("/ready").status == 503, 30,
                "/ready saying 503 during the outage")
        assert daemon.get("/health").status == 200
        assert daemon.process.poll() is None

        spare.start()
        back = time.monotonic()
        recovered = waitFor(
            lambda: next((t for t, s, _ in latencies
                          if t > back and s == 200), None), 30,
            "a write after recovery")
        assert recovered - back <= 10, recovered - back
        waitFor(lambda: daemon.get("/targets").json()["targets"][0]["health"]
                == "up", 10, "a healthy scrape after recovery")
        streamer.stopRequested = True
        streamer.join(30)
        assert daemon.stop() == 0
    finally:
        daemon.stop()
    assert "Traceback" not in daemon.log()
    from cassandra.cluster import Cluster

    cluster = Cluster(["127.0.0.1"], port=spare.port)
    try:
        session = cluster.connect()
        assert set(streamer.acked) <= storedStamps(session, "meetr_outage",
                                                   streamer.metric)
    finally:
        cluster.shutdown()
    print(f"served {firstServed:.1f}s after the node appeared; recovered "
          f"{recovered - back:.1f}s after it came back")
