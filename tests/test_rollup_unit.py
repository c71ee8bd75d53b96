"""
Rollups without Cassandra: the rows computed from a raw partition, which
writes mark partitions for rollup, and the rollup service's schedule,
shards, lag and retries with a C{Clock}.
"""

from __future__ import annotations

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from meetrd.points import Point, freezeTags
from meetrd.rollup import PART_BUCKETS, rollUp, rollupPart
from meetrd.rollupservice import RollupService
from meetrd.schema import DIRTY_SHARDS, dirtyShard
from meetrd.settings import RollupServiceSettings, SettingsError, Shard, settingsFromMapping
from meetrd.sketch import decodeSketch
from meetrd.store import StoreUnavailable
from meetrd.writeplan import WriteCache, planWrite

HOUR = 3_600_000


def test_rowsPerLevelBucketAndSeries():
    """
    Each level gives one row per series per level bucket, with count, sum,
    extremes, first and last point and a sketch of the values.
    """
    rows = [(b"a", 61_000, 4.0), (b"a", 1_000, 1.0), (b"a", 59_000, -2.0),
            (b"b", 2_000, 10.0)]
    found = rollUp(rows, [60_000, 3_600_000])
    byKey = {(r.resolutionMs, r.seriesId, r.ts): r for r in found}
    assert sorted(byKey) == [
        (60_000, b"a", 0), (60_000, b"a", 60_000), (60_000, b"b", 0),
        (3_600_000, b"a", 0), (3_600_000, b"b", 0)]
    minute = byKey[(60_000, b"a", 0)]
    assert (minute.count, minute.total, minute.minimum, minute.maximum) == \
        (2, -1.0, -2.0, 1.0)
    assert (minute.firstTs, minute.firstValue) == (1_000, 1.0)
    assert (minute.lastTs, minute.lastValue) == (59_000, -2.0)
    hour = byKey[(3_600_000, b"a", 0)]
    assert (hour.count, hour.total, hour.lastTs, hour.lastValue) == \
        (3, 3.0, 61_000, 4.0)
    sketch = decodeSketch(hour.sketch)
    assert sketch.count == 3
    assert sketch.get_quantile_value(1.0) == pytest.approx(4.0, rel=0.01)


def test_bucketsBeforeTheEpoch():
    """
    Level buckets are aligned to the epoch on both sides of it.
    """
    found = rollUp([(b"a", -1, 1.0), (b"a", -60_001, 2.0)], [60_000])
    assert sorted(r.ts for r in found) == [-120_000, -60_000]
    assert rollupPart(-1, 60_000) == -1
    assert rollupPart(60_000 * PART_BUCKETS, 60_000) == 1


def test_writesMarkPartitions():
    """
    With rollups on, a write marks an open partition once per process and
    a partition whose bucket has ended at every write; with rollups off it
    marks nothing.
    """
    tags = freezeTags({"node": "n"})
    now = 10 * HOUR / 1000 + 30

    def write(cache, ts):
        plan = planWrite([Point("m", tags, ts, 1.0)], cache, now)
        cache.remember(plan, now)
        return plan.dirtyRows

    cache = WriteCache(0, 86_400_000, rollups=True)
    assert write(cache, 10 * HOUR + 5) == [("n:n", 10, HOUR)]
    assert write(cache, 10 * HOUR + 6) == []
    assert write(cache, 9 * HOUR + 5) == [("n:n", 9, HOUR)]
    assert write(cache, 9 * HOUR + 6) == [("n:n", 9, HOUR)]
    assert write(WriteCache(0, 86_400_000), 9 * HOUR) == []


