"""
Tests for the pure parts of searching: L{meetrd.aggregate},
L{meetrd.layout} and L{meetrd.search}.
"""

import copy
import math
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meetrd.aggregate import (
    AGGREGATIONS,
    Partial,
    mergeAll,
    mergerFor,
    squaredDeviations,
)
from meetrd.layout import (
    NODE_BUCKET_MS,
    SERIES_BUCKET_MS,
    bucketCount,
    bucketsBetween,
    placeSeries,
    seriesId,
)
from meetrd.points import freezeTags
from meetrd.readplan import (
    SOURCES_PER_READ,
    SearchTooWide,
    aggregatedSourcesPerRead,
    checkPartitions,
    checkSeries,
    matches,
    mergeIndexRows,
)
from meetrd.search import Query, answer
from meetrd.readplan import SeriesRow
from meetrd.store import Summary


def test_emptyPartial():
    """
    Without points, count is 0 and every other aggregation None.
    """
    empty = Partial()
    assert {a: empty.value(a) for a in AGGREGATIONS} == {
        "sum": None, "avg": None, "min": None, "max": None, "count": 0,
        "first": None, "last": None, "stddev": None}


def test_mergeKeepsExtremesAndEnds():
    """
    Merging adds counts and sums and keeps min, max, first and last.
    """
    a = Partial(2, 3.0, 1.0, 2.0, firstTs=10, firstValue=1.0)
    b = Partial(3, 12.0, 3.0, 5.0, firstTs=5, firstValue=5.0)
    c = Partial(1, -1.0, -1.0, -1.0, lastTs=20, lastValue=-1.0)
    merged = mergeAll([a, Partial(), b, c])
    assert {x: merged.value(x) for x in AGGREGATIONS} == {
        "sum": 14.0, "avg": 14.0 / 6, "min": -1.0, "max": 5.0, "count": 6,
        "first": 5.0, "last": -1.0, "stddev": None}


def partialOf(points: list[tuple[int, float]]) -> Partial:
    """
    The summary of some C{(ts, value)} points, as a search builds it.
    """
    if not points:
        return Partial()
    points = sorted(points)
    values = [v for _, v in points]
    return Partial(len(values), sum(values), min(values), max(values),
                   points[0][0], points[0][1], points[-1][0], points[-1][1],
                   m2=squaredDeviations(values, sum(values)))


@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=60),
       offset=st.sampled_from([0.0, 1e9, -3e12]),
       cuts=st.lists(st.integers(0, 60), max_size=6))
def test_stddevMergedFromPartsEqualsStddevOfAll(values, offset, cuts):
    """
    The standard deviation of values cut into parts (summarized apart,
    then merged in any order) equals the population standard deviation of
    all of them at once, also for values far from zero, where a sum of
    squares would have lost every digit.
    """
    values = [v + offset for v in values]
    bounds = sorted({0, len(values), *(c for c in cuts if c < len(values))})
    parts = [partialOf([(i, v) for i, v in enumerate(values[a:b])])
             for a, b in zip(bounds, bounds[1:])]
    merged = mergeAll(parts)
    exact = statistics.pstdev(values)
    assert math.isclose(merged.value("stddev"), exact, rel_tol=1e-6,
                        abs_tol=1e-9 * max(1.0, abs(offset)))


summaries = st.lists(st.lists(st.tuples(st.integers(0, 50),
                                        st.integers(-5, 5).map(float)),
                              max_size=4), min_size=1, max_size=8)


@given(summaries)
def test_leanMergersAgreeWithMerge(groups):
    """
    For every aggregation, folding summaries (empty ones among them) with
    the merger L{mergerFor} gives the value L{Partial.merge} gives.
    """
    partials = [partialOf(points) for points in groups]
    for aggregation in AGGREGATIONS:
        merge = mergerFor(aggregation)
        lean, full = Partial(), Partial()
        for partial in partials:
            merge(lean, copy.copy(partial))
            full.merge(copy.copy(partial))
        assert lean.value(aggregation) == full.value(aggregation), aggregation


def test_leanMergersSkipUnreadFields():
    """
    The mergers of a sum, an average and a count fold the count and the
    total only; that of a minimum the minimum only: the fields their
    answer does not read are left as they were.
    """
    into = Partial()
    mergerFor("avg")(into, partialOf([(1, 2.0), (2, 4.0)]))
    assert (into.count, into.total, into.minimum, into.firstTs) == \
        (2, 6.0, None, None)
    mergerFor("min")(into, partialOf([(3, -1.0)]))
    assert (into.count, into.minimum, into.maximum) == (3, -1.0, None)
    assert mergerFor("p99") is Partial.merge


def test_aggregatedSourcesPerRead():
    """
    Short ranges (the edges of a rollup search) have Cassandra aggregate
    many sources a request, ranges of days one source a request.
    """
    hour = 3_600_000
    assert aggregatedSourcesPerRead(0, hour - 1) == SOURCES_PER_READ
    assert aggregatedSourcesPerRead(0, 0) == SOURCES_PER_READ
    assert aggregatedSourcesPerRead(0, 10 * hour - 1) == 5
    assert aggregatedSourcesPerRead(0, 30 * 24 * hour) == 1


