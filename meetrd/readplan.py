"""
What a search reads from Cassandra, decided without Cassandra.

A search first reads the series index of each index slice of its range,
with its tag filters applied by Cassandra (see L{indexReads}); then, for
the series found, the point partitions of their placements in the slices
they were found in (L{partitionReads}).  The checks against the limits
(L{checkBreadth}, L{checkAnswerSize}) run between the two, so that a
search too wide is refused before its points are read.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Sequence

from meetrd.layout import bucketsBetween, slicesBetween
from meetrd.points import Tags
from meetrd.rollup import rollupPart
from meetrd.schema import MAX_INDEX_FILTERS
from meetrd.validation import Unprocessable

# Series named in one IN list at most.
MAX_IN_SERIES = 100
# A source whose searched range spans more buckets than this has the
# buckets that hold points looked up first, and only those read.
PRUNE_OVER = 4
# A tag filter with several values is read as one index read per value
# when it has at most this many; otherwise it is checked on the rows read.
MAX_FAN_OUT = 16
# When some filters are checked on the rows read rather than by
# Cassandra, an index read returns at most this many times the series a
# search may match.
UNFILTERED_FACTOR = 10

TagFilters = tuple[tuple[str, frozenset[str]], ...]


class SearchTooWide(Unprocessable):
    """
    A search would read more than the limits allow.

    @ivar field: the query parameter to change.
    """


@dataclass(frozen=True, slots=True)
class SeriesRow:
    """
    One placement of a series of a metric as the index records it.

    @ivar slices: the index slices in which the series has points in this
        placement; C{None} for a row of the legacy index, which does not
        know.
    """

    metric: str
    seriesId: bytes
    tags: Tags
    source: str
    bucketMs: int
    slices: frozenset[int] | None = None


@dataclass(frozen=True, slots=True)
class IndexRead:
    """
    One read of the series index: a slice, with the tag filters Cassandra
    applies (C{(key, value)} pairs).
    """

    slice: int
    filters: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class IndexPlan:
    """
    The index reads of a search and the filters left to check on the rows.

    @ivar limit: the rows one read may return.
    @ivar residual: filters Cassandra does not apply.
    """

    reads: tuple[IndexRead, ...]
    residual: TagFilters
    limit: int


def planIndex(fromMs: int, toMs: int, sliceMs: int, filters: TagFilters,
              maxSeries: int) -> IndexPlan:
    """
    The index reads of a search: per slice of the range, the single-valued
    filters (at most L{MAX_INDEX_FILTERS}) applied by Cassandra, and the
    values of one multi-valued filter fanned out into reads of their own.
    """
    single = [(key, next(iter(values))) for key, values in filters
              if len(values) == 1]
    multi = sorted((f for f in filters if len(f[1]) > 1),
                   key=lambda f: len(f[1]))
    pushed = single[:MAX_INDEX_FILTERS]
    residual: list[tuple[str, frozenset[str]]] = [
        (key, frozenset([value])) for key, value in single[MAX_INDEX_FILTERS:]]
    fanned: list[tuple[tuple[str, str], ...]] = [()]
    if multi and len(multi[0][1]) <= MAX_FAN_OUT \
            and len(pushed) < MAX_INDEX_FILTERS:
        key, values = multi[0]
        fanned = [((key, value),) for value in sorted(values)]
        multi = multi[1:]
    residual.extend(multi)
    reads = tuple(IndexRead(number, tuple(pushed) + extra)
                  for number in slicesBetween(fromMs, toMs, sliceMs)
                  for extra in fanned)
    limit = maxSeries + 1
    if residual:
        limit = maxSeries * UNFILTERED_FACTOR + 1
    return IndexPlan(reads, tuple(residual), limit)


def matches(tags: Tags, filters: TagFilters) -> bool:
    """
    Whether a series' tags pass every filter: for each key, the tag has
    one of the values.
    """
    if not filters:
        return True
    found = dict(tags)
    return all(found.get(key) in values for key, values in filters)


def mergeIndexRows(metric: str,
                   rows: Iterable[tuple[int | None, bytes, str, int, Tags]],
                   filters: TagFilters) -> list[SeriesRow]:
    """
    The placements of the series found, each with the slices it was found
    in, from C{(slice, seriesId, source, bucketMs, tags)} rows (slice
    C{None} for legacy rows); rows that fail C{filters} are left out.
    """
    slices: dict[tuple[bytes, str, int], set[int] | None] = {}
    tagsOf: dict[bytes, Tags] = {}
    for number, identifier, source, bucketMs, tags in rows:
        if not matches(tags, filters):
            continue
        key = (identifier, source, bucketMs)
        tagsOf[identifier] = tags
        if number is None:
            slices[key] = None
        elif key not in slices:
            slices[key] = {number}
        elif slices[key] is not None:
            slices[key].add(number)  # type: ignore[union-attr]
    return [SeriesRow(metric, identifier, tagsOf[identifier], source, bucketMs,
                      None if found is None else frozenset(found))
            for (identifier, source, bucketMs), found in slices.items()]


def seriesCount(series: Sequence[SeriesRow]) -> int:
    """
    How many distinct series the placements are of.
    """
    return len({row.seriesId for row in series})


def candidateBuckets(row: SeriesRow, fromMs: int, toMs: int, sliceMs: int
                     ) -> list[int]:
    """
    The buckets of a placement that may hold its points in the range: those
    of the slices it was indexed in, or all of the range for a legacy row.
    """
    width = row.bucketMs
    if row.slices is None:
        return list(bucketsBetween(fromMs, toMs, width))
    buckets: set[int] = set()
    for number in row.slices:
        start = max(fromMs, number * sliceMs)
        end = min(toMs, (number + 1) * sliceMs - 1)
        if start <= end:
            buckets.update(bucketsBetween(start, end, width))
    return sorted(buckets)


def bucketsBySource(series: Sequence[SeriesRow], fromMs: int, toMs: int,
                    sliceMs: int) -> dict[tuple[str, int], dict[int, list[bytes]]]:
    """
    For each C{(source, bucketMs)}, its candidate buckets and the series to
    read in each.
    """
    groups: defaultdict[tuple[str, int, frozenset[int] | None], list[bytes]] \
        = defaultdict(list)
    for row in series:
        groups[(row.source, row.bucketMs, row.slices)].append(row.seriesId)
    plan: defaultdict[tuple[str, int], dict[int, dict[bytes, None]]] = \
        defaultdict(dict)
    for (source, width, found), ids in groups.items():
        probe = SeriesRow("", b"", (), source, width, found)
        for bucket in candidateBuckets(probe, fromMs, toMs, sliceMs):
            plan[(source, width)].setdefault(bucket, {}).update(
                dict.fromkeys(ids))
    return {key: {bucket: list(ids) for bucket, ids in buckets.items()}
            for key, buckets in plan.items()}


def partitionReads(plan: dict[tuple[str, int], dict[int, list[bytes]]],
                   present: dict[str, set[int]] | None = None
                   ) -> list[tuple[str, int, list[bytes]]]:
    """
    The partition reads of a plan from L{bucketsBySource}: C{(source,
    bucket, seriesIds)}, at most L{MAX_IN_SERIES} series each.

    @param present: for some sources, the buckets known to hold points; the
        other buckets of those sources are not read.
    """
    reads = []
    for (source, _), buckets in plan.items():
        for bucket, ids in sorted(buckets.items()):
            if present is not None and source in present \
                    and bucket not in present[source]:
                continue
            for start in range(0, len(ids), MAX_IN_SERIES):
                reads.append((source, bucket, ids[start:start + MAX_IN_SERIES]))
    return reads


def sourcesToPrune(plan: dict[tuple[str, int], dict[int, list[bytes]]]
                   ) -> list[tuple[str, int, int]]:
    """
    The sources whose candidate buckets are many enough to look up first
    in the bucket index: C{(source, firstBucket, lastBucket)}.
    """
    return [(source, min(buckets), max(buckets))
            for (source, _), buckets in sorted(plan.items())
            if len(buckets) > PRUNE_OVER]


def checkSeries(count: int, maxSeries: int) -> None:
    """
    Refuse a search that matches more series than it may.
    """
    if count > maxSeries:
        raise SearchTooWide("tag", f"more than {maxSeries} series match: "
                            f"narrow with tag=")


def checkPartitions(plan: dict[tuple[str, int], dict[int, list[bytes]]],
                    indexReads: int, maxPartitions: int) -> None:
    """
    Refuse a search that would read more partitions (index slices
    included) than it may.
    """
    partitions = indexReads + sum(len(b) for b in plan.values())
    if partitions > maxPartitions:
        raise SearchTooWide("from", f"the range spans {partitions} "
                            f"partitions, more than {maxPartitions}: "
                            f"narrow from/to")


def checkIndexReads(count: int, maxPartitions: int) -> None:
    """
    Refuse a search whose index reads alone are more than the partitions
    it may read.
    """
    if count > maxPartitions:
        raise SearchTooWide("from", f"the range spans {count} index slices, "
                            f"more than {maxPartitions} partitions: narrow "
                            f"from/to")


def answerPoints(fromMs: int, toMs: int, intervalMs: int | None,
                 groups: int) -> int:
    """
    How many values an answer holds at most: one per interval (or one) per
    group (or one).
    """
    intervals = 1
    if intervalMs is not None:
        origin = fromMs - fromMs % intervalMs
        intervals = (toMs - origin) // intervalMs + 1
    return intervals * max(groups, 1)


def checkAnswerSize(points: int, maxPoints: int) -> None:
    """
    Refuse a search whose answer would hold more values than it may.
    """
    if points > maxPoints:
        raise SearchTooWide("interval", f"the answer would hold {points} "
                            f"values, more than {maxPoints}: widen interval "
                            f"or narrow from/to")


@dataclass(frozen=True, slots=True)
class RollupChoice:
    """
    The rollup level a search reads, and the part of its range (whole
    level buckets) that level answers; the rest is read raw.
    """

    resolutionMs: int
    fromMs: int
    toMs: int


def chooseRollup(fromMs: int, toMs: int, intervalMs: int | None,
                 levels: Sequence[tuple[int, int, int]], nowMs: int
                 ) -> RollupChoice | None:
    """
    The coarsest level that fits: its resolution divides the interval (if
    any), it holds at least one whole level bucket of the range, after
    the level was first configured (C{sinceMs}) and within its retention.

    @param levels: C{(resolutionMs, retentionSeconds, sinceMs)} of each
        level; a retention of 0 keeps forever.
    """
    for resolution, retention, since in sorted(levels, reverse=True):
        if intervalMs is not None and intervalMs % resolution:
            continue
        lower = max(fromMs, since)
        if retention:
            lower = max(lower, nowMs - retention * 1000)
        start = -(-lower // resolution) * resolution
        end = (toMs + 1) // resolution * resolution - 1
        if end >= start:
            return RollupChoice(resolution, start, end)
    return None


def chooseLevels(fromMs: int, toMs: int, intervalMs: int | None,
                 levels: Sequence[tuple[int, int, int]], nowMs: int
                 ) -> tuple[list[RollupChoice], list[tuple[int, int]]]:
    """
    The levels a search reads and the ranges it reads raw: the coarsest
    level that fits answers its whole buckets (L{chooseRollup}); each edge
    left over is answered the same way by the finer levels, and only what
    no level holds whole is read raw.  A year that ends a second before
    midnight reads whole days, then 23 hours, 59 minutes and the raw
    points of the last 59 seconds, rather than the last day's raw points.

    @return: the levels' choices, coarsest first, and the raw
        C{(fromMs, toMs)} ranges, in time order.
    """
    if fromMs > toMs:
        return [], []
    choice = chooseRollup(fromMs, toMs, intervalMs, levels, nowMs)
    if choice is None:
        return [], [(fromMs, toMs)]
    finer = [level for level in levels if level[0] < choice.resolutionMs]
    before = chooseLevels(fromMs, choice.fromMs - 1, intervalMs, finer, nowMs)
    after = chooseLevels(choice.toMs + 1, toMs, intervalMs, finer, nowMs)
    return ([choice, *before[0], *after[0]], [*before[1], *after[1]])


def markerRanges(series: Sequence[SeriesRow], fromMs: int, toMs: int,
                 cleanSpans: dict[str, list[tuple[int, int]]]
                 ) -> dict[str, list[tuple[int, int]]]:
    """
    For each source of C{series}, the inclusive ranges of raw bucket
    numbers whose rollup markers a search of C{[fromMs, toMs]} reads: the
    range, less the spans (inclusive, in milliseconds) that C{cleanSpans}
    gives for the source, where it is answered by packs no write has
    marked (a write marks the packs it falls in with its partitions, see
    L{meetrd.packs}).  Bucket numbers are taken at the source's widest and
    narrowest widths, so that a range holds every partition that meets it.
    """
    widths: dict[str, tuple[int, int]] = {}
    for row in series:
        known = widths.get(row.source)
        widths[row.source] = (row.bucketMs, row.bucketMs) if known is None \
            else (min(known[0], row.bucketMs), max(known[1], row.bucketMs))
    ranges = {}
    for source, (narrowest, widest) in widths.items():
        gaps = []
        start = fromMs
        for spanFrom, spanTo in sorted(cleanSpans.get(source, ())):
            if spanFrom > start:
                gaps.append((start, spanFrom - 1))
            start = max(start, spanTo + 1)
        if start <= toMs:
            gaps.append((start, toMs))
        ranges[source] = [(low // widest, high // narrowest)
                          for low, high in gaps]
    return ranges


def rawAround(series: Sequence[SeriesRow], rawRanges: Sequence[tuple[int, int]],
              choices: Sequence[RollupChoice], pending: dict[str, set[int]],
              sliceMs: int) -> list[tuple[dict[tuple[str, int], dict[int, list[bytes]]], int, int]]:
    """
    The raw reads of a search answered mostly from rollups: the ranges no
    level holds whole (L{chooseLevels}), and the raw partitions inside the
    levels' ranges that are still waiting for their rollup (C{pending}, by
    source), each as C{(plan, fromMs, toMs)}.
    """
    parts = [(bucketsBySource(series, fromMs, toMs, sliceMs), fromMs, toMs)
             for fromMs, toMs in rawRanges]
    bySource: dict[tuple[str, int], list[bytes]] = {}
    for row in series:
        bySource.setdefault((row.source, row.bucketMs), []).append(
            row.seriesId)
    for (source, width), ids in sorted(bySource.items()):
        for bucket in sorted(pending.get(source, ())):
            for choice in choices:
                start = max(bucket * width, choice.fromMs)
                end = min((bucket + 1) * width - 1, choice.toMs)
                if start <= end:
                    parts.append(({(source, width): {bucket: list(
                        dict.fromkeys(ids))}}, start, end))
    return parts


def rollupReads(series: Sequence[SeriesRow], choice: RollupChoice
                ) -> list[tuple[str, int, list[bytes]]]:
    """
    The reads of rollup rows: C{(source, part, seriesIds)}, at most
    L{MAX_IN_SERIES} series each.
    """
    bySource: dict[str, dict[bytes, None]] = {}
    for row in series:
        bySource.setdefault(row.source, {})[row.seriesId] = None
    first = rollupPart(choice.fromMs, choice.resolutionMs)
    last = rollupPart(choice.toMs, choice.resolutionMs)
    reads = []
    for source, ids in sorted(bySource.items()):
        listed = list(ids)
        for part in range(first, last + 1):
            for start in range(0, len(listed), MAX_IN_SERIES):
                reads.append((source, part, listed[start:start + MAX_IN_SERIES]))
    return reads


# Sources (partitions) one read asks for at most, when several small
# partitions of one bucket or rollup part are read together.
SOURCES_PER_READ = 50
# How much time of raw points, summed over its sources, one request has
# Cassandra aggregate: it aggregates the partitions of C{source IN ?} one
# after the other on one thread, and 50 sources of 30 days timed out.
AGGREGATED_SOURCE_MS = 50 * 3_600_000


def aggregatedSourcesPerRead(fromMs: int, toMs: int) -> int:
    """
    How many sources one request has Cassandra aggregate over the range
    C{[fromMs, toMs]}: up to L{SOURCES_PER_READ} for the edges of a rollup
    search (an hour or less), one for a range of two days or more.
    """
    span = max(1, toMs - fromMs + 1)
    return max(1, min(SOURCES_PER_READ, AGGREGATED_SOURCE_MS // span))


# How many rollup rows, summed over its sources, one request has Cassandra
# aggregate.
AGGREGATED_ROLLUP_ROWS = 3_000


def aggregatedRollupSourcesPerRead(fromMs: int, toMs: int,
                                   resolutionMs: int) -> int:
    """
    How many sources one request has Cassandra aggregate over the rows of
    a level in C{[fromMs, toMs]}: up to L{SOURCES_PER_READ} for the edges
    a finer level answers (at most 59 minutes, 23 hours), a few for a
    month of hours.
    """
    rows = max(1, (toMs - fromMs + 1) // resolutionMs)
    return max(1, min(SOURCES_PER_READ, AGGREGATED_ROLLUP_ROWS // rows))


@dataclass(frozen=True, slots=True)
class SourceBatch:
    """
    One read of the same bucket (or rollup part) of several sources.

    @ivar ids: every series asked of any of the sources (one IN list).
    @ivar asked: the C{(source, seriesId)} pairs really asked for: rows of
        other pairs that the shared IN list brings are left out.
    """

    sources: list[str]
    key: int
    ids: list[bytes]
    asked: frozenset[tuple[str, bytes]]


def batchSources(reads: Iterable[tuple[str, int, list[bytes]]],
                 perRead: int = SOURCES_PER_READ) -> list[SourceBatch]:
    """
    Gather C{(source, key, seriesIds)} reads of the same key into batches
    of up to C{perRead} sources and L{MAX_IN_SERIES} series.
    """
    byKey: dict[int, list[tuple[str, list[bytes]]]] = {}
    for source, key, ids in reads:
        byKey.setdefault(key, []).append((source, ids))
    batches = []
    for key, members in byKey.items():
        sources: dict[str, None] = {}
        ids: dict[bytes, None] = {}
        asked: set[tuple[str, bytes]] = set()
        for source, listed in members:
            if sources and (len(sources) >= perRead
                            or len(ids) + len(listed) > MAX_IN_SERIES):
                batches.append(SourceBatch(list(sources), key, list(ids),
                                           frozenset(asked)))
                sources, ids, asked = {}, {}, set()
            sources[source] = None
            ids.update(dict.fromkeys(listed))
            asked.update((source, i) for i in listed)
        if sources:
            batches.append(SourceBatch(list(sources), key, list(ids),
                                       frozenset(asked)))
    return batches

