"""
The hunter against real HTTP nodes on loopback and the real Cassandra
node: both formats stored and searchable by node, failures reported in
/targets with up = 0 while a healthy node beside them is scraped on every
tick, on-demand fetches, and target files picked up when they change.
"""

from __future__ import annotations

import json

import pytest
import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.internet.task import deferLater

from meetrd.api import MetricsAPI
from meetrd.hunter.service import HunterService
from meetrd.search import Query, runSearch
from meetrd.settings import settingsFromMapping
from meetrd.store import MetricStore
from meetrd.web import MeetrSite
from tests.nodes import NodeProcess, nodeSite, silentFactory, startExporter

pytestmark = pytest.mark.cassandra

INTERVAL = 1.0
MAX_BODY = 64 * 1024


def listen(factory):
    return reactor.listenTCP(0, factory, interface="127.0.0.1")


@pytest_twisted.async_yield_fixture()
async def nodes(tmp_path):
    """
    Every kind of node, listening on loopback.
    """
    site, pages = nodeSite(MAX_BODY)
    web = listen(site)
    silent = listen(silentFactory())
    exporter, exporterPort = startExporter()
    process = NodeProcess(tmp_path / "node")
    addresses = {
        "web": f"127.0.0.1:{web.getHost().port}",
        "silent": f"127.0.0.1:{silent.getHost().port}",
        "exporter": f"127.0.0.1:{exporterPort}",
        "process": f"127.0.0.1:{process.port}",
    }
    try:
        yield addresses, pages, process
    finally:
        process.kill()
        exporter.shutdown()
        await web.stopListening()
        await silent.stopListening()


def hunterSettings(node, keyspace, targets, **hunter):
    return settingsFromMapping({
        "cassandra": {"contact_points": [node[0]], "port": node[1],
                      "keyspace": keyspace,
                      "consistency": {"read": "ONE", "write": "ONE"}},
        "hunter": {"targets": targets, "max_body_size": MAX_BODY, **hunter},
    }, "test")


def targetFolder(folder, job, interval):
    """
    A folder of target files, its one file, and a function that writes
    the file anew with the given nodes (C{/artemis} pages of C{job}).
    """
    folder.mkdir()
    targetFile = folder / "web.yaml"

    def write(nodes):
        targetFile.write_text(json.dumps([{
            "job": job, "nodes": nodes, "path": "/artemis",
            "interval": interval}]))

    return folder, targetFile, write


def recent():
    """
    An hour either side of now, in ms.
    """
    now = int(reactor.seconds() * 1000)
    return now - 3_600_000, now + 3_600_000


async def search(store, metric, aggregation, node, **tags):
    query = Query(metric, "0", "1", *recent(), aggregation,
                  tagFilters=tuple(sorted({"node": frozenset({node}),
                                           **{k: frozenset({v})
                                              for k, v in tags.items()}
                                           }.items())))
    return (await runSearch(store, query, settingsFromMapping({}, "x").limits)
            )["value"]


