"""
PromQL's pure parts: parsing into meetrd's expressions (and refusing
what it does not evaluate), evaluation over series in memory, the range
functions and the formats of the HTTP API.  Agreement with a real
Prometheus is in L{tests.test_promql_conformance}.
"""

from __future__ import annotations

import math

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from meetrd.promql.engine import Evaluator, Sample, Scalar, Series
from meetrd.promql.errors import BadData, ExecutionError
from meetrd.promql.functions import bucketQuantile, extrapolatedRate
from meetrd.promql.httpapi import (
    QueryAPI,
    formatValue,
    parseStep,
    parseTime,
)
from meetrd.promql.selectors import selectorWindows, summarizedSelectors
from meetrd.promql.syntax import Selector, parseQuery
from meetrd.settings import Limits
from meetrd.store import StoreUnavailable

MIN = 60_000


def _series(name: str, points: list[tuple[int, float]], **labels: str
            ) -> Series:
    return Series(tuple(sorted({"__name__": name, **labels}.items())),
                  [t for t, _ in points], [v for _, v in points])


def _evaluator(query: str, series: list[Series]) -> tuple[object, Evaluator]:
    expr = parseQuery(query)
    windows = selectorWindows(expr, 0, 10 ** 9, 5 * MIN)
    return expr, Evaluator({selector: [s for s in series if all(
        m.matches(dict(s.labels).get(m.name, ""))
        for m in selector.matchers)] for selector in windows}, 0, 10 ** 9)


def _values(vector: list[Sample]) -> dict[tuple[tuple[str, str], ...], float]:
    return {s.labels: s.value for s in vector}


def test_syntaxErrorIsBadData() -> None:
    """
    A query that does not parse is C{bad_data} with the parser's reason.
    """
    with pytest.raises(BadData) as caught:
        parseQuery("sum(rate(x[5m])")
    assert "query" in caught.value.message
    with pytest.raises(BadData):
        parseQuery("   ")


@pytest.mark.parametrize("query,named", [
    ("rate(x[5m:1m])", "subqueries"),
    ("absent(x)", "absent"),
    ("count_values(\"v\", x)", "count_values"),
    ("holt_winters(x[5m], 0.5, 0.5)", "holt_winters"),
    ('x{a="1" or b="2"}', "'or'"),
])
def test_unsupportedConstructsAreNamed(query: str, named: str) -> None:
    """
    What meetrd does not evaluate is refused before any read, naming the
    construct.
    """
    with pytest.raises(BadData) as caught:
        parseQuery(query)
    assert named in caught.value.message


def test_badRegexIsBadData() -> None:
    """
    A regular expression that does not compile is C{bad_data} quoting
    it.
    """
    with pytest.raises(BadData) as caught:
        parseQuery('x{job=~"a(b"}')
    assert "a(b" in caught.value.message


def test_lookbackIsOpenAtItsStart() -> None:
    """
    An instant selector takes the newest sample in C{(t - 5m, t]}: a
    sample exactly 5 minutes old is out, one a millisecond younger in.
    """
    expr, evaluator = _evaluator("x", [_series("x", [(0, 1.0)])])
    assert _values(evaluator.instant(expr, 5 * MIN - 1)) == {
        (("__name__", "x"),): 1.0}
    assert evaluator.instant(expr, 5 * MIN) == []
    assert evaluator.instant(expr, -1) == []


def test_rateAddsBackCounterResets() -> None:
    """
    A counter that drops is taken to have restarted from zero: the
    increase adds the value before the drop, and with samples at both
    edges of the window nothing is extrapolated.
    """
    points = [(15_000 * i, v) for i, v in
              enumerate([10, 20, 30, 5, 15, 25, 35, 45, 55, 65, 75])]
    # Window (0, 150s] holds samples 15 s .. 150 s: 20 .. 75, one reset
    # after 30.  Increase 75 - 20 + 30 = 85 over 135 s, extrapolated
    # 15 s at the start (the gap is 15 s, under 1.1 gaps), 0 at the end.
    expr, evaluator = _evaluator("increase(x[150s])",
                                 [_series("x", points)])
    [sample] = evaluator.instant(expr, 150_000)
    assert sample.labels == ()
    assert sample.value == pytest.approx(85 * 150 / 135)
    # A counter is not extrapolated to before its zero: from 0 to 6 over
    # the second half of a 120 s window is 6 in 120 s, not 12.
    assert extrapolatedRate([0, 60_000], [0.0, 6.0], -60_000, 60_000,
                            120_000, True, True) == pytest.approx(6 / 120)
    # A gauge is: delta extrapolates to the window's start.
    assert extrapolatedRate([0, 60_000], [0.0, 6.0], -60_000, 60_000,
                            120_000, False, False) == pytest.approx(12)


def test_rateNeedsTwoSamples() -> None:
    """
    A window with one sample has no rate: the series is left out.  The
    window is open at its start, so at 60 s a sample at 0 is not in
    C{[1m]}.
    """
    expr, evaluator = _evaluator("rate(x[1m])", [_series(
        "x", [(0, 1.0), (30_000, 2.0), (MIN, 3.0)])])
    assert evaluator.instant(expr, 15_000) == []
    [sample] = evaluator.instant(expr, MIN)
    # 1 over the 30 s between the samples, extrapolated over the whole
    # 60 s window (the gap to its start is under 1.1 gaps).
    assert sample.value == pytest.approx(2 / 60)


