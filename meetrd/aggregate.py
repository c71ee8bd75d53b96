"""
Aggregations: partial results as Cassandra returns them for one series in
one partition, merged across partitions, series, groups and intervals.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable

AGGREGATIONS = ("sum", "avg", "min", "max", "count", "first", "last",
                "stddev")
# The same pattern as the OpenAPI document's: 0 < Q < 100, no leading zero.
_PERCENTILE = re.compile(r"p(0\.[0-9]*[1-9][0-9]*|[1-9][0-9]?(?:\.[0-9]+)?)")


def percentileOf(aggregation: str) -> float | None:
    """
    The quantile (0 to 1, exclusive) of a percentile aggregation such as
    C{p99} or C{p99.9}; C{None} for any other aggregation.
    """
    match = _PERCENTILE.fullmatch(aggregation)
    if match is None:
        return None
    quantile = float(match.group(1)) / 100
    return quantile if 0 < quantile < 1 else None


def isAggregation(aggregation: str) -> bool:
    """
    Whether a search may ask for C{aggregation}.
    """
    return aggregation in AGGREGATIONS or percentileOf(aggregation) is not None


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
    sketch: Any = None
    m2: float | None = None

    def merge(self, other: "Partial") -> None:
        """
        Fold C{other} into this summary.

        The sums of squared deviations (C{m2}) of two summaries combine
        with the difference of their means (Chan, Golub and LeVeque's
        pairwise update), so a standard deviation merged from parts is as
        accurate as one computed at once, whatever the values' magnitude.
        A summary that does not know its C{m2} makes the merge not know it.
        """
        if other.count == 0:
            return
        if self.count == 0:
            self.m2 = other.m2
        elif self.m2 is not None and other.m2 is not None:
            delta = other.total / other.count - self.total / self.count
            self.m2 += other.m2 + delta * delta * (
                self.count * other.count / (self.count + other.count))
        else:
            self.m2 = None
        self.count += other.count
        self.total += other.total
        if self.minimum is None or (other.minimum is not None
                                    and other.minimum < self.minimum):
            self.minimum = other.minimum
        if self.maximum is None or (other.maximum is not None
                                    and other.maximum > self.maximum):
            self.maximum = other.maximum
        # Points of several series at the same instant: the smallest value
        # is first and the largest last, whatever the order of merging.
        if other.firstTs is not None and (
                self.firstTs is None
                or (other.firstTs, other.firstValue)
                < (self.firstTs, self.firstValue)):
            self.firstTs, self.firstValue = other.firstTs, other.firstValue
        if other.lastTs is not None and (
                self.lastTs is None
                or (other.lastTs, other.lastValue)
                > (self.lastTs, self.lastValue)):
            self.lastTs, self.lastValue = other.lastTs, other.lastValue
        if other.sketch is not None:
            if self.sketch is None:
                from meetrd.sketch import sketchOf

                self.sketch = sketchOf(())
            self.sketch.merge(other.sketch)

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
        if aggregation == "stddev":
            if self.m2 is None:
                return None
            return math.sqrt(max(self.m2, 0.0) / self.count)
        quantile = percentileOf(aggregation)
        if quantile is not None:
            if self.sketch is None:
                return None
            return float(self.sketch.get_quantile_value(quantile))
        raise ValueError(f"unknown aggregation {aggregation!r}")


def _mergeTotals(into: Partial, other: Partial) -> None:
    into.count += other.count
    into.total += other.total


def _mergeMinimum(into: Partial, other: Partial) -> None:
    if other.count:
        into.count += other.count
        if into.minimum is None or (other.minimum is not None
                                    and other.minimum < into.minimum):
            into.minimum = other.minimum


def _mergeMaximum(into: Partial, other: Partial) -> None:
    if other.count:
        into.count += other.count
        if into.maximum is None or (other.maximum is not None
                                    and other.maximum > into.maximum):
            into.maximum = other.maximum


def mergerFor(aggregation: str) -> Callable[[Partial, Partial], None]:
    """
    A function that folds one summary into another as L{Partial.merge}
    does, for the fields C{aggregation} reads only (and the count, which
    tells an empty summary): an answer of many cells merges each twice,
    and a sum, an average, a minimum or a maximum need one or two fields
    of the nine.
    """
    if aggregation in ("count", "sum", "avg"):
        return _mergeTotals
    if aggregation == "min":
        return _mergeMinimum
    if aggregation == "max":
        return _mergeMaximum
    return Partial.merge


def summarizeValues(points: list[tuple[int, float]], sketch: bool = True
                    ) -> Partial:
    """
    The summary of some C{(tsMs, value)} points of one series, with their
    sum of squared deviations and, if asked, a quantile sketch.
    """
    from meetrd.sketch import filledSketch

    points.sort()
    values = [value for _, value in points]
    total = 0.0
    for value in values:
        total += value
    return Partial(len(values), total, min(values), max(values),
                   points[0][0], points[0][1], points[-1][0], points[-1][1],
                   filledSketch(values) if sketch else None,
                   squaredDeviations(values, total))


def squaredDeviations(values: list[float], total: float) -> float:
    """
    The sum of the squared deviations of some values from their mean
    (C{total} is their sum): computed from the mean, not from the sum of
    squares, which loses every digit for values far from zero.
    """
    mean = total / len(values)
    result = 0.0
    for value in values:
        result += (value - mean) * (value - mean)
    return result


def mergeAll(partials: Iterable[Partial]) -> Partial:
    """
    Merge many summaries into a new one.
    """
    result = Partial()
    for partial in partials:
        result.merge(partial)
    return result
