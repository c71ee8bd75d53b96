"""
L{tests.promserver} against the real Prometheus it runs.
"""

from __future__ import annotations

import time

import pytest

from tests.promserver import (PrometheusServer, promQuery, pushRemoteWrite,
                              writeRequestBody)

pytestmark = pytest.mark.cassandra


def test_remoteWrittenSamplesAreQueryable(tmp_path):
    """
    Two series of 20 samples 15 s apart, ending a minute ago, written to
    a real Prometheus through its remote write receiver: an instant
    C{count_over_time} finds all 20 of each, and a range query answers a
    matrix of both.
    """
    nowMs = int(time.time() * 1000)
    lastMs = nowMs - 60_000
    stamps = [lastMs - 15_000 * (19 - i) for i in range(20)]
    series = [
        ({"__name__": "x", "job": "selftest", "instance": "a"},
         [(ts, float(i)) for i, ts in enumerate(stamps)]),
        ({"__name__": "x", "job": "selftest", "instance": "b"},
         [(ts, i * 0.5) for i, ts in enumerate(stamps)]),
    ]
    with PrometheusServer(tmp_path) as server:
        status, text = pushRemoteWrite(server.url, writeRequestBody(series))
        assert status == 204, (status, text, server.log())

        status, answer = promQuery(server.url, "/api/v1/query", {
            "query": "count_over_time(x[30m])", "time": nowMs / 1000})
        assert status == 200, answer
        assert answer["data"]["resultType"] == "vector"
        counts = {item["metric"]["instance"]: item["value"][1]
                  for item in answer["data"]["result"]}
        assert counts == {"a": "20", "b": "20"}

        status, answer = promQuery(server.url, "/api/v1/query_range", {
            "query": "x", "start": stamps[0] / 1000, "end": lastMs / 1000,
            "step": "15s"}, method="POST")
        assert status == 200, answer
        assert answer["data"]["resultType"] == "matrix"
        byInstance = {item["metric"]["instance"]: item["values"]
                      for item in answer["data"]["result"]}
        assert sorted(byInstance) == ["a", "b"]
        assert len(byInstance["a"]) == 20
        assert byInstance["a"][-1] == [lastMs / 1000, "19"]
