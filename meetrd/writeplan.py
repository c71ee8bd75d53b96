"""
What a write of points sends to Cassandra, decided without Cassandra.

L{planWrite} groups points by partition and lists the index rows (one per
series, index slice and placement) and bucket rows the write needs that
this process has not written recently.  L{WriteCache} remembers what was
written, and for how long it stays good: index and bucket rows carry
TTL = retention + one index slice and are written again once half a slice
has passed since their last write, so they always outlive the points they
lead to.

Every partition holds at most L{WriteCache.maxPartitionRows} rows written
by this process: rows past that go to the partition's overflow family
(C{<source>~1}, C{<source>~2}, ...), which the index records like any
other placement (see L{placeOverflow}).
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

from meetrd.layout import SERIES_BUCKET_MS, nodeClass, nodeOf, seriesId
from meetrd.points import Point, Tags

# Entries of each of the caches at most (least recently used go first).
CACHE_SIZE = 500_000
# Rows this process writes to one partition at most, by default: about
# 20 MB on disk before compression at the ~40 bytes a row takes.
MAX_PARTITION_ROWS = 500_000
# What separates a source from the number of its overflow partition.
OVERFLOW_MARK = "~"

SeriesKey = tuple[str, Tags]


@dataclass(frozen=True, slots=True)
class IndexRow:
    """
    One row of the time-scoped series index.
    """

    metric: str
    slice: int
    seriesId: bytes
    source: str
    bucketMs: int
    tags: Tags


@dataclass(slots=True)
class WritePlan:
    """
    The rows of one write.

    @ivar partitions: C{(source, bucket)} to its C{(seriesId, tsMs, value)}
        rows.
    @ivar indexRows: index rows to write, with their cache keys.
    @ivar bucketRows: C{(source, bucket)} rows of the bucket index to write.
    @ivar sliceRows: C{(metric, slice)} rows of the slice index to write.
    @ivar dirtyRows: C{(source, bucket, bucketMs)} partitions to mark for
        rollup (with rollups on).
    @ivar widths: the bucket width of each source of the write.
    @ivar count: the points of the write.
    @ivar sources: the source each series was placed in.
    @ivar overflowed: whether rows went to overflow partitions.
    @ivar shaped: whether the plan was made from a L{WriteShape}.
    """

    partitions: dict[tuple[str, int], list[tuple[bytes, int, float]]]
    indexRows: list[tuple[tuple[bytes, int, str], IndexRow]] = field(
        default_factory=list)
    bucketRows: list[tuple[str, int]] = field(default_factory=list)
    sliceRows: list[tuple[str, int]] = field(default_factory=list)
    dirtyRows: list[tuple[str, int, int]] = field(default_factory=list)
    widths: dict[str, int] = field(default_factory=dict)
    count: int = 0
    sources: dict[bytes, str] = field(default_factory=dict)
    overflowed: bool = False
    shaped: bool = False


class WriteCache:
    """
    What this process wrote to the index tables, and when; and each
    series' identifier and node, so that a point costs no hashing.

    @ivar refreshAfter: seconds after which a written row is written again
        (C{None}: never, when rows never expire).
    @ivar maxPartitionRows: the rows this process writes to one partition
        at most.
    @ivar partitionRows: the rows this process planned for each
        C{(source, bucket)} partition, written or still in flight.
    @ivar overflows: the last overflow partition (its number) used for each
        full C{(source, bucket)}.
    """

    def __init__(self, retentionSeconds: int, sliceMs: int,
                 size: int = CACHE_SIZE, rollups: bool = False,
                 maxPartitionRows: int = MAX_PARTITION_ROWS) -> None:
        """
        @param rollups: whether written partitions are marked for rollup.
        """
        self.sliceMs = sliceMs
        self.rollups = rollups
        self.maxPartitionRows = maxPartitionRows
        self.partitionRows: OrderedDict[tuple[str, int], int] = OrderedDict()
        self.overflows: dict[tuple[str, int], int] = {}
        self.ttl = retentionSeconds + sliceMs // 1000 if retentionSeconds \
            else 0
        self.refreshAfter = sliceMs / 2000 if retentionSeconds else None
        self.size = size
        self.series: OrderedDict[SeriesKey, tuple[bytes, str | None]] = \
            OrderedDict()
        self.index: OrderedDict[tuple[bytes, int, str], float] = \
            OrderedDict()
        self.buckets: OrderedDict[tuple[str, int], float] = OrderedDict()
        self.slices: OrderedDict[tuple[str, int], float] = OrderedDict()
        self.dirty: OrderedDict[tuple[str, int], float] = OrderedDict()

    def identify(self, key: SeriesKey) -> tuple[bytes, str | None]:
        """
        A series' identifier and node, hashed once.
        """
        found = self.series.get(key)
        if found is None:
            found = (seriesId(*key), nodeOf(key[1]))
            self.series[key] = found
            if len(self.series) > self.size:
                self.series.popitem(last=False)
        return found

    def fresh(self, table: OrderedDict, key: object, now: float) -> bool:
        """
        Whether a row of an index table written earlier is still good.
        """
        written = table.get(key)
        if written is None:
            return False
        return self.refreshAfter is None or now - written < self.refreshAfter

    def remember(self, plan: WritePlan, now: float) -> None:
        """
        Record the index and bucket rows of a plan Cassandra acknowledged.
        """
        for table, keys in ((self.index, [k for k, _ in plan.indexRows]),
                            (self.buckets, plan.bucketRows),
                            (self.slices, plan.sliceRows),
                            (self.dirty, [(source, bucket) for source, bucket,
                                          _ in plan.dirtyRows])):
            for key in keys:
                table[key] = now
                table.move_to_end(key)
            while len(table) > self.size:
                table.popitem(last=False)


#: Points counted in one step of L{countSeriesPerNode}: about 8 ms.
COUNT_STEP = 5_000


def countSeriesPerNode(points: Sequence[Point], cache: WriteCache,
                       perNode: dict[str, int], step: int = COUNT_STEP
                       ) -> Iterator[None]:
    """
    Count how many series of each node some points carry (what places
    them, see L{planWrite}) into C{perNode}, yielding after every C{step}
    points, so that a batch of 50,000 points (about 80 ms to count) does
    not hold the reactor for all of them.  C{perNode} is complete once
    the iterator is exhausted.
    """
    seen: set[tuple[str, int]] = set()
    nodes: dict[bytes, str] = {}
    identify = cache.identify
    for start in range(0, len(points), step):
        for point in points[start:start + step]:
            local = (point.metric, id(point.tags))
            if local in seen:
                continue
            seen.add(local)
            identifier, node = identify((point.metric, point.tags))
            if node is not None:
                nodes[identifier] = node
        if start + step < len(points):
            yield None
    for node in nodes.values():
        perNode[node] = perNode.get(node, 0) + 1


@dataclass(slots=True)
class WriteShape:
    """
    The series of a target's last write, in the order its page gave them,
    and where that write put them.

    A hunted page brings the same series at every scrape, in the same
    order and with the same tag tuples (the page cache keeps them), all at
    the scrape's time.  Planned from its shape (L{planShaped}), such a
    write costs no look-up per point in the caches of the whole process,
    which hold hundreds of thousands of series and are slow to reach.

    @ivar metrics: the metric of each point.
    @ivar tags: the tag tuple of each point (compared by identity).
    @ivar groups: C{(source, width, members)} of each source, in the order
        L{planWrite} meets them; C{members} are C{(position, seriesId)}, in
        the order L{planWrite} lists their rows.
    @ivar slice: the index slice of the write's time.
    @ivar indexedAt: when the oldest of the series' index rows for that
        slice and source was written.
    """

    metrics: list[str]
    tags: list[Tags]
    groups: list[tuple[str, int, list[tuple[int, bytes]]]]
    slice: int
    indexedAt: float


class ShapeMemo:
    """
    What one target's writes looked like (a L{WriteShape}), learnt once
    one was acknowledged; kept by the target's schedule.
    """

    shape: WriteShape | None = None


def learnShape(points: list[Point], plan: WritePlan, cache: WriteCache
               ) -> WriteShape | None:
    """
    The shape of an acknowledged write planned by L{planWrite}, or
    C{None} when it has none to reuse: rows in overflow partitions, or an
    index row of the first point's slice not in the cache.
    """
    if not points or plan.overflowed or plan.shaped:
        return None
    number = points[0].ts_ms // cache.sliceMs
    series = cache.series
    written = cache.index
    positions: dict[bytes, list[int]] = {}
    oldest = None
    for position, point in enumerate(points):
        entry = series.get((point.metric, point.tags))
        if entry is None:
            return None
        identifier = entry[0]
        found = positions.get(identifier)
        if found is not None:
            found.append(position)
            continue
        positions[identifier] = [position]
        source = plan.sources.get(identifier)
        when = None if source is None else \
            written.get((identifier, number, source))
        if when is None:
            return None
        oldest = when if oldest is None else min(oldest, when)
    assert oldest is not None
    groups: dict[str, list[tuple[int, bytes]]] = {}
    for identifier, places in positions.items():
        members = groups.setdefault(plan.sources[identifier], [])
        members.extend((position, identifier) for position in places)
    return WriteShape([point.metric for point in points],
                      [point.tags for point in points],
                      [(source, plan.widths[source], members)
                       for source, members in groups.items()],
                      number, oldest)


def planShaped(points: list[Point], shape: WriteShape, cache: WriteCache,
               now: float) -> WritePlan | None:
    """
    The plan L{planWrite} would make of C{points}, made from the shape of
    an earlier write of the same series, or C{None} when the shape does
    not fit: other series or order, several times, another index slice,
    index rows due to be written again, or a partition that would
    overflow.
    """
    count = len(points)
    metrics = shape.metrics
    tags = shape.tags
    if count != len(tags) or not count:
        return None
    ts = points[0].ts_ms
    if ts // cache.sliceMs != shape.slice:
        return None
    refreshAfter = cache.refreshAfter
    if refreshAfter is not None and now - shape.indexedAt >= refreshAfter:
        return None
    for position, point in enumerate(points):
        if point.tags is not tags[position] or point.ts_ms != ts \
                or point.metric != metrics[position]:
            return None
    partitions: dict[tuple[str, int], list[tuple[bytes, int, float]]] = {}
    widths: dict[str, int] = {}
    for source, width, members in shape.groups:
        partitions[(source, ts // width)] = [
            (identifier, ts, points[position].value)
            for position, identifier in members]
        widths[source] = width
    counted = cache.partitionRows
    bound = cache.maxPartitionRows
    used = {key: counted.get(key, 0) + len(rows)
            for key, rows in partitions.items()}
    if any(rows > bound for rows in used.values()):
        return None
    for key, rows in used.items():
        counted[key] = rows
        counted.move_to_end(key)
    while len(counted) > cache.size:
        counted.popitem(last=False)
    plan = WritePlan(partitions, widths=widths, count=count, shaped=True)
    plan.bucketRows = [key for key in partitions
                       if not cache.fresh(cache.buckets, key, now)]
    if cache.rollups:
        plan.dirtyRows = _dirty(partitions, widths, cache, now)
    return plan


def planWrite(points: Iterable[Point], cache: WriteCache, now: float,
              nodeSeries: dict[str, int] | None = None,
              memo: ShapeMemo | None = None) -> WritePlan:
    """
    Group points by partition and list the index rows they need.

    Series of one node are placed by how many series of that node the
    write carries (L{meetrd.layout.nodeClass}); the others in a partition
    of their own.

    @param nodeSeries: those counts, when the points are a slice of a
        larger write (L{countSeriesPerNode} of the whole write), so that a slice
        places its series as the whole write would.
    @param memo: the shape of the same target's writes, used when it fits
        (see L{planShaped}); learnt with L{learnShape}.
    """
    if memo is not None and memo.shape is not None and nodeSeries is None \
            and isinstance(points, list):
        shaped = planShaped(points, memo.shape, cache, now)
        if shaped is not None:
            return shaped
    # Series by identifier (whose hash Python keeps), each with its key,
    # node and points.
    bySeries: dict[bytes, tuple[SeriesKey, str | None, list[Point]]] = {}
    known = cache.series
    count = 0
    # The points of a batch share few tag tuples (validation gives equal
    # tags one tuple): series are looked up by the tuple's identity, which
    # is stable while the points hold it, rather than by hashing the pairs
    # again at every point.
    seen: dict[tuple[str, int], list[Point]] = {}
    for point in points:
        local = (point.metric, id(point.tags))
        found = seen.get(local)
        if found is None:
            key = (point.metric, point.tags)
            entry = known.get(key)
            if entry is None:
                entry = cache.identify(key)
            series = bySeries.get(entry[0])
            if series is None:
                series = bySeries[entry[0]] = (key, entry[1], [])
            found = seen[local] = series[2]
        found.append(point)
        count += 1

    perNode: dict[str, int] | defaultdict[str, int] = defaultdict(int)
    if nodeSeries is not None:
        perNode = nodeSeries
    else:
        for _, node, _ in bySeries.values():
            if node is not None:
                perNode[node] += 1
    nodePlacement = {}
    for node, series in perNode.items():
        width, suffix = nodeClass(series)
        nodePlacement[node] = ("n:" + node + suffix, width)

    sliceMs = cache.sliceMs
    partitions: dict[tuple[str, int], list[tuple[bytes, int, float]]] = {}
    plan = WritePlan(partitions, count=count)
    indexRows = plan.indexRows
    widths = plan.widths
    sources = plan.sources
    written = cache.index
    refreshAfter = cache.refreshAfter
    for identifier, (key, node, seriesPoints) in bySeries.items():
        if node is None:
            source, width = "s:" + identifier.hex(), SERIES_BUCKET_MS
        else:
            source, width = nodePlacement[node]
        widths[source] = width
        sources[identifier] = source
        slices = set()
        for point in seriesPoints:
            ts = point.ts_ms
            partitionKey = (source, ts // width)
            rows = partitions.get(partitionKey)
            if rows is None:
                partitions[partitionKey] = [(identifier, ts, point.value)]
            else:
                rows.append((identifier, ts, point.value))
            slices.add(ts // sliceMs)
        for number in slices:
            cacheKey = (identifier, number, source)
            when = written.get(cacheKey)
            if when is None or (refreshAfter is not None
                                and now - when >= refreshAfter):
                indexRows.append((cacheKey, IndexRow(
                    key[0], number, identifier, source, width, key[1])))
    counted = cache.partitionRows
    bound = cache.maxPartitionRows
    for partitionKey, rows in list(partitions.items()):
        used = counted.get(partitionKey, 0) + len(rows)
        if used <= bound:
            counted[partitionKey] = used
            counted.move_to_end(partitionKey)
        else:
            placeOverflow(plan, partitionKey, cache, now, bySeries)
    while len(counted) > cache.size:
        counted.popitem(last=False)
    plan.bucketRows = [key for key in partitions
                       if not cache.fresh(cache.buckets, key, now)]
    plan.sliceRows = sorted({(row.metric, row.slice) for _, row in indexRows
                             if not cache.fresh(cache.slices,
                                                (row.metric, row.slice), now)})
    if cache.rollups:
        plan.dirtyRows = _dirty(partitions, widths, cache, now)
    return plan


def placeOverflow(plan: WritePlan, partitionKey: tuple[str, int],
                  cache: WriteCache, now: float,
                  bySeries: dict[bytes, tuple[SeriesKey, str | None, list[Point]]]
                  ) -> None:
    """
    Move the rows of a planned partition that would take it past
    C{cache.maxPartitionRows} to its overflow partitions, filling each in
    turn, and list the index rows that lead to them.

    An overflow partition has the same bucket and width; its source is the
    full one's with C{~1}, C{~2}, ... added.  Rows are counted by the
    partition key they land in, so a source that happens to be spelt like
    another's overflow is counted once, as the one partition it is.

    A series whose rows all moved keeps the index row of the full
    partition this write listed for it: a search reads that partition for
    it and finds nothing there, which costs a read and is never wrong.
    """
    source, bucket = partitionKey
    width = plan.widths[source]
    plan.overflowed = True
    counted = cache.partitionRows
    bound = cache.maxPartitionRows
    rows = plan.partitions.pop(partitionKey)
    number = cache.overflows.get(partitionKey, 0)
    while rows:
        target = source if number == 0 else \
            f"{source}{OVERFLOW_MARK}{number}"
        targetKey = (target, bucket)
        used = counted.get(targetKey, 0)
        room = bound - used
        if room <= 0:
            number += 1
            continue
        taken, rows = rows[:room], rows[room:]
        counted[targetKey] = used + len(taken)
        counted.move_to_end(targetKey)
        plan.partitions.setdefault(targetKey, []).extend(taken)
        if target != source:
            plan.widths[target] = width
            _indexOverflow(plan, target, width, taken, cache, now, bySeries)
    cache.overflows[partitionKey] = number


def _indexOverflow(plan: WritePlan, target: str, width: int,
                   rows: list[tuple[bytes, int, float]], cache: WriteCache,
                   now: float,
                   bySeries: dict[bytes, tuple[SeriesKey, str | None, list[Point]]]
                   ) -> None:
    """
    The index rows that lead to the series of C{rows} in the overflow
    partition C{target}, for those not written recently.
    """
    sliceMs = cache.sliceMs
    wanted = {(identifier, ts // sliceMs) for identifier, ts, _ in rows}
    listed = {key for key, _ in plan.indexRows}
    for identifier, number in sorted(wanted):
        cacheKey = (identifier, number, target)
        if cacheKey in listed or cache.fresh(cache.index, cacheKey, now):
            continue
        key = bySeries[identifier][0]
        plan.indexRows.append((cacheKey, IndexRow(
            key[0], number, identifier, target, width, key[1])))


def _dirty(partitions: Iterable[tuple[str, int]], widths: dict[str, int],
           cache: WriteCache, now: float) -> list[tuple[str, int, int]]:
    """
    The partitions a write marks for rollup: once per process while the
    bucket is open (it is rolled up after it closes), and at every write
    once it has ended, since it may have been rolled up already (by this
    instance or by another whose clock is ahead).
    """
    nowMs = now * 1000
    marks = []
    for source, bucket in partitions:
        width = widths[source]
        if nowMs >= (bucket + 1) * width or (source, bucket) not in cache.dirty:
            marks.append((source, bucket, width))
    return marks


def endedBy(plan: WritePlan, nowMs: float) -> list[tuple[str, int, int]]:
    """
    The partitions of a written plan whose bucket had ended by C{nowMs}, as
    C{(source, bucket, bucketMs)}: a rollup may have read them before the
    write's points landed (a marker is written before its points, and a
    partition is due once its bucket has ended), so they are marked again
    once the points are in.  A partition whose bucket was still open when
    the points were in needs nothing more: it is rolled up after its end.
    """
    widths = plan.widths
    return [(source, bucket, widths[source])
            for source, bucket in plan.partitions
            if nowMs >= (bucket + 1) * widths[source]]


def indexRetention(rawSeconds: int, levelSeconds: Iterable[int]) -> int:
    """
    How long index rows must find a series, in seconds (0: forever): as
    long as its raw points or any of its rollups are kept, since a search
    answered from rollups alone finds its series in the index too.
    """
    spans = [rawSeconds, *levelSeconds]
    return 0 if 0 in spans else max(spans)

