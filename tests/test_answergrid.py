"""
The column grid of an answer (L{meetrd.answergrid}) gives what the
answer made of one summary a cell gives, for random summaries; and pack
columns added to it land in their intervals.
"""

from __future__ import annotations

import copy
import math
from array import array

from hypothesis import given, settings as hypothesisSettings
from hypothesis import strategies as st

from meetrd.aggregate import Partial
from meetrd.answergrid import Grid
from meetrd.packs import PACK_BUCKETS, column, encodePack
from meetrd.readplan import SeriesRow
from meetrd.search import Query, answer
from meetrd.store import Summary

HOUR = 3_600_000
SERIES = [SeriesRow("m", bytes([i]), (("node", f"n{i % 3}"),), "s", HOUR)
          for i in range(5)]

partials = st.builds(
    lambda count, values: Partial(count, sum(values[:count]) or 0.0,
                                  min(values), max(values)),
    st.integers(1, 5),
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=5, max_size=5))
summaries = st.lists(st.tuples(st.integers(0, len(SERIES) - 1),
                               st.integers(0, 47), partials), max_size=60)


@hypothesisSettings(max_examples=200, deadline=None)
@given(found=summaries,
       aggregation=st.sampled_from(["count", "sum", "avg", "min", "max"]),
       groupBy=st.sampled_from([None, "node"]),
       intervalHours=st.sampled_from([1, 2, 5]))
def test_gridAnswersAsCells(found, aggregation, groupBy, intervalHours):
    """
    Summaries folded into a grid answer as they do into cells: the same
    groups, intervals and values (sums and averages to a relative 1e-12).
    """
    interval = intervalHours * HOUR
    query = Query("m", "a", "b", 0, 48 * HOUR - 1, aggregation,
                  groupBy=groupBy, intervalMs=interval)
    def made():
        # answer() merges into the first summary of each cell: each answer
        # gets summaries of its own.
        return [Summary(SERIES[s].seriesId, hour * HOUR - hour * HOUR
                        % interval, copy.copy(partial))
                for s, hour, partial in found]

    expected = answer(query, SERIES, made())
    groupOf = None if groupBy is None else {
        row.seriesId: dict(row.tags)[groupBy] for row in SERIES}
    grid = Grid(0, 48 * HOUR - 1, interval, aggregation, groupOf)
    grid.used = True
    got = answer(query, SERIES, made(), grid=grid)

    def same(a, b):
        if isinstance(a, float) and isinstance(b, float):
            return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-9)
        return a == b

    assert got.keys() == expected.keys()
    assert same(got["value"], expected["value"])
    assert [p[0] for p in got["points"]] == [p[0] for p in expected["points"]]
    assert all(same(a[1], b[1])
               for a, b in zip(got["points"], expected["points"]))
    if groupBy:
        assert [g["tags"] for g in got["groups"]] == \
            [g["tags"] for g in expected["groups"]]
        for a, b in zip(got["groups"], expected["groups"]):
            assert same(a["value"], b["value"])
            assert [p[0] for p in a["points"]] == [p[0] for p in b["points"]]
            assert all(same(x[1], y[1])
                       for x, y in zip(a["points"], b["points"]))


def test_packBucketsLandInTheirIntervals():
    """
    A pack's 32 hourly buckets added to a grid of 2-hour intervals that
    starts before it fill the 16 intervals they cover, empty buckets
    left out; at the level's own resolution each bucket is its interval.
    """
    cells = {i: Partial(1, float(i), float(i), float(i))
             for i in range(PACK_BUCKETS) if i % 4 != 3}
    counts, totals, minimums, _, _ = encodePack(cells)
    start = 64 * HOUR
    grid = Grid(60 * HOUR, 100 * HOUR - 1, 2 * HOUR, "sum")
    grid.addBuckets(None, start, HOUR, column(counts, "q"),
                    column(totals, "d"))
    cells2 = grid.groups[None]
    assert cells2.counts[:2] == [0, 0]
    assert cells2.counts[2:18] == [2, 1] * 8
    assert cells2.values[2:4] == [0.0 + 1.0, 2.0]
    hourly = Grid(start, start + PACK_BUCKETS * HOUR - 1, HOUR, "min")
    hourly.addBuckets("g", start, HOUR, column(counts, "q"),
                      column(minimums, "d"))
    assert hourly.groups["g"].counts == [0 if i % 4 == 3 else 1
                                         for i in range(PACK_BUCKETS)]
    assert hourly.groups["g"].values[:4] == [0.0, 1.0, 2.0, math.inf]
    assert array("q", column(counts, "q")).tolist()[:4] == [1, 1, 1, 0]