def test_partitionsEndedByTheAckAreMarkedAgain():
    """
    Once a write's points are in, the partitions whose bucket had ended by
    then are listed to be marked again (a rollup may have read them
    between the marker and the points); a bucket still open is not.
    """
    from meetrd.writeplan import endedBy

    tags = freezeTags({"node": "n"})
    plan = planWrite([Point("m", tags, 9 * HOUR + 5, 1.0),
                      Point("m", tags, 10 * HOUR + 5, 1.0),
                      Point("s", freezeTags({}), 10 * HOUR, 1.0)],
                     WriteCache(0, 86_400_000, rollups=True), 0)
    assert endedBy(plan, 10 * HOUR - 1) == []
    assert endedBy(plan, 10 * HOUR) == [("n:n", 9, HOUR)]
    assert sorted(endedBy(plan, 11 * HOUR)) == [("n:n", 9, HOUR),
                                                ("n:n", 10, HOUR)]
    assert len(endedBy(plan, 24 * HOUR)) == 3


def test_indexKeptAsLongAsRawOrRollups():
    """
    Index rows are kept as long as the longest of the raw retention and
    the levels' retentions, and forever when any of them is forever.
    """
    from meetrd.writeplan import indexRetention

    assert indexRetention(3600, []) == 3600
    assert indexRetention(3600, [86400, 7200]) == 86400
    assert indexRetention(3600, [86400, 0]) == 0
    assert indexRetention(0, [86400]) == 0
    assert indexRetention(90 * 86400, [86400]) == 90 * 86400


def test_markerShards():
    """
    Sources spread over the marker shards, always to the same one.
    """
    shards = {dirtyShard(f"n:node{i}") for i in range(1000)}
    assert len(shards) == DIRTY_SHARDS
    assert dirtyShard("n:a") == dirtyShard("n:a")


def test_rollupSettings():
    """
    Levels are listed finest first, each a multiple of the one before;
    anything else is refused naming the key.
    """
    settings = settingsFromMapping({"rollups": [
        {"resolution": "1m", "retention": "90d"}, {"resolution": "1h"}]}, "x")
    assert [(r.resolution, r.retention) for r in settings.rollups] == [
        (60.0, 90 * 86400.0), (3600.0, 0.0)]
    for bad, message in (
            ([{"resolution": "1h"}, {"resolution": "1m"}], "rollups:"),
            ([{"resolution": "1m"}, {"resolution": "90s"}], "rollups:"),
            ([{"resolution": "500ms"}], "rollups.0.resolution:"),
            ([{"resolution": "1m", "retention": "-1s"}], "rollups.0.retention:"),
            ([{"resolution": "1m", "size": 3}], "rollups.0.size: unknown key")):
        with pytest.raises(SettingsError, match=message):
            settingsFromMapping({"rollups": bad}, "x")


class MarkedStore:
    """
    A store that holds markers in memory and records what it rolls up.
    """

    ready = True

    def __init__(self, markers):
        self.markers = markers
        self.rolled = []
        self.together = []
        self.cleared = []
        self.failing = set()
        self.tooLarge = set()

    def dirtyPartitions(self, shard):
        return succeed([m[1:] for m in self.markers if m[0] == shard])

    def rollPartition(self, source, bucket):
        if (source, bucket) in self.failing:
            return fail(StoreUnavailable("timed out"))
        self.rolled.append((source, bucket))
        return succeed(3)

    def rollPartitions(self, bucket, sources):
        if any((source, bucket) in self.failing for source in sources):
            return fail(StoreUnavailable("timed out"))
        if any((source, bucket) in self.tooLarge for source in sources):
            return succeed([])
        self.together.append((bucket, list(sources)))
        self.rolled.extend((source, bucket) for source in sources)
        return succeed(list(sources))

    def clearDirty(self, shard, marks):
        self.cleared.extend((shard, *mark) for mark in marks)
        return succeed(None)

    packMarks: list = []
    merged: list = []
    packsCleared: list = []
    failingPacks: set = set()

    def packMarkers(self, shard):
        return succeed([m[1:] for m in self.packMarks if m[0] == shard])

    def mergePack(self, resolution, source, pack):
        if (source, pack) in self.failingPacks:
            return fail(StoreUnavailable("timed out"))
        self.merged.append((resolution, source, pack))
        return succeed(4)

    def clearPackMarkers(self, shard, marks):
        self.packsCleared.extend((shard, *mark) for mark in marks)
        return succeed(None)


