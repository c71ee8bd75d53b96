"""
A real three-node Cassandra cluster keeps answering while one node is down.

Needs a cluster started by C{make cassandra NODES=3} (L{tools.devnode}),
named by C{MEETR_TEST_CLUSTER}: its contact points, comma-separated, such as
C{127.0.0.1:19042,127.0.0.2:19042,127.0.0.3:19042}.  The test kills node 3
with C{python -m tools.devnode kill-node 3} and starts it again, so it runs
with the same C{MEETR_NODE_*} environment the cluster was started with
(C{MEETR_NODE_COUNT}, C{MEETR_NODE_ADDRESS} and C{MEETR_NODE_PORT} default
to what the contact points say).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
import pytest_twisted
from twisted.internet import reactor

pytestmark = [pytest.mark.cassandra]

REPOSITORY = Path(__file__).resolve().parent.parent


def contactPoints() -> list[tuple[str, int]]:
    """
    The C{(host, port)} of each node named by C{MEETR_TEST_CLUSTER}.
    """
    points = []
    for point in os.environ.get("MEETR_TEST_CLUSTER", "").split(","):
        if point.strip():
            host, _, port = point.strip().rpartition(":")
            points.append((host, int(port)))
    return points


def devnodeEnvironment(points: list[tuple[str, int]]) -> dict[str, str]:
    """
    The environment of C{python -m tools.devnode}: ours, with the cluster's
    size, first address and port where they are not set.
    """
    env = dict(os.environ)
    env.setdefault("MEETR_NODE_COUNT", str(len(points)))
    env.setdefault("MEETR_NODE_ADDRESS", points[0][0])
    env.setdefault("MEETR_NODE_PORT", str(points[0][1]))
    return env


def devnode(points: list[tuple[str, int]], *args: str) -> None:
    """
    Run C{python -m tools.devnode} with C{args} for the cluster; fail the
    test, showing its output, if it fails.
    """
    result = subprocess.run(
        [sys.executable, "-m", "tools.devnode", *args],
        cwd=REPOSITORY, env=devnodeEnvironment(points),
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, (
        f"devnode {' '.join(args)} exited {result.returncode}:\n"
        f"{result.stdout}\n{result.stderr}")


def waitFor(condition: Any, seconds: float, what: str) -> None:
    """
    Poll C{condition()} until it is true; fail after C{seconds}.
    """
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.5)


@pytest_twisted.ensureDeferred
async def test_schemaNodeWhosePoolOpensLastStillTakesTheSchema(cql: Any
                                                                ) -> None:
    """
    The store sends its schema changes to one node, the live node of the
    lowest address.  When that node's connection pool opens last (here:
    three seconds after the others, the contact point being the second
    node), the store still connects and makes its tables, instead of
    failing its first statement for want of a pool to that node.
    """
    points = contactPoints()
    if len(points) < 3:
        pytest.skip("MEETR_TEST_CLUSTER does not name three nodes")
    from meetrd.store import MetricStore
    from meetrd.twistedconnection import twistedConnectionClass
    from tests.test_rollups import settingsFor

    schemaNode = min(host for host, _ in points)
    contact = next(point for point in points if point[0] != schemaNode)
    opened = []

    class SlowToTheSchemaNode(twistedConnectionClass()):  # type: ignore[misc]
        @classmethod
        def factory(cls, endpoint: Any, timeout: float, *args: Any,
                    **kwargs: Any) -> Any:
            if endpoint.address == schemaNode:
                time.sleep(3)
            opened.append(endpoint.address)
            return super().factory(endpoint, timeout, *args, **kwargs)

    keyspace = f"meetr_pools_{uuid.uuid4().hex[:12]}"
    settings = settingsFor(contact, keyspace)
    store = MetricStore(settings.cassandra, 0, reactor,
                        connectionClass=SlowToTheSchemaNode)
    try:
        await store.connect()
        assert opened[0] == contact[0] and schemaNode in opened
        tables = {row[0] for row in cql.execute(
            "SELECT table_name FROM system_schema.tables "
            "WHERE keyspace_name = %s", (keyspace,))}
        assert {"points", "members"} <= tables, tables
    finally:
        cql.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=60)
        await store.close()


@pytest.fixture
def cluster() -> Iterator[tuple[list[tuple[str, int]], Any]]:
    """
    The contact points of the cluster named by C{MEETR_TEST_CLUSTER}, and a
    driver C{Cluster} connected to them; node 3 is started again afterwards
    if the test left it down.
    """
    points = contactPoints()
    if len(points) < 3:
        pytest.skip("MEETR_TEST_CLUSTER does not name three nodes; "
                    "`make cassandra NODES=3` starts them and prints them")
    from cassandra.cluster import Cluster

    driver = Cluster([host for host, _ in points], port=points[0][1],
                     connect_timeout=10)
    try:
        yield points, driver
    finally:
        driver.shutdown()
        devnode(points, "start-node", "3")


def test_oneNodeDownLocalQuorumAnswers(cluster: tuple[list[tuple[str, int]], Any]) -> None:
    """
    With replication C{{'dc1': 3}}, LOCAL_QUORUM writes and reads go on while
    node 3 is killed (SIGKILL), and once it is started again a read at ALL
    finds the rows, the one written while it was down included.
    """
    from cassandra import ConsistencyLevel
    from cassandra.query import SimpleStatement

    points, driver = cluster
    session = driver.connect()
    session.default_timeout = 30
    hosts = driver.metadata.all_hosts()
    assert sorted(host.address for host in hosts) == sorted(host for host, _ in points)
    assert all(host.is_up for host in hosts)
    assert {host.datacenter for host in hosts} == {"dc1"}

    keyspace = f"meetr_cluster_{uuid.uuid4().hex[:12]}"
    session.execute(
        f"CREATE KEYSPACE {keyspace} WITH replication = "
        "{'class': 'NetworkTopologyStrategy', 'dc1': 3}")
    try:
        session.execute(f"CREATE TABLE {keyspace}.points (id int PRIMARY KEY, value text)")

        def write(id: int, value: str) -> None:
            session.execute(SimpleStatement(
                f"INSERT INTO {keyspace}.points (id, value) VALUES (%s, %s)",
                consistency_level=ConsistencyLevel.LOCAL_QUORUM), (id, value))

        def read(level: int) -> dict[int, str]:
            rows = session.execute(SimpleStatement(
                f"SELECT id, value FROM {keyspace}.points WHERE id IN (1, 2)",
                consistency_level=level))
            return {row.id: row.value for row in rows}

        write(1, "before")
        assert read(ConsistencyLevel.LOCAL_QUORUM) == {1: "before"}

        devnode(points, "kill-node", "3")
        third = points[2][0]
        waitFor(lambda: not any(host.is_up for host in driver.metadata.all_hosts()
                                if host.address == third),
                30, f"the driver to see {third} down")
        write(2, "while node 3 was down")
        assert read(ConsistencyLevel.LOCAL_QUORUM) == {1: "before", 2: "while node 3 was down"}

        devnode(points, "start-node", "3")
        assert read(ConsistencyLevel.ALL) == {1: "before", 2: "while node 3 was down"}
    finally:
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")
