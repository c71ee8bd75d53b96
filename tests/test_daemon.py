"""
meetrd as a real C{twistd -n meetr} process against the real Cassandra
node: the first Meetr's scenarios, bad input, restarts, bad settings and
an unreachable Cassandra.
"""

from __future__ import annotations

import gzip
import json
import signal
import time

import pytest

from tests.support import (
    Daemon,
    daemonSettings,
    form,
    runTwistd,
    waitFor,
)

pytestmark = [pytest.mark.cassandra, pytest.mark.daemon]

MEETR_FROM = "2003-12-18 12:18:18+0530"
MEETR_TO = "2003-12-18 12:18:21+0530"
MEETR_TIMES = [f"2003-12-18 12:18:{s}+0530" for s in (18, 19, 20, 21)]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, node, keyspace):
    """
    One twistd meetr process for the module.
    """
    daemon = Daemon(tmp_path_factory.mktemp("daemon"),
                    daemonSettings(keyspace, node,
                                   http={"max_body_size": "64KiB"}))
    daemon.start().waitReady()
    yield daemon
    assert daemon.stop() == 0


def search(daemon, metric, aggregation="sum", start=MEETR_FROM, end=MEETR_TO,
           **extra):
    reply = daemon.get("/1.0/metrics", metric=metric, aggregation=aggregation,
                       **{"from": start, "to": end}, **extra)
    assert reply.status == 200, reply.body
    return reply.json()


def pointRows(cql, keyspace):
    return cql.execute(f"SELECT count(*) FROM {keyspace}.points").one()[0]


