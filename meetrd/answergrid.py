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
INF = math.inf


def valueColumn(aggregation: str) -> str:
    """
    The column of a pack (L{meetrd.packs}) an aggregation reads beside
    the counts.
    """
    return {"min": "minimums", "max": "maximums"}.get(aggregation, "totals")


# Per value column: how two cells' values fold, and an empty cell's value.
_FOLDS = {"totals": (add, 0.0), "minimums": (min, INF),
          "maximums": (max, -INF)}


class Columns:
    """
    The cells of one group, by interval index: the counts, and the one
    column of values the aggregation reads (sums, minimums or maximums).
    """

    __slots__ = ("counts", "values", "fold")

    def __init__(self, size: int, column: str) -> None:
        self.fold, empty = _FOLDS[column]
        self.counts = [0] * size
        self.values = [empty] * size

    def merge(self, other: "Columns") -> None:
        """
        Fold another group's cells into these, interval by interval.
        """
        self.counts = list(map(add, self.counts, other.counts))
        self.values = list(map(self.fold, self.values, other.values))


class Grid:
    """
    The cells of an answer by interval, for each group.

    @ivar origin: the start of the first interval.
    @ivar column: the value column the aggregation reads (L{valueColumn}).
    @ivar groupOf: the group of each series, or C{None} for an answer
        without groups (then every cell is of the group C{None}).
    @ivar used: whether cells were added from packs; an answer whose
        search read none is made from its summaries alone.
    """

    def __init__(self, fromMs: int, toMs: int, intervalMs: int,
                 aggregation: str, groupOf: dict[bytes, Any] | None = None
                 ) -> None:
        self.origin = fromMs - fromMs % intervalMs
        self.intervalMs = intervalMs
        self.size = (toMs - self.origin) // intervalMs + 1
        self.column = valueColumn(aggregation)
        self.groupOf = groupOf
        self.groups: dict[Hashable, Columns] = {}
        self.used = False

    def columns(self, group: Hashable) -> Columns:
        """
        The cells of a group, made empty the first time.
        """
        found = self.groups.get(group)
        if found is None:
            found = self.groups[group] = Columns(self.size, self.column)
        return found

    def addBuckets(self, group: Hashable, startMs: int, resolutionMs: int,
                   counts: Any, values: Any) -> None:
        """
        Add consecutive level buckets from C{startMs} (empty ones have a
        count of 0 and the empty value of the column) to a group.  Buckets
        outside the grid are the caller's error.
        """
        cells = self.columns(group)
        intervalMs = self.intervalMs
        first = (startMs - self.origin) // intervalMs
        if resolutionMs == intervalMs:
            end = first + len(counts)
            cells.counts[first:end] = map(add, cells.counts[first:end],
                                          counts)
            cells.values[first:end] = map(cells.fold,
                                          cells.values[first:end], values)
            return
        fold = cells.fold
        for offset, count in enumerate(counts):
            if count:
                index = (startMs + offset * resolutionMs - self.origin) \
                    // intervalMs
                cells.counts[index] += count
                cells.values[index] = fold(cells.values[index],
                                           values[offset])

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
        value = {"totals": partial.total, "minimums": partial.minimum,
                 "maximums": partial.maximum}[self.column]
        if value is not None:
            cells.values[index] = cells.fold(cells.values[index], value)

    def total(self, groups: Iterable[Columns]) -> Columns:
        """
        The cells of several groups merged, interval by interval.
        """
        merged = Columns(self.size, self.column)
        for columns in groups:
            merged.merge(columns)
        return merged

    def startOf(self, index: int) -> int:
        """
        The start of an interval.
        """
        return self.origin + index * self.intervalMs


def wholeValue(aggregation: str, columns: Columns) -> float | int | None:
    """
    The value of C{aggregation} over every interval of a group, as
    L{Partial.value} gives it.
    """
    count = sum(columns.counts)
    if aggregation == "count":
        return count
    if count == 0:
        return None
    # The builtins fold at C speed; sum adds in order, as a cell's
    # merges do.
    result = {add: sum, min: min, max: max}[columns.fold](columns.values)
    if aggregation == "avg":
        result /= count
    return result if math.isfinite(result) else None