def test_seriesIdStable():
    """
    A series' id depends on its metric and tags only, not on tag order,
    and no two series share one by concatenation.
    """
    assert seriesId("m", freezeTags({"a": "1", "b": "2"})) == \
        seriesId("m", freezeTags({"b": "2", "a": "1"}))
    assert seriesId("m", (("ab", "c"),)) != seriesId("m", (("a", "bc"),))
    assert seriesId("m", ()) != seriesId("n", ())
    assert len(seriesId("m", ())) == 16


def test_placement():
    """
    Series with a node tag share their node's hourly partitions; others
    get daily partitions of their own.
    """
    a = placeSeries("cpu", freezeTags({"node": "h:1", "core": "0"}))
    b = placeSeries("mem", freezeTags({"node": "h:1"}))
    c = placeSeries("cpu", ())
    assert a.source == b.source == "n:h:1"
    assert a.bucketMs == NODE_BUCKET_MS
    assert c.source == "s:" + c.seriesId.hex()
    assert c.bucketMs == SERIES_BUCKET_MS


def test_buckets():
    """
    Every bucket touching an inclusive range is listed, edges included.
    """
    assert list(bucketsBetween(0, 999, 1000)) == [0]
    assert list(bucketsBetween(999, 1000, 1000)) == [0, 1]
    assert list(bucketsBetween(-1, 0, 1000)) == [-1, 0]
    assert bucketCount(999, 3000, 1000) == 4


def row(metric, tags, source="s", bucketMs=1000):
    frozen = freezeTags(tags)
    return SeriesRow(metric, seriesId(metric, frozen), frozen, source,
                     bucketMs)


def query(**changes):
    values = dict(metric="m", fromText="a", toText="b", fromMs=0, toMs=10_000,
                  aggregation="sum")
    values.update(changes)
    return Query(**values)


def test_selectByTags():
    """
    Tag filters keep series having, for each key, one of its values.
    """
    filters = (("dc", frozenset({"eu", "us"})), ("h", frozenset({"1"})))
    assert matches(freezeTags({"dc": "eu", "h": "1"}), filters)
    assert matches(freezeTags({"dc": "us", "h": "1"}), filters)
    assert not matches(freezeTags({"dc": "ap", "h": "1"}), filters)
    assert not matches(freezeTags({"dc": "eu"}), filters)
    assert matches((), ())


def test_mergeIndexRows():
    """
    Index rows of one series in several slices become one placement that
    knows its slices; a legacy row knows none; filtered rows are dropped.
    """
    eu, us = freezeTags({"dc": "eu"}), freezeTags({"dc": "us"})
    rows = [(3, b"a", "n:x", 1000, eu), (4, b"a", "n:x", 1000, eu),
            (4, b"a", "n:x/6m", 360000, eu), (None, b"b", "s:b", 5, us),
            (5, b"c", "s:c", 5, freezeTags({"dc": "ap"}))]
    found = mergeIndexRows("m", rows, (("dc", frozenset({"eu", "us"})),))
    assert found == [
        SeriesRow("m", b"a", eu, "n:x", 1000, frozenset({3, 4})),
        SeriesRow("m", b"a", eu, "n:x/6m", 360000, frozenset({4})),
        SeriesRow("m", b"b", us, "s:b", 5, None),
    ]


def test_breadthLimits():
    """
    Too many series or partitions are refused naming what to narrow.
    """
    checkSeries(3, 3)
    with pytest.raises(SearchTooWide) as caught:
        checkSeries(3, 2)
    assert caught.value.field == "tag"
    plan = {("s", 1000): {0: [b"a"], 1: [b"a", b"b"]}}
    checkPartitions(plan, 3, 5)
    with pytest.raises(SearchTooWide) as caught:
        checkPartitions(plan, 4, 5)
    assert caught.value.field == "from"


def test_answerGroupsAndIntervals():
    """
    Summaries merge into the total, per group and per interval.
    """
    a, b = row("m", {"dc": "eu"}), row("m", {"dc": "us"})
    summaries = [
        Summary(a.seriesId, 0, Partial(2, 2.0, 1.0, 1.0)),
        Summary(a.seriesId, 5000, Partial(1, 4.0, 4.0, 4.0)),
        Summary(b.seriesId, 0, Partial(1, 10.0, 10.0, 10.0)),
    ]
    result = answer(query(groupBy="dc", intervalMs=5000), [a, b], summaries)
    assert result["value"] == 16.0
    assert result["points"] == [["1970-01-01T00:00:00Z", 12.0],
                                ["1970-01-01T00:00:05Z", 4.0]]
    assert result["groups"] == [
        {"tags": {"dc": "eu"}, "value": 6.0,
         "points": [["1970-01-01T00:00:00Z", 2.0],
                    ["1970-01-01T00:00:05Z", 4.0]]},
        {"tags": {"dc": "us"}, "value": 10.0,
         "points": [["1970-01-01T00:00:00Z", 10.0]]},
    ]
    assert (result["from"], result["to"], result["metric_id"]) == \
        ("a", "b", "m")


def test_answerGroupWithoutTag():
    """
    Series lacking the group_by tag form a group whose value is null.
    """
    a, b = row("m", {"dc": "eu"}), row("m", {})
    summaries = [Summary(a.seriesId, None, Partial(1, 1.0, 1.0, 1.0)),
                 Summary(b.seriesId, None, Partial(1, 2.0, 2.0, 2.0))]
    result = answer(query(groupBy="dc", aggregation="count"), [a, b],
                    summaries)
    assert result["groups"] == [{"tags": {"dc": "eu"}, "value": 1},
                                {"tags": {"dc": None}, "value": 1}]
