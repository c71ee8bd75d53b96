"""
Searches: which series a query selects, and how Cassandra's per-partition
summaries merge into the answer.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Sequence

from twisted.internet.defer import Deferred

from meetrd.aggregate import Partial
from meetrd.layout import bucketCount
from meetrd.settings import Limits
from meetrd.store import SeriesRow, Summary
from meetrd.timestamps import formatTimestamp


class SearchTooWide(Exception):
    """
    A search would read more than the limits allow.

    @ivar field: the query parameter to change.
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(problem)
        self.field = field
        self.problem = problem


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


def selectSeries(series: Sequence[SeriesRow], query: Query
                 ) -> list[SeriesRow]:
    """
    The series of the metric that match every tag filter.
    """
    if not query.tagFilters:
        return list(series)
    selected = []
    for row in series:
        tags = dict(row.tags)
        if all(tags.get(key) in values for key, values in query.tagFilters):
            selected.append(row)
    return selected


def checkBreadth(series: Sequence[SeriesRow], query: Query, limits: Limits
                 ) -> None:
    """
    Refuse searches that would read too many series or partitions.
    """
    if len(series) > limits.max_search_series:
        raise SearchTooWide("tag", f"{len(series)} series match, more than "
                            f"{limits.max_search_series}: narrow with tag=")
    partitions = sum(bucketCount(query.fromMs, query.toMs, row.bucketMs)
                     for row in series)
    if partitions > limits.max_search_partitions:
        raise SearchTooWide("from", f"the range spans {partitions} "
                            f"partitions, more than "
                            f"{limits.max_search_partitions}: narrow from/to")


def answer(query: Query, series: Sequence[SeriesRow],
           summaries: Sequence[Summary]) -> dict[str, Any]:
    """
    Merge summaries into the JSON answer of a search.
    """
    groupOf: dict[bytes, str | None] = {}
    if query.groupBy is not None:
        for row in series:
            groupOf[row.seriesId] = dict(row.tags).get(query.groupBy)
    total = Partial()
    groups: defaultdict[str | None, Partial] = defaultdict(Partial)
    intervals: dict[int, Partial] = defaultdict(Partial)
    groupIntervals: defaultdict[str | None, dict[int, Partial]] = \
        defaultdict(lambda: defaultdict(Partial))
    for summary in summaries:
        total.merge(summary.partial)
        if summary.intervalStart is not None:
            intervals[summary.intervalStart].merge(summary.partial)
        if query.groupBy is not None:
            group = groupOf.get(summary.seriesId)
            groups[group].merge(summary.partial)
            if summary.intervalStart is not None:
                groupIntervals[group][summary.intervalStart].merge(
                    summary.partial)

    aggregation = query.aggregation
    result: dict[str, Any] = {
        "metric_id": query.metric,
        "from": query.fromText,
        "to": query.toText,
        "aggregation": aggregation,
        "value": total.value(aggregation),
    }
    if query.intervalMs is not None:
        result["interval"] = query.intervalMs / 1000
        result["points"] = _points(intervals, aggregation)
    if query.groupBy is not None:
        result["group_by"] = query.groupBy
        entries = []
        for group in sorted(groups, key=lambda g: (g is None, g or "")):
            entry: dict[str, Any] = {
                "tags": {query.groupBy: group},
                "value": groups[group].value(aggregation),
            }
            if query.intervalMs is not None:
                entry["points"] = _points(groupIntervals[group], aggregation)
            entries.append(entry)
        result["groups"] = entries
    return result


def _points(intervals: dict[int, Partial], aggregation: str
            ) -> list[list[Any]]:
    return [[formatTimestamp(start), intervals[start].value(aggregation)]
            for start in sorted(intervals)]


def runSearch(store: Any, query: Query, limits: Limits
              ) -> Deferred[dict[str, Any]]:
    """
    Run a search against the store and fire with its JSON answer.
    """

    def found(series: list[SeriesRow]) -> Deferred[dict[str, Any]]:
        selected = selectSeries(series, query)
        checkBreadth(selected, query, limits)
        d = store.summarize(selected, query.fromMs, query.toMs,
                            query.intervalMs,
                            newestFirst=query.aggregation == "last")
        return d.addCallback(lambda summaries: answer(query, selected,
                                                      summaries))

    return store.seriesOf(query.metric).addCallback(found)