def test_singleInsertIsStored(daemon, cql, keyspace):
    """
    A single form insert answers 200 and its point is in Cassandra.
    """
    reply = daemon.post("/1.0/metrics", form({
        "metric_id": "meetr.single", "ts": MEETR_FROM, "value": "42"}))
    assert reply.status == 200
    assert reply.json() == {"status": "ok", "written": 1}
    series = cql.execute(f"SELECT series_id FROM {keyspace}.series_index "
                         f"WHERE metric = 'meetr.single' AND slice = %s",
                         (1071730098 // 86400,)).one()
    rows = list(cql.execute(
        f"SELECT value, ts FROM {keyspace}.points WHERE source = %s AND "
        f"bucket = %s", ("s:" + series.series_id.hex(), 1071730098 // 86400)))
    assert [r.value for r in rows] == [42.0]


def test_fourPointsSumToFour(daemon):
    """
    The first Meetr's scenario: four points of value 1, one a second, and
    sum over exactly their range is 4, with from/to echoed as sent.
    """
    for ts in MEETR_TIMES:
        reply = daemon.post("/1.0/metrics", form(
            {"metric_id": "meetr.four", "ts": ts, "value": 1}))
        assert reply.status == 200
    assert search(daemon, "meetr.four") == {
        "metric_id": "meetr.four", "from": MEETR_FROM, "to": MEETR_TO,
        "aggregation": "sum", "value": 4.0, "resolution": "raw"}


def test_bulkInsertThenSearch(daemon):
    """
    The first Meetr's bulk form (batch plus metrics) stores all four.
    """
    metrics = [{"metric_id": "meetr.bulk", "ts": ts, "value": 1}
               for ts in MEETR_TIMES]
    reply = daemon.post("/1.0/metrics", form(
        {"batch": "1", "metrics": json.dumps(metrics)}))
    assert reply.status == 200
    assert reply.json()["written"] == 4
    assert search(daemon, "meetr.bulk")["value"] == 4.0


def test_jsonAndGzipBodies(daemon):
    """
    A JSON list body, plain or gzip-encoded, is a batch too.
    """
    metrics = [{"metric_id": "json.body", "ts": ts, "value": 2,
                "tags": {"via": "json"}} for ts in MEETR_TIMES[:2]]
    plain = daemon.post("/1.0/metrics", json.dumps(metrics).encode(),
                        "application/json")
    assert plain.status == 200
    zipped = [{"metric_id": "json.body", "ts": ts, "value": 3,
               "tags": {"via": "gzip"}} for ts in MEETR_TIMES[2:]]
    reply = daemon.post("/1.0/metrics", gzip.compress(json.dumps(zipped)
                                                      .encode()),
                        "application/json", {"Content-Encoding": "gzip"})
    assert reply.status == 200
    assert search(daemon, "json.body")["value"] == 10.0
    assert search(daemon, "json.body", group_by="via")["groups"] == [
        {"tags": {"via": "gzip"}, "value": 6.0},
        {"tags": {"via": "json"}, "value": 4.0}]


def test_everyAggregationOverHTTP(daemon):
    """
    Each aggregation, an interval and a tag filter through the API.
    """
    metrics = [{"metric_id": "http.aggs", "ts": ts, "value": v,
                "tags": {"node": "n:1" if v % 2 else "n:2"}}
               for ts, v in zip(MEETR_TIMES, (4, 1, 3, 2))]
    assert daemon.post("/1.0/metrics", json.dumps(metrics).encode(),
                       "application/json").status == 200
    expected = {"sum": 10.0, "avg": 2.5, "min": 1.0, "max": 4.0, "count": 4,
                "first": 4.0, "last": 2.0}
    for aggregation, value in expected.items():
        assert search(daemon, "http.aggs", aggregation)["value"] == value
    assert search(daemon, "http.aggs", tag="node:n:1")["value"] == 4.0
    assert search(daemon, "http.aggs", "max", interval="2s")["points"] == [
        ["2003-12-18T06:48:18Z", 4.0], ["2003-12-18T06:48:20Z", 3.0]]


def test_sameInstantInAnyZone(daemon):
    """
    One instant written in three zones is one point; bounds in any zone
    or as epoch seconds find it.
    """
    for ts in ("2003-12-18 12:18:18+0530", "2003-12-18T06:48:18Z",
               "2003-12-18T01:48:18-05:00"):
        assert daemon.post("/1.0/metrics", form(
            {"metric_id": "zones", "ts": ts, "value": 7})).status == 200
    assert search(daemon, "zones", "count")["value"] == 1
    assert search(daemon, "zones", "count", start="2003-12-18T06:48:18Z",
                  end="1071730098")["value"] == 1
    assert search(daemon, "zones", "count", start="2003-12-18 06:48:18.001",
                  end="2003-12-18T07:00:00Z")["value"] == 0


def test_emptyRangeAnswers200(daemon):
    """
    A range without points answers 200 with count 0 and null otherwise.
    """
    assert search(daemon, "nothing.here", "count")["value"] == 0
    assert search(daemon, "nothing.here", "avg")["value"] is None


BAD_WRITES = [
    ("missing value", form({"metric_id": "bad", "ts": MEETR_FROM}),
     "application/x-www-form-urlencoded", 400, "value"),
    ("bad ts", form({"metric_id": "bad", "ts": "noon", "value": 1}),
     "application/x-www-form-urlencoded", 400, "ts"),
    ("NaN", form({"metric_id": "bad", "ts": MEETR_FROM, "value": "NaN"}),
     "application/x-www-form-urlencoded", 400, "value"),
    ("bad metric", form({"metric_id": "a b", "ts": MEETR_FROM, "value": 1}),
     "application/x-www-form-urlencoded", 400, "metric_id"),
    ("bad tags", form({"metric_id": "bad", "ts": MEETR_FROM, "value": 1,
                       "tags": "[1]"}),
     "application/x-www-form-urlencoded", 400, "tags"),
    ("batch not JSON", form({"batch": "1", "metrics": "[{"}),
     "application/x-www-form-urlencoded", 400, "metrics"),
    ("batch missing", form({"batch": "1"}),
     "application/x-www-form-urlencoded", 400, "metrics"),
    ("JSON not a list", b'{"metric_id": "bad"}', "application/json", 400,
     "(body)"),
    ("JSON broken", b"[{", "application/json", 400, "(body)"),
    ("gzip broken", b"not gzip", "application/json", 400, "(body)"),
    ("unknown type", b"x", "text/csv", 415, "Content-Type"),
    ("too large", b"[" + b" " * 70000 + b"]", "application/json", 413,
     "(body)"),
    ("too large unzipped", gzip.compress(b"[" + b" " * 200000 + b"]"),
     "application/json", 413, "(body)"),
]


@pytest.mark.parametrize("name, body, contentType, status, field",
                         BAD_WRITES, ids=[b[0] for b in BAD_WRITES])
def test_badWritesNameTheField(daemon, cql, keyspace, name, body,
                               contentType, status, field):
    """
    Each bad write is a 4xx JSON answer naming the field, and nothing of it
    is stored.
    """
    before = pointRows(cql, keyspace)
    headers = {"Content-Encoding": "gzip"} if name.startswith(("gzip",
                                                               "too large un")) else {}
    reply = daemon.post("/1.0/metrics", body, contentType, headers)
    assert reply.status == status, reply.body
    assert reply.headers["content-type"] == "application/json"
    answer = reply.json()
    assert answer["field"] == field
    assert answer["error"]
    assert pointRows(cql, keyspace) == before


def test_badBatchStoresNothing(daemon, cql, keyspace):
    """
    A batch with bad items lists every bad index and stores none of the
    good ones.
    """
    before = pointRows(cql, keyspace)
    metrics = [{"metric_id": "half", "ts": MEETR_TIMES[0], "value": 1},
               {"metric_id": "half", "ts": "x", "value": 1},
               {"metric_id": "half", "ts": MEETR_TIMES[1], "value": 1},
               {"metric_id": "", "ts": MEETR_TIMES[2], "value": "y"}]
    reply = daemon.post("/1.0/metrics", json.dumps(metrics).encode(),
                        "application/json")
    assert reply.status == 400
    assert [(e["index"], e["field"]) for e in reply.json()["errors"]] == [
        (1, "ts"), (3, "metric_id")]
    assert pointRows(cql, keyspace) == before
    assert search(daemon, "half", "count")["value"] == 0


BAD_SEARCHES = [
    ({"from": MEETR_FROM, "to": MEETR_TO, "aggregation": "sum"}, "metric"),
    ({"metric": "m", "to": MEETR_TO, "aggregation": "sum"}, "from"),
    ({"metric": "m", "from": "x", "to": MEETR_TO, "aggregation": "sum"},
     "from"),
    ({"metric": "m", "from": MEETR_FROM, "to": MEETR_TO,
      "aggregation": "median"}, "aggregation"),
    ({"metric": "m", "from": MEETR_FROM, "to": MEETR_TO, "aggregation": "sum",
      "tag": "nocolon"}, "tag"),
    ({"metric": "m", "from": MEETR_FROM, "to": MEETR_TO, "aggregation": "sum",
      "interval": "fast"}, "interval"),
]


@pytest.mark.parametrize("params, field", BAD_SEARCHES)
def test_badSearchesNameTheField(daemon, params, field):
    """
    Each bad search is a 400 naming the field.
    """
    reply = daemon.get("/1.0/metrics", **params)
    assert reply.status == 400
    assert reply.json()["field"] == field


def test_fromAfterToIs422(daemon):
    """
    A search whose from is after its to is well formed but not run: a 422
    naming from.
    """
    reply = daemon.get("/1.0/metrics", metric="m", aggregation="sum",
                       **{"from": MEETR_TO, "to": MEETR_FROM})
    assert reply.status == 422
    assert reply.json()["field"] == "from"


def test_unknownAggregationListsValidOnes(daemon):
    """
    An unknown aggregation's answer lists the valid ones.
    """
    reply = daemon.get("/1.0/metrics", metric="m", aggregation="median",
                       **{"from": MEETR_FROM, "to": MEETR_TO})
    assert reply.json()["valid"] == ["sum", "avg", "min", "max", "count",
                                     "first", "last", "stddev", "pQ"]


def test_routingErrorsAreJSON(daemon):
    """
    Unknown routes answer 404 and wrong methods 405 with Allow, in JSON.
    """
    missing = daemon.get("/nope")
    assert (missing.status, missing.json()["error"]) == (404, "not found")
    from tests.support import http
    wrong = http("DELETE", daemon.base + "/1.0/metrics")
    assert wrong.status == 405
    assert "POST" in wrong.headers["allow"]
    assert wrong.json()["error"] == "method not allowed"


def test_survivesRestart(tmp_path, node, keyspace):
    """
    Points written before a restart are found after it.
    """
    settings = daemonSettings(keyspace, node)
    first = Daemon(tmp_path / "a", settings).start().waitReady()
    try:
        assert first.post("/1.0/metrics", form({
            "metric_id": "restart", "ts": MEETR_FROM, "value": 9})).status \
            == 200
    finally:
        assert first.stop() == 0
    second = Daemon(tmp_path / "b", settings).start().waitReady()
    try:
        assert search(second, "restart")["value"] == 9.0
    finally:
        assert second.stop() == 0


BAD_CONFIGS = [
    ("missing", None, "cannot read: No such file"),
    ("not YAML", "listen: [\n", "invalid YAML at line"),
    ("unknown key", "listen: tcp:0\nlisen: 1\n", "lisen: unknown key"),
    ("wrong type", "cassandra:\n  port: many\n", "cassandra.port:"),
    ("bad duration", "retention: 3 weeks\n", "retention: expected a duration"),
    ("bad endpoint", "listen: carrier-pigeon:1\n", "listen: not a Twisted "
                                                   "endpoint string"),
]


@pytest.mark.parametrize("name, text, message", BAD_CONFIGS,
                         ids=[c[0] for c in BAD_CONFIGS])
def test_badConfigExitsWithOneLine(tmp_path, name, text, message):
    """
    twistd exits non-zero with one line naming the file, the key and the
    problem, and no traceback.
    """
    config = tmp_path / "meetr.yaml"
    if text is not None:
        config.write_text(text)
    result = runTwistd(config)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"meetr: {config}: ")
    assert message in lines[0]
    assert "Traceback" not in result.stdout + result.stderr


def test_listenOptionBeatsFile(tmp_path, node, keyspace):
    """
    --listen overrides the settings' listen.
    """
    settings = daemonSettings(keyspace, node, listen="tcp:1:interface=127.0.0.1")
    daemon = Daemon(tmp_path, settings,
                    args=("--listen", "tcp:0:interface=127.0.0.1")).start()
    try:
        assert daemon.port != 1
        assert daemon.get("/health").status == 200
    finally:
        daemon.stop()


def test_cassandraUnreachableAtStart(tmp_path, keyspace):
    """
    With no Cassandra at the contact point, meetrd logs a line naming it,
    answers 503 with Retry-After within the timeout, does not crash, and
    stops cleanly.
    """
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closedPort = probe.getsockname()[1]
    settings = daemonSettings(keyspace, ("127.0.0.1", closedPort))
    daemon = Daemon(tmp_path, settings).start()
    try:
        # The driver's own log lines name the port too, a moment before
        # meetrd's line; wait for meetrd's.
        waitFor(lambda: "cannot reach Cassandra at" in daemon.log(), 30,
                "meetrd's line on the refused contact point", interval=0.2)
        line = next(line for line in daemon.log().splitlines()
                    if "cannot reach Cassandra at" in line)
        assert f"cannot reach Cassandra at 127.0.0.1:{closedPort}" in line
        ready = daemon.get("/ready")
        assert ready.status == 503
        assert "cannot reach Cassandra" in ready.json()["error"]
        started = time.monotonic()
        write = daemon.post("/1.0/metrics", form({
            "metric_id": "m", "ts": MEETR_FROM, "value": 1}))
        assert time.monotonic() - started < 10
        assert write.status == 503
        assert int(write.headers["retry-after"]) > 0
        assert daemon.get("/1.0/metrics", metric="m", aggregation="sum",
                          **{"from": MEETR_FROM, "to": MEETR_TO}
                          ).status == 503
        assert daemon.get("/health").status == 200
        assert daemon.process.poll() is None
    finally:
        assert daemon.stop(signal.SIGTERM) == 0
    assert "Traceback" not in daemon.log()
