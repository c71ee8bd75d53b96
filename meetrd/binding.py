"""
Point rows bound for Cassandra without the driver's per-row binding.

C{BatchStatement.add(prepared, values)} binds each row through a
C{BoundStatement}: a type lookup and a serializer call per value, an
object per row, and a routing key computed for every row.  A partition's
rows share their first two values (source and bucket) and the types of
the others are fixed by the C{points} table, so the rows of one partition
are bound here at once, serialized with C{struct} into the same wire form
the driver's serializers give (C{tests/test_binding.py} compares them
value for value), and sent as they are (C{tests/test_batchframe.py}
compares the frames); the batch gets its routing key and keyspace as the
driver would have given them.  The rows of the series index are bound
much the same way (L{indexBatch}, its first row through the driver): a
burst of new series brings a hundred thousand of them, and the driver's
binding of a row with its map of tags costs about 9 µs.
"""

from __future__ import annotations

import struct
from typing import Any, Iterator, Sequence

__all__ = ["encodeBatchFrame", "indexBatch", "pointBatch"]

# The wire forms of the INSERT's values (CQL's binary protocol): text as
# UTF-8, bigint and timestamp (milliseconds) as 8-byte signed big-endian,
# double as an 8-byte IEEE 754 big-endian, blob as itself, int (the TTL)
# as 4-byte signed big-endian.
_BIGINT = struct.Struct(">q").pack
_DOUBLE = struct.Struct(">d").pack
_INT = struct.Struct(">i").pack
_SHORT = struct.Struct(">H").pack
# The series ids of meetrd.layout.seriesId.
ID_BYTES = 16


def pointBatch(insert: Any, source: str, bucket: int,
               rows: Sequence[tuple[bytes, int, float]], ttl: int,
               level: Any) -> Any:
    """
    An unlogged batch writing C{(seriesId, tsMs, value)} rows into one
    partition of C{points} with the prepared C{insert} (whose values are
    source, bucket, series id, ts, value, and the TTL when C{ttl} is
    given).

    No row goes through the driver's binding (a C{BoundStatement} with a
    serializer call per value and its routing key worked out, about 60 µs
    for the first row of every batch): the batch is routed by its
    partition key, which the driver packs from the key's two values, in
    the statement's keyspace.
    """
    from cassandra.query import BatchStatement, BatchType

    ttlValue = (_INT(ttl),) if ttl else ()
    if len(insert.column_metadata) != 5 + len(ttlValue):
        raise ValueError(f"a points insert takes {5 + len(ttlValue)} "
                         f"values, not {len(insert.column_metadata)}")
    batch = BatchStatement(BatchType.UNLOGGED, consistency_level=level)
    sourceBytes = source.encode("utf-8")
    bucketBytes = _BIGINT(bucket)
    batch.routing_key = (sourceBytes, bucketBytes)
    # As a BoundStatement has it: a statement prepared with its keyspace
    # in the query names it only in its columns.
    batch.keyspace = insert.column_metadata[0].keyspace_name
    if insert.custom_payload:
        batch.custom_payload = dict(insert.custom_payload)
    batch._statements_and_parameters = PackedRows(
        insert.query_id, sourceBytes, bucketBytes, rows, ttlValue)
    return batch


