"""
The driver's connection reads Cassandra's answers however TCP cuts them:
protocol v5 wraps them in checksummed segments, and a read that ends
inside a segment's six-byte header must keep those bytes for the next
one (cassandra-driver 3.30 drops them, and the connection dies with "CRC
mismatch on header").  Against the real node, with every answer handed to
the connection in pieces of one byte to a few kilobytes.
"""

from __future__ import annotations

from itertools import cycle

import pytest
import pytest_twisted
from twisted.internet import reactor

from meetrd.points import Point, freezeTags
from meetrd.search import Query, runSearch
from meetrd.settings import settingsFromMapping
from meetrd.store import MetricStore
from tests.support import storeSettings

pytestmark = pytest.mark.cassandra

BASE = 1_800_000_000_000
# Sizes of the pieces an answer is handed over in, in turn: every cut
# falls somewhere else in the segments, headers included.
PIECES = [1, 2, 3, 4, 5, 6, 7, 11, 64, 1500, 5, 4096]


@pytest.fixture
def piecemeal(monkeypatch):
    """
    Every connection of the driver's Twisted reactor gets what it reads
    in pieces of the L{PIECES} sizes.
    """
    from cassandra.io.twistedreactor import TwistedConnectionProtocol

    whole = TwistedConnectionProtocol.dataReceived
    sizes = cycle(PIECES)

    def inPieces(self, data):
        while data:
            size = next(sizes)
            whole(self, data[:size])
            data = data[size:]

    monkeypatch.setattr(TwistedConnectionProtocol, "dataReceived", inPieces)


@pytest_twisted.ensureDeferred
async def test_answersCutAnywhereAreRead(piecemeal, node, keyspace):
    """
    A store whose connections read in pieces connects, writes 3,000
    points of 30 series (answers of one segment each) and reads them back
    (answers of several segments), summed and counted exactly.
    """
    store = MetricStore(storeSettings(node, keyspace), 0, reactor)
    await store.connect()
    try:
        points = [Point("pieces", freezeTags({"node": f"n{i % 3}",
                                              "i": str(i % 30)}),
                        BASE + step * 1000, float(step))
                  for i in range(30) for step in range(100)]
        assert await store.writePoints(points) == 3000
        query = Query("pieces", str(BASE), str(BASE + 100_000), BASE,
                      BASE + 100_000, "count", groupBy="i")
        found = await runSearch(store, query,
                                settingsFromMapping({}, "test").limits)
        assert found["value"] == 3000
        assert sorted(g["value"] for g in found["groups"]) == [100] * 30
        # About 190 KB of rows: more than one segment's 128 KiB.
        raw = await store._read(f"SELECT source, bucket, series_id, ts, "
                                f"value FROM {keyspace}.points", None)
        assert len(raw) == 3000
        assert sum(row[-1] for row in raw) == 30 * sum(range(100))
    finally:
        await store.close()
