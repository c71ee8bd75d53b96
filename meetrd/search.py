"""
Searches: which series a query selects, and how Cassandra's per-partition
summaries merge into the answer.
"""

from __future__ import annotations

import time
from itertools import compress
from math import isfinite
from operator import truediv
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from twisted.internet.defer import (
    CancelledError,
    Deferred,
    FirstError,
    gatherResults,
)
from twisted.python.failure import Failure

from meetrd.aggregate import Partial, mergerFor, percentileOf
from meetrd.answergrid import (
    GRID_AGGREGATIONS,
    Columns,
    Grid,
    valueColumn,
    wholeValue,
)
from meetrd.packs import PACK_BUCKETS, column, packStart, packed
from meetrd.durations import formatDuration
from meetrd.readplan import (
    RollupChoice,
    SearchTooWide,
    SeriesRow,
    answerPoints,
    bucketsBySource,
    checkAnswerSize,
    checkIndexReads,
    checkPartitions,
    chooseLevels,
    markerRanges,
    planIndex,
    rawAround,
    rollupReads,
)
from meetrd.settings import Limits
from meetrd.store import ReadProgress, Summary
from meetrd.timestamps import formatTimestamp

__all__ = ["Query", "SearchTimedOut", "SearchTooWide", "answer", "runSearch"]


class SearchTimedOut(Exception):
    """
    A search ran past C{limits.search_timeout}.

    @ivar reading: what it was reading then.
    """

    def __init__(self, seconds: float, reading: str) -> None:
        super().__init__(f"the search ran past its {seconds:g}s deadline "
                         f"while {reading}")
        self.seconds = seconds
        self.reading = reading


@dataclass(frozen=True)
class Query:
    """
    A checked search.

    @ivar tagFilters: C{(key, values)} pairs; a series matches when, for
        every key, its tag has one of the values.
    """

    metric: str
    fromText: str
    toText: str
    fromMs: int
    toMs: int
    aggregation: str
    tagFilters: tuple[tuple[str, frozenset[str]], ...] = ()
    groupBy: str | None = None
    intervalMs: int | None = None


def answer(query: Query, series: Sequence[SeriesRow],
           summaries: Sequence[Summary], resolution: str = "raw",
           grid: Grid | None = None) -> dict[str, Any]:
    """
    Merge summaries into the JSON answer of a search, and into C{grid}
    when the search read rollup packs into one.
    """
    groupOf: dict[bytes, str | None] = {}
    if query.groupBy is not None:
        for row in series:
            groupOf[row.seriesId] = dict(row.tags).get(query.groupBy)
    if grid is not None and grid.used:
        grouped = query.groupBy is not None
        for summary in summaries:
            assert summary.intervalStart is not None
            grid.addPartial(groupOf.get(summary.seriesId) if grouped
                            else None, summary.intervalStart,
                            summary.partial)
        return _gridAnswer(query, grid, resolution)
    # Each summary is folded into its cell (group, interval start); the
    # groups, the intervals and the total are then folded from the cells,
    # so a summary costs one merge, not four.  A cell's first summary
    # becomes the cell (summaries are the search's own, used once).
    cells: dict[tuple[str | None, int | None], Partial] = {}
    grouped = query.groupBy is not None
    merge = mergerFor(query.aggregation)
    for summary in summaries:
        key = (groupOf.get(summary.seriesId) if grouped else None,
               summary.intervalStart)
        cell = cells.get(key)
        if cell is None:
            cells[key] = summary.partial
        else:
            merge(cell, summary.partial)
    total = Partial()
    groups: defaultdict[str | None, Partial] = defaultdict(Partial)
    intervals: dict[int, Partial] = defaultdict(Partial)
    groupIntervals: defaultdict[str | None, dict[int, Partial]] = \
        defaultdict(dict)
    for (group, start), cell in cells.items():
        if start is not None:
            merge(intervals[start], cell)
            if grouped:
                groupIntervals[group][start] = cell
        if grouped:
            merge(groups[group], cell)
        else:
            merge(total, cell)
    for partial in groups.values():
        merge(total, partial)

    aggregation = query.aggregation
    result: dict[str, Any] = {
        "metric_id": query.metric,
        "from": query.fromText,
        "to": query.toText,
        "aggregation": aggregation,
        "value": total.value(aggregation),
        "resolution": resolution,
    }
    formatted: dict[int, str] = {}
    if query.intervalMs is not None:
        result["interval"] = query.intervalMs / 1000
        result["points"] = _points(intervals, aggregation, formatted)
    if query.groupBy is not None:
        result["group_by"] = query.groupBy
        entries = []
        for group in sorted(groups, key=lambda g: (g is None, g or "")):
            entry: dict[str, Any] = {
                "tags": {query.groupBy: group},
                "value": groups[group].value(aggregation),
            }
            if query.intervalMs is not None:
                entry["points"] = _points(groupIntervals[group], aggregation,
                                          formatted)
            entries.append(entry)
        result["groups"] = entries
    return result


