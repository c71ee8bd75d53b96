"""
PromQL conformance: the same samples remote-written to a real Prometheus
(built from the Go module proxy, see L{tests.peers}) and to a real
meetrd daemon, the same queries asked of both through the HTTP API, the
answers compared series by series within float tolerance.

Every construct meetrd evaluates has a query here, as an instant query
at several times and as a range query at an aligned and an unaligned
step.  The samples are a day old and rolled up, so that the three
ways meetrd reads a selector are all compared: every sample, windows
summarized by Cassandra, and rollups.  The table of results is written
to C{conformance.md} in the test's folder (and copied into
C{docs/integrations.md}).
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.promserver import (
    PrometheusServer,
    promQuery,
    pushRemoteWrite,
    writeRequestBody,
)
from tests.support import Daemon, daemonSettings, uniqueKeyspace

pytestmark = pytest.mark.cassandra

STEP_MS = 15_000
SAMPLES = 140  # 35 minutes

# Every supported construct, with the queries that exercise it.
CONSTRUCTS: list[tuple[str, list[str]]] = [
    ("instant selector, = matcher", ["conf_temperature",
                                      'conf_temperature{room="hall"}']),
    ("!=, =~, !~ matchers", ['conf_temperature{room!="kitchen"}',
                             'conf_temperature{room=~"k.*|hall"}',
                             'conf_temperature{room!~"hall|attic"}']),
    ("selector without a metric name", ['{room="kitchen"}',
                                        '{__name__=~"conf_temp.*"}']),
    ("lookback: a series that stopped 10 minutes ago",
     ["conf_temperature{room=\"attic\"}"]),
    ("offset and @", ["conf_requests_total offset 5m",
                      "conf_temperature @ AT",
                      "conf_temperature offset -2m"]),
    ("range vector selector", ["conf_requests_total[2m]"]),
    ("rate, irate, increase (with counter resets)",
     ["rate(conf_requests_total[5m])", "irate(conf_requests_total[5m])",
      "increase(conf_requests_total[10m])", "rate(conf_requests_total[1m])",
      "resets(conf_requests_total[30m])"]),
    ("delta, idelta, changes", ["delta(conf_temperature[10m])",
                                "idelta(conf_temperature[5m])",
                                "changes(conf_temperature[30m])"]),
    ("*_over_time", ["avg_over_time(conf_temperature[10m])",
                     "min_over_time(conf_temperature[10m])",
                     "max_over_time(conf_temperature[10m])",
                     "sum_over_time(conf_temperature[10m])",
                     "count_over_time(conf_temperature[10m])",
                     "last_over_time(conf_temperature[10m])",
                     "stddev_over_time(conf_temperature[10m])",
                     "stdvar_over_time(conf_temperature[10m])",
                     "quantile_over_time(0.9, conf_temperature[10m])",
                     "present_over_time(conf_temperature[10m])",
                     "sum_over_time(conf_temperature[1m])",
                     "avg_over_time(conf_humidity[37s])",
                     "max_over_time(conf_temperature[10m] @ AT)"]),
    ("sum, avg, min, max, count with by/without",
     ["sum(rate(conf_requests_total[5m]))",
      "sum by (job) (rate(conf_requests_total[5m]))",
      "avg without (instance) (rate(conf_requests_total[5m]))",
      "min by (code) (conf_requests_total)",
      "max without (code, instance) (conf_requests_total)",
      "count by (job) (conf_requests_total)",
      "stddev(conf_temperature)", "stdvar by (job) (conf_temperature)",
      "group by (job) (conf_requests_total)",
      "quantile(0.3, conf_temperature)"]),
    ("topk, bottomk", ["topk(2, conf_temperature)",
                       "bottomk(1, conf_requests_total)",
                       "topk by (job) (1, rate(conf_requests_total[5m]))"]),
    ("vector and scalar arithmetic and comparisons",
     ["conf_temperature * 2 + 1", "100 - conf_temperature",
      "conf_temperature % 7", "conf_temperature / 0",
      "conf_temperature ^ 0.5", "-conf_temperature",
      "conf_temperature > 20", "conf_temperature > bool 20",
      "20 < conf_temperature", "1 + 2 * 3", "time()"]),
    ("vector matching: one-to-one, on/ignoring, group_left",
     ["conf_temperature / conf_humidity",
      "conf_temperature - ignoring(job) conf_humidity",
      'rate(conf_requests_total{code="500"}[5m]) / ignoring(code) '
      'rate(conf_requests_total{code="200"}[5m])',
      "rate(conf_requests_total[5m]) / on(job) group_left "
      "sum by (job) (rate(conf_requests_total[5m]))",
      "conf_humidity / 2 > on(room, job) conf_temperature",
      "conf_temperature == bool conf_temperature"]),
    ("and, or, unless", ["conf_temperature and conf_humidity",
                         "conf_temperature or conf_humidity",
                         "conf_temperature unless on(room) conf_humidity"]),
    ("histogram_quantile",
     ["histogram_quantile(0.9, sum by (le, job) "
      "(rate(conf_latency_seconds_bucket[5m])))",
      "histogram_quantile(0.5, rate(conf_latency_seconds_bucket[5m]))",
      "histogram_quantile(0.99, conf_latency_seconds_bucket)"]),
    ("functions of values", ["abs(-conf_temperature)", "ceil(conf_temperature)",
                             "floor(conf_temperature)",
                             "round(conf_temperature, 0.5)",
                             "clamp(conf_temperature, 18, 22)",
                             "clamp_min(conf_temperature, 20)",
                             "clamp_max(conf_temperature, 20)",
                             "sqrt(conf_temperature)", "ln(conf_temperature)",
                             "log2(conf_temperature)",
                             "log10(conf_temperature)",
                             "exp(conf_humidity / 10)", "sgn(conf_temperature - 20)"]),
    ("scalar, vector, sort, label_replace",
     ["scalar(sum(conf_temperature))", "vector(1)",
      "conf_temperature * scalar(count(conf_humidity))",
      "sort(conf_temperature)", "sort_desc(conf_temperature)",
      'label_replace(conf_temperature, "floor", "$1", "room", "(.*)en")']),
]


def _dataset(endMs: int) -> list[tuple[dict[str, str], list[tuple[int, float]]]]:
    """
    35 minutes of 15 s samples ending at C{endMs}: counters with resets,
    gauges (one that stops early, one with missed scrapes) and the
    buckets of a histogram.
    """
    rng = random.Random(20261202)
    times = [endMs - (SAMPLES - 1 - i) * STEP_MS for i in range(SAMPLES)]
    series = []

    def counter(labels: dict[str, str], resetAt: int | None) -> None:
        value = rng.uniform(0, 50)
        samples = []
        for i, t in enumerate(times):
            value += rng.choice([0, 1, 2, 3.5, 7, 12])
            if resetAt is not None and i == resetAt:
                value = rng.uniform(0, 3)
            samples.append((t, round(value, 3)))
        series.append(({"__name__": "conf_requests_total", **labels},
                       samples))

    counter({"job": "api", "instance": "a", "code": "200"}, None)
    counter({"job": "api", "instance": "b", "code": "200"}, 70)
    counter({"job": "api", "instance": "a", "code": "500"}, 100)
    counter({"job": "web", "instance": "c", "code": "200"}, None)
    counter({"job": "web", "instance": "c", "code": "500"}, 30)

    rooms = [("kitchen", "home"), ("hall", "home"), ("attic", "home"),
             ("office", "work")]
    for room, job in rooms:
        temperature = rng.uniform(17, 23)
        humidity = rng.uniform(30, 60)
        temps, hums = [], []
        for i, t in enumerate(times):
            temperature += rng.uniform(-0.4, 0.4)
            humidity += rng.uniform(-1, 1)
            if room == "attic" and i >= SAMPLES - 40:
                continue  # stopped 10 minutes before the end
            if room == "hall" and i % 7 == 3:
                continue  # a missed scrape now and then
            temps.append((t, round(temperature, 2)))
            hums.append((t, round(humidity, 1)))
        series.append(({"__name__": "conf_temperature", "room": room,
                        "job": job}, temps))
        if room != "office":
            series.append(({"__name__": "conf_humidity", "room": room,
                            "job": job}, hums))

    for job in ("api", "web"):
        counts = [0.0] * 5
        bounds = ["0.1", "0.25", "0.5", "1", "+Inf"]
        samples: list[list[tuple[int, float]]] = [[] for _ in bounds]
        for t in times:
            for _ in range(rng.randrange(0, 20)):
                latency = rng.expovariate(4 if job == "api" else 1.5)
                for b, bound in enumerate(bounds):
                    if latency <= float(bound):
                        counts[b] += 1
            for b in range(len(bounds)):
                samples[b].append((t, counts[b]))
        for bound, points in zip(bounds, samples):
            series.append(({"__name__": "conf_latency_seconds_bucket",
                            "job": job, "le": bound}, points))
    return series


@pytest.fixture(scope="module")
def both(tmp_path_factory: Any, node: tuple[str, int]
         ) -> Iterator[tuple[str, Daemon, int]]:
    """
    A Prometheus and a meetrd holding the same samples: Prometheus's URL,
    the meetrd daemon and the time of the last sample.
    """
    folder = tmp_path_factory.mktemp("conformance")
    daemon = Daemon(folder / "meetrd", daemonSettings(
        uniqueKeyspace("promql"), node,
        rollups=[{"resolution": "1m"}, {"resolution": "5m"}],
        rollup={"interval": "1s"})).start().waitReady()
    # The samples end 2 hours before today began (UTC), so that their raw
    # partitions (a day each) have closed and are rolled up: windows of
    # instant queries are then answered from the rollups where they fit.
    day = 86_400_000
    endMs = int(time.time() * 1000) // day * day - 2 * 3_600_000
    try:
        with PrometheusServer(folder / "prometheus") as prometheus:
            series = _dataset(endMs)
            body = writeRequestBody(series)
            for url in (prometheus.url, daemon.base):
                status, text = pushRemoteWrite(url, body)
                assert status == 204, (url, status, text)
            _waitRolledUp(daemon, len(series))
            yield prometheus.url, daemon, endMs
    finally:
        daemon.stop()


def _selfMetric(daemon: Daemon, name: str) -> float:
    """
    A sample of the daemon's own C{/metrics} (0 when it has none).
    """
    page = daemon.get("/metrics").body.decode()
    for line in page.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def _waitRolledUp(daemon: Daemon, partitions: int) -> None:
    """
    Wait until the rollup service has rolled C{partitions} raw partitions
    and none waits.
    """
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if _selfMetric(daemon, "meetr_rollup_partitions_total") >= \
                partitions and \
                _selfMetric(daemon, "meetr_rollup_backlog") == 0:
            return
        time.sleep(0.5)
    raise AssertionError("the samples were not rolled up in 120 s:\n"
                         + daemon.get("/metrics").body.decode())


def _close(a: str, b: str) -> bool:
    x, y = float(a), float(b)
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    if math.isinf(x) or math.isinf(y):
        return x == y
    return math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9)


def _canonical(data: dict[str, Any]) -> tuple[str, Any]:
    kind = data["resultType"]
    result = data["result"]
    if kind in ("scalar", "string"):
        return kind, [tuple(result)]
    if kind == "vector":
        return kind, sorted((tuple(sorted(s["metric"].items())),
                             [tuple(s["value"])]) for s in result)
    return kind, sorted((tuple(sorted(s["metric"].items())),
                         [tuple(v) for v in s["values"]]) for s in result)


def differences(expected: dict[str, Any], got: dict[str, Any]) -> list[str]:
    """
    How two answers' data differ: result type, label sets, timestamps,
    values beyond a relative 1e-9.
    """
    kindA, seriesA = _canonical(expected)
    kindB, seriesB = _canonical(got)
    if kindA != kindB:
        return [f"result type {kindB}, Prometheus {kindA}"]
    if kindA in ("scalar", "string"):
        seriesA, seriesB = [((), seriesA)], [((), seriesB)]
    labelsA = [labels for labels, _ in seriesA]
    labelsB = [labels for labels, _ in seriesB]
    if labelsA != labelsB:
        return [f"series {labelsB}, Prometheus {labelsA}"]
    problems = []
    for (labels, pointsA), (_, pointsB) in zip(seriesA, seriesB):
        if [p[0] for p in pointsA] != [p[0] for p in pointsB]:
            problems.append(f"{labels}: timestamps differ")
            continue
        for (t, a), (_, b) in zip(pointsA, pointsB):
            if (kindA == "string" and a != b) or \
                    (kindA != "string" and not _close(a, b)):
                problems.append(f"{labels} at {t}: {b}, Prometheus {a}")
                break
    return problems


def _asks(endMs: int) -> list[tuple[str, dict[str, Any]]]:
    """
    The requests each query is asked as: instant at three times (one
    not on a sample), range with an aligned and an unaligned step.
    """
    end = endMs / 1000
    return [
        ("/api/v1/query", {"time": end}),
        ("/api/v1/query", {"time": end - 247.5}),
        ("/api/v1/query", {"time": end - 20 * 60}),
        ("/api/v1/query_range", {"start": end - 30 * 60, "end": end,
                                 "step": "60s"}),
        ("/api/v1/query_range", {"start": end - 25 * 60 + 0.25,
                                 "end": end + 90, "step": 37}),
    ]


def test_promqlAnswersAsPrometheus(both: tuple[str, Daemon, int],
                                   tmp_path: Path) -> None:
    """
    Every supported construct answers as Prometheus does on the same
    samples: same result type, same series, same timestamps, values
    within a relative 1e-9, instant and range, with POST and GET.
    """
    prometheus, daemon, endMs = both
    meetrd = daemon.base
    rows = []
    failures = []
    asked = 0
    empty = []
    for construct, queries in CONSTRUCTS:
        differing = []
        for query in queries:
            query = query.replace("AT", f"{endMs / 1000 - 600:.3f}")
            answered = False
            for index, (path, params) in enumerate(_asks(endMs)):
                if path.endswith("query_range") and \
                        query.endswith("[2m]"):
                    continue  # a range vector is an instant query's only
                method = "POST" if index % 2 else "GET"
                want = promQuery(prometheus, path, {"query": query, **params})
                got = promQuery(meetrd, path, {"query": query, **params},
                                method=method)
                asked += 1
                assert want[0] == 200, (query, want)
                answered = answered or bool(want[1]["data"]["result"])
                if got[0] != 200:
                    problems = [f"HTTP {got[0]}: {got[1]}"]
                else:
                    problems = differences(want[1]["data"], got[1]["data"])
                if problems:
                    differing.append(f"`{query}` {path} {params}: "
                                     f"{problems[:3]}")
            if not answered:
                empty.append(query)
        rows.append((construct, len(queries), differing))
        failures.extend(differing)
    table = ["| Construct | Queries | Same answers as Prometheus |",
             "|---|---|---|"]
    for construct, count, differing in rows:
        table.append(f"| {construct} | {count} | "
                     f"{'yes' if not differing else 'NO'} |")
    (tmp_path / "conformance.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))
    assert asked > 300
    assert not empty, f"queries that select nothing: {empty}"
    # Every way of reading was taken and agreed with Prometheus: samples,
    # windows summarized by Cassandra, and the rollups.
    for read in ("samples", "raw summary", "5m"):
        assert _selfMetric(daemon, "meetr_promql_selector_reads_total"
                           f'{{read="{read}"}}') > 0, read
    assert not failures, "\n".join(failures)


UNSUPPORTED = [
    ("count_values(\"v\", conf_temperature)", "count_values"),
    ("rate(conf_requests_total[5m:1m])", "subqueries"),
    ("max_over_time(rate(conf_requests_total[1m])[10m:1m])", "subqueries"),
    ("absent(conf_temperature)", "absent"),
    ("predict_linear(conf_temperature[10m], 60)", "predict_linear"),
]


@pytest.mark.parametrize("query,named", UNSUPPORTED)
def test_unsupportedConstructsAreNamed(both: tuple[str, Daemon, int],
                                       query: str, named: str) -> None:
    """
    A construct meetrd does not evaluate answers 400 C{bad_data} naming
    it, where Prometheus answers it.
    """
    prometheus, daemon, endMs = both
    meetrd = daemon.base
    assert promQuery(prometheus, "/api/v1/query",
                     {"query": query, "time": endMs / 1000})[0] == 200
    status, body = promQuery(meetrd, "/api/v1/query",
                             {"query": query, "time": endMs / 1000})
    assert status == 400, body
    assert body["status"] == "error" and body["errorType"] == "bad_data"
    assert named in body["error"], body
