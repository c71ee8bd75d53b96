"""
The store against the real Cassandra node: what is written is in
Cassandra, and searches aggregate it there.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import reactor

from meetrd.indexqueue import QUEUED_AT_MOST
from meetrd.points import Point, freezeTags
from meetrd.search import Query, runSearch
from meetrd.settings import settingsFromMapping
from meetrd.store import (
    MAX_BATCH_ROWS,
    WRITE_SLICE,
    MetricStore,
    StoreUnavailable,
)
from meetrd.writeplan import COUNT_STEP, ShapeMemo
from tests.support import recordShapedPlans

pytestmark = pytest.mark.cassandra

BASE = 1071730098000  # 2003-12-18 12:18:18+0530


def settingsFor(node, keyspace, **cassandra):
    return settingsFromMapping({"cassandra": {
        "contact_points": [node[0]], "port": node[1], "keyspace": keyspace,
        "consistency": {"read": "ONE", "write": "ONE"}, **cassandra}}, "test")


@pytest_twisted.async_yield_fixture()
async def store(node, keyspace):
    """
    A connected store on the module's keyspace.
    """
    store = MetricStore(settingsFor(node, keyspace).cassandra, 0, reactor)
    await store.connect()
    yield store
    await store.close()


def points(metric, values, tags=None, start=BASE, step=1000):
    frozen = freezeTags(tags)
    return [Point(metric, frozen, start + i * step, float(v))
            for i, v in enumerate(values)]


async def search(store, metric, fromMs, toMs, aggregation, **options):
    settings = settingsFromMapping({}, "test")
    query = Query(metric, str(fromMs), str(toMs), fromMs, toMs, aggregation,
                  **options)
    return await runSearch(store, query, settings.limits)


@pytest_twisted.ensureDeferred
async def test_writtenPointsAreInCassandra(store, cql, keyspace):
    """
    Written points and their series are rows of Cassandra's tables.
    """
    written = await store.writePoints(points("in.cassandra", [1, 2, 3]))
    assert written == 3
    series = list(cql.execute(
        f"SELECT series_id, tags FROM {keyspace}.series_index "
        f"WHERE metric = 'in.cassandra' AND slice = %s", (BASE // 86400000,)))
    assert len(series) == 1
    rows = list(cql.execute(
        f"SELECT ts, value FROM {keyspace}.points WHERE source = %s "
        f"AND bucket = %s AND series_id = %s",
        ("s:" + series[0].series_id.hex(), BASE // 86400000,
         series[0].series_id)))
    assert [r.value for r in rows] == [1.0, 2.0, 3.0]


@pytest_twisted.ensureDeferred
async def test_everyAggregation(store):
    """
    Each aggregation over an inclusive range, bounds included.
    """
    await store.writePoints(points("aggs", [5, 1, 4, 2, 3]))
    last = BASE + 4000
    expected = {"sum": 15.0, "avg": 3.0, "min": 1.0, "max": 5.0, "count": 5,
                "first": 5.0, "last": 3.0}
    for aggregation, value in expected.items():
        result = await search(store, "aggs", BASE, last, aggregation)
        assert result["value"] == value, aggregation
    inner = await search(store, "aggs", BASE + 1000, last - 1000, "sum")
    assert inner["value"] == 7.0


@pytest_twisted.ensureDeferred
async def test_emptyRange(store):
    """
    A range without points: count 0, the other aggregations null.
    """
    await store.writePoints(points("sparse", [1]))
    for aggregation in ("sum", "avg", "min", "max", "first", "last"):
        result = await search(store, "sparse", BASE + 1, BASE + 5000,
                              aggregation)
        assert result["value"] is None
    result = await search(store, "sparse", BASE + 1, BASE + 5000, "count")
    assert result["value"] == 0
    result = await search(store, "never.written", 0, BASE, "count")
    assert result["value"] == 0


@pytest_twisted.ensureDeferred
async def test_tagsGroupsAndIntervals(store):
    """
    Tag filters, group_by and intervals over series of two nodes.
    """
    await store.writePoints(
        points("net", [1, 2, 3, 4], {"node": "a:1", "dc": "eu"})
        + points("net", [10, 20, 30, 40], {"node": "b:1", "dc": "us"})
        + points("net", [100], {"dc": "eu"}))
    end = BASE + 3000
    everything = await search(store, "net", BASE, end, "sum")
    assert everything["value"] == 210.0
    eu = await search(store, "net", BASE, end, "sum",
                      tagFilters=(("dc", frozenset({"eu"})),))
    assert eu["value"] == 110.0
    one = await search(store, "net", BASE, end, "max",
                       tagFilters=(("node", frozenset({"b:1"})),))
    assert one["value"] == 40.0
    grouped = await search(store, "net", BASE, end, "sum", groupBy="node")
    assert grouped["groups"] == [
        {"tags": {"node": "a:1"}, "value": 10.0},
        {"tags": {"node": "b:1"}, "value": 100.0},
        {"tags": {"node": None}, "value": 100.0}]
    stepped = await search(store, "net", BASE, end, "last", intervalMs=2000,
                           tagFilters=(("dc", frozenset({"us"})),))
    assert stepped["points"] == [["2003-12-18T06:48:18Z", 20.0],
                                 ["2003-12-18T06:48:20Z", 40.0]]


@pytest_twisted.ensureDeferred
async def test_acrossPartitions(store):
    """
    A series spanning several partitions, and one partition written in
    several batches, aggregate as one.
    """
    count = MAX_BATCH_ROWS * 2 + 500
    await store.writePoints(points("big", [1] * count, step=120_000))
    end = BASE + (count - 1) * 120_000
    assert (end - BASE) // 86400000 >= 2
    result = await search(store, "big", BASE, end, "count")
    assert result["value"] == count
    daily = await search(store, "big", BASE, end, "count",
                         intervalMs=86400000)
    assert sum(v for _, v in daily["points"]) == count


@pytest_twisted.ensureDeferred
async def test_rewriteIsIdempotent(store):
    """
    Writing a point again replaces it: series and timestamp are its key.
    """
    await store.writePoints(points("again", [1, 2]))
    await store.writePoints(points("again", [5, 2]))
    result = await search(store, "again", BASE, BASE + 1000, "sum")
    assert result["value"] == 7.0


@pytest_twisted.ensureDeferred
async def test_retentionIsTTL(node, keyspace, cql):
    """
    With a retention, every write carries it as a TTL.
    """
    store = MetricStore(settingsFor(node, keyspace).cassandra, 3600, reactor)
    await store.connect()
    try:
        await store.writePoints(points("kept.for.an.hour", [1]))
    finally:
        await store.close()
    row = cql.execute(
        f"SELECT series_id, TTL(bucket_ms) FROM {keyspace}.series_index "
        f"WHERE metric = 'kept.for.an.hour' AND slice = %s",
        (BASE // 86400000,)).one()
    # The index row outlives the points by one index slice.
    assert 3600 + 86400 - 100 < row[1] <= 3600 + 86400
    ttl = cql.execute(
        f"SELECT TTL(value) FROM {keyspace}.points WHERE source = %s AND "
        f"bucket = %s", ("s:" + row.series_id.hex(), BASE // 86400000)).one()
    assert 3500 < ttl[0] <= 3600


@pytest_twisted.ensureDeferred
async def test_unreachable(keyspace):
    """
    Connecting to a port where nothing listens fails fast, naming it, and
    writes before a connection fail as unavailable.
    """
    store = MetricStore(
        settingsFor(("127.0.0.1", 1), keyspace, connect_timeout="2s").cassandra,
        0, reactor)
    with pytest.raises(StoreUnavailable, match=r"connecting to Cassandra at 127\.0\.0\.1:1"):
        await store.writePoints(points("x", [1]))
    # A write of several slices fails as one slice does, not wrapped.
    with pytest.raises(StoreUnavailable, match=r"connecting to Cassandra"):
        await store.writePoints(points("x", range(3 * WRITE_SLICE)))
    with pytest.raises(StoreUnavailable, match=r"cannot reach Cassandra at "
                                              r"127\.0\.0\.1:1"):
        await store.connect()
    assert not store.ready


@pytest_twisted.ensureDeferred
async def test_sparseYearReadsOnlyFilledBuckets(store):
    """
    A search over a year of a node's hourly partitions reads only the
    partitions that hold points, found through the bucket index.
    """
    hour = 3_600_000
    start = 1_700_000_000_000 - 1_700_000_000_000 % hour
    stamps = [start + k * 97 * hour + 5 for k in range(6)]
    await store.writePoints([
        Point("sparse.node", freezeTags({"node": "sparse:1"}), ts, 2.0)
        for ts in stamps])
    end = start + 365 * 24 * hour
    before = store.requests
    result = await search(store, "sparse.node", start, end, "sum")
    assert result["value"] == 12.0
    # The slice index, the index of the six days that hold points (one
    # request for all, as no tag filter is pushed down), the bucket index
    # of the one source, and the six filled partitions.
    assert store.requests - before == 1 + 1 + 1 + len(stamps)
    narrow = await search(store, "sparse.node", start, stamps[2], "count")
    assert narrow["value"] == 3
    stepped = await search(store, "sparse.node", start, end, "count",
                           intervalMs=24 * hour)
    assert sum(v for _, v in stepped["points"]) == 6


@pytest_twisted.ensureDeferred
async def test_intervalsBeforeTheEpoch(store):
    """
    Intervals over points before 1970 are aligned to the epoch like the
    others.
    """
    await store.writePoints(points("old", [1, 2, 3], start=-5000, step=1000))
    stepped = await search(store, "old", -100_000, 0, "sum", intervalMs=2000)
    assert stepped["points"] == [["1969-12-31T23:59:54Z", 1.0],
                                 ["1969-12-31T23:59:56Z", 5.0]]
    assert stepped["value"] == 6.0


@pytest_twisted.ensureDeferred
async def test_overflowingSumIsNull(store):
    """
    A sum beyond a double's range answers null instead of failing.
    """
    await store.writePoints(points("huge", [1.7e308, 1.7e308]))
    result = await search(store, "huge", BASE, BASE + 1000, "sum")
    assert result["value"] is None
    result = await search(store, "huge", BASE, BASE + 1000, "max")
    assert result["value"] == 1.7e308


@pytest_twisted.ensureDeferred
async def test_loneRowsShareRequests(store):
    """
    Points that are each alone in their partition go ten to a request
    when they share a replica, and every one of them is stored.
    """
    def lone(ts):
        return [Point(f"lone.{i}", (), ts, float(i)) for i in range(25)]

    await store.writePoints(lone(BASE))
    before = store.requests
    await store.writePoints(lone(BASE + 1000))
    assert store.requests - before == 3
    for i in (0, 13, 24):
        result = await search(store, f"lone.{i}", BASE, BASE + 1000, "sum")
        assert result["value"] == 2.0 * i


@pytest_twisted.ensureDeferred
async def test_largeWriteGoesInSlices(store, cql, keyspace):
    """
    50,000 points of 500 nodes (a batch at the API's limit) are planned and
    sent a slice of at most L{WRITE_SLICE} points at a time, each slice
    started in a reactor turn of its own, and every point is in Cassandra
    once the write fires with their number.
    """
    from twisted.internet.task import Cooperator

    # One step a turn: other work scheduled during a slice (here a mark
    # per slice) runs before the next slice starts.
    store._cooperator = Cooperator(
        terminationPredicateFactory=lambda: lambda: True,
        scheduler=lambda step: reactor.callLater(0, step))
    sliced = []
    ran = []
    placed = []
    writeSlice = store._writeSlice
    # Reactor turns, counted until the first slice starts.
    turns = [0]
    firstSliceAt = []

    def turn():
        turns[0] += 1
        if not firstSliceAt:
            reactor.callLater(0, turn)

    def recorded(chunk, nodeSeries=None, indexBehind=False):
        if not firstSliceAt:
            firstSliceAt.append(turns[0])
        sliced.append((len(chunk), len(ran)))
        placed.append(nodeSeries)
        reactor.callLater(0, ran.append, len(sliced))
        return writeSlice(chunk, nodeSeries, indexBehind)

    store._writeSlice = recorded
    batch = [Point(f"large.m{j}", freezeTags({"node": f"large-{n}"}),
                   BASE + 5000, float(n * 100 + j))
             for n in range(500) for j in range(100)]
    reactor.callLater(0, turn)
    written = await store.writePoints(batch)
    assert written == 50_000
    # The series of the 50,000 points were counted by node a step of
    # COUNT_STEP points a turn before the first slice.
    assert firstSliceAt[0] >= 50_000 // COUNT_STEP
    assert [size for size, _ in sliced] == [WRITE_SLICE] * (
        50_000 // WRITE_SLICE)
    assert [before for _, before in sliced] == list(range(len(sliced)))
    # Every slice places its series by the whole write's count of each
    # node's series, 100 for each of the 500 nodes (a slice holds 10).
    assert all(counts == placed[0] for counts in placed)
    assert len(placed[0]) == 500 and set(placed[0].values()) == {100}
    result = await search(store, "large.m7", BASE, BASE + 10_000, "count")
    assert result["value"] == 500
    total = await search(store, "large.m99", BASE, BASE + 10_000, "sum")
    assert total["value"] == sum(float(n * 100 + 99) for n in range(500))


@pytest_twisted.ensureDeferred
async def test_indexBehindPointsIsWrittenWhole(store, cql, keyspace):
    """
    A write with C{indexBehind} (the hunter's) of 4,000 new series of 8
    nodes over 5 metrics hands its index rows to the store's queue; once
    the store is idle every series has its index row in Cassandra and a
    search finds and sums them all.  A write without it (the API's)
    writes its index rows itself.
    """
    queue = store.indexQueue
    before = queue.written
    written = []
    for node in range(8):
        written.extend(Point(f"behind.m{m}", freezeTags(
            {"node": f"host-{node}", "cpu": str(c)}), BASE + 5000, 1.0)
            for m in range(5) for c in range(100))
    assert await store.writePoints(written, indexBehind=True) == 4000
    assert queue.queued + queue.written - before == 4000
    await store.whenIdle()
    assert queue.queued == 0 and queue.written - before == 4000
    for m in range(5):
        rows = list(cql.execute(
            f"SELECT series_id FROM {keyspace}.series_index WHERE metric = "
            f"%s AND slice = %s", (f"behind.m{m}", BASE // 86400000)))
        assert len(rows) == 800
        found = await search(store, f"behind.m{m}", BASE, BASE + 10_000,
                             "sum", groupBy="node")
        assert found["value"] == 800.0
        assert [g["value"] for g in found["groups"]] == [100.0] * 8
    await store.writePoints(points("behind.api", [1, 2]))
    assert queue.written - before == 4000
    assert (await search(store, "behind.api", BASE, BASE + 10_000,
                         "sum"))["value"] == 3.0


@pytest_twisted.ensureDeferred
async def test_shapedWritesAreInCassandra(store, monkeypatch):
    """
    A hunted page of 103 series written 30 times with its target's memo:
    every write after the first is planned from the page's shape, and
    every point of every write is found, summed and counted by series.
    """
    shaped = recordShapedPlans(monkeypatch)
    tags = [freezeTags({"node": "shaped-1", "slot": str(i)})
            for i in range(103)]
    memo = ShapeMemo()
    for scrape in range(30):
        page = [Point("shaped.m", frozen, BASE + scrape * 10_000,
                      float(scrape))
                for frozen in tags]
        assert await store.writePoints(page, indexBehind=True,
                                       memo=memo) == 103
    assert shaped == [False] + [True] * 29
    await store.whenIdle()
    found = await search(store, "shaped.m", BASE, BASE + 300_000, "count",
                         groupBy="slot")
    assert found["value"] == 30 * 103
    assert len(found["groups"]) == 103
    total = await search(store, "shaped.m", BASE, BASE + 300_000, "sum")
    assert total["value"] == 103 * sum(range(30))


@pytest_twisted.ensureDeferred
async def test_fullIndexQueueMakesTheWriteWait(store, cql, keyspace):
    """
    While the index queue has no room, a write with C{indexBehind} writes
    its index rows itself, as an API write does: they are in Cassandra
    when the write fires, and the queue did not grow.
    """
    queue = store.indexQueue
    queue.limit = queue.queued + 10
    try:
        before = queue.written
        written = [Point("full.queue", freezeTags({"node": "full-1",
                                                  "cpu": str(c)}),
                         BASE + 7000, 1.0) for c in range(50)]
        assert await store.writePoints(written, indexBehind=True) == 50
        assert queue.written == before and queue.queued == 0
        rows = list(cql.execute(
            f"SELECT series_id FROM {keyspace}.series_index WHERE metric = "
            f"'full.queue' AND slice = %s", (BASE // 86400000,)))
        assert len(rows) == 50
    finally:
        queue.limit = QUEUED_AT_MOST