def _points(intervals: dict[int, Partial], aggregation: str,
            formatted: dict[int, str]) -> list[list[Any]]:
    """
    The C{[start, value]} pairs of some intervals, in time order; every
    group of an answer has the same starts, so each is formatted once,
    into C{formatted}.
    """
    points = []
    for start in sorted(intervals):
        text = formatted.get(start)
        if text is None:
            text = formatted[start] = formatTimestamp(start)
        points.append([text, intervals[start].value(aggregation)])
    return points


def _gridAnswer(query: Query, grid: Grid, resolution: str
                ) -> dict[str, Any]:
    """
    The JSON answer of a search by interval whose cells are in a grid.
    """
    aggregation = query.aggregation
    whole = grid.total(grid.groups.values())
    texts = [formatTimestamp(grid.startOf(index))
             for index in range(grid.size)]
    result: dict[str, Any] = {
        "metric_id": query.metric,
        "from": query.fromText,
        "to": query.toText,
        "aggregation": aggregation,
        "value": wholeValue(aggregation, whole),
        "resolution": resolution,
        "interval": grid.intervalMs / 1000,
        "points": _gridPoints(whole, aggregation, texts),
    }
    if query.groupBy is not None:
        result["group_by"] = query.groupBy
        result["groups"] = [
            {"tags": {query.groupBy: group},
             "value": wholeValue(aggregation, grid.groups[group]),
             "points": _gridPoints(grid.groups[group], aggregation, texts)}
            for group in sorted(grid.groups,
                                key=lambda g: (g is None, g or ""))]
    return result


def _gridPoints(columns: Columns, aggregation: str, texts: list[str]
                ) -> list[tuple[str, Any]]:
    """
    The C{[start, value]} pairs of a group's intervals that hold points.
    """
    counts = columns.counts
    # The intervals that hold points, filtered and paired at C speed: a
    # month of a thousand nodes by hour is 720,000 pairs.
    dense = all(counts)
    starts = texts if dense else list(compress(texts, counts))
    held = counts if dense else list(compress(counts, counts))
    values: list[Any]
    if aggregation == "count":
        values = held
    else:
        values = columns.values if dense else list(
            compress(columns.values, counts))
        if aggregation == "avg":
            values = list(map(truediv, values, held))
        if not all(map(isfinite, values)):
            values = [value if isfinite(value) else None for value in values]
    # Pairs as tuples: JSON writes them as arrays, and a tuple costs less
    # to make than a list.
    return list(zip(starts, values))


def groupCount(series: Sequence[SeriesRow], groupBy: str | None) -> int:
    """
    How many groups an answer grouped by C{groupBy} holds.
    """
    if groupBy is None:
        return 1
    return len({dict(row.tags).get(groupBy) for row in series})