class PackedRows:
    """
    The entries of a batch for the rows of one partition (what
    C{BatchStatement.add} would have listed), already in their wire form,
    one C{bytes} for all of them.

    The driver's own encoding of a batch (C{BatchMessage.send_body})
    writes every value of every entry by a call of its own, 120 µs for a
    scrape's 103 rows; packed here with one C{struct} call a row, they
    take a fifth of that.  L{encodeBatchFrame} puts them into the frame;
    where it cannot, the driver iterates the entries, made back from the
    bytes (again if it sends the batch again).  One C{bytes} is also
    nothing for the garbage collector to walk while the request is in
    flight.
    """

    __slots__ = ("_queryId", "_source", "_bucket", "_ttl", "_count",
                 "_prefix", "_rows")

    def __init__(self, queryId: bytes, source: bytes, bucket: bytes,
                 rows: Sequence[tuple[bytes, int, float]],
                 ttl: tuple[bytes, ...]) -> None:
        self._queryId = queryId
        self._source = source
        self._bucket = bucket
        self._ttl = ttl
        self._count = len(rows)
        # An entry: prepared, the query id, the number of values, then
        # each value as its length and its bytes: the source and bucket
        # (the same for every row), the series id, the time, the value,
        # and the TTL when there is one.
        self._prefix = prefix = (
            b"\x01" + _SHORT(len(queryId)) + queryId
            + _SHORT(5 + len(ttl)) + _INT(len(source)) + source
            + _INT(len(bucket)) + bucket)
        suffix = b"".join([_INT(len(value)) + value for value in ttl])
        if all(len(identifier) == ID_BYTES for identifier, _, _ in rows):
            pack = struct.Struct(
                f">{len(prefix)}sI{ID_BYTES}sIqId{len(suffix)}s").pack
            self._rows = b"".join([
                pack(prefix, ID_BYTES, identifier, 8, ts, 8, value, suffix)
                for identifier, ts, value in rows])
        else:
            self._rows = b"".join([
                prefix + _INT(len(identifier)) + identifier + _INT(8)
                + _BIGINT(ts) + _INT(8) + _DOUBLE(value) + suffix
                for identifier, ts, value in rows])

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[tuple[bool, bytes, tuple[bytes, ...]]]:
        queryId, source, bucket, ttl = (self._queryId, self._source,
                                        self._bucket, self._ttl)
        packed = self._rows
        at = 0
        skip = len(self._prefix)
        for _ in range(self._count):
            at += skip
            size = int.from_bytes(packed[at:at + 4], "big")
            identifier = packed[at + 4:at + 4 + size]
            at += 4 + size + 4
            ts = packed[at:at + 8]
            value = packed[at + 12:at + 20]
            at += 20
            for extra in ttl:
                at += 4 + len(extra)
            yield (True, queryId, (source, bucket, identifier, ts, value,
                                   *ttl))

    def encoded(self) -> bytes:
        """
        The entries as C{BatchMessage.send_body} writes them, between the
        count of entries and the consistency level.
        """
        return self._rows


# The header of a frame from protocol version 3 on: version, flags, stream
# id (2 bytes), opcode, then the body's length (4 bytes).
_HEADER_BEFORE_LENGTH = 5
_HEADER = 9


def encodeBatchFrame(encoder: Any, message: Any, streamId: int,
                     protocolVersion: int, compressor: Any = None,
                     allow_beta_protocol_version: bool = False) -> bytes:
    """
    A frame for C{message}, as C{encoder} (the driver's
    C{ProtocolHandler.encode_message}, whose arguments follow it) makes
    it, but with a batch of L{PackedRows} put in whole: the driver
    encodes the message without its entries (the batch type, a count of
    none, then the consistency, flags, timestamp and keyspace as the
    version wants them), and the entries go in after the batch type,
    with their count.

    A message the splice does not fit (another kind, a version before 3,
    a custom payload, a body compressed whole, which protocol version 5
    leaves to its segments) is the driver's to encode.
    """
    from cassandra import ProtocolVersion

    rows = getattr(message, "queries", None)
    if rows.__class__ is not PackedRows or protocolVersion < 3 \
            or message.custom_payload or (
                compressor and
                not ProtocolVersion.has_checksumming_support(protocolVersion)):
        return encoder(message, streamId, protocolVersion,
                       compressor=compressor,
                       allow_beta_protocol_version=allow_beta_protocol_version)
    bare = object.__new__(message.__class__)
    bare.__dict__.update(message.__dict__)
    bare.queries = ()
    frame = encoder(bare, streamId, protocolVersion, compressor=compressor,
                    allow_beta_protocol_version=allow_beta_protocol_version)
    entries = rows.encoded()
    body = frame[_HEADER:]
    return b"".join((
        frame[:_HEADER_BEFORE_LENGTH], _INT(len(body) + len(entries)),
        body[:1], _SHORT(len(rows)), entries, body[3:]))


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