@pytest_twisted.ensureDeferred
async def test_huntEveryKindOfNode(node, keyspace, nodes):
    """
    Healthy nodes of both formats are stored and searchable by node and
    scraped on every tick; silent, garbage, failing, oversized and vanished
    nodes are down with their reasons in /targets and up = 0 stored.
    """
    addresses, pages, process = nodes
    web = addresses["web"]
    group = {"interval": "1s", "timeout": "400ms"}
    targets = [
        {"job": "artemis", "nodes": [web], "path": "/artemis", **group},
        {"job": "prom", "nodes": [addresses["exporter"]], "path": "/metrics",
         **group},
        {"job": "silent", "nodes": [addresses["silent"]], **group},
        {"job": "garbage", "nodes": [web], "path": "/garbage",
         "format": "prometheus", **group},
        {"job": "error", "nodes": [web], "path": "/error", **group},
        {"job": "huge", "nodes": [web], "path": "/huge", **group},
        {"job": "vanishing", "nodes": [addresses["process"]],
         "path": "/metrics", **group},
    ]
    settings = hunterSettings(node, keyspace, targets)
    store = MetricStore(settings.cassandra, 0, reactor)
    await store.connect()
    hunter = HunterService(settings, store, reactor)
    api = MetricsAPI(store, settings, reactor, hunter=hunter)
    port = listen(MeetrSite(api.resource(), 1 << 20, False))
    base = f"http://127.0.0.1:{port.getHost().port}"
    started = reactor.seconds()
    hunter.startService()
    try:
        await deferLater(reactor, 2.6)
        vanishing = hunter.loops[f"vanishing|{addresses['process']}|/metrics"]
        assert vanishing.health.health == "up"
        process.kill()
        await deferLater(reactor, 2.6)
        elapsed = reactor.seconds() - started
        await hunter.stopService()
        response = await treq.get(base + "/targets")
        report = {t["job"]: t for t in (await response.json())["targets"]}
    finally:
        if hunter.running:
            await hunter.stopService()
        await port.stopListening()

    for job in ("artemis", "prom"):
        entry = report[job]
        assert entry["health"] == "up", entry
        assert entry["failures"] == 0
        assert entry["scrapes"] >= int(elapsed / INTERVAL) - 1
        assert entry["last_error"] is None
        assert entry["next_scrape"] is not None
    assert report["artemis"]["samples_stored"] == 4
    reasons = {
        "silent": "timed out after 0.4s",
        "garbage": "not a Prometheus text page",
        "error": "HTTP 500",
        "huge": f"body larger than {MAX_BODY} bytes",
        "vanishing": "",
    }
    for job, reason in reasons.items():
        entry = report[job]
        assert entry["health"] == "down", entry
        assert reason in entry["last_error"], entry
    assert "refused" in report["vanishing"]["last_error"].lower()

    healthy = report["artemis"]["scrapes"]
    assert await search(store, "up", "count", web) >= healthy
    assert await search(store, "cpu.core1", "max", web) == 80.0
    assert await search(store, "cpu.core2", "max", web) == 33.0
    assert await search(store, "mem.used", "max", web) == 1.234e9
    assert await search(store, "mem.free", "max", web) == 6.666e9
    upCount = await search(store, "up", "count", addresses["exporter"])
    assert upCount == report["prom"]["scrapes"]
    assert await search(store, "up", "min", addresses["exporter"]) == 1.0
    exporter = addresses["exporter"]
    assert await search(store, "demo_requests_total", "max", exporter) == 7.0
    assert await search(store, "demo_temperature_celsius", "last",
                        exporter) == 21.5
    assert await search(store, "demo_latency_seconds_count", "last",
                        exporter) == 2.0
    for job in ("silent", "error", "huge"):
        node_ = web if job != "silent" else addresses["silent"]
        assert await search(store, "up", "max", node_, job=job) == 0.0, job
    assert await search(store, "up", "min", addresses["process"]) == 0.0
    assert await search(store, "up", "max", addresses["process"]) == 1.0
    await store.close()


