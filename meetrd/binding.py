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
from typing import Any, Iterator, Sequence

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
    # The rows' entries (prepared?, query id, values) are made only while
    # the driver encodes the batch: kept as packed columns meanwhile, the
    # rows of the requests in flight are a few lists for the garbage
    # collector to walk rather than two tuples a row.
    batch._statements_and_parameters = PackedRows(
        batch._statements_and_parameters[0], insert.query_id,
        source.encode("utf-8"), _BIGINT(bucket), rows[1:],
        (_INT(ttl),) if ttl else ())
    return batch


class PackedRows:
    """
    The entries of a batch for the rows of one partition (what
    C{BatchStatement.add} would have listed): the first as the driver
    bound it, the others kept packed, their series ids, times and values
    as three lists of bytes, and made into entries while they are
    iterated.  The driver only counts and iterates them
    (C{BatchMessage.send_body}), again if it sends the batch again.
    """

    __slots__ = ("_first", "_queryId", "_source", "_bucket", "_ids",
                 "_times", "_values", "_ttl")

    def __init__(self, first: Any, queryId: bytes, source: bytes,
                 bucket: bytes, rows: Sequence[tuple[bytes, int, float]],
                 ttl: tuple[bytes, ...]) -> None:
        self._first = first
        self._queryId = queryId
        self._source = source
        self._bucket = bucket
        self._ttl = ttl
        self._ids = [identifier for identifier, _, _ in rows]
        # The rows of a scrape share one time: its bytes are packed once.
        times = []
        lastTs = None
        packed = b""
        for _, ts, _ in rows:
            if ts != lastTs:
                lastTs = ts
                packed = _BIGINT(ts)
            times.append(packed)
        self._times = times
        self._values = [_DOUBLE(value) for _, _, value in rows]

    def __len__(self) -> int:
        return 1 + len(self._ids)

    def __iter__(self) -> Iterator[tuple[bool, bytes, tuple[bytes, ...]]]:
        yield self._first
        queryId, source, bucket, ttl = (self._queryId, self._source,
                                        self._bucket, self._ttl)
        for identifier, ts, value in zip(self._ids, self._times,
                                         self._values):
            yield (True, queryId, (source, bucket, identifier, ts, value,
                                   *ttl))


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
