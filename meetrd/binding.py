"""
Point rows bound for Cassandra without the driver's per-row binding.

C{BatchStatement.add(prepared, values)} binds each row through a
C{BoundStatement}: a type lookup and a serializer call per value, an
object per row, and a routing key computed for every row.  A partition's
rows share their first two values (source and bucket) and the types of
the others are fixed by the C{points} table, so the rows of one partition
are bound here at once: the first row through the driver (which checks
the statement's columns and gives the batch its routing key and keyspace),
the others serialized with C{struct} into the same wire form the driver's
serializers give (C{tests/test_binding.py} compares them value for value).
The rows of the series index are bound the same way (L{indexBatch}): a
burst of new series brings a hundred thousand of them, and the driver's
binding of a row with its map of tags costs about 9 µs.
"""

from __future__ import annotations

import struct
from typing import Any, Sequence

__all__ = ["indexBatch", "pointBatch"]

# The wire forms of the INSERT's values (CQL's binary protocol): text as
# UTF-8, bigint and timestamp (milliseconds) as 8-byte signed big-endian,
# double as an 8-byte IEEE 754 big-endian, blob as itself, int (the TTL)
# as 4-byte signed big-endian.
_BIGINT = struct.Struct(">q").pack
_DOUBLE = struct.Struct(">d").pack
_INT = struct.Struct(">i").pack


def pointBatch(insert: Any, source: str, bucket: int,
               rows: Sequence[tuple[bytes, int, float]], ttl: int,
               level: Any) -> Any:
    """
    An unlogged batch writing C{(seriesId, tsMs, value)} rows into one
    partition of C{points} with the prepared C{insert} (whose values are
    source, bucket, series id, ts, value, and the TTL when C{ttl} is
    given).
    """
    from cassandra.query import BatchStatement, BatchType

    batch = BatchStatement(BatchType.UNLOGGED, consistency_level=level)
    ttlValue = (ttl,) if ttl else ()
    first = rows[0]
    batch.add(insert, (source, bucket, *first, *ttlValue))
    if len(rows) == 1:
        return batch
    sourceBytes = source.encode("utf-8")
    bucketBytes = _BIGINT(bucket)
    ttlBytes = (_INT(ttl),) if ttl else ()
    queryId = insert.query_id
    # The list BatchStatement.add fills with (prepared?, query id, values).
    # The values are a tuple of bytes, which the garbage collector stops
    # tracking at its first look (a list it would walk at every one).
    # The rows of a scrape share one time: its bytes are packed once.
    lastTs = first[1]
    tsBytes = _BIGINT(lastTs)
    add = batch._statements_and_parameters.append
    for identifier, ts, value in rows[1:]:
        if ts != lastTs:
            lastTs = ts
            tsBytes = _BIGINT(ts)
        add((True, queryId, (sourceBytes, bucketBytes, identifier,
                             tsBytes, _DOUBLE(value), *ttlBytes)))
    return batch


def _text(value: str) -> bytes:
    """
    A text value inside a collection: its length, then its UTF-8 bytes.
    """
    encoded = value.encode("utf-8")
    return _INT(len(encoded)) + encoded


def indexBatch(insert: Any, rows: Sequence[Any], ttl: int, level: Any
               ) -> Any:
    """
    An unlogged batch writing L{meetrd.writeplan.IndexRow}s with the
    prepared C{insert} of the series index (whose values are metric,
    slice, series id, source, bucket width, tags and the TTL); routed as
    its first row is.
    """
    from cassandra.query import BatchStatement, BatchType

    batch = BatchStatement(BatchType.UNLOGGED, consistency_level=level)
    first = rows[0]
    batch.add(insert, (first.metric, first.slice, first.seriesId,
                       first.source, first.bucketMs, dict(first.tags), ttl))
    queryId = insert.query_id
    ttlBytes = _INT(ttl)
    add = batch._statements_and_parameters.append
    for row in rows[1:]:
        # A map: its number of entries, then each key and value with its
        # length, in the order of the row's (sorted) tags.
        tags = b"".join([_INT(len(row.tags))] + [
            _text(key) + _text(value) for key, value in row.tags])
        add((True, queryId, (row.metric.encode("utf-8"), _BIGINT(row.slice),
                             row.seriesId, row.source.encode("utf-8"),
                             _BIGINT(row.bucketMs), tags, ttlBytes)))
    return batch
