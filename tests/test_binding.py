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
from meetrd.binding import indexBatch, pointBatch
from meetrd.points import freezeTags
from meetrd.settings import settingsFromMapping
from meetrd.writeplan import IndexRow

pytestmark = pytest.mark.cassandra

# Runs of rows at one time (as a scrape's are) and rows at times of their
# own.
ROWS = [(bytes([i]) * 16, 1_800_000_000_000 + (i // 3) * 1_001, value)
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
    same row gives, byte for byte, with and without a TTL, as often as the
    batch is encoded; the batch is routed by its partition, unlogged, at
    the level asked.
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
    # The driver counts the entries and may encode them more than once (a
    # retry on another connection).
    assert len(batch) == len(ROWS)
    assert list(batch._statements_and_parameters) == \
        list(batch._statements_and_parameters)
    bound = insert.bind(("n:bind:1", 500_000, *ROWS[0], *ttlValue))
    assert batch.routing_key == bound.routing_key
    assert batch.keyspace == bound.keyspace == tables
    assert batch.consistency_level == ConsistencyLevel.QUORUM
    assert batch.batch_type == BatchType.UNLOGGED


def test_statementOfOtherColumnsRefused(cql, tables):
    """
    A statement that does not take a point's values (with the TTL or
    without, as asked) is refused rather than given rows it does not
    take.
    """
    withTTL = cql.prepare(schema.INSERT_POINT.format(ks=tables) +
                          schema.WITH_TTL)
    with pytest.raises(ValueError, match="takes 5 values, not 6"):
        pointBatch(withTTL, "n:bind:4", 7, ROWS, 0, ConsistencyLevel.ONE)


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


INDEX_ROWS = [IndexRow("cpu.seconds", 20_000, bytes([i]) * 16, source, width,
                       freezeTags(tags))
              for i, (source, width, tags) in enumerate([
                  ("n:web-1", 3_600_000, {"node": "web-1", "mode": "idle"}),
                  ("n:web-1", 3_600_000, {"node": "web-1", "mode": "user"}),
                  ("s:00ff", 86_400_000, {}),
                  ("n:bücher~1", 600_000, {"node": "bücher", "zone": "é 東"}),
                  ("n:web-2", 3_600_000, {"node": "web-2", "a": "", "": "b"}),
              ])]


@pytest.mark.parametrize("ttl", [0, 86_400])
def test_indexRowsSameBytesAsTheDriver(cql, tables, ttl):
    """
    Every index row of the batch holds the values the driver's binding of
    the same row gives (its map of tags included, empty, unicode or with
    empty keys and values), byte for byte; the batch is routed by its
    first row, unlogged, at the level asked.
    """
    insert = cql.prepare(schema.INSERT_INDEX.format(ks=tables))
    batch = indexBatch(insert, INDEX_ROWS, ttl, ConsistencyLevel.QUORUM)

    def bound(row):
        return insert.bind((row.metric, row.slice, row.seriesId, row.source,
                            row.bucketMs, dict(row.tags), ttl))

    assert [list(values) for _, _, values in
            batch._statements_and_parameters] == \
        [bound(row).values for row in INDEX_ROWS]
    assert batch.routing_key == bound(INDEX_ROWS[0]).routing_key
    assert batch.consistency_level == ConsistencyLevel.QUORUM
    assert batch.batch_type == BatchType.UNLOGGED


def test_indexRowsLandAsWritten(cql, tables):
    """
    The index rows written to the node read back with their tags, and the
    tag index finds them by a tag.
    """
    insert = cql.prepare(schema.INSERT_INDEX.format(ks=tables))
    cql.execute(indexBatch(insert, INDEX_ROWS, 0, ConsistencyLevel.ONE))
    read = {r.series_id: (r.source, r.bucket_ms, dict(r.tags or {}))
            for r in cql.execute(
                f"SELECT series_id, source, bucket_ms, tags FROM "
                f"{tables}.series_index WHERE metric = 'cpu.seconds' "
                f"AND slice = 20000")}
    assert read == {row.seriesId: (row.source, row.bucketMs, dict(row.tags))
                    for row in INDEX_ROWS}
    found = cql.execute(
        f"SELECT series_id FROM {tables}.series_index WHERE metric = "
        f"'cpu.seconds' AND slice = 20000 AND tags['zone'] = 'é 東'")
    assert [r.series_id for r in found] == [INDEX_ROWS[3].seriesId]
