"""
Batches of packed point rows put into their frame whole
(L{meetrd.binding.encodeBatchFrame}): the frame is byte for byte the one
the driver makes of the same entries, in every protocol version and with
every option of a batch, and it is what the store's connection sends to
the real Cassandra node.
"""

from __future__ import annotations

import zlib

import pytest
import pytest_twisted
from cassandra import ConsistencyLevel
from cassandra.cqltypes import DoubleType, Int32Type, LongType
from cassandra.protocol import BatchMessage, ProtocolHandler
from cassandra.query import BatchType
from twisted.internet import reactor

from meetrd.binding import PackedRows, encodeBatchFrame
from meetrd.points import Point, freezeTags
from meetrd.store import MetricStore
from tests.support import storeSettings

QUERY_ID = bytes(range(16))
SOURCE = "n:frame-1"
BUCKET = 1_799_996_400_000
# A scrape's rows: one time, many series; then rows of times of their own,
# and values at the edges of a double.
ROWS = [(bytes([i % 256, i // 256]) * 8, 1_800_000_000_000, float(i))
        for i in range(300)] + [
    (bytes([7]) * 16, 1_800_000_000_000 + k * 1_001, value)
    for k, value in enumerate([0.0, -0.0, 1e308, -1.5, 2.0 ** -1074])]


def entry(row: tuple[bytes, int, float], ttl: int) -> tuple:
    """
    A batch entry for C{row} with the values serialized by the driver's
    own types (text and blob are their bytes).
    """
    identifier, ts, value = row
    values = [SOURCE.encode(), LongType.serialize(BUCKET, 5), identifier,
              LongType.serialize(ts, 5), DoubleType.serialize(value, 5)]
    if ttl:
        values.append(Int32Type.serialize(ttl, 5))
    return (True, QUERY_ID, tuple(values))


def messages(rows: list, ttl: int, **options) -> tuple[BatchMessage,
                                                     BatchMessage]:
    """
    The same batch twice: its entries packed, and listed as the driver
    lists them.
    """
    entries = [entry(row, ttl) for row in rows]
    packed = PackedRows(
        QUERY_ID, SOURCE.encode(), LongType.serialize(BUCKET, 5), rows,
        (Int32Type.serialize(ttl, 5),) if ttl else ())
    args = dict(batch_type=BatchType.UNLOGGED,
                consistency_level=ConsistencyLevel.LOCAL_QUORUM)
    args.update(options)
    return BatchMessage(queries=packed, **args), \
        BatchMessage(queries=entries, **args)


@pytest.mark.parametrize("version", [3, 4, 5])
@pytest.mark.parametrize("ttl", [0, 86_400])
@pytest.mark.parametrize("options", [
    {},
    {"timestamp": 1_800_000_000_000_123},
    {"serial_consistency_level": ConsistencyLevel.LOCAL_SERIAL,
     "timestamp": 1_800_000_000_000_123},
])
@pytest.mark.parametrize("count", [1, 2, 305])
def test_sameFrameAsTheDriver(version, ttl, options, count):
    """
    The frame of a packed batch is the driver's frame of the same entries,
    for protocol versions 3 to 5, with and without a TTL, a timestamp and
    a serial consistency, for one row, two and hundreds.
    """
    packed, listed = messages(ROWS[:count], ttl, **options)
    assert encodeBatchFrame(ProtocolHandler.encode_message, packed, 17,
                            version) == \
        ProtocolHandler.encode_message(listed, 17, version, None, False)


def test_keyspaceOfVersion5():
    """
    A batch naming its keyspace (protocol version 5) keeps it after the
    entries, as the driver writes it.
    """
    packed, listed = messages(ROWS[:50], 0, keyspace="meetr",
                              timestamp=5)
    assert encodeBatchFrame(ProtocolHandler.encode_message, packed, 3, 5,
                            allow_beta_protocol_version=True) == \
        ProtocolHandler.encode_message(listed, 3, 5, None, True)


def test_seriesIdsOfAnotherLength():
    """
    Rows whose series ids are not of the usual 16 bytes are packed with
    their own lengths, into the same frame as the driver's.
    """
    rows = [(b"x" * (i % 5), 1_800_000_000_000, float(i)) for i in range(20)]
    packed, listed = messages(rows, 600)
    assert encodeBatchFrame(ProtocolHandler.encode_message, packed, 1, 5) \
        == ProtocolHandler.encode_message(listed, 1, 5, None, False)


def test_entriesMadeBackFromThePackedRows():
    """
    Where the driver encodes the batch itself (a body compressed whole in
    protocol version 4, a custom payload, another encoder), it iterates
    the packed rows: they give back every entry, as often as asked.
    """
    packed, listed = messages(ROWS, 86_400)
    assert len(packed.queries) == len(ROWS)
    assert list(packed.queries) == listed.queries
    assert list(packed.queries) == listed.queries
    compress = zlib.compress
    assert encodeBatchFrame(ProtocolHandler.encode_message, packed, 2, 4,
                            compressor=compress) == \
        ProtocolHandler.encode_message(listed, 2, 4, compress, False)
    packed.custom_payload = listed.custom_payload = {"k": b"v"}
    assert encodeBatchFrame(ProtocolHandler.encode_message, packed, 2, 5) \
        == ProtocolHandler.encode_message(listed, 2, 5, None, False)


def test_otherMessagesAreTheDrivers():
    """
    A message that is not a packed batch is encoded by the driver alone.
    """
    _, listed = messages(ROWS[:3], 0)
    assert encodeBatchFrame(ProtocolHandler.encode_message, listed, 9, 5) \
        == ProtocolHandler.encode_message(listed, 9, 5, None, False)


@pytest.mark.cassandra
@pytest_twisted.ensureDeferred
async def test_storeSendsPackedFrames(node, keyspace, cql, monkeypatch):
    """
    The store's connection to the real node puts packed batches into
    their frames whole: with the packed rows unable to be iterated, a
    write of a thousand points (ten partitions of a hundred rows) lands
    and reads back point for point.
    """
    def refuse(self):
        raise AssertionError("packed rows iterated")

    store = MetricStore(storeSettings(node, keyspace), 0, reactor)
    await store.connect()
    try:
        monkeypatch.setattr(PackedRows, "__iter__", refuse)
        points = [Point("frame.m", freezeTags({"node": f"frame-{n}",
                                               "slot": str(j)}),
                        1_700_000_001_000, float(n * 100 + j))
                  for n in range(10) for j in range(100)]
        assert await store.writePoints(points) == 1000
    finally:
        monkeypatch.undo()
        await store.close()
    rows = list(cql.execute(f"SELECT source, value FROM {keyspace}.points"))
    assert sorted(r.value for r in rows) == [float(v) for v in range(1000)]
    assert len({r.source for r in rows}) == 10