async def summarizeSeries(store: Any, series: Sequence[SeriesRow],
                          fromMs: int, toMs: int, intervalMs: int | None,
                          aggregation: str, indexReads: int,
                          maxPartitions: int, nowMs: int,
                          progress: ReadProgress, grid: Grid | None = None
                          ) -> tuple[list[Summary], str]:
    """
    The summaries of some series over an inclusive range (per interval
    when C{intervalMs} is given), fit for C{aggregation}, and the
    resolution they were read at (C{"raw"}, or the coarsest rollup level
    read).

    With rollup levels, the coarsest level that fits answers the whole
    level buckets of the range, except raw partitions still waiting for
    their rollup; the edges are answered the same way by the finer levels
    (L{chooseLevels}), the rest (what no level holds whole, and those
    partitions) is read raw, and everything merges exactly.  The reads
    (with the C{indexReads} already made) are held to C{maxPartitions}.

    Where a level is packed (L{meetrd.packs}) and the aggregation is one
    of L{GRID_AGGREGATIONS}, its whole packs are read instead of its rows
    for every source none of whose packs there is marked (a write marks
    the packs its points fall in, and a merge waits for their rollup):
    into C{grid} by interval (then C{grid.used} is set), or as one summary
    a pack row without intervals; with intervals and no grid, rows are
    read.  The raw partitions' markers are then read only outside those
    packs, and the rows, packs and raw points all at once.
    """
    # Percentiles merge sketches and standard deviations squared
    # deviations: both read rows (raw points, rollup rows) rather than
    # what Cassandra sums up.
    sketches = percentileOf(aggregation) is not None
    spread = aggregation == "stddev"
    newestFirst = aggregation == "last"

    def rawSummaries(plan: dict[tuple[str, int], dict[int, list[bytes]]],
                     fromMs: int, toMs: int) -> Deferred[list[Summary]]:
        if sketches or spread:
            return store.valueSummaries(plan, fromMs, toMs, intervalMs,
                                        progress, sketches)
        return store.summarize(plan, fromMs, toMs, intervalMs,
                               newestFirst=newestFirst, progress=progress)

    choices: list[Any] = []
    rawRanges = [(fromMs, toMs)]
    if getattr(store, "rollups", ()) and series:
        choices, rawRanges = chooseLevels(
            fromMs, toMs, intervalMs, store.rollupLevels(), nowMs)
    if not choices:
        plan = bucketsBySource(series, fromMs, toMs, store.sliceMs)
        checkPartitions(plan, indexReads, maxPartitions)
        return await rawSummaries(plan, fromMs, toMs), "raw"
    usePacks = aggregation in GRID_AGGREGATIONS and (
        intervalMs is None or grid is not None)
    sources = {row.source for row in series}
    # The packed parts of the levels: (choice, first pack, last pack).
    packedChoices = []
    for choice in choices:
        packs = packRange(choice, getattr(store, "packsSince", {}))
        if usePacks and packs is not None:
            packedChoices.append((choice, *packs))
    marks = await gatherResults([
        store.markedPacks(sources, choice.resolutionMs, first, last,
                          progress)
        for choice, first, last in packedChoices], consumeErrors=True
    ).addErrback(_firstFailure)
    # A source's whole packs are read where none of them is marked; the
    # raw markers are then read only outside those spans.
    cleanSpans: dict[str, list[tuple[int, int]]] = {}
    for (choice, first, last), marked in zip(packedChoices, marks):
        span = (packStart(first, choice.resolutionMs),
                packStart(last + 1, choice.resolutionMs) - 1)
        for source in sources:
            if not marked.get(source):
                cleanSpans.setdefault(source, []).append(span)
    pending = await store.pendingPartitions(
        markerRanges(series, fromMs, toMs, cleanSpans), progress)
    # A raw partition waiting inside a clean span (one written by an older
    # version, which did not mark packs) keeps its source off the packs.
    strays = {source for source, spans in cleanSpans.items() if any(
        spanFrom <= end and start <= spanTo
        for bucket, (start, end) in _bucketSpans(
            series, source, pending.get(source, ()))
        for spanFrom, spanTo in spans)}
    if strays:
        for source in strays:
            del cleanSpans[source]
        again = await store.pendingPartitions(
            markerRanges([row for row in series if row.source in strays],
                         fromMs, toMs, {}), progress)
        pending.update(again)
    raw = rawAround(series, rawRanges, choices, pending, store.sliceMs)
    # Per level: (series, range) whose rows are read, and the packs read.
    rowReads: list[tuple[RollupChoice, list[SeriesRow]]] = []
    packReads: list[tuple[int, int, int, list[Any]]] = []
    packedBy = {id(choice): (first, last)
                for choice, first, last in packedChoices}
    for choice in choices:
        if id(choice) not in packedBy:
            rowReads.append((choice, list(series)))
            continue
        first, last = packedBy[id(choice)]
        spanFrom = packStart(first, choice.resolutionMs)
        spanTo = packStart(last + 1, choice.resolutionMs) - 1
        clean, dirty = [], []
        for row in series:
            (clean if (spanFrom, spanTo) in cleanSpans.get(row.source, ())
             else dirty).append(row)
        if dirty:
            rowReads.append((choice, dirty))
        if clean:
            packReads.append((choice.resolutionMs, first, last, rollupReads(
                clean, RollupChoice(choice.resolutionMs, spanFrom, spanTo))))
            for edgeFrom, edgeTo in ((choice.fromMs, spanFrom - 1),
                                     (spanTo + 1, choice.toMs)):
                if edgeFrom <= edgeTo:
                    rowReads.append((RollupChoice(
                        choice.resolutionMs, edgeFrom, edgeTo), clean))
    reads = [rollupReads(rows, choice) for choice, rows in rowReads]
    checkPartitions({}, indexReads + sum(map(len, reads)) + sum(
        len(levelReads) for _, _, _, levelReads in packReads) + sum(
        len(b) for plan, _, _ in raw for b in plan.values()),
        maxPartitions)
    # The rows, packs and raw points are read together: what they hold
    # was fixed by the markers read above.
    values = valueColumn(aggregation)
    requests: list[Deferred[Any]] = [
        store.rollupSummaries(
            choice.resolutionMs, levelReads, choice.fromMs, choice.toMs,
            pending, intervalMs, progress, sketches,
            newestFirst=newestFirst, spread=spread)
        for (choice, _), levelReads in zip(rowReads, reads)]
    requests.extend(store.readPacks(resolutionMs, levelReads, first, last,
                                    values, progress)
                    for resolutionMs, first, last, levelReads in packReads)
    requests.extend(rawSummaries(plan, rawFrom, rawTo)
                    for plan, rawFrom, rawTo in raw)
    found = await gatherResults(requests, consumeErrors=True).addErrback(
        _firstFailure)
    summaries = []
    for result in found[:len(rowReads)]:
        summaries.extend(result)
    for (resolutionMs, _, _, _), packRows in zip(
            packReads, found[len(rowReads):len(rowReads) + len(packReads)]):
        if grid is None:
            summaries.extend(packSummaries(packRows, values))
            continue
        grid.used = True
        groupOf = grid.groupOf
        for identifier, pack, counts, cells in packRows:
            grid.addBuckets(
                None if groupOf is None else groupOf.get(identifier),
                packStart(pack, resolutionMs), resolutionMs,
                column(counts, "q"), column(cells, "d"))
    for result in found[len(rowReads) + len(packReads):]:
        summaries.extend(result)
    return summaries, formatDuration(choices[0].resolutionMs / 1000)


