"""
Reading what a PromQL expression selects: which series each selector
matches (the series index, with C{=} matchers applied by Cassandra and
the others here) and their raw samples over the windows the evaluation
looks at.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

from twisted.internet.defer import DeferredList

from meetrd.aggregate import Partial
from meetrd.promql.engine import Matrix, Series
from meetrd.promql.errors import ExecutionError
from meetrd.promql.syntax import (
    Aggregate,
    Binary,
    Call,
    Expr,
    Matcher,
    Negation,
    RangeSelector,
    Selector,
)
from meetrd.readplan import (
    SearchTooWide,
    SeriesRow,
    bucketsBySource,
    checkPartitions,
)
from meetrd.settings import Limits
from meetrd.store import ReadProgress

# Range functions Cassandra can answer from its count, sum, min and max
# of a window (one per series, for an instant query).
SUMMARIZED = {"sum_over_time", "count_over_time", "min_over_time",
              "max_over_time", "avg_over_time"}

# Metric names one selector without a name (C{{job="x"}}, C{{__name__=~
# "..."}}) may span: each is a read of the series index.
MAX_METRIC_NAMES = 1000


def _ignore(read: str) -> None:
    pass


@dataclass(frozen=True)
class Window:
    """
    The inclusive milliseconds of samples a selector needs.
    """

    fromMs: int
    toMs: int

    def union(self, other: "Window") -> "Window":
        return Window(min(self.fromMs, other.fromMs),
                      max(self.toMs, other.toMs))


def selectorWindows(expr: Expr, startMs: int, endMs: int, lookbackMs: int,
                    summarized: frozenset[RangeSelector] = frozenset()
                    ) -> dict[Selector, Window]:
    """
    For each selector of an expression, the samples its evaluation at
    every instant from C{startMs} to C{endMs} looks at: C{(t - range,
    t]} or C{(t - lookback, t]}, moved by C{offset} and C{@}.  The range
    selectors in C{summarized} (answered by Cassandra's summaries, see
    L{summarizedSelectors}) need no samples.
    """
    windows: dict[Selector, Window] = {}
    for selector, span in _selectors(expr, lookbackMs, summarized):
        if selector.at is None:
            first, last = startMs, endMs
        else:
            at = selector.at
            fixed = startMs if at == "start" else endMs if at == "end" \
                else int(at)
            first = last = fixed
        window = Window(first - selector.offsetMs - span + 1,
                        last - selector.offsetMs)
        known = windows.get(selector)
        windows[selector] = window if known is None else known.union(window)
    return windows


def _selectors(expr: Expr, lookbackMs: int,
               summarized: frozenset[RangeSelector] = frozenset()
               ) -> Iterator[tuple[Selector, int]]:
    if isinstance(expr, Selector):
        yield expr, lookbackMs
    elif isinstance(expr, RangeSelector):
        yield expr.selector, expr.rangeMs
    elif isinstance(expr, Call):
        if expr.function in SUMMARIZED and expr.args[0] in summarized:
            return
        for arg in expr.args:
            yield from _selectors(arg, lookbackMs, summarized)
    elif isinstance(expr, Aggregate):
        yield from _selectors(expr.expr, lookbackMs, summarized)
        if expr.param is not None:
            yield from _selectors(expr.param, lookbackMs, summarized)
    elif isinstance(expr, Binary):
        yield from _selectors(expr.lhs, lookbackMs, summarized)
        yield from _selectors(expr.rhs, lookbackMs, summarized)
    elif isinstance(expr, Negation):
        yield from _selectors(expr.expr, lookbackMs, summarized)


def summarizedSelectors(expr: Expr, stepMs: int | None = None
                        ) -> frozenset[RangeSelector]:
    """
    The range selectors of an expression that only C{sum_over_time},
    C{count_over_time}, C{min_over_time}, C{max_over_time} and
    C{avg_over_time} read, and whose windows Cassandra can summarize
    instead of meetrd reading every sample: every one in an instant query
    (C{stepMs} C{None}); in a range query, those pinned by C{@} (one
    window) and those whose range is the step (windows that tile the
    range, one interval each).
    """
    found: dict[RangeSelector, bool] = {}

    def walk(node: Expr, viaSummary: bool) -> None:
        if isinstance(node, RangeSelector):
            fits = stepMs is None or node.selector.at is not None or \
                node.rangeMs == stepMs
            found[node] = found.get(node, True) and viaSummary and fits
        elif isinstance(node, Call):
            for arg in node.args:
                walk(arg, node.function in SUMMARIZED)
        elif isinstance(node, Aggregate):
            walk(node.expr, False)
            if node.param is not None:
                walk(node.param, False)
        elif isinstance(node, Binary):
            walk(node.lhs, False)
            walk(node.rhs, False)
        elif isinstance(node, Negation):
            walk(node.expr, False)

    walk(expr, False)
    return frozenset(selector for selector, only in found.items() if only)


Summarized = dict[RangeSelector, dict[Any, dict[Any, Partial]]]


async def summarizeSelected(store: Any, selectors: frozenset[RangeSelector],
                            startMs: int, endMs: int, stepMs: int | None,
                            limits: Limits, nowMs: int,
                            progress: ReadProgress,
                            observe: Callable[[str], None] = _ignore
                            ) -> Summarized:
    """
    For each range selector, Cassandra's summary (count, sum, min, max)
    of each series' samples in its window, by the evaluation instant the
    window is of (C{None}: every instant, for a window pinned by C{@}).

    A single window (an instant query, or C{@}) is read as a search is,
    from the rollups where they fit (L{meetrd.search.summarizeSeries});
    the windows of a range query whose range is its step are the
    intervals of one raw summary starting at the first window's start.
    C{observe} is told how each selector was read: C{"raw summary"}, or
    the coarsest rollup level read (C{"1h"}).
    """
    from meetrd.search import summarizeSeries

    out: Summarized = {}
    for ranged in selectors:
        selector = ranged.selector
        at = selector.at
        pinned = stepMs is None or at is not None
        if at is None:
            first, last = startMs, endMs
        else:
            first = last = startMs if at == "start" else endMs \
                if at == "end" else int(at)
        if stepMs is not None and at is None:
            last = startMs + (endMs - startMs) // stepMs * stepMs
        window = Window(first - selector.offsetMs - ranged.rangeMs + 1,
                        last - selector.offsetMs)
        rows = await findMatching(store, selector.matchers, window, limits,
                                  limits.max_search_series, progress)
        if pinned:
            summaries, resolution = await summarizeSeries(
                store, rows, window.fromMs, window.toMs, None, "sum", 0,
                limits.max_search_partitions, nowMs, progress)
            observe("raw summary" if resolution == "raw" else resolution)
        else:
            observe("raw summary")
            plan = bucketsBySource(rows, window.fromMs, window.toMs,
                                   store.sliceMs)
            checkPartitions(plan, 0, limits.max_search_partitions)
            summaries = await store.summarize(
                plan, window.fromMs, window.toMs, ranged.rangeMs,
                progress=progress, originMs=window.fromMs)
        labels = {row.seriesId: labelsOf(row) for row in rows}
        byInstant: dict[Any, dict[Any, Partial]] = {}
        for summary in summaries:
            key = labels.get(summary.seriesId)
            if key is None or summary.partial.count == 0:
                continue
            instant = None
            if not pinned:
                instant = summary.intervalStart + ranged.rangeMs - 1 + \
                    selector.offsetMs
            merged = byInstant.setdefault(instant, {})
            if key in merged:
                merged[key].merge(summary.partial)
            else:
                merged[key] = summary.partial
        out[ranged] = byInstant
    return out


def labelsOf(row: SeriesRow) -> tuple[tuple[str, str], ...]:
    """
    A series' Prometheus labels: its tags and C{__name__}, sorted.
    """
    return tuple(sorted((*row.tags, ("__name__", row.metric))))


def passes(labels: tuple[tuple[str, str], ...],
           matchers: tuple[Matcher, ...]) -> bool:
    """
    Whether a label set passes every matcher.
    """
    found = dict(labels)
    return all(m.matches(found.get(m.name, "")) for m in matchers)


async def metricNamesFor(store: Any, matchers: tuple[Matcher, ...],
                         progress: ReadProgress) -> list[str]:
    """
    The metric names a selector spans: the one it names, or those of the
    store that pass its C{__name__} matchers.
    """
    for m in matchers:
        if m.name == "__name__" and m.op == "=":
            return [m.value]
    names = [name for name in await store.metricNames(progress)
             if all(m.matches(name) for m in matchers
                    if m.name == "__name__")]
    if len(names) > MAX_METRIC_NAMES:
        raise ExecutionError(f"the selector spans {len(names)} metric names, "
                             f"more than {MAX_METRIC_NAMES}: match "
                             f"__name__ more narrowly")
    return names


async def findMatching(store: Any, matchers: tuple[Matcher, ...],
                       window: Window, limits: Limits, maxSeries: int,
                       progress: ReadProgress) -> list[SeriesRow]:
    """
    The index rows of the series that pass every matcher and may have
    samples in the window; at most C{maxSeries} series.
    """
    filters = tuple(sorted(
        (m.name, frozenset([m.value])) for m in matchers
        if m.op == "=" and m.value and m.name != "__name__"))
    names = await metricNamesFor(store, matchers, progress)
    results = await DeferredList(
        [store.findSeries(name, window.fromMs, window.toMs, filters,
                          maxSeries, progress) for name in names],
        consumeErrors=True)
    rows: list[SeriesRow] = []
    for ok, found in results:
        if not ok:
            found.raiseException()
        rows.extend(row for row in found if passes(labelsOf(row), matchers))
    if len({row.seriesId for row in rows}) > maxSeries:
        raise SearchTooWide("match[]", f"more than {limits.max_search_series}"
                            f" series match (limits.max_search_series): "
                            f"narrow the selectors")
    return rows


async def readSelected(store: Any, windows: dict[Selector, Window],
                       limits: Limits, progress: ReadProgress,
                       observe: Callable[[str], None] = _ignore
                       ) -> dict[Selector, Matrix]:
    """
    The series of every selector with their samples in its window.

    The series of all selectors together are held to
    C{limits.max_search_series}, their partitions to
    C{limits.max_search_partitions} and their samples to
    C{limits.max_query_samples} (L{SearchTooWide} past any).
    C{observe} is told C{"samples"} for each selector.
    """
    found: dict[Selector, list[SeriesRow]] = {}
    budget = limits.max_search_series
    for selector, window in windows.items():
        rows = await findMatching(store, selector.matchers, window, limits,
                                  budget, progress)
        budget -= len({row.seriesId for row in rows})
        found[selector] = rows
    plans = {selector: bucketsBySource(found[selector], window.fromMs,
                                       window.toMs, store.sliceMs)
             for selector, window in windows.items()}
    checkPartitions({}, sum(len(buckets) for plan in plans.values()
                            for buckets in plan.values()),
                    limits.max_search_partitions)
    data: dict[Selector, Matrix] = {}
    samplesLeft = limits.max_query_samples
    for selector, window in windows.items():
        samples = await store.readSamples(plans[selector], window.fromMs,
                                          window.toMs, samplesLeft, progress)
        samplesLeft -= sum(len(ts) for ts, _ in samples.values())
        observe("samples")
        labels = {row.seriesId: labelsOf(row) for row in found[selector]}
        data[selector] = [Series(labels[identifier], ts, values)
                          for identifier, (ts, values) in samples.items()
                          if identifier in labels]
    return data
