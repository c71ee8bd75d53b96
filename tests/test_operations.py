"""
Running meetrd for real: self-metrics, graceful stop under load, SIGKILL,
sharded hunting over two instances, SIGHUP and the JSON log.
"""

from __future__ import annotations

import json
import signal
import threading
import time

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from meetrd.layout import placeSeries
from tests.support import (
    Daemon,
    daemonSettings,
    form,
    nodeFarm,
    http,
    uniqueKeyspace,
    waitFor,
)

pytestmark = [pytest.mark.cassandra, pytest.mark.daemon]

BASE_MS = 1_700_000_000_000 - 1_700_000_000_000 % 86_400_000


def samples(daemon):
    reply = daemon.get("/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain")
    found = {}
    for family in text_string_to_metric_families(reply.body.decode()):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            found[key] = sample.value
    return found


def test_selfMetricsMoveWithTraffic(tmp_path, node, keyspace):
    """
    /metrics parses with prometheus_client's parser and its counters move
    with writes, rejections and requests.
    """
    daemon = Daemon(tmp_path, daemonSettings(keyspace, node)).start()
    try:
        daemon.waitReady()
        before = samples(daemon)
        batch = [{"metric_id": "self.m", "ts": BASE_MS + i, "value": i}
                 for i in range(3)]
        assert daemon.post("/1.0/metrics", json.dumps(batch).encode(),
                           "application/json").status == 200
        assert daemon.post("/1.0/metrics", form({"metric_id": "x", "ts": "?",
                                                 "value": 1})).status == 400
        # The reactor lag probe runs every 50 ms: once it has run again.
        probes = ("meetr_reactor_lag_probe_seconds_count", ())

        def probedAgain():
            found = samples(daemon)
            return found if found[probes] > before.get(probes, 0) else None

        after = waitFor(probedAgain, 10, "another reactor lag probe")
    finally:
        daemon.stop()
    written = ("meetr_points_written_total", ())
    rejected = ("meetr_points_rejected_total", ())
    assert after[written] - before.get(written, 0) == 3
    assert after[rejected] - before.get(rejected, 0) == 1
    ok = ("meetr_http_requests_total", (("method", "POST"),
                                        ("route", "/1.0/metrics"),
                                        ("status", "200")))
    assert after[ok] - before.get(ok, 0) == 1
    count = ("meetr_http_request_duration_seconds_count",
             (("route", "/1.0/metrics"),))
    assert after[count] - before.get(count, 0) == 2
    assert after[("meetr_cassandra_ready", ())] == 1.0
    assert after[("meetr_cassandra_requests_total", ())] > \
        before[("meetr_cassandra_requests_total", ())]
    assert ("meetr_cassandra_requests_in_flight", ()) in after
    # The probe had run before, and the longest stall it saw is at least
    # the last one.
    assert before.get(probes, 0) > 0
    assert after[("meetr_reactor_lag_longest_seconds", ())] >= \
        after[("meetr_reactor_lag_seconds", ())] >= 0
    # The daemon's garbage collector is timed, generation by generation.
    for generation in "012":
        label = (("generation", generation),)
        assert after[("meetr_gc_collections_total", label)] >= 0
        assert after[("meetr_gc_seconds_total", label)] >= 0