def test_aggregationByAndWithout() -> None:
    """
    C{by} keeps only the labels named, C{without} drops them and the
    metric name.
    """
    series = [_series("x", [(0, v)], job=j, instance=i)
              for v, j, i in [(1, "a", "1"), (2, "a", "2"), (4, "b", "1")]]
    expr, evaluator = _evaluator("sum by (job) (x)", series)
    assert _values(evaluator.instant(expr, 0)) == {
        (("job", "a"),): 3.0, (("job", "b"),): 4.0}
    expr, evaluator = _evaluator("max without (job) (x)", series)
    assert _values(evaluator.instant(expr, 0)) == {
        (("instance", "1"),): 4.0, (("instance", "2"),): 2.0}
    expr, evaluator = _evaluator("topk(1, x)", series)
    [top] = evaluator.instant(expr, 0)
    assert top.value == 4.0 and ("__name__", "x") in top.labels


def test_oneToOneMatchingRefusesDuplicates() -> None:
    """
    Two series on the many side of a one-to-one match are an
    C{execution} error asking for C{group_left}; with it, each matches.
    """
    series = [_series("x", [(0, 2.0)], job="a", instance="1"),
              _series("x", [(0, 4.0)], job="a", instance="2"),
              _series("y", [(0, 2.0)], job="a")]
    expr, evaluator = _evaluator("x / on(job) y", series)
    with pytest.raises(ExecutionError) as caught:
        evaluator.instant(expr, 0)
    assert "group_left" in caught.value.message
    expr, evaluator = _evaluator("x / on(job) group_left y", series)
    assert _values(evaluator.instant(expr, 0)) == {
        (("instance", "1"), ("job", "a")): 1.0,
        (("instance", "2"), ("job", "a")): 2.0}


def test_sameLabelSetAfterDroppingTheName() -> None:
    """
    A function that drops the metric name of two series that differ only
    by it is an C{execution} error, as in Prometheus.
    """
    series = [_series("x", [(0, 1.0), (MIN, 2.0)], job="a"),
              _series("y", [(0, 1.0), (MIN, 2.0)], job="a")]
    expr, evaluator = _evaluator('rate({job="a"}[5m])', series)
    with pytest.raises(ExecutionError):
        evaluator.instant(expr, MIN)


def test_comparisonFiltersAndBoolDoesNot() -> None:
    """
    A comparison keeps the series for which it holds, with their values
    and names; with C{bool} every series answers 1 or 0, without name.
    """
    series = [_series("x", [(0, 1.0)], i="1"), _series("x", [(0, 5.0)],
                                                       i="2")]
    expr, evaluator = _evaluator("x > 2", series)
    assert _values(evaluator.instant(expr, 0)) == {
        (("__name__", "x"), ("i", "2")): 5.0}
    expr, evaluator = _evaluator("x > bool 2", series)
    assert _values(evaluator.instant(expr, 0)) == {
        (("i", "1"),): 0.0, (("i", "2"),): 1.0}


def test_rangeQueryStepsAndScalars() -> None:
    """
    A range query evaluates at C{start + k * step} up to C{end}, and a
    scalar becomes one series without labels.
    """
    expr, evaluator = _evaluator("time() * 2", [])
    [series] = evaluator.range(expr, 0, 25_000, 10_000)
    assert series.labels == ()
    assert series.ts == [0, 10_000, 20_000]
    assert series.values == [0.0, 20.0, 40.0]
    assert evaluator.instant(parseQuery("1 + 2"), 0) == Scalar(3.0)


def test_histogramQuantile() -> None:
    """
    The quantile is interpolated in the bucket it falls in; without a
    C{+Inf} bucket it is NaN; decreasing counts are raised to the
    envelope.
    """
    buckets = [(0.1, 10.0), (0.5, 30.0), (1.0, 40.0), (math.inf, 40.0)]
    # rank 20 falls in (0.1, 0.5]: 0.1 + 0.4 * (10 / 20).
    assert bucketQuantile(0.5, buckets) == pytest.approx(0.3)
    assert bucketQuantile(1.0, buckets) == 1.0
    assert math.isnan(bucketQuantile(0.5, buckets[:-1]))
    assert bucketQuantile(0.5, [(0.1, 10.0), (0.5, 5.0), (1.0, 40.0),
                                (math.inf, 40.0)]) == pytest.approx(
        0.5 + 0.5 * (10 / 30))


def test_selectorWindows() -> None:
    """
    The samples read for a selector cover every step's window, moved by
    C{offset}; C{@} pins it whatever the step.
    """
    expr = parseQuery("rate(x[5m] offset 1m) + y @ 100")
    windows = selectorWindows(expr, 10 * MIN, 20 * MIN, 5 * MIN)
    byName = {s.metricName: w for s, w in windows.items()
              if isinstance(s, Selector)}
    assert (byName["x"].fromMs, byName["x"].toMs) == (
        10 * MIN - MIN - 5 * MIN + 1, 20 * MIN - MIN)
    assert (byName["y"].fromMs, byName["y"].toMs) == (
        100_000 - 5 * MIN + 1, 100_000)