def service(store, index=0, count=1, grace=60.0):
    clock = Clock()
    rollup = RollupService(store, RollupServiceSettings(interval="10s",
                                                        grace=f"{grace}s"),
                           Shard(index=index, count=count), clock)
    return rollup, clock


def test_rollsDuePartitionsOnly():
    """
    On each tick, the partitions whose bucket ended more than the grace
    ago are rolled up and their markers cleared, at the write time read;
    the others wait.
    """
    source = "n:a"
    shard = dirtyShard(source)
    store = MarkedStore([(shard, source, 0, HOUR, 111),
                         (shard, source, 1, HOUR, 222)])
    rollup, clock = service(store)
    rollup.startService()
    clock.advance(HOUR / 1000 + 50)
    assert store.rolled == []
    clock.advance(20)
    assert store.rolled == [(source, 0)]
    assert store.cleared == [(shard, source, 0, 111)]
    assert (rollup.rolled, rollup.backlog, rollup.lag) == (1, 0, 0.0)
    rollup.stopService()


def test_freshMarkerSettlesFirst():
    """
    A marker of an ended partition is left alone for MARKER_SETTLE seconds
    after it was written (its write's points are landing), then rolled.
    """
    from meetrd.rollupservice import MARKER_SETTLE

    source = "n:a"
    shard = dirtyShard(source)
    writtenAt = 5 * HOUR / 1000
    store = MarkedStore([(shard, source, 0, HOUR, int(writtenAt * 1e6))])
    rollup, clock = service(store, grace=0)
    rollup.startService()
    clock.advance(writtenAt + MARKER_SETTLE - 1)
    assert store.rolled == []
    clock.advance(10)
    assert store.rolled == [(source, 0)]
    rollup.stopService()


def test_failedRollupKeepsItsMarkerAndShowsLag():
    """
    A rollup that fails leaves its marker (it is tried at the next tick)
    and the lag says how long it has been due.
    """
    source = "n:a"
    shard = dirtyShard(source)
    store = MarkedStore([(shard, source, 0, HOUR, 1)])
    store.failing.add((source, 0))
    rollup, clock = service(store, grace=0)
    rollup.startService()
    clock.advance(HOUR / 1000 + 100)
    assert store.cleared == []
    assert rollup.failures >= 1
    assert rollup.backlog == 1
    assert rollup.lag == pytest.approx(100, abs=10)
    store.failing.clear()
    clock.advance(10)
    assert store.cleared == [(shard, source, 0, 1)]
    assert (rollup.backlog, rollup.lag) == (0, 0.0)
    rollup.stopService()


def test_instancesShareTheShards():
    """
    Two instances look at disjoint halves of the marker shards, which
    together are all of them, so each partition is rolled by one.
    """
    markers = [(dirtyShard(f"n:{i}"), f"n:{i}", 0, HOUR, 1) for i in range(50)]
    first, second = MarkedStore(markers), MarkedStore(markers)
    a, clockA = service(first, 0, 2)
    b, clockB = service(second, 1, 2)
    assert set(a.shards).isdisjoint(b.shards)
    assert set(a.shards) | set(b.shards) == set(range(DIRTY_SHARDS))
    for rollup, clock in ((a, clockA), (b, clockB)):
        rollup.startService()
        clock.advance(HOUR)
    assert sorted(first.rolled + second.rolled) == sorted(
        (f"n:{i}", 0) for i in range(50))
    a.stopService()
    b.stopService()