@pytest_twisted.ensureDeferred
async def test_fetchOnDemand(node, keyspace, nodes):
    """
    POST /fetch answers 202 with a job, which reports each node; the Meetr
    points and the Artemis page are stored with the job's tag; disallowed
    nodes get 403 naming the rule and missing fields 400.
    """
    addresses, pages, process = nodes
    web = addresses["web"]
    settings = hunterSettings(node, keyspace, [])
    store = MetricStore(settings.cassandra, 0, reactor)
    await store.connect()
    hunter = HunterService(settings, store, reactor)
    hunter.startService()
    api = MetricsAPI(store, settings, reactor, hunter=hunter)
    port = listen(MeetrSite(api.resource(), 1 << 20, False))
    base = f"http://127.0.0.1:{port.getHost().port}"
    try:
        response = await treq.post(base + "/fetch", data=[
            ("node", web), ("node", addresses["silent"]), ("url", "artemis")])
        assert response.code == 202
        accepted = await response.json()
        assert accepted["nodes"] == [web, addresses["silent"]]
        job = accepted["job"]
        report = None
        for _ in range(100):
            response = await treq.get(f"{base}/fetch/{job}")
            report = await response.json()
            if report["state"] == "done":
                break
            await deferLater(reactor, 0.2)
        assert report["nodes"][web] == {"state": "ok", "samples": 4}
        assert report["nodes"][addresses["silent"]]["state"] == "failed"
        assert "timed out" in report["nodes"][addresses["silent"]]["error"]
        query = Query("cpu.core1", "0", "1", *recent(), "max",
                      tagFilters=(("job", frozenset({job})),))
        result = await runSearch(store, query, settings.limits)
        assert result["value"] == 80.0

        refused = await treq.post(base + "/fetch", data=[
            ("node", "10.1.2.3:80"), ("url", "/metrics")])
        assert refused.code == 403
        body = await refused.json()
        assert body["field"] == "node"
        assert "127.0.0.0/8" in body["error"]
        for data, field in (([("url", "/m")], "node"),
                            ([("node", web)], "url"),
                            ([("node", "nohost"), ("url", "/m")], "node"),
                            ([("node", web), ("url", "http://x/")], "url")):
            response = await treq.post(base + "/fetch", data=data)
            assert response.code == 400
            assert (await response.json())["field"] == field
        missing = await treq.get(base + "/fetch/nope")
        assert missing.code == 404
    finally:
        await hunter.stopService()
        await port.stopListening()
        await store.close()


@pytest_twisted.ensureDeferred
async def test_targetFilesReloaded(node, keyspace, nodes, tmp_path):
    """
    A target file's changes are picked up without a restart; a malformed
    version is reported and the last good targets kept.
    """
    addresses, pages, process = nodes
    web = addresses["web"]
    folder, targetFile, write = targetFolder(tmp_path / "targets.d",
                                             "filed", "1s")
    write([web])
    settings = hunterSettings(node, keyspace, [],
                              target_files=[str(folder / "*.yaml")],
                              target_files_check="200ms")
    store = MetricStore(settings.cassandra, 0, reactor)
    await store.connect()
    hunter = HunterService(settings, store, reactor)
    hunter.startService()
    try:
        assert [l.target.node for l in hunter.loops.values()] == [web]
        await deferLater(reactor, 1.2)
        assert pages["artemis"].hits >= 1
        write([web, addresses["process"]])
        await deferLater(reactor, 0.6)
        assert sorted(l.target.node for l in hunter.loops.values()) == \
            sorted([web, addresses["process"]])
        targetFile.write_text("- job: [broken\n")
        await deferLater(reactor, 0.6)
        assert len(hunter.loops) == 2
        targetFile.unlink()
        await deferLater(reactor, 0.6)
        assert hunter.loops == {}
    finally:
        await hunter.stopService()
        await store.close()


@pytest_twisted.ensureDeferred
async def test_targetFilesAddedByReloadAreWatched(node, keyspace, nodes,
                                                  tmp_path):
    """
    Target files first named by a reload (none at start) are read at once
    and then watched like those of the start: a later change to them is
    picked up; a reload that names none any more stops the watching.
    """
    addresses, pages, process = nodes
    web = addresses["web"]
    folder, _, write = targetFolder(tmp_path / "added.d", "added", "1h")
    write([web])
    settings = hunterSettings(node, keyspace, [], target_files_check="200ms")
    store = MetricStore(settings.cassandra, 0, reactor)
    await store.connect()
    hunter = HunterService(settings, store, reactor)
    hunter.startService()
    try:
        assert hunter.loops == {}
        hunter.applyTargets(hunterSettings(
            node, keyspace, [], target_files=[str(folder / "*.yaml")]).hunter)
        assert [l.target.node for l in hunter.loops.values()] == [web]
        write([web, addresses["process"]])
        await deferLater(reactor, 0.6)
        assert sorted(l.target.node for l in hunter.loops.values()) == \
            sorted([web, addresses["process"]])
        hunter.applyTargets(hunterSettings(node, keyspace, []).hunter)
        assert hunter.loops == {}
        write([web])
        await deferLater(reactor, 0.6)
        assert hunter.loops == {}
    finally:
        await hunter.stopService()
        await store.close()
