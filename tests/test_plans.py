"""
The write and read planners, without Cassandra: which rows a write sends,
when index rows are written again, how node partitions narrow for large
pages, and which reads a search plans.
"""

from __future__ import annotations

from meetrd.layout import NODE_BUCKET_MS, SERIES_BUCKET_MS, nodeClass, seriesId
from meetrd.points import Point, freezeTags
from meetrd.readplan import (
    MAX_FAN_OUT,
    MAX_IN_SERIES,
    SeriesRow,
    answerPoints,
    bucketsBySource,
    candidateBuckets,
    chooseLevels,
    partitionReads,
    planIndex,
    sourcesToPrune,
)
from meetrd.schema import MAX_INDEX_FILTERS
from meetrd.writeplan import WriteCache, countSeriesPerNode, planWrite

DAY = 86_400_000


def nodePoints(node, count, ts=DAY * 10, metric="m"):
    return [Point(metric, freezeTags({"node": node, "i": str(i)}), ts, 1.0)
            for i in range(count)]


def test_indexRowOncePerSeriesAndSlice():
    """
    The first write of a series in a slice lists its index row, its
    metric's slice row and its bucket row; the same write again lists
    none; a point in the next slice lists that slice's rows.
    """
    cache = WriteCache(0, DAY)
    first = planWrite(nodePoints("a", 3), cache, 100.0)
    assert len(first.indexRows) == 3
    assert first.sliceRows == [("m", 10)]
    assert first.bucketRows == [("n:a", DAY * 10 // NODE_BUCKET_MS)]
    assert first.count == 3
    cache.remember(first, 100.0)
    again = planWrite(nodePoints("a", 3), cache, 1e9)
    assert again.indexRows == again.bucketRows == again.sliceRows == []
    nextDay = planWrite(nodePoints("a", 1, ts=DAY * 11), cache, 1e9)
    assert [row.slice for _, row in nextDay.indexRows] == [11]
    assert nextDay.sliceRows == [("m", 11)]


def test_unrememberedRowsAreWrittenAgain():
    """
    Rows of a write that failed were not remembered: the next write lists
    them again.
    """
    cache = WriteCache(0, DAY)
    planWrite(nodePoints("a", 2), cache, 1.0)
    assert len(planWrite(nodePoints("a", 2), cache, 2.0).indexRows) == 2


def test_rowsRefreshedWithinHalfASlice():
    """
    With a retention, index rows carry retention + one slice and are
    written again once half a slice has passed, so that any point written
    later expires before them.
    """
    cache = WriteCache(3600, DAY)
    assert cache.ttl == 3600 + 86400
    plan = planWrite(nodePoints("a", 1), cache, 0.0)
    cache.remember(plan, 0.0)
    assert planWrite(nodePoints("a", 1), cache, 43_199.0).indexRows == []
    late = planWrite(nodePoints("a", 1), cache, 43_200.0)
    assert len(late.indexRows) == 1 and len(late.bucketRows) == 1


def test_largePagesNarrowTheirBuckets():
    """
    The series of one node in one write choose the node's partition
    family: up to 1,000 hourly, up to 10,000 in 6-minute buckets, more in
    36-second ones; series times bucket width stays at 1,000 series-hours.
    """
    assert nodeClass(1) == (NODE_BUCKET_MS, "")
    assert nodeClass(1000) == (NODE_BUCKET_MS, "")
    assert nodeClass(1001) == (360_000, "/6m")
    assert nodeClass(10_001) == (36_000, "/36s")
    assert nodeClass(10**6) == (36_000, "/36s")
    for most, width in ((1000, NODE_BUCKET_MS), (10_000, 360_000),
                        (100_000, 36_000)):
        assert most * width == 1000 * NODE_BUCKET_MS
    plan = planWrite(nodePoints("big", 1500) + nodePoints("small", 2),
                     WriteCache(0, DAY), 0.0)
    sources = {source for source, _ in plan.partitions}
    assert sources == {"n:big/6m", "n:small"}
    assert sorted(len(rows) for rows in plan.partitions.values()) == [2, 1500]


def test_tricklingSeriesOverflowPastTheBound():
    """
    A client that sends one node's series one at a time never makes a
    write large, but the rows this process puts in a partition are
    counted: past C{maxPartitionRows} they go to the partition's overflow
    partitions, each filled to the bound, with index rows that lead there.
    """
    cache = WriteCache(0, DAY, maxPartitionRows=10)
    placed = {}
    for i in range(25):
        plan = planWrite([Point("m", freezeTags({"node": "a", "i": str(i)}),
                                DAY * 10, 1.0)], cache, 0.0)
        [(key, rows)] = plan.partitions.items()
        sources = {row.source for _, row in plan.indexRows}
        assert sources == {"n:a"} | ({key[0]} if key[0] != "n:a" else set())
        assert plan.widths[key[0]] == NODE_BUCKET_MS
        # A partition's bucket row is listed by its first write.
        assert (key in plan.bucketRows) == (key[0] not in placed)
        placed.setdefault(key[0], []).extend(rows)
        cache.remember(plan, 0.0)
    assert {source: len(rows) for source, rows in placed.items()} == {
        "n:a": 10, "n:a~1": 10, "n:a~2": 5}
    assert cache.partitionRows[("n:a~2", DAY * 10 // NODE_BUCKET_MS)] == 5


def test_oneWriteSpreadOverOverflowPartitions():
    """
    One series written at sub-second spacing fills its partition and as
    many overflow partitions as it needs in one write; each series moved
    there gets one index row per slice it has points in.
    """
    tags = freezeTags({"node": "fast"})
    cache = WriteCache(0, DAY, maxPartitionRows=1000)
    points = [Point("m", tags, DAY * 10 + i, float(i)) for i in range(2500)]
    plan = planWrite(points, cache, 0.0)
    assert {key: len(rows) for key, rows in plan.partitions.items()} == {
        ("n:fast", 240): 1000, ("n:fast~1", 240): 1000,
        ("n:fast~2", 240): 500}
    assert sorted(row.source for _, row in plan.indexRows) == [
        "n:fast", "n:fast~1", "n:fast~2"]
    assert [ts for rows in plan.partitions.values() for _, ts, _ in rows] \
        == list(range(DAY * 10, DAY * 10 + 2500))
    later = planWrite([Point("m", tags, DAY * 10 + 5000, 1.0)], cache, 0.0)
    assert list(later.partitions) == [("n:fast~2", 240)]
    nextHour = planWrite([Point("m", tags, DAY * 10 + NODE_BUCKET_MS, 1.0)],
                         cache, 0.0)
    assert list(nextHour.partitions) == [("n:fast", 241)]


def test_overflowCountsThePartitionItLandsIn():
    """
    A node whose name looks like another's overflow partition shares that
    partition's count, so the two together stay within the bound.
    """
    cache = WriteCache(0, DAY, maxPartitionRows=4)
    first = planWrite(nodePoints("a~1", 3), cache, 0.0)
    assert [len(rows) for rows in first.partitions.values()] == [3]
    second = planWrite(nodePoints("a", 6), cache, 0.0)
    assert {key[0]: len(rows) for key, rows in second.partitions.items()} \
        == {"n:a": 4, "n:a~1": 1, "n:a~2": 1}


def test_edgesAnsweredByFinerLevels():
    """
    The coarsest level that fits answers its whole buckets; each edge is
    answered by the finer levels, and only what no level holds whole is
    read raw.  A level that does not divide the interval, or has expired
    there, is passed over.
    """
    minute, hour, day = 60_000, 3_600_000, DAY
    levels = [(minute, 0, 0), (hour, 0, 0), (day, 0, 0)]
    start = 10 * day + 5 * hour + 30 * minute + 15_000
    end = 14 * day + 2 * hour + 3 * minute + 20_000
    choices, raw = chooseLevels(start, end, None, levels, 20 * day)
    assert [(c.resolutionMs, c.fromMs, c.toMs) for c in choices] == [
        (day, 11 * day, 14 * day - 1),
        (hour, 10 * day + 6 * hour, 11 * day - 1),
        (minute, 10 * day + 5 * hour + 31 * minute, 10 * day + 6 * hour - 1),
        (hour, 14 * day, 14 * day + 2 * hour - 1),
        (minute, 14 * day + 2 * hour, 14 * day + 2 * hour + 3 * minute - 1)]
    assert raw == [(start, 10 * day + 5 * hour + 31 * minute - 1),
                   (14 * day + 2 * hour + 3 * minute, end)]
    # Every millisecond of the range is answered once.
    spans = sorted([(c.fromMs, c.toMs) for c in choices] + raw)
    assert spans[0][0] == start and spans[-1][1] == end
    assert all(a[1] + 1 == b[0] for a, b in zip(spans, spans[1:]))
    # An interval of 2 h: the day level does not divide it.
    byTwoHours, _ = chooseLevels(start, end, 2 * hour, levels, 20 * day)
    assert byTwoHours[0].resolutionMs == hour
    # The minute level kept 2 days: the old edge is read raw.
    kept = [(minute, 2 * 86_400, 0), (hour, 0, 0), (day, 0, 0)]
    _, oldRaw = chooseLevels(start, end, None, kept, 15 * day)
    assert oldRaw[0] == (start, 10 * day + 6 * hour - 1)
    assert chooseLevels(start, start + 1000, None, levels, 20 * day) == (
        [], [(start, start + 1000)])


def test_seriesWithoutNodeOwnPartitions():
    """
    A series without a node tag has daily partitions of its own.
    """
    tags = freezeTags({"dc": "eu"})
    plan = planWrite([Point("m", tags, 5, 1.0), Point("m", tags, 6, 2.0)],
                     WriteCache(0, DAY), 0.0)
    identifier = seriesId("m", tags)
    assert plan.partitions == {("s:" + identifier.hex(), 0): [
        (identifier, 5, 1.0), (identifier, 6, 2.0)]}
    assert plan.indexRows[0][1].bucketMs == SERIES_BUCKET_MS


def test_indexPlanPushesFiltersToCassandra():
    """
    Single-valued filters are applied by Cassandra (up to its maximum), a
    multi-valued one is fanned out into reads per value, and the rest is
    checked on the rows.
    """
    plan = planIndex(0, 2 * DAY - 1, DAY, (
        ("node", frozenset({"a"})), ("cpu", frozenset({"1", "2"}))), 100)
    assert [(r.slice, r.filters) for r in plan.reads] == [
        (0, (("node", "a"), ("cpu", "1"))), (0, (("node", "a"), ("cpu", "2"))),
        (1, (("node", "a"), ("cpu", "1"))), (1, (("node", "a"), ("cpu", "2")))]
    assert plan.residual == ()
    assert plan.limit == 101
    many = frozenset(str(i) for i in range(MAX_FAN_OUT + 1))
    wide = planIndex(0, 0, DAY, (("x", many),), 100)
    assert [r.filters for r in wide.reads] == [()]
    assert wide.residual == (("x", many),)
    assert wide.limit > 101
    lots = tuple((f"k{i}", frozenset({"v"})) for i in range(MAX_INDEX_FILTERS + 2))
    capped = planIndex(0, 0, DAY, lots, 10)
    assert len(capped.reads[0].filters) == MAX_INDEX_FILTERS
    assert len(capped.residual) == 2


def test_partitionsOnlyOfIndexedSlices():
    """
    A placement found in some slices is read only in the buckets of those
    slices within the range; a legacy placement in every bucket of the
    range.
    """
    hour = NODE_BUCKET_MS
    row = SeriesRow("m", b"a", (), "n:x", hour, frozenset({1}))
    assert candidateBuckets(row, 0, 3 * DAY, DAY) == list(range(24, 48))
    assert candidateBuckets(row, DAY + 5 * hour, 3 * DAY, DAY) == \
        list(range(29, 48))
    legacy = SeriesRow("m", b"a", (), "n:x", hour, None)
    assert len(candidateBuckets(legacy, 0, DAY - 1, DAY)) == 24


def test_partitionReadsSplitInLists():
    """
    Series of one partition are read in IN lists of at most 100, each
    listed once even when found in several slices.
    """
    series = [SeriesRow("m", bytes([i]) * 2, (), "n:x", DAY, frozenset({0, 1}))
              for i in range(250)]
    plan = bucketsBySource(series, 0, DAY - 1, DAY)
    reads = partitionReads(plan)
    assert [len(ids) for _, _, ids in reads] == [MAX_IN_SERIES, MAX_IN_SERIES,
                                                 50]
    assert {bucket for _, bucket, _ in reads} == {0}
    hourly = SeriesRow("m", b"h", (), "n:y", 3_600_000, frozenset(range(10)))
    wide = bucketsBySource([hourly], 0, 10 * DAY - 1, DAY)
    assert sourcesToPrune(wide) == [("n:y", 0, 239)]
    assert partitionReads(wide, {"n:y": {3, 200}}) == [
        ("n:y", 3, [b"h"]), ("n:y", 200, [b"h"])]
    narrow = bucketsBySource([hourly], 0, 3 * 3_600_000, DAY)
    assert sourcesToPrune(narrow) == []


def test_answerPointsCountsIntervalsAndGroups():
    """
    An answer holds one value per interval touched by the range, per group.
    """
    assert answerPoints(0, 59_999, 60_000, 1) == 1
    assert answerPoints(30_000, 60_000, 60_000, 4) == 8
    assert answerPoints(0, 10, None, 7) == 7


def test_readsOfSeveralSourcesAreBatched():
    """
    Reads of the same bucket of many sources are gathered into batches of
    at most SOURCES_PER_READ sources and MAX_IN_SERIES series; each batch
    remembers which series it asked of which source, and no read is lost
    or read twice.
    """
    from meetrd.readplan import MAX_IN_SERIES, SOURCES_PER_READ, batchSources

    reads = [(f"n:{i}", 7, [bytes([i % 256, 0])]) for i in range(120)]
    reads += [(f"n:{i}", 8, [bytes([i, k]) for k in range(40)])
              for i in range(5)]
    reads.append(("n:0", 7, [b"again"]))
    batches = batchSources(reads)
    for batch in batches:
        assert len(batch.sources) <= SOURCES_PER_READ
        assert len(batch.ids) <= MAX_IN_SERIES
        assert len(set(batch.sources)) == len(batch.sources)
        assert {i for _, i in batch.asked} == set(batch.ids)
        assert {s for s, _ in batch.asked} == set(batch.sources)
    asked = sorted((s, b.key, i) for b in batches for s, i in b.asked)
    assert asked == sorted((s, key, i) for s, key, ids in reads for i in ids)
    assert [len(b.sources) for b in batches if b.key == 7] == [50, 50, 21]
    assert [len(b.sources) for b in batches if b.key == 8] == [2, 2, 1]


def test_readOfSeveralSourcesKeepsOnlyWhatWasAsked():
    """
    A read of several sources shares one IN list of series: the rows of a
    series from a source it was not asked of are left out, and rows of one
    source's read come led by that source, as a batch's do.
    """
    from twisted.internet.defer import succeed

    from meetrd.readplan import SourceBatch
    from meetrd.settings import settingsFromMapping
    from meetrd.store import MetricStore

    store = MetricStore(settingsFromMapping({}, "x").cassandra, 0, None)
    answers = {"many": [("a", b"x", 1), ("a", b"y", 2), ("b", b"y", 3),
                        ("b", b"x", 4)],
               "one": [(b"x", 5)]}
    store._read = lambda statement, parameters, progress=None: succeed(
        answers[statement])
    both = SourceBatch(["a", "b"], 7, [b"x", b"y"],
                       frozenset({("a", b"x"), ("b", b"y")}))
    found = []
    store._readSources("one", "many", both, ()).addCallback(found.append)
    assert found == [[("a", b"x", 1), ("b", b"y", 3)]]
    alone = SourceBatch(["a"], 7, [b"x"], frozenset({("a", b"x")}))
    store._readSources("one", "many", alone, ()).addCallback(found.append)
    assert found[1] == [("a", b"x", 5)]


def test_seriesCountedPerNodeInSteps():
    """
    C{countSeriesPerNode} yields after every C{step} points (not after the
    last), fills its dictionary once exhausted, and counts each series of
    a node once however many points it has; series without a node count
    for none.
    """
    cache = WriteCache(0, DAY)
    points = []
    for i in range(12_345):
        node = i % 31
        tags = {"node": f"count-{node}", "cpu": str(i % 7)} if node else \
            {"cpu": str(i % 7)}
        points.append(Point(f"count.m{i % 11}", freezeTags(tags), i, 1.0))
    expected = {}
    for series in {(p.metric, p.tags) for p in points}:
        node = dict(series[1]).get("node")
        if node is not None:
            expected[node] = expected.get(node, 0) + 1
    perNode = {}
    steps = countSeriesPerNode(points, cache, perNode, step=1_000)
    for _ in range(12):
        next(steps)
        assert perNode == {}
    assert list(steps) == []
    assert perNode == expected
    assert len(perNode) == 30