def test_partitionsOfOneShardAndBucketAreRolledTogether():
    """
    Due partitions of one marker shard and one bucket number are rolled up
    by one call, in groups of at most ROLLED_TOGETHER, and their markers
    cleared with one call per group; a lone partition is rolled alone.
    """
    from meetrd.rollupservice import ROLLED_TOGETHER

    shard = 5
    sources = [f"n:{i}" for i in range(ROLLED_TOGETHER + 3)]
    store = MarkedStore([(shard, source, 0, HOUR, 7) for source in sources]
                        + [(shard, "n:lone", 1, HOUR, 8)])
    rollup, clock = service(store, grace=0)
    rollup.shards = [shard]
    rollup.startService()
    clock.advance(2 * HOUR / 1000 + 10)
    assert [len(group) for _, group in store.together] == [ROLLED_TOGETHER, 3]
    assert sorted(s for _, group in store.together for s in group) == \
        sorted(sources)
    assert ("n:lone", 1) in store.rolled
    assert sorted(store.cleared) == sorted(
        [(shard, source, 0, 7) for source in sources]
        + [(shard, "n:lone", 1, 8)])
    assert (rollup.rolled, rollup.backlog) == (len(sources) + 1, 0)
    rollup.stopService()


def test_groupTooLargeIsRolledOneByOne():
    """
    A group whose partitions hold too many rows to be read at once is
    rolled partition by partition; a failure in a group keeps every
    marker of it and counts each partition as failed.
    """
    def fourPartitions(mark, source):
        """
        Roll four partitions of shard 3, one of them marked as given.
        """
        store = MarkedStore([(3, f"n:{i}", 0, HOUR, 1) for i in range(4)])
        mark(store).add((source, 0))
        rollup, clock = service(store, grace=0)
        rollup.shards = [3]
        rollup.startService()
        clock.advance(HOUR / 1000 + 10)
        rollup.stopService()
        return store, rollup

    store, _ = fourPartitions(lambda s: s.tooLarge, "n:2")
    assert store.together == []
    assert sorted(store.rolled) == [(f"n:{i}", 0) for i in range(4)]
    assert len(store.cleared) == 4

    failing, rollup = fourPartitions(lambda s: s.failing, "n:1")
    assert failing.cleared == []
    assert (rollup.failures, rollup.backlog) == (4, 4)


def test_rollupBatchesArePacked():
    """
    Small rollup partitions share batches of at most ten partitions, 200
    rows and 4 KiB; a partition past any of those has batches of its own,
    of at most 200 rows; every row is written once.
    """
    from meetrd.store import (MAX_ROLLUP_PER_BATCH, PACKED_BATCH_BYTES,
                              ROLLUP_PARTITIONS_PER_BATCH, packRollupBatches)

    partitions = []
    for p, (rows, size) in enumerate([(3, 400)] * 25 + [(450, 9000)]
                                     + [(150, 3000), (60, 3000), (5, 5000)]):
        partitions.append(([(p, r) for r in range(rows)], size))
    sizes = {rows[0][0]: size for rows, size in partitions}
    batches = packRollupBatches(partitions)
    assert sorted(row for batch in batches for row in batch) == \
        sorted(row for rows, _ in partitions for row in rows)
    for batch in batches:
        owners = {p for p, _ in batch}
        assert len(batch) <= MAX_ROLLUP_PER_BATCH
        if len(owners) > 1:
            assert len(owners) <= ROLLUP_PARTITIONS_PER_BATCH
            assert sum(sizes[p] for p in owners) <= PACKED_BATCH_BYTES
    shared = [len({p for p, _ in b}) for b in batches
              if len({p for p, _ in b}) > 1]
    assert shared == [10, 10, 5]
    own = [len(b) for b in batches if {p for p, _ in b} == {25}]
    assert own == [200, 200, 50]


def test_notReadyStoreIsLeftAlone():
    """
    While the store is not connected, ticks do nothing; stopping waits for
    a rollup under way.
    """
    source = "n:a"
    store = MarkedStore([(dirtyShard(source), source, 0, HOUR, 1)])
    store.ready = False
    rollup, clock = service(store)
    rollup.startService()
    clock.advance(HOUR)
    assert store.rolled == []
    store.ready = True
    held = Deferred()
    store.rollPartition = lambda source, bucket: held
    clock.advance(10)
    stopped = rollup.stopService()
    assert stopped is not None and not stopped.called
    held.callback(3)
    assert stopped.called


