"""
The Graphite plaintext listener of a real daemon on the real node: lines
sent over TCP are found through the JSON API; bad lines are counted on
C{/metrics} and skipped while the connection and the good lines around
them are kept; lines still waiting when the daemon is told to stop are
written before it exits.
"""

from __future__ import annotations

import re
import socket
import time

import pytest

from tests.support import Daemon, daemonSettings, uniqueKeyspace

pytestmark = pytest.mark.cassandra


def graphitePort(daemon: Daemon) -> int:
    """
    The port the daemon's Graphite listener took, from its log.
    """
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        match = re.search(r"GraphiteFactory starting on (\d+)", daemon.log())
        if match:
            return int(match.group(1))
        time.sleep(0.1)
    raise AssertionError(f"no Graphite listener:\n{daemon.log()}")


def started(workdir, keyspace, node) -> Daemon:
    daemon = Daemon(workdir, daemonSettings(
        keyspace, node, graphite={"listen": "tcp:0:interface=127.0.0.1"}))
    return daemon.start().waitReady()


def count(daemon: Daemon, metric: str, fromS: int, toS: int,
          **params) -> int:
    reply = daemon.get("/1.0/metrics", metric=metric, aggregation="count",
                       **{"from": str(fromS), "to": str(toS)}, **params)
    assert reply.status == 200, reply.body
    return reply.json()["value"]


def waitCount(daemon, metric, fromS, toS, wanted, **params) -> None:
    deadline = time.monotonic() + 30
    while count(daemon, metric, fromS, toS, **params) != wanted:
        assert time.monotonic() < deadline, (
            count(daemon, metric, fromS, toS, **params), wanted)
        time.sleep(0.3)


def test_linesStoredBadOnesCountedConnectionKept(tmp_path, node):
    """
    2,000 good lines (plain and tagged) with bad ones among them, one of
    them longer than a line may be, on one connection: every good line is
    stored, each bad one counted, and the same connection then carries
    more lines that are stored too.
    """
    keyspace = uniqueKeyspace("graphite")
    daemon = started(tmp_path / "d", keyspace, node)
    try:
        base = int(time.time()) - 3600
        lines = []
        for i in range(2000):
            lines.append(f"gl.plain {i} {base + i}\n")
            if i % 2:
                lines.append(f"gl.tagged;host=h{i % 10};dc=eu {i} {base + i}\n")
            if i % 500 == 0:
                lines.append("gl.bad not-a-number 1\n")
        lines.insert(700, "x" * 5000 + " 1 1\n")
        with socket.create_connection(("127.0.0.1", graphitePort(daemon)),
                                      timeout=10) as conn:
            conn.sendall("".join(lines).encode())
            waitCount(daemon, "gl.plain", base, base + 3600, 2000)
            waitCount(daemon, "gl.tagged", base, base + 3600, 1000)
            assert count(daemon, "gl.tagged", base, base + 3600,
                         tag="host:h3") == 200
            metrics = daemon.get("/metrics").body.decode()
            bad = re.search(r"^meetr_graphite_lines_rejected_total (\S+)$",
                            metrics, re.M)
            assert float(bad.group(1)) == 5
            conn.sendall(f"gl.after 7 {base}\n".encode())
            waitCount(daemon, "gl.after", base, base + 1, 1)
    finally:
        daemon.stop()


def test_linesWaitingAtStopAreWritten(tmp_path, node):
    """
    Lines sent just before a SIGTERM are written before the daemon exits:
    a daemon started afterwards on the same keyspace finds all of them.
    """
    keyspace = uniqueKeyspace("graphite")
    daemon = started(tmp_path / "d", keyspace, node)
    base = int(time.time()) - 600
    try:
        with socket.create_connection(("127.0.0.1", graphitePort(daemon)),
                                      timeout=10) as conn:
            conn.sendall("".join(f"gl.stop {i} {base + i}\n"
                                 for i in range(500)).encode())
            # Read by the daemon, not yet written: batches are written a
            # second after their first line.
            time.sleep(0.2)
            daemon.stop()
    finally:
        assert daemon.stop() == 0, daemon.log()
    assert "points not written at stop" not in daemon.log()
    again = started(tmp_path / "again", keyspace, node)
    try:
        assert count(again, "gl.stop", base, base + 600) == 500
    finally:
        again.stop()
