"""
Aggregations: partial results as Cassandra returns them for one series in
one partition, merged across partitions, series, groups and intervals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

AGGREGATIONS = ("sum", "avg", "min", "max", "count", "first", "last")


@dataclass(slots=True)
class Partial:
    """
    A mergeable summary of some points.

    C{first*} and C{last*} hold the earliest and latest points seen; they
    are C{None} when the summary's source could not tell (a partition read
    in one order knows its first point only, the other order its last).
    """

    count: int = 0
    total: float = 0.0
    minimum: float | None = None
    maximum: float | None = None
    firstTs: int | None = None
    firstValue: float | None = None
    lastTs: int | None = None
    lastValue: float | None = None

    def merge(self, other: "Partial") -> None:
        """
        Fold C{other} into this summary.
        """
        if other.count == 0:
            return
        self.count += other.count
        self.total += other.total
        if self.minimum is None or (other.minimum is not None
                                    and other.minimum < self.minimum):
            self.minimum = other.minimum
        if self.maximum is None or (other.maximum is not None
                                    and other.maximum > self.maximum):
            self.maximum = other.maximum
        if other.firstTs is not None and (self.firstTs is None
                                          or other.firstTs < self.firstTs):
            self.firstTs, self.firstValue = other.firstTs, other.firstValue
        if other.lastTs is not None and (self.lastTs is None
                                         or other.lastTs > self.lastTs):
            self.lastTs, self.lastValue = other.lastTs, other.lastValue

    def value(self, aggregation: str) -> float | int | None:
        """
        The final value of C{aggregation}: C{count} is 0 and every other
        aggregation C{None} when no point was seen; a sum or average that
        overflows a double is C{None} too (JSON has no infinity).
        """
        result = self._value(aggregation)
        if isinstance(result, float) and not math.isfinite(result):
            return None
        return result

    def _value(self, aggregation: str) -> float | int | None:
        if aggregation == "count":
            return self.count
        if self.count == 0:
            return None
        if aggregation == "sum":
            return self.total
        if aggregation == "avg":
            return self.total / self.count
        if aggregation == "min":
            return self.minimum
        if aggregation == "max":
            return self.maximum
        if aggregation == "first":
            return self.firstValue
        if aggregation == "last":
            return self.lastValue
        raise ValueError(f"unknown aggregation {aggregation!r}")


def mergeAll(partials: Iterable[Partial]) -> Partial:
    """
    Merge many summaries into a new one.
    """
    result = Partial()
    for partial in partials:
        result.merge(partial)
    return result
