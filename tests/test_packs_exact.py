"""
Rollup packs (L{meetrd.packs}) answer exactly what the raw points answer,
against the real Cassandra node: random points over four packs of the
hour level, random late points and rewrites that are rolled up and
merged again, rolled up but not merged yet, or still waiting; random
ranges, intervals, aggregations and groups, compared with a store
without rollups on the same keyspace.
"""

from __future__ import annotations

import itertools
import time

import pytest
import pytest_twisted
from hypothesis import HealthCheck, example, given, settings as hypothesisSettings
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.threads import blockingCallFromThread, deferToThread

from meetrd.packs import PACK_BUCKETS, decodePack, encodePack, mergeRows
from meetrd.aggregate import Partial
from meetrd.points import Point, freezeTags
from meetrd.schema import DIRTY_SHARDS
from tests.support import uniqueKeyspace
from tests.test_rollup_exact import Stores as ExactStores, compareSearches

pytestmark = pytest.mark.cassandra

HOUR = 3_600_000
SPAN = HOUR * PACK_BUCKETS
# Four packs of the hour level that ended at least one pack ago.
WINDOW = 4 * SPAN
START = (int(time.time() * 1000) // SPAN - 5) * SPAN
SERIES = [freezeTags({"node": "pack:1", "cpu": "0"}),
          freezeTags({"node": "pack:1", "cpu": "1"}),
          freezeTags({"node": "pack:2", "cpu": "0"}),
          freezeTags({"node": "pack:3"})]
_names = itertools.count()


def test_packBlobRoundTrip():
    """
    A pack's cells come back from its blob as they went in, empty
    buckets left out, and rows of one bucket from several raw partitions
    merge into one cell.
    """
    cells = {0: Partial(2, 3.5, 1.0, 2.5, 10, 1.0, 20, 2.5, None, 1.125),
             31: Partial(1, -4.0, -4.0, -4.0, 99, -4.0, 99, -4.0, None,
                         None)}
    assert decodePack(encodePack(cells)) == cells
    merged = mergeRows([
        (b"s", 3, 1, 2.0, 2.0, 2.0, 5, 2.0, 5, 2.0, 0.0),
        (b"s", 3, 2, 10.0, 4.0, 6.0, 1, 4.0, 9, 6.0, 2.0)])
    assert merged[b"s"][3].count == 3
    assert merged[b"s"][3].total == 12.0
    assert (merged[b"s"][3].minimum, merged[b"s"][3].maximum) == (2.0, 6.0)
    assert (merged[b"s"][3].firstTs, merged[b"s"][3].lastTs) == (1, 9)


class Stores(ExactStores):
    """
    A store with the levels 1m and 1h (and its rollup service on a Clock
    past the window) and one without, on one keyspace.
    """

    def __init__(self, node, keyspace):
        super().__init__(node, keyspace, levels=("1m", "1h"))

    async def rollWithoutMerging(self):
        """
        Roll up every marked raw partition, as another instance would,
        without merging the packs that marks.
        """
        for shard in range(DIRTY_SHARDS):
            for source, bucket, _, markedAt in \
                    await self.rolled.dirtyPartitions(shard):
                await self.rolled.rollPartition(source, bucket)
                await self.rolled.clearDirty(shard,
                                             [(source, bucket, markedAt)])



values = st.one_of(st.integers(-1000, 1000).map(float),
                   st.floats(-1e6, 1e6, allow_nan=False, width=64))
points = st.lists(st.tuples(st.integers(0, len(SERIES) - 1),
                            st.integers(0, WINDOW - 1), values),
                  min_size=1, max_size=80)
ranges = st.tuples(st.integers(-HOUR, WINDOW), st.integers(0, WINDOW + HOUR))
intervals = st.sampled_from([None, HOUR, 2 * HOUR, 24 * HOUR, SPAN,
                             3 * SPAN])


WHOLE = [(series, pack * SPAN + 7 * HOUR + series, float(pack - series))
         for series in range(len(SERIES)) for pack in range(4)]
EVERY_WAY = [((0, WINDOW - 1), None, "sum", None),
             ((0, WINDOW - 1), HOUR, "avg", "node"),
             ((SPAN - HOUR, 3 * SPAN + HOUR), 2 * HOUR, "max", "cpu")]


@hypothesisSettings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
# Whatever hypothesis draws, packs are read whole: after a merge, and with
# late points of one source still waiting (its packs marked by the write,
# the others' read).
@example(first=WHOLE, late=[(2, SPAN + 9, 5.0)], afterLate="merged",
         searched=EVERY_WAY)
@example(first=WHOLE, late=[(2, SPAN + 9, 5.0), (2, 2 * SPAN, -1.0)],
         afterLate="waiting", searched=EVERY_WAY)
@given(first=points, late=points,
       afterLate=st.sampled_from(["merged", "rolled", "waiting"]),
       searched=st.lists(
           st.tuples(ranges, intervals,
                     st.sampled_from(["sum", "avg", "min", "max", "count"]),
                     st.sampled_from([None, "node", "cpu"])),
           min_size=1, max_size=6))
def packsEqualRaw(stores, first, late, afterLate, searched):
    """
    One example, run in a thread: the Twisted work is handed to the
    reactor and waited for.
    """
    metric = f"packs.{next(_names)}"

    def write(batch):
        return stores.rolled.writePoints([
            Point(metric, SERIES[s], START + ts, value)
            for s, ts, value in batch])

    async def scenario():
        await write(first)
        await stores.tick()
        await write(late)
        if afterLate == "merged":
            await stores.tick()
        elif afterLate == "rolled":
            await stores.rollWithoutMerging()
        await compareSearches(stores, metric, START, searched)

    blockingCallFromThread(reactor,
                           lambda: Deferred.fromCoroutine(scenario()))


@pytest_twisted.ensureDeferred
async def test_packsEqualRaw(node, cql):
    """
    For random points, late points and rewrites (merged again, rolled up
    but not merged, or still waiting for their rollup) and random
    searches, the answer read with packs equals the raw answer: count,
    min and max exactly, sum and avg to a relative 1e-9.  Packs were
    merged and read: the comparisons were not all rows against raw.
    """
    keyspace = uniqueKeyspace("packs")
    stores = Stores(node, keyspace)
    await stores.connect()
    try:
        await deferToThread(packsEqualRaw, stores)
    finally:
        await stores.close()
        cql.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")
    assert stores.service.packsMerged > 0
    assert stores.rolled.packRowsRead > 0
