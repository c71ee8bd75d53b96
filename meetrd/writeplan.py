"""
What a write of points sends to Cassandra, decided without Cassandra.

L{planWrite} groups points by partition and lists the index rows (one per
series, index slice and placement) and bucket rows the write needs that
this process has not written recently.  L{WriteCache} remembers what was
written, and for how long it stays good: index and bucket rows carry
TTL = retention + one index slice and are written again once half a slice
has passed since their last write, so they always outlive the points they
lead to.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from typing import Iterable

from meetrd.layout import nodeOf, placementOf, seriesId
from meetrd.points import Point, Tags

# Entries of each of the caches at most (least recently used go first).
CACHE_SIZE = 500_000

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
    @ivar count: the points of the write.
    """

    partitions: dict[tuple[str, int], list[tuple[bytes, int, float]]]
    indexRows: list[tuple[tuple[str, Tags, int, str], IndexRow]] = field(
        default_factory=list)
    bucketRows: list[tuple[str, int]] = field(default_factory=list)
    sliceRows: list[tuple[str, int]] = field(default_factory=list)
    count: int = 0


class WriteCache:
    """
    What this process wrote to the index tables, and when; and each
    series' identifier and node, so that a point costs no hashing.

    @ivar refreshAfter: seconds after which a written row is written again
        (C{None}: never, when rows never expire).
    """

    def __init__(self, retentionSeconds: int, sliceMs: int,
                 size: int = CACHE_SIZE) -> None:
        self.sliceMs = sliceMs
        self.ttl = retentionSeconds + sliceMs // 1000 if retentionSeconds \
            else 0
        self.refreshAfter = sliceMs / 2000 if retentionSeconds else None
        self.size = size
        self.series: OrderedDict[SeriesKey, tuple[bytes, str | None]] = \
            OrderedDict()
        self.index: OrderedDict[tuple[str, Tags, int, str], float] = \
            OrderedDict()
        self.buckets: OrderedDict[tuple[str, int], float] = OrderedDict()
        self.slices: OrderedDict[tuple[str, int], float] = OrderedDict()

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
                            (self.slices, plan.sliceRows)):
            for key in keys:
                table[key] = now
                table.move_to_end(key)
            while len(table) > self.size:
                table.popitem(last=False)


def planWrite(points: Iterable[Point], cache: WriteCache, now: float
              ) -> WritePlan:
    """
    Group points by partition and list the index rows they need.

    Series of one node are placed by how many series of that node the
    write carries (L{meetrd.layout.nodeClass}); the others in a partition
    of their own.
    """
    bySeries: defaultdict[SeriesKey, list[Point]] = defaultdict(list)
    count = 0
    for point in points:
        bySeries[(point.metric, point.tags)].append(point)
        count += 1

    identified = {key: cache.identify(key) for key in bySeries}
    perNode: defaultdict[str, int] = defaultdict(int)
    for _, node in identified.values():
        if node is not None:
            perNode[node] += 1

    sliceMs = cache.sliceMs
    partitions: defaultdict[tuple[str, int], list[tuple[bytes, int, float]]] \
        = defaultdict(list)
    plan = WritePlan(partitions, count=count)
    widths: dict[str, int] = {}
    for key, seriesPoints in bySeries.items():
        identifier, node = identified[key]
        placement = placementOf(identifier, node,
                                perNode[node] if node is not None else 1)
        source, width = placement.source, placement.bucketMs
        widths[source] = width
        slices = set()
        for point in seriesPoints:
            ts = point.ts_ms
            partitions[(source, ts // width)].append(
                (identifier, ts, point.value))
            slices.add(ts // sliceMs)
        metric, tags = key
        for number in slices:
            cacheKey = (metric, tags, number, source)
            if not cache.fresh(cache.index, cacheKey, now):
                plan.indexRows.append((cacheKey, IndexRow(
                    metric, number, identifier, source, width, tags)))
    plan.bucketRows = [key for key in partitions
                       if not cache.fresh(cache.buckets, key, now)]
    plan.sliceRows = sorted({(row.metric, row.slice) for _, row in plan.indexRows
                             if not cache.fresh(cache.slices,
                                                (row.metric, row.slice), now)})
    plan.partitions = dict(partitions)
    return plan