def test_batchAtTheLimitOverHTTP(tmp_path, node, keyspace):
    """
    A JSON batch of 50,000 points (the default limit, a 6 MB body checked
    in slices) is acknowledged whole and stored whole; the same batch
    with one bad point deep inside is refused whole, naming that point,
    and stores nothing.
    """
    daemon = Daemon(tmp_path, daemonSettings(keyspace, node)).start()
    try:
        daemon.waitReady()
        # 1,000 series (100 nodes x 10), 50 seconds each.
        batch = [{"metric_id": "limit.m", "ts": BASE_MS + 60_000 + t * 1000,
                  "value": float(j),
                  "tags": {"node": f"limit-{n}.example", "j": str(j)}}
                 for n in range(100) for j in range(10) for t in range(50)]
        bad = [dict(item) for item in batch]
        bad[43_210]["value"] = "lots"
        for item in bad:
            item["metric_id"] = "limit.bad"
        reply = daemon.post("/1.0/metrics", json.dumps(bad).encode(),
                            "application/json")
        assert reply.status == 400, reply.body
        assert [(e["index"], e["field"]) for e in reply.json()["errors"]] \
            == [(43_210, "value")]
        body = json.dumps(batch).encode()
        assert len(body) > 1024 * 1024
        reply = daemon.post("/1.0/metrics", body, "application/json")
        assert reply.status == 200, reply.body
        assert reply.json()["written"] == 50_000
        window = {"from": BASE_MS, "to": BASE_MS + 120_000}
        counted = daemon.get("/1.0/metrics", metric="limit.m",
                             aggregation="count", **window).json()
        assert counted["value"] == 50_000
        summed = daemon.get("/1.0/metrics", metric="limit.m",
                            aggregation="sum", group_by="j",
                            **window).json()
        assert [g["value"] for g in summed["groups"]] == [
            5000.0 * int(g["tags"]["j"]) for g in summed["groups"]]
        refused = daemon.get("/1.0/metrics", metric="limit.bad",
                             aggregation="count", **window).json()
        assert refused["value"] == 0
    finally:
        daemon.stop()