def test_percentileNames():
    """
    pQ is a percentile for any Q strictly between 0 and 100, written
    without a leading zero; anything else is not.
    """
    from meetrd.aggregate import isAggregation, percentileOf

    assert percentileOf("p50") == 0.5
    assert percentileOf("p99.9") == pytest.approx(0.999)
    assert percentileOf("p0.5") == 0.005
    for bad in ("p0", "p0.0", "p100", "p150", "p05", "p-1", "p1e1", "p",
                "P50", "p50 "):
        assert percentileOf(bad) is None, bad
        assert not isAggregation(bad)
    assert isAggregation("sum") and isAggregation("p1")


def test_percentilesWithinOnePercent():
    """
    A percentile from sketches merged across many parts is within 1%
    (relative) of the value at that rank, and equals the one from a single
    sketch of all the values.
    """
    import random

    from meetrd.aggregate import Partial, summarizeValues

    rng = random.Random(7)
    values = [rng.lognormvariate(3, 2) for _ in range(5000)]
    parts = [values[i:i + 97] for i in range(0, len(values), 97)]
    merged = Partial()
    for part in parts:
        merged.merge(summarizeValues([(i, v) for i, v in enumerate(part)]))
    whole = summarizeValues([(i, v) for i, v in enumerate(values)])
    ranked = sorted(values)
    for name, q in (("p1", 0.01), ("p50", 0.5), ("p99", 0.99),
                    ("p99.9", 0.999)):
        exact = ranked[int(q * (len(values) - 1))]
        assert merged.value(name) == pytest.approx(exact, rel=0.01)
        assert merged.value(name) == pytest.approx(whole.value(name),
                                                   rel=1e-12)
    assert merged.count == 5000
    assert Partial().value("p50") is None


def mixedValues(rng, most, sigma):
    """
    Up to C{most} values: zeros, uniform ones either side of zero, and
    log-normal ones of both signs spread by C{sigma}.
    """
    return [rng.choice([0.0, rng.uniform(-1e3, 1e3),
                        rng.lognormvariate(0, sigma),
                        -rng.lognormvariate(0, sigma)])
            for _ in range(rng.randint(0, most))]


def test_sketchesDecodeAsTheLibraryDoes():
    """
    Decoding a stored sketch gives the same counts and quantiles, and
    merges the same, as the library's own decoder, for positive, negative
    and zero values and empty sketches.
    """
    import random

    from ddsketch.pb.ddsketch_pb2 import DDSketch as Message
    from ddsketch.pb.proto import DDSketchProto

    from meetrd.sketch import decodeSketch, encodeSketch, sketchOf

    rng = random.Random(3)
    for _ in range(200):
        values = mixedValues(rng, 300, 3)
        data = encodeSketch(sketchOf(values))
        message = Message()
        message.ParseFromString(data)
        expected = DDSketchProto.from_proto(message)
        found = decodeSketch(data)
        assert found.count == expected.count == len(values)
        more = sketchOf([1.0, 2.0, -3.0])
        for sketch in (found, expected):
            sketch.merge(more)
        for q in (0.001, 0.25, 0.5, 0.99, 0.999):
            assert found.get_quantile_value(q) == \
                expected.get_quantile_value(q)