def _bucketSpans(series: Sequence[SeriesRow], source: str,
                 buckets: Iterable[int]) -> list[tuple[int, tuple[int, int]]]:
    """
    The spans C{(bucket, (firstMs, lastMs))} of some raw bucket numbers of
    a source, at each of its series' widths.
    """
    widths = {row.bucketMs for row in series if row.source == source}
    return [(bucket, (bucket * width, (bucket + 1) * width - 1))
            for bucket in buckets for width in widths]


def _firstFailure(failure: Failure) -> Failure:
    """
    The failure of the first read of a L{gatherResults} that failed.
    """
    if failure.check(FirstError):
        return failure.value.subFailure
    return failure


def packRange(choice: RollupChoice, packsSince: dict[int, int]
              ) -> tuple[int, int] | None:
    """
    The first and last packs that a level's part of a range holds whole
    and that may be read (packs merged since C{packsSince} of the level),
    or C{None}.
    """
    resolution = choice.resolutionMs
    since = packsSince.get(resolution)
    if since is None or not packed(resolution):
        return None
    span = resolution * PACK_BUCKETS
    first = max(-(-choice.fromMs // span), -(-since // span))
    last = (choice.toMs + 1) // span - 1
    return (first, last) if first <= last else None


def packSummaries(rows: Sequence[tuple[bytes, int, bytes, bytes]],
                  values: str) -> list[Summary]:
    """
    One summary of each pack row: its count and, as C{values} says, its
    sum, minimum or maximum.
    """
    summaries = []
    for identifier, _, counts, found in rows:
        partial = Partial(sum(column(counts, "q")))
        if values == "totals":
            for part in column(found, "d"):
                partial.total += part
        elif values == "minimums":
            partial.minimum = min(column(found, "d"))
        else:
            partial.maximum = max(column(found, "d"))
        summaries.append(Summary(identifier, None, partial))
    return summaries


def runSearch(store: Any, query: Query, limits: Limits, clock: Any = None
              ) -> Deferred[dict[str, Any]]:
    """
    Run a search against the store and fire with its JSON answer.

    The limits are checked between the reads: the series index first
    (the series and the slices), then the partitions and the size of
    the answer, before any point is read.  With a C{clock}, the whole
    search fails with L{SearchTimedOut} after C{limits.search_timeout}.

    Rollup levels are read as L{summarizeSeries} says; the answer's
    C{resolution} says which level was read (C{"raw"} when none).
    """
    progress = ReadProgress()
    maxPartitions = limits.max_search_partitions
    nowSeconds = time.time if clock is None else clock.seconds

    async def search() -> dict[str, Any]:
        indexPlan = planIndex(query.fromMs, query.toMs, store.sliceMs,
                              query.tagFilters, limits.max_search_series)
        checkIndexReads(len(indexPlan.reads), maxPartitions)
        series = await store.findSeries(
            query.metric, query.fromMs, query.toMs, query.tagFilters,
            limits.max_search_series, progress)
        checkAnswerSize(answerPoints(query.fromMs, query.toMs,
                                     query.intervalMs,
                                     groupCount(series, query.groupBy)),
                        limits.max_search_points)
        grid = None
        if query.intervalMs is not None and \
                query.aggregation in GRID_AGGREGATIONS:
            grid = Grid(query.fromMs, query.toMs, query.intervalMs,
                        query.aggregation, None if
                        query.groupBy is None else {
                            row.seriesId: dict(row.tags).get(query.groupBy)
                            for row in series})
        summaries, resolution = await summarizeSeries(
            store, series, query.fromMs, query.toMs, query.intervalMs,
            query.aggregation, len(indexPlan.reads), maxPartitions,
            int(nowSeconds() * 1000), progress, grid)
        return answer(query, series, summaries, resolution, grid)

    d = Deferred.fromCoroutine(search())
    if clock is None:
        return d
    seconds = limits.search_timeout

    def timedOut(result: Any, timeout: float) -> Any:
        if isinstance(result, Failure) and result.check(CancelledError):
            return Failure(SearchTimedOut(seconds, progress.describe()))
        return result

    return d.addTimeout(seconds, clock, onTimeoutCancel=timedOut)