class Streamer(threading.Thread):
    """
    A client posting batches of points of its own series, one after the
    other, until the server stops answering; it records what was
    acknowledged.
    """

    def __init__(self, daemon, name, batchSize=50):
        super().__init__(daemon=True)
        self.base = daemon.base
        self.metric = f"stream.{name}"
        self.batchSize = batchSize
        self.acked: list[int] = []
        self.sent = 0
        self.stopRequested = False
        self.maxFailures = 3
        self.onAnswer = None

    def run(self):
        import http.client
        import urllib.parse

        host = urllib.parse.urlsplit(self.base)
        connection = http.client.HTTPConnection(host.hostname, host.port,
                                                timeout=30)
        failures = 0
        while not self.stopRequested and failures < self.maxFailures:
            stamps = [BASE_MS + self.sent + i for i in range(self.batchSize)]
            self.sent += self.batchSize
            body = json.dumps([{"metric_id": self.metric, "ts": ts,
                                "value": 1} for ts in stamps]).encode()
            started = time.monotonic()
            try:
                connection.request("POST", "/1.0/metrics", body,
                                   {"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                failures += 1
                connection.close()
                time.sleep(0.05)
                continue
            if self.onAnswer is not None:
                self.onAnswer(response.status, time.monotonic() - started)
            if response.status == 503:
                time.sleep(0.1)
            if 200 <= response.status < 300:
                self.acked.extend(stamps)


def storedStamps(cql, keyspace, metric):
    placement = placeSeries(metric, ())
    rows = cql.execute(
        f"SELECT toUnixTimestamp(ts) FROM {keyspace}.points WHERE source = %s"
        f" AND bucket = %s AND series_id = %s",
        (placement.source, BASE_MS // placement.bucketMs, placement.seriesId))
    return {row[0] for row in rows}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL],
                         ids=["SIGTERM", "SIGKILL"])
def test_acknowledgedPointsSurviveStop(tmp_path, node, keyspace, cql, sig):
    """
    While clients stream bulk writes, the daemon is stopped (gracefully by
    SIGTERM, exiting 0, or killed): every point acknowledged with 2xx is in
    Cassandra afterwards, and a restarted daemon finds them.
    """
    settings = daemonSettings(keyspace, node)
    daemon = Daemon(tmp_path / "first", settings).start().waitReady()
    streamers = [Streamer(daemon, f"{sig.name}.{i}") for i in range(4)]
    for streamer in streamers:
        streamer.start()
    waitFor(lambda: sum(len(s.acked) for s in streamers) >= 2000, 30,
            "2,000 acknowledged points", interval=0.05)
    status = daemon.stop(sig)
    for streamer in streamers:
        streamer.stopRequested = True
        streamer.join(30)
    if sig == signal.SIGTERM:
        assert status == 0, daemon.log()[-3000:]
        assert "Traceback" not in daemon.log()
    restarted = Daemon(tmp_path / "second", settings).start().waitReady()
    try:
        for streamer in streamers:
            acked = set(streamer.acked)
            assert acked, streamer.metric
            assert acked <= storedStamps(cql, keyspace, streamer.metric)
            reply = restarted.get("/1.0/metrics", metric=streamer.metric,
                                  aggregation="count",
                                  **{"from": BASE_MS, "to": BASE_MS + 10**6})
            assert reply.json()["value"] >= len(acked)
    finally:
        assert restarted.stop() == 0


@pytest.fixture
def farm():
    """
    Eight nodes served by a separate process, ended by its PID.
    """
    with nodeFarm(8, 5, "json") as nodes:
        yield nodes


def test_shardsHuntEachNodeOnce(tmp_path, node, keyspace, farm):
    """
    Two instances sharing the targets hunt every node, each by exactly one
    of them, and each shows its own share in /targets.
    """
    settings = daemonSettings(keyspace, node, hunter={"targets": [
        {"job": "farm", "nodes": farm, "path": "/m", "interval": "500ms"}]})
    daemons = [Daemon(tmp_path / str(i), settings,
                      args=("--shard-index", str(i), "--shard-count", "2"))
               for i in range(2)]
    try:
        for daemon in daemons:
            daemon.start().waitReady()
        def scrapedTwice():
            shares = [daemon.get("/targets").json()["targets"]
                      for daemon in daemons]
            return shares if all(t["scrapes"] >= 2 and t["health"] == "up"
                                 for share in shares for t in share) \
                else None

        shares = waitFor(scrapedTwice, 30, "two healthy scrapes a target",
                         interval=0.2)
    finally:
        for daemon in daemons:
            daemon.stop()
    nodes = [[t["node"] for t in share] for share in shares]
    assert all(nodes)
    assert sorted(nodes[0] + nodes[1]) == sorted(farm)
    assert not set(nodes[0]) & set(nodes[1])
    assert [share[0]["shard"] for share in shares] == [
        {"index": 0, "count": 2}, {"index": 1, "count": 2}]


def test_sighupReloadsTargets(tmp_path, node, farm):
    """
    SIGHUP applies new targets without a restart, and logs which other
    changed keys need one.  (A keyspace of its own: in the module's,
    daemons killed by other tests are members of the hunt until their
    heartbeats expire, and would own some of the targets meanwhile.)
    """
    settings = daemonSettings(uniqueKeyspace("sighup"), node, hunter={
        "targets": [{"job": "a", "nodes": farm[:1], "interval": "1s"}]})
    daemon = Daemon(tmp_path, settings).start().waitReady()
    try:
        assert len(daemon.get("/targets").json()["targets"]) == 1
        settings["hunter"]["targets"].append(
            {"job": "b", "nodes": farm[1:3], "interval": "1s"})
        settings["retention"] = "30d"
        daemon.config.write_text(yaml.safe_dump(settings))
        daemon.process.send_signal(signal.SIGHUP)
        waitFor(lambda: len(daemon.get("/targets").json()["targets"]) == 3,
                20, "three targets after the reload")
        assert "applied hunter.targets; needs a restart: retention" in \
            daemon.log()
        daemon.config.write_text("hunter: [broken\n")
        daemon.process.send_signal(signal.SIGHUP)
        waitFor(lambda: "keeping the current settings" in daemon.log(), 20,
                "the broken settings refused")
        assert len(daemon.get("/targets").json()["targets"]) == 3
        assert daemon.process.poll() is None
    finally:
        assert daemon.stop() == 0


def test_jsonLog(tmp_path, node, keyspace):
    """
    With log.format json, every log line is a JSON event, access lines
    included when asked for.
    """
    settings = daemonSettings(keyspace, node, log={"format": "json"},
                              http={"access_log": True})
    daemon = Daemon(tmp_path, settings)
    daemon.start().waitReady()
    try:
        assert http("GET", daemon.base + "/health").status == 200
    finally:
        assert daemon.stop() == 0
    lines = [l for l in daemon.log().splitlines() if l.strip()]
    events = [json.loads(l.lstrip("\x1e")) for l in lines]
    assert any("log_namespace" in e for e in events)
    assert any("/health" in json.dumps(e) for e in events)