def test_sketchBytesMatchTheLibrarysSketch():
    """
    The sketch the rollups encode from keyed values, and the one filled
    from them for raw percentiles, hold the very bins, zero count and
    quantiles of the library's sketch of the same values (added one by
    one), for positive, negative, zero, tiny and huge values and for no
    value at all.
    """
    import random

    from meetrd.sketch import decodeSketch, encodeSketch, filledSketch, \
        sketchBytesOf, sketchOf

    def bins(store):
        return {store.offset + i: count
                for i, count in enumerate(store.bins) if count}

    rng = random.Random(11)
    for round in range(300):
        values = mixedValues(rng, 200, 8)
        if round % 50 == 0:  # the ends of the mapping's range
            values += [1e-300, -1e-300, 1e300, -1e300]
        found = decodeSketch(sketchBytesOf(values))
        expected = decodeSketch(encodeSketch(sketchOf(values)))
        filled = filledSketch(values)
        assert bins(filled._store) == bins(expected._store)
        assert bins(filled._negative_store) == bins(expected._negative_store)
        assert filled.count == len(values)
        assert bins(found._store) == bins(expected._store)
        assert bins(found._negative_store) == bins(expected._negative_store)
        assert found._zero_count == expected._zero_count
        assert found.count == len(values)
        for q in (0.0, 0.01, 0.5, 0.99, 1.0):
            assert found.get_quantile_value(q) == \
                expected.get_quantile_value(q)


def test_packsMergedOnceClosedAndRolled():
    """
    A marked pack is merged, and its marker cleared at the write time
    read, once its buckets have closed past the grace and no raw
    partition under it waits for its rollup; a pack still open, one over a
    waiting raw partition, and one whose merge fails keep their markers
    and are merged on a later look.
    """
    from meetrd.packs import PACK_BUCKETS

    span = HOUR * PACK_BUCKETS
    source, other = "n:a", "n:b"
    store = MarkedStore([(dirtyShard(other), other, 33, HOUR, 5)])
    store.packMarks = [
        (dirtyShard(source), HOUR, source, 0, 10),
        (dirtyShard(source), HOUR, source, 1, 11),
        (dirtyShard(other), HOUR, other, 1, 12),
        (dirtyShard(source), HOUR, source, 2, 13),
    ]
    store.merged, store.packsCleared = [], []
    store.failingPacks = {(source, 0)}
    store.rollPartition = lambda source, bucket: fail(
        StoreUnavailable("still waiting"))
    store.rollPartitions = lambda bucket, sources: fail(
        StoreUnavailable("still waiting"))
    rollup, clock = service(store, grace=60.0)
    rollup.startService()
    clock.advance(2 * span / 1000 + 60)
    # Pack 1 of n:a is merged; pack 0 failed, pack 1 of n:b lies over the
    # waiting bucket 33 of n:b, pack 2 has not closed.
    assert store.merged == [(HOUR, source, 1)]
    assert store.packsCleared == [(dirtyShard(source), HOUR, source, 1, 11)]
    assert rollup.packsMerged == 1 and rollup.failures >= 1
    store.failingPacks = set()
    store.markers = []
    store.packMarks = [m for m in store.packMarks if m[3:] != (1, 11)]
    clock.advance(span / 1000)
    assert sorted(store.merged) == sorted([
        (HOUR, source, 1), (HOUR, source, 0), (HOUR, other, 1),
        (HOUR, source, 2)])
    rollup.stopService()


def test_freshPackMarkerSettlesFirst():
    """
    A pack marked moments ago (by a write whose raw marker may still be on
    its way) is merged only once its marker is MARKER_SETTLE seconds old,
    though its buckets closed long before.
    """
    from meetrd.packs import PACK_BUCKETS
    from meetrd.rollupservice import MARKER_SETTLE

    source = "n:a"
    span = HOUR * PACK_BUCKETS
    markedAt = 3 * span / 1000
    store = MarkedStore([])
    store.packMarks = [(dirtyShard(source), HOUR, source, 0,
                        int(markedAt * 1e6))]
    store.merged, store.packsCleared = [], []
    store.failingPacks = set()
    rollup, clock = service(store, grace=0)
    rollup.startService()
    clock.advance(markedAt + MARKER_SETTLE - 1)
    assert store.merged == []
    clock.advance(10)
    assert store.merged == [(HOUR, source, 0)]
    rollup.stopService()
