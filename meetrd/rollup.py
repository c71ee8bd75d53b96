"""
Rollups computed from the points of one raw partition, without Cassandra.

A raw partition (a source and a raw bucket) is rolled up on its own: for
each rollup level and each series, one row per level bucket with the
count, sum, minimum, maximum, first and last point, the sum of squared
deviations from the mean (for C{stddev}) and a quantile sketch
of the points of that series in that level bucket I{and this raw
partition}.  A level bucket wider than a raw bucket so has one partial
row per raw partition it spans (the raw bucket is part of the row's key);
partial rows merge exactly, so rolling a partition again (after a late
point or a rewrite) replaces its own rows and no other's.

Rollup rows are partitioned by level, source and a span of
L{PART_BUCKETS} level buckets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from meetrd.aggregate import squaredDeviations
from meetrd.sketch import sketchBytesOfKeys, sketchKeys

# Level buckets of one rollup partition.
PART_BUCKETS = 256


@dataclass(frozen=True, slots=True)
class RollupRow:
    """
    The summary of one series' points in one level bucket of one raw
    partition.
    """

    resolutionMs: int
    seriesId: bytes
    ts: int
    count: int
    total: float
    minimum: float
    maximum: float
    firstTs: int
    firstValue: float
    lastTs: int
    lastValue: float
    sketch: bytes
    m2: float

    @property
    def part(self) -> int:
        """
        The rollup partition of this row.
        """
        return rollupPart(self.ts, self.resolutionMs)


def rollupPart(tsMs: int, resolutionMs: int) -> int:
    """
    The rollup partition number of a level bucket starting at C{tsMs}.
    """
    return tsMs // (resolutionMs * PART_BUCKETS)


def rollUp(rows: Iterable[tuple[bytes, int, float]],
           resolutionsMs: Sequence[int]) -> list[RollupRow]:
    """
    The rollup rows of every level for the C{(seriesId, tsMs, value)} rows
    of one raw partition.
    """
    bySeries: dict[bytes, list[tuple[int, float]]] = {}
    for identifier, ts, value in rows:
        found = bySeries.get(identifier)
        if found is None:
            bySeries[identifier] = [(ts, value)]
        else:
            found.append((ts, value))
    result = []
    for identifier, points in bySeries.items():
        points.sort()
        keys = sketchKeys(value for _, value in points)
        for resolution in resolutionsMs:
            start = 0
            while start < len(points):
                bucket = points[start][0] // resolution
                end = start + 1
                while end < len(points) and \
                        points[end][0] // resolution == bucket:
                    end += 1
                result.append(_summary(resolution, identifier,
                                       bucket * resolution, points[start:end],
                                       keys[start:end]))
                start = end
    return result


def _summary(resolution: int, identifier: bytes, ts: int,
             points: list[tuple[int, float]], keys: list[int | None]
             ) -> RollupRow:
    """
    The rollup row of some points of one series, sorted by time (then
    value, as L{meetrd.aggregate.summarizeValues} takes first and last),
    whose L{sketchKeys} are C{keys}.
    """
    values = [value for _, value in points]
    total = 0.0
    for value in values:
        total += value
    return RollupRow(
        resolution, identifier, ts, len(values), total, min(values),
        max(values), points[0][0], points[0][1], points[-1][0],
        points[-1][1], sketchBytesOfKeys(keys),
        squaredDeviations(values, total))
