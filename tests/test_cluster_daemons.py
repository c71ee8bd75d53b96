"""
Real daemons on a real three-node cluster (C{make cassandra NODES=3},
named by C{MEETR_TEST_CLUSTER}; see L{tests.test_cluster}), with the
keyspace replicated three times (C{NetworkTopologyStrategy}, C{dc1: 3})
and the default consistency, C{LOCAL_QUORUM}:

  - three instances started at the same moment on a fresh keyspace are
    all ready, and every node holds one and the same schema;
  - a node SIGKILLed under a steady write load: writes go on (only those
    in flight at the kill may fail, with a 503), every acknowledged point
    is read back at C{LOCAL_QUORUM}, and at C{ALL} once the node is back.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.support import Daemon, uniqueKeyspace
from tests.test_cluster import contactPoints, devnode

pytestmark = [pytest.mark.cassandra, pytest.mark.daemon]

EPOCH = datetime(1970, 1, 1)


@pytest.fixture(scope="module")
def points() -> list[tuple[str, int]]:
    """
    The cluster's contact points (the module is skipped without three).
    """
    found = contactPoints()
    if len(found) < 3:
        pytest.skip("MEETR_TEST_CLUSTER does not name a cluster of three "
                    "nodes; `make test` starts one")
    return found


def clusterSettings(points: list[tuple[str, int]], keyspace: str,
                    **extra: Any) -> dict[str, Any]:
    """
    Daemon settings for the cluster: every node a contact point, the
    keyspace replicated on all three, C{LOCAL_QUORUM} (the default).
    """
    return {
        "listen": "tcp:0:interface=127.0.0.1",
        "cassandra": {
            "contact_points": [host for host, _ in points],
            "port": points[0][1],
            "keyspace": keyspace,
            "replication": {"class": "NetworkTopologyStrategy", "dc1": 3},
            "connect_timeout": "5s",
            "request_timeout": "5s",
        },
        **extra,
    }


def nodeSession(host: str, port: int) -> Any:
    """
    A driver session that sends every request to one node only.
    """
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster
    from cassandra.cluster import ExecutionProfile
    from cassandra.policies import WhiteListRoundRobinPolicy

    profile = ExecutionProfile(
        load_balancing_policy=WhiteListRoundRobinPolicy([host]),
        request_timeout=30)
    cluster = Cluster([host], port=port,
                      execution_profiles={EXEC_PROFILE_DEFAULT: profile})
    return cluster.connect()


def test_instancesStartTogetherOnAFreshKeyspace(
        points: list[tuple[str, int]], tmp_path: Path) -> None:
    """
    Three daemons started at the same moment against a keyspace that does
    not exist yet are all ready, and the three nodes agree on one schema
    with one id for each table.
    """
    keyspace = uniqueKeyspace("together")
    daemons = [Daemon(tmp_path / f"d{i}", clusterSettings(points, keyspace))
               for i in range(3)]
    try:
        for daemon in daemons:
            daemon.start()
        for daemon in daemons:
            daemon.waitReady(90)
        views = []
        for host, port in points:
            session = nodeSession(host, port)
            try:
                tables = {row.table_name: row.id for row in session.execute(
                    "SELECT table_name, id FROM system_schema.tables "
                    "WHERE keyspace_name = %s", (keyspace,))}
                version = session.execute(
                    "SELECT schema_version FROM system.local").one()[0]
            finally:
                session.cluster.shutdown()
            views.append((tables, version))
        assert len(views[0][0]) >= 8, views[0]
        assert all(view == views[0] for view in views), views
    finally:
        for daemon in daemons:
            daemon.stop()


class Writer(threading.Thread):
    """
    Posts batches of new points to a daemon, a few at once, and keeps
    which were acknowledged and which failed (and how).
    """

    def __init__(self, daemon: Daemon, parallel: int = 4) -> None:
        super().__init__(daemon=True)
        self.daemon_ = daemon
        self.parallel = parallel
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.acknowledged: list[list[dict[str, Any]]] = []
        self.failed: list[tuple[float, int, str]] = []
        self.next = 0

    def batch(self) -> list[dict[str, Any]]:
        with self.lock:
            first = self.next
            self.next += 100
        base = 1_700_000_000_000
        return [{"metric_id": "quorum.points", "ts": base + n, "value": n,
                 "tags": {"node": f"n{n % 10}"}} for n in range(first,
                                                                 first + 100)]

    def post(self) -> None:
        while not self.stopping.is_set():
            items = self.batch()
            reply = self.daemon_.post("/1.0/metrics",
                                      json.dumps(items).encode(),
                                      "application/json")
            with self.lock:
                if reply.status == 200:
                    self.acknowledged.append(items)
                else:
                    self.failed.append((time.time(), reply.status,
                                        reply.body[:200].decode("replace")))

    def run(self) -> None:
        threads = [threading.Thread(target=self.post, daemon=True)
                   for _ in range(self.parallel)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


@pytest.fixture()
def restoresNode3(points: list[tuple[str, int]]) -> Iterator[None]:
    """
    Start node 3 again after the test, whatever happened.
    """
    yield
    devnode(points, "start-node", "3")


def test_nodeKilledUnderWriteLoad(points: list[tuple[str, int]],
                                  tmp_path: Path, restoresNode3: None
                                  ) -> None:
    """
    A node SIGKILLed while a client writes steadily at C{LOCAL_QUORUM}:
    writes go on, at most the requests in flight at the kill fail (503),
    every acknowledged point is there at C{LOCAL_QUORUM} at once, and at
    C{ALL} once the node is back.
    """
    from cassandra import ConsistencyLevel
    from cassandra.query import SimpleStatement

    keyspace = uniqueKeyspace("quorum")
    daemon = Daemon(tmp_path / "d", clusterSettings(points, keyspace))
    daemon.start().waitReady(90)
    try:
        writer = Writer(daemon)
        try:
            writer.start()
            time.sleep(5)
            before = len(writer.acknowledged)
            killedAt = time.time()
            devnode(points, "kill-node", "3")
            time.sleep(10)
            writer.stopping.set()
            writer.join(60)
            after = len(writer.acknowledged)
        finally:
            writer.stopping.set()
        assert before > 10 and after > before + 20, (before, after)
        assert len(writer.failed) <= writer.parallel, writer.failed
        assert all(status == 503 and at >= killedAt - 1
                   for at, status, _ in writer.failed), writer.failed
        written = [item for items in writer.acknowledged for item in items]
        reply = daemon.get("/1.0/metrics", metric="quorum.points",
                           aggregation="count",
                           **{"from": "1700000000000", "to": "1700010000000"})
        assert reply.status == 200, reply.body
        counted = reply.json()["value"]
        # Failed batches may have landed in part; every acknowledged point is
        # there.
        assert counted >= len(written), (counted, len(written))
    finally:
        # Stopped whatever happened: a daemon left running would write on
        # into the cluster the next tests use.
        daemon.stop()

    devnode(points, "start-node", "3")
    session = nodeSession(*points[0])
    try:
        found = set()
        statement = SimpleStatement(
            f"SELECT series_id, ts FROM {keyspace}.points",
            consistency_level=ConsistencyLevel.ALL, fetch_size=5000)
        for row in session.execute(statement, timeout=120):
            found.add(round((row.ts - EPOCH).total_seconds() * 1000))
    finally:
        session.cluster.shutdown()
    wanted = {item["ts"] for item in written}
    assert wanted <= found, len(wanted - found)
