"""
Fixtures shared by the tests: the real Cassandra node and a plain driver
session to look into it.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from tests.support import nodeAddress


@pytest.fixture(scope="session")
def node() -> tuple[str, int]:
    """
    The address of the real Cassandra node the integration tests use.
    """
    address = nodeAddress()
    if address is None:
        pytest.skip("MEETR_TEST_CASSANDRA is not set; `make test` starts a "
                    "local node and sets it")
    return address


@pytest.fixture(scope="session")
def cql(node: tuple[str, int]) -> Iterator[Any]:
    """
    A blocking driver session (the driver's own event loop, not meetrd's)
    to check what is really in Cassandra.
    """
    from cassandra.cluster import Cluster

    cluster = Cluster([node[0]], port=node[1], connect_timeout=10)
    session = cluster.connect()
    session.default_timeout = 60
    yield session
    cluster.shutdown()


@pytest.fixture(scope="module")
def keyspace(cql: Any, request: Any) -> Iterator[str]:
    """
    A keyspace of the test module's own, dropped afterwards.
    """
    from tests.support import uniqueKeyspace

    name = uniqueKeyspace(request.module.__name__.rsplit(".", 1)[-1][5:15])
    yield name
    cql.execute(f"DROP KEYSPACE IF EXISTS {name}")
