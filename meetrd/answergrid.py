"""
An answer's cells held as columns: for each group, the count, sum,
minimum and maximum of every interval in lists, for searches by interval
over many series that read rollup packs (L{meetrd.packs}).

A month of a thousand nodes by hour is 720,000 cells: one object a cell,
merged into its group, its interval and the total, costs seconds of the
reactor; a pack's 32 buckets added to a group's lists costs a few list
operations.  Only the aggregations these four columns answer use it.
"""

from __future__ import annotations

import math
from operator import add
from typing import Any, Hashable, Iterable

from meetrd.aggregate import Partial

GRID_AGGREGATIONS = frozenset({"count", "sum", "avg", "min", "max"})
# The columns of a pack (meetrd.packs) a grid reads.
GRID_COLUMNS = ("count", "total", "minimum", "maximum")
INF = math.inf


class Columns:
    """
    The cells of one group, by interval index.
    """

    __slots__ = ("counts", "totals", "minimums", "maximums")

    def __init__(self, size: int) -> None:
        self.counts = [0] * size
        self.totals = [0.0] * size
        self.minimums = [INF] * size
        self.maximums = [-INF] * size

    def merge(self, other: "Columns") -> None:
        """
        Fold another group's cells into these, interval by interval.
        """
        self.counts = list(map(add, self.counts, other.counts))
        self.totals = list(map(add, self.totals, other.totals))
        self.minimums = list(map(min, self.minimums, other.minimums))
        self.maximums = list(map(max, self.maximums, other.maximums))


class Grid:
    """
    The cells of an answer by interval, for each group.

    @ivar origin: the start of the first interval.
    @ivar groupOf: the group of each series, or C{None} for an answer
        without groups (then every cell is of the group C{None}).
    @ivar used: whether cells were added from packs; an answer whose
        search read none is made from its summaries alone.
    """

    def __init__(self, fromMs: int, toMs: int, intervalMs: int,
                 groupOf: dict[bytes, Any] | None = None) -> None:
        self.origin = fromMs - fromMs % intervalMs
        self.intervalMs = intervalMs
        self.size = (toMs - self.origin) // intervalMs + 1
        self.groupOf = groupOf
        self.groups: dict[Hashable, Columns] = {}
        self.used = False

    def columns(self, group: Hashable) -> Columns:
        """
        The cells of a group, made empty the first time.
        """
        found = self.groups.get(group)
        if found is None:
            found = self.groups[group] = Columns(self.size)
        return found

    def addBuckets(self, group: Hashable, startMs: int, resolutionMs: int,
                   counts: Any, totals: Any, minimums: Any, maximums: Any
                   ) -> None:
        """
        Add consecutive level buckets from C{startMs} (empty ones have a
        count of 0, a minimum of +inf and a maximum of -inf) to a group.
        Buckets outside the grid are the caller's error.
        """
        cells = self.columns(group)
        intervalMs = self.intervalMs
        first = (startMs - self.origin) // intervalMs
        if resolutionMs == intervalMs:
            end = first + len(counts)
            cells.counts[first:end] = map(add, cells.counts[first:end],
                                          counts)
            cells.totals[first:end] = map(add, cells.totals[first:end],
                                          totals)
            cells.minimums[first:end] = map(
                min, cells.minimums[first:end], minimums)
            cells.maximums[first:end] = map(
                max, cells.maximums[first:end], maximums)
            return
        for offset, count in enumerate(counts):
            if count:
                index = (startMs + offset * resolutionMs - self.origin) \
                    // intervalMs
                cells.counts[index] += count
                cells.totals[index] += totals[offset]
                if minimums[offset] < cells.minimums[index]:
                    cells.minimums[index] = minimums[offset]
                if maximums[offset] > cells.maximums[index]:
                    cells.maximums[index] = maximums[offset]

    def addPartial(self, group: Hashable, intervalStart: int,
                   partial: Partial) -> None:
        """
        Add one summary (of an edge read from rows or raw points) to the
        cell of its group and interval.
        """
        if not partial.count:
            return
        cells = self.columns(group)
        index = (intervalStart - self.origin) // self.intervalMs
        cells.counts[index] += partial.count
        cells.totals[index] += partial.total
        if partial.minimum is not None and \
                partial.minimum < cells.minimums[index]:
            cells.minimums[index] = partial.minimum
        if partial.maximum is not None and \
                partial.maximum > cells.maximums[index]:
            cells.maximums[index] = partial.maximum

    def total(self, groups: Iterable[Columns]) -> Columns:
        """
        The cells of several groups merged, interval by interval.
        """
        merged = Columns(self.size)
        for columns in groups:
            merged.merge(columns)
        return merged

    def startOf(self, index: int) -> int:
        """
        The start of an interval.
        """
        return self.origin + index * self.intervalMs


def cellValue(aggregation: str, count: int, total: float, minimum: float,
              maximum: float) -> float | int | None:
    """
    What L{Partial.value} gives for a cell of these fields.
    """
    if aggregation == "count":
        return count
    if count == 0:
        return None
    if aggregation == "sum":
        result = total
    elif aggregation == "avg":
        result = total / count
    elif aggregation == "min":
        result = minimum
    else:
        result = maximum
    return result if math.isfinite(result) else None


def wholeValue(aggregation: str, columns: Columns) -> float | int | None:
    """
    The value of C{aggregation} over every interval of a group.
    """
    count = sum(columns.counts)
    total = 0.0
    for part in columns.totals:
        total += part
    return cellValue(aggregation, count, total, min(columns.minimums),
                     max(columns.maximums))
