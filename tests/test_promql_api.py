"""
The Prometheus query API of a real daemon, used by clients nobody here
wrote: C{prometheus-api-client} (PyPI), and the requests Grafana's
Prometheus data source sends (as its documentation and query inspector
show them: form-encoded POSTs of C{query_range} with Unix-second bounds
and a step in seconds, C{labels} and C{label/__name__/values} with the
dashboard's range, C{series} with C{match[]}, C{buildinfo}, and the
C{1+1} instant query of "Save & test").  Over points written through
meetrd's own JSON API, at the sizes users have (2,000 series), with
auth on, and every bad request answered in Prometheus's error format.
"""

from __future__ import annotations

import json
import math
import time
from datetime import datetime, timezone
from typing import Any, Iterator

import pytest
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException

from tests.promserver import promQuery
from tests.support import Daemon, daemonSettings, uniqueKeyspace

pytestmark = pytest.mark.cassandra

READ = "r" * 32
WRITE = "w" * 32
HOSTS = 200
CPUS = 10  # 2,000 series of one metric
STEP_MS = 30_000
STEPS = 20
AS_READER = {"Authorization": f"Bearer {READ}"}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: Any, node: tuple[str, int]
           ) -> Iterator[tuple[Daemon, int]]:
    """
    A daemon with tokens, small query limits and 2,000 series of
    C{papi_cpu_seconds_total} (a counter per host and cpu, 20 samples 30 s
    apart) plus one gauge: the daemon and the last sample's time.
    """
    folder = tmp_path_factory.mktemp("promql-api")
    settings = daemonSettings(
        uniqueKeyspace("promapi"), node,
        auth={"tokens": [{"token": READ, "roles": ["read"]},
                         {"token": WRITE, "roles": ["write"]}]},
        limits={"max_search_series": 2500, "max_query_samples": 30_000,
                "max_search_points": 50_000})
    d = Daemon(folder, settings).start().waitReady()
    endMs = (int(time.time() * 1000) // 60_000) * 60_000 - 60_000
    try:
        for step in range(STEPS):
            ts = endMs - (STEPS - 1 - step) * STEP_MS
            batch = [{"metric_id": "papi_cpu_seconds_total", "ts": ts,
                      "value": float(step * (cpu + 1) + host % 7),
                      "tags": {"host": f"h{host:03d}", "cpu": str(cpu),
                               "dc": "eu" if host % 2 else "us"}}
                     for host in range(HOSTS) for cpu in range(CPUS)]
            batch.append({"metric_id": "papi_temperature", "ts": ts,
                          "value": 20.5 + step / 4,
                          "tags": {"room": "lab", "dc": "eu"}})
            reply = d.post("/1.0/metrics", json.dumps(batch).encode(),
                           "application/json",
                           {"Authorization": f"Bearer {WRITE}"})
            assert reply.status == 200, reply.body
        yield d, endMs
    finally:
        d.stop()


def test_prometheusApiClient(daemon: tuple[Daemon, int]) -> None:
    """
    C{prometheus-api-client} lists metrics, label names and values and
    series, and reads current values, raw ranges and range queries, all
    agreeing with what was written.
    """
    d, endMs = daemon
    client = PrometheusConnect(url=d.base, headers=AS_READER)
    end = datetime.fromtimestamp(endMs / 1000, timezone.utc)
    start = datetime.fromtimestamp((endMs - STEPS * STEP_MS) / 1000,
                                   timezone.utc)
    assert {"papi_cpu_seconds_total", "papi_temperature"} <= set(
        client.all_metrics())
    assert {"__name__", "cpu", "dc", "host", "room"} <= set(
        client.get_label_names(params={"start": start.timestamp(),
                                       "end": end.timestamp()}))
    assert client.get_label_values("cpu", params={
        "match[]": "papi_cpu_seconds_total", "start": start.timestamp(),
        "end": end.timestamp()}) == [str(c) for c in range(CPUS)]
    series = client.get_series(start, end, params={
        "match[]": 'papi_cpu_seconds_total{host="h007"}'})
    assert sorted(s["cpu"] for s in series) == sorted(map(str, range(CPUS)))

    current = client.custom_query(
        'papi_cpu_seconds_total{host="h003",cpu="2"}',
        params={"time": endMs / 1000})
    assert current[0]["value"] == [endMs / 1000, str(float(
        (STEPS - 1) * 3 + 3)).removesuffix(".0")]

    raw = client.get_metric_range_data(
        "papi_temperature", label_config={"room": "lab"},
        start_time=start, end_time=end)
    assert len(raw) == 1
    assert [float(v) for _, v in raw[0]["values"]] == [
        20.5 + step / 4 for step in range(STEPS)]

    ranged = client.custom_query_range(
        'sum by (dc) (rate(papi_cpu_seconds_total{host=~"h00.*"}[2m]))',
        start_time=start,
        end_time=end, step="60")
    assert {s["metric"]["dc"] for s in ranged} == {"eu", "us"}
    # Every cpu counter rises (cpu + 1) per 30 s: per dc, 5 hosts of
    # sum(1..10) / 30 per second, once a window lies inside the samples
    # (the first steps' windows start before them, so their rates are
    # extrapolated only part of the way, as Prometheus does).
    firstMs = endMs - (STEPS - 1) * STEP_MS
    for s in ranged:
        inside = [float(v) for t, v in s["values"]
                  if t * 1000 - 120_000 >= firstMs]
        assert len(inside) >= 7 and all(
            math.isclose(v, 5 * 55 / 30, rel_tol=1e-9)
            for v in inside), s["values"]


def test_grafanaRequestShapes(daemon: tuple[Daemon, int]) -> None:
    """
    The requests Grafana's Prometheus data source sends answer as it
    expects.
    """
    d, endMs = daemon
    end = endMs / 1000
    start = end - STEPS * STEP_MS / 1000
    status, body = promQuery(d.base, "/api/v1/query",
                             {"query": "1+1", "time": end}, "POST",
                             AS_READER)
    assert (status, body["data"]) == (200, {"resultType": "scalar",
                                            "result": [end, "2"]})
    status, body = promQuery(d.base, "/api/v1/status/buildinfo", {},
                             headers=AS_READER)
    assert status == 200 and body["data"]["version"].startswith("3.")
    status, body = promQuery(d.base, "/api/v1/label/__name__/values",
                             {"start": start, "end": end}, headers=AS_READER)
    assert "papi_cpu_seconds_total" in body["data"]
    status, body = promQuery(d.base, "/api/v1/labels",
                             [("match[]", "papi_temperature"),
                              ("start", start), ("end", end)], "POST",
                             AS_READER)
    assert body["data"] == ["__name__", "dc", "room"]
    status, body = promQuery(
        d.base, "/api/v1/query_range",
        {"query": 'count(papi_cpu_seconds_total{dc="eu"})', "start": start,
         "end": end, "step": 30}, "POST", AS_READER)
    assert status == 200, body
    [counted] = body["data"]["result"]
    assert counted["metric"] == {}
    assert {v for _, v in counted["values"]} == {str(HOSTS // 2 * CPUS)}
    status, body = promQuery(d.base, "/api/v1/metadata", {},
                             headers=AS_READER)
    assert (status, body) == (200, {"status": "success", "data": {}})


def test_fullPageOfSeries(daemon: tuple[Daemon, int]) -> None:
    """
    A range query over all 2,000 series answers every one of them, at
    every step, with the values written (a lookback of 31 s, given as
    C{lookback_delta}, keeps the samples read under the limit).
    """
    d, endMs = daemon
    end = endMs / 1000
    status, body = promQuery(
        d.base, "/api/v1/query_range",
        {"query": "papi_cpu_seconds_total", "start": end - 9 * 30,
         "end": end, "step": 30, "lookback_delta": "31s"}, "POST",
        AS_READER)
    assert status == 200, body
    result = body["data"]["result"]
    assert len(result) == HOSTS * CPUS
    for series in result:
        host = int(series["metric"]["host"][1:])
        cpu = int(series["metric"]["cpu"])
        assert [float(v) for _, v in series["values"]] == [
            float(step * (cpu + 1) + host % 7)
            for step in range(STEPS - 10, STEPS)]


@pytest.mark.parametrize("path,params,code,kind,words", [
    ("/api/v1/query", {"query": "sum(rate(x[5m])"}, 400, "bad_data",
     "query"),
    ("/api/v1/query", {"query": "up", "time": "soon"}, 400, "bad_data",
     '"time"'),
    ("/api/v1/query", {"query": "absent(up)"}, 400, "bad_data", "absent"),
    ("/api/v1/query_range", {"query": "up", "start": 100, "end": 50,
                             "step": 1}, 400, "bad_data", "end"),
    ("/api/v1/query_range", {"query": "up", "start": 0, "end": 100000,
                             "step": 1}, 400, "bad_data", "11,000"),
    ("/api/v1/query_range", {"query": "up", "start": 0, "end": 10,
                             "step": 0}, 400, "bad_data", "step"),
    ("/api/v1/series", {}, 400, "bad_data", "match[]"),
    ("/api/v1/series", {"match[]": "sum(up)"}, 400, "bad_data",
     "selector"),
    ("/api/v1/label/9bad/values", {}, 400, "bad_data", "label name"),
])
def test_badRequests(daemon: tuple[Daemon, int], path: str,
                     params: dict[str, Any], code: int, kind: str,
                     words: str) -> None:
    """
    Each bad request is a 4xx in Prometheus's error format naming what
    is wrong.
    """
    d, _ = daemon
    status, body = promQuery(d.base, path, params, headers=AS_READER)
    assert status == code, body
    assert body["status"] == "error" and body["errorType"] == kind
    assert words in body["error"], body


def test_queriesOverTheLimits(daemon: tuple[Daemon, int]) -> None:
    """
    A query over the limits is a 422 C{execution} error saying which
    limit: the samples it would read, the values it would answer.
    """
    d, endMs = daemon
    end = endMs / 1000
    status, body = promQuery(
        d.base, "/api/v1/query",
        {"query": "sum(quantile_over_time(0.5, "
                  "papi_cpu_seconds_total[10m]))",
         "time": end}, headers=AS_READER)
    assert status == 422, body
    assert body["errorType"] == "execution"
    assert "max_query_samples" in body["error"]
    status, body = promQuery(
        d.base, "/api/v1/query_range",
        {"query": 'papi_cpu_seconds_total{dc="eu"}', "start": end - 600,
         "end": end, "step": 5, "lookback_delta": "31s"},
        headers=AS_READER)
    assert status == 422 and "max_search_points" in body["error"], body


def test_cassandraSummarizesWindows(daemon: tuple[Daemon, int]) -> None:
    """
    In an instant query, C{sum_over_time} and its kin are answered from
    Cassandra's summary of each window, not from the samples: over the
    40,000 samples of the 2,000 series (more than C{max_query_samples},
    30,000), the sum, count, minimum, maximum and average are exact.
    """
    d, endMs = daemon
    expected = {
        # sum over steps s, cpus c, hosts h of s * (c + 1) + h % 7.
        "sum": 190 * 55 * HOSTS + STEPS * CPUS * sum(h % 7
                                                    for h in range(HOSTS)),
        "count": STEPS * HOSTS * CPUS,
    }
    for function, aggregate, want in [
            ("sum_over_time", "sum", expected["sum"]),
            ("count_over_time", "sum", expected["count"]),
            ("min_over_time", "min", 0),
            ("max_over_time", "max", (STEPS - 1) * CPUS + 6),
            ("avg_over_time", "sum", expected["sum"] / STEPS)]:
        status, body = promQuery(
            d.base, "/api/v1/query",
            {"query": f"{aggregate}({function}("
                      f"papi_cpu_seconds_total[10m]))",
             "time": endMs / 1000}, headers=AS_READER)
        assert status == 200, (function, body)
        [sample] = body["data"]["result"]
        assert math.isclose(float(sample["value"][1]), want,
                            rel_tol=1e-12), (function, sample)


def test_cassandraSummarizesTilingWindows(daemon: tuple[Daemon, int]
                                          ) -> None:
    """
    In a range query whose step is the window's range, Cassandra
    summarizes every window in one pass: over all 40,000 samples (more
    than C{max_query_samples}), each step's sum is exact.
    """
    d, endMs = daemon
    end = endMs / 1000
    firstMs = endMs - (STEPS - 1) * STEP_MS
    status, body = promQuery(
        d.base, "/api/v1/query_range",
        {"query": "sum(sum_over_time(papi_cpu_seconds_total[30s]))",
         "start": firstMs / 1000, "end": end, "step": "30s"},
        headers=AS_READER)
    assert status == 200, body
    [series] = body["data"]["result"]
    # The window (t - 30 s, t] holds the sample at t only: step s sums
    # s * (cpu + 1) + host % 7 over every host and cpu.
    hostTerms = CPUS * sum(h % 7 for h in range(HOSTS))
    assert [(round(t * 1000), float(v)) for t, v in series["values"]] == [
        (firstMs + s * STEP_MS, float(s * 55 * HOSTS + hostTerms))
        for s in range(STEPS)]
    reads = d.get("/metrics").body.decode()
    assert 'meetr_promql_selector_reads_total{read="raw summary"}' in reads


def test_readRole(daemon: tuple[Daemon, int]) -> None:
    """
    The query API needs a token of the read role, as every search does.
    """
    d, _ = daemon
    assert promQuery(d.base, "/api/v1/query", {"query": "1"})[0] == 401
    assert promQuery(d.base, "/api/v1/query", {"query": "1"},
                     headers={"Authorization": f"Bearer {WRITE}"})[0] == 403
    client = PrometheusConnect(url=d.base)
    with pytest.raises(PrometheusApiClientException):
        client.custom_query("1")