@pytest.mark.parametrize("value,text", [
    (1.0, "1"), (0.1, "0.1"), (1e21, "1000000000000000000000"),
    (1.5e-7, "0.00000015"), (-2.5, "-2.5"), (math.inf, "+Inf"),
    (-math.inf, "-Inf"), (math.nan, "NaN"), (-0.0, "0"),
])
def test_formatValue(value: float, text: str) -> None:
    """
    Values are written as Prometheus writes them: shortest, never in
    exponent form.
    """
    assert formatValue(value) == text


def test_parameters() -> None:
    """
    Times are Unix seconds or RFC 3339, steps seconds or durations; a bad
    one is C{bad_data} naming the parameter.
    """
    assert parseTime("1764676800.5", "time") == 1764676800500
    assert parseTime("2025-12-02T12:00:00Z", "time") == 1764676800000
    assert parseStep("1m30s", "step") == 90_000
    assert parseStep("15", "step") == 15_000
    for bad in ("soon", "2025-12-02T12:00:00", "nan", "1e30"):
        with pytest.raises(BadData) as caught:
            parseTime(bad, "start")
        assert '"start"' in caught.value.message
    with pytest.raises(BadData):
        parseStep("fast", "step")


class _Store:
    """
    A store whose series lookups answer with C{answer} (a Deferred).
    """

    sliceMs = 3_600_000

    def __init__(self, answer: Deferred[list[object]]) -> None:
        self.answer = answer

    def findSeries(self, *args: object) -> Deferred[list[object]]:
        return self.answer


def _run(api: QueryAPI, query: str) -> list[tuple[int, dict[str, object]]]:
    answers: list[tuple[int, dict[str, object]]] = []
    api.query({b"query": [query.encode()], b"time": [b"1000"]}).addCallback(
        answers.append)
    return answers


def test_unavailableStoreIs503() -> None:
    """
    Cassandra unavailable during a query is a 503 C{unavailable} in
    Prometheus's format.
    """
    api = QueryAPI(_Store(fail(StoreUnavailable("no host"))), Limits(),
                   Clock())
    [(code, body)] = _run(api, "up")
    assert code == 503 and body["errorType"] == "unavailable"
    assert "no host" in str(body["error"])


def test_queryPastItsDeadline() -> None:
    """
    A query still reading at C{limits.search_timeout} is a 503
    C{timeout} saying what it was doing; its reads are cancelled.
    """
    cancelled = []
    pending: Deferred[list[object]] = Deferred(cancelled.append)
    clock = Clock()
    api = QueryAPI(_Store(pending), Limits(search_timeout="2s"), clock)
    answers = _run(api, 'sum(rate(up{job="x"}[5m]))')
    clock.advance(1.9)
    assert answers == []
    clock.advance(0.2)
    [(code, body)] = answers
    assert code == 503 and body["errorType"] == "timeout"
    assert "2s" in str(body["error"])
    assert cancelled


def test_summarizedSelectors() -> None:
    """
    A range selector read only by C{sum_over_time} and its kin is
    summarized by Cassandra (and needs no samples); one that another
    function reads too is read raw.
    """
    expr = parseQuery("sum(avg_over_time(x[5m])) / max_over_time(y[1m])")
    summarized = summarizedSelectors(expr)
    assert {r.selector.metricName for r in summarized} == {"x", "y"}
    assert selectorWindows(expr, 0, 0, 5 * MIN, summarized) == {}
    expr = parseQuery("sum_over_time(x[5m]) + quantile_over_time(0.5, x[5m])")
    assert summarizedSelectors(expr) == frozenset()
    assert len(selectorWindows(expr, 0, 0, 5 * MIN)) == 1
    # In a range query, a window is summarized when it is the step (the
    # windows tile the range) or pinned by @.
    expr = parseQuery("sum_over_time(x[1m]) + sum_over_time(y[5m]) + "
                      "sum_over_time(z[5m] @ 100)")
    assert {r.selector.metricName
            for r in summarizedSelectors(expr, MIN)} == {"x", "z"}


def test_emptyRangeSelectorIsAMatrix() -> None:
    """
    An instant query of a range selector that finds nothing is still a
    matrix, as Prometheus answers it.
    """
    class Empty:
        sliceMs = 3_600_000

        def findSeries(self, *args: object) -> Deferred[list[object]]:
            return succeed([])

        def readSamples(self, *args: object) -> Deferred[dict[bytes, object]]:
            return succeed({})

    answers: list[tuple[int, dict[str, object]]] = []
    QueryAPI(Empty(), Limits(), Clock()).query(
        {b"query": [b"up[5m]"], b"time": [b"1000"]}).addCallback(
        answers.append)
    assert answers == [(200, {"status": "success", "data": {
        "resultType": "matrix", "result": []}})]
