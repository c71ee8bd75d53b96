"""
Tests for L{meetrd.binding} against the real Cassandra node: rows bound
without the driver's per-row binding carry the bytes the driver's own
binding gives, and land as written.
"""

from __future__ import annotations

import pytest
from cassandra import ConsistencyLevel
from cassandra.query import BatchType

from meetrd import schema
from meetrd.binding import pointBatch
from meetrd.settings import settingsFromMapping

pytestmark = pytest.mark.cassandra

ROWS = [(bytes([i]) * 16, 1_800_000_000_000 + i * 1_001, value)
        for i, value in enumerate([0.0, -1.5, 1e308, -0.0, 3.14159, 2.0 ** -1074,
                                   42.0])]


@pytest.fixture(scope="module")
def tables(cql, keyspace, node):
    """
    The keyspace's tables, made as the store makes them.
    """
    settings = settingsFromMapping({"cassandra": {
        "contact_points": [node[0]], "port": node[1], "keyspace": keyspace}},
        "test")
    schema.createTables(cql, settings.cassandra, 60)
    return keyspace


@pytest.mark.parametrize("ttl", [0, 86_400])
def test_sameBytesAsTheDriver(cql, tables, ttl):
    """
    Every row of the batch holds the values the driver's binding of the
    same row gives, byte for byte, with and without a TTL; the batch is
    routed by its partition, unlogged, at the level asked.
    """
    insert = cql.prepare(schema.INSERT_POINT.format(ks=tables) +
                         (schema.WITH_TTL if ttl else ""))
    batch = pointBatch(insert, "n:bind:1", 500_000, ROWS, ttl,
                       ConsistencyLevel.QUORUM)
    ttlValue = (ttl,) if ttl else ()
    expected = [insert.bind(("n:bind:1", 500_000, *row, *ttlValue)).values
                for row in ROWS]
    assert [list(values) for _, _, values in
            batch._statements_and_parameters] == expected
    assert {queryId for _, queryId, _ in batch._statements_and_parameters} \
        == {insert.query_id}
    assert batch.routing_key == insert.bind(
        ("n:bind:1", 500_000, *ROWS[0], *ttlValue)).routing_key
    assert batch.consistency_level == ConsistencyLevel.QUORUM
    assert batch.batch_type == BatchType.UNLOGGED


def test_rowsLandAsWritten(cql, tables):
    """
    The batch written to the node reads back row for row; a partition of
    one row is a batch of that row.
    """
    insert = cql.prepare(schema.INSERT_POINT.format(ks=tables))
    cql.execute(pointBatch(insert, "n:bind:2", 7, ROWS, 0,
                           ConsistencyLevel.ONE))
    cql.execute(pointBatch(insert, "n:bind:3", 7, ROWS[:1], 0,
                           ConsistencyLevel.ONE))
    read = [(r.series_id, r.ts, r.value) for r in cql.execute(
        f"SELECT series_id, toUnixTimestamp(ts) AS ts, value FROM "
        f"{tables}.points WHERE source = 'n:bind:2' AND bucket = 7")]
    assert read == sorted(ROWS)
    one = list(cql.execute(f"SELECT value FROM {tables}.points WHERE "
                           f"source = 'n:bind:3' AND bucket = 7"))
    assert [r.value for r in one] == [0.0]
