"""
Rollups: a year of one series and a month of a thousand nodes answered
from rollups, and ingest with rollups on and off.

  - C{year}: one series (no node tag), a year of 10 s points (3,153,600),
    written through the store into a keyspace whose levels are 1m
    (90 days), 1h and 1d; once the daemon has rolled them up, C{GET
    /1.0/metrics} over the whole year with every aggregation, with
    C{interval=1d}, with p99, and over a range that is not aligned on
    days; side by side with C{driver}: cassandra-driver reading every
    point of the year (paged) and Python computing every aggregation in
    one pass.  Each answer is checked against the driver's (sum and avg
    to a relative 1e-9, the rest exactly, p99 within the sketch's 1%).
  - C{fleet}: 1,000 series (C{node} x 1,000, one series a node), 30 days
    of a point every 30 minutes; C{group_by=node&interval=1h&
    aggregation=avg} over the 30 days (720,000 points in the answer).
  - C{ingest}: pages of 12,000 series of one node (4 nodes in turn, the
    timestamp the wall clock's: raw partitions of 36 s, so that they
    close and are rolled up during the run) sent as fast as 4 connections
    go to two daemons, one with the three levels and one without, in
    turns; the rate, the CPU per 1,000 points of the daemon (including
    the rollups of the run's partitions, waited for after it) and of
    Cassandra, and the rollup lag and backlog sampled every second.

Run by C{bench/run.py} (C{make bench}) or alone::

    MEETR_TEST_CASSANDRA=127.0.0.1:19042 .venv/bin/python bench/rollups.py
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import threading
import time
import traceback
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    CpuWatch,
    Worker,
    cassandraPid,
    dayStart,
    median,
    nodeAddress,
    now,
    serveBlocking,
    runAndReport,
)

HERE = str(Path(__file__).resolve())
LEVELS = [{"resolution": "1m", "retention": "90d"},
          {"resolution": "1h", "retention": 0},
          {"resolution": "1d", "retention": 0}]
YEAR_METRIC = "rollup.year"
YEAR_TAGS = {"dc": "par1", "sensor": "year"}
YEAR_STEP_S = 10
FLEET_METRIC = "rollup.fleet"
AGGREGATIONS = ("sum", "avg", "min", "max", "count", "first", "last")
P99 = 0.99
# The write lanes of the loading worker and the points of each write.
LANES = 4
CHUNK = 5000
# The ingest load's page: series of one node, as one request.
PAGE_SERIES = 12_000
PAGE_NODES = 4


def yearValue(i: int) -> float:
    return ((i * 104729) % 100000) / 100.0


def fleetValue(node: int, j: int) -> float:
    return ((node * 7919 + j * 104729) % 100000) / 100.0 + 1.0


def fleetNode(node: int) -> str:
    return f"fleet-{node:04d}.example:9100"


# The loading worker: a MetricStore with the rollup levels

def storeWorker(host: str, port: int, keyspace: str) -> None:
    from twisted.internet import defer, reactor

    from bench.common import daemonSettingsFor
    from bench.workerloop import serveStore
    from meetrd.points import Point, freezeTags
    from meetrd.settings import settingsFromMapping
    from meetrd.store import MetricStore

    raw = daemonSettingsFor(keyspace, (host, port))
    raw["rollups"] = LEVELS
    settings = settingsFromMapping(raw, "bench")
    store = MetricStore(settings.cassandra, 0, reactor,
                        rollups=settings.rollups)

    async def writeAll(chunks: Any) -> int:
        """
        Write the chunks an iterator yields, LANES writes in flight.
        """
        written = 0

        async def lane() -> None:
            nonlocal written
            for chunk in chunks:
                count = await store.writePoints(chunk)
                written += count

        await defer.gatherResults([defer.ensureDeferred(lane())
                                   for _ in range(LANES)], consumeErrors=True)
        return written

    async def loadYear(fromS: int, points: int) -> dict[str, Any]:
        tags = freezeTags(YEAR_TAGS)

        def chunks() -> Any:
            for start in range(0, points, CHUNK):
                yield [Point(YEAR_METRIC, tags,
                             (fromS + i * YEAR_STEP_S) * 1000, yearValue(i))
                       for i in range(start, min(points, start + CHUNK))]

        started = now()
        written = await writeAll(chunks())
        return {"written": written, "seconds": now() - started,
                "requests": store.requests}

    async def loadFleet(fromS: int, nodes: int, days: int, stepS: int
                        ) -> dict[str, Any]:
        perDay = 86400 // stepS
        tagsOf = [freezeTags({"node": fleetNode(n), "dc": "par1"})
                  for n in range(nodes)]
        before = store.requests

        def chunks() -> Any:
            # A node's day at a time, a few nodes a write.
            batch: list[Point] = []
            for day in range(days):
                for n in range(nodes):
                    for k in range(perDay):
                        j = day * perDay + k
                        batch.append(Point(FLEET_METRIC, tagsOf[n],
                                           (fromS + j * stepS) * 1000,
                                           fleetValue(n, j)))
                    if len(batch) >= CHUNK:
                        yield batch
                        batch = []
            if batch:
                yield batch

        started = now()
        written = await writeAll(chunks())
        return {"written": written, "seconds": now() - started,
                "requests": store.requests - before}

    serveStore(store, {"load-year": loadYear, "load-fleet": loadFleet},
               reactor)


# The driver worker: cassandra-driver alone

def driverWorker(host: str, port: int, keyspace: str) -> None:
    from cassandra.cluster import Cluster

    from meetrd.layout import bucketsBetween, placeSeries
    from meetrd.points import freezeTags
    from meetrd.schema import DIRTY_SHARDS

    cluster = Cluster([host], port=port)
    session = cluster.connect()
    session.default_timeout = 120
    placement = placeSeries(YEAR_METRIC, freezeTags(YEAR_TAGS))

    def readYear(fromS: int, toS: int) -> dict[str, Any]:
        """
        Every point of the year, paged, and every aggregation of them.
        """
        statement = session.prepare(
            f"SELECT toUnixTimestamp(ts), value FROM {keyspace}.points "
            f"WHERE source = ? AND bucket = ? AND series_id = ? "
            f"AND ts >= ? AND ts <= ?")
        fromMs, toMs = fromS * 1000, toS * 1000
        started = now()
        values: list[float] = []
        first = last = None
        for bucket in bucketsBetween(fromMs, toMs, placement.bucketMs):
            for ts, value in session.execute(statement, (
                    placement.source, bucket, placement.seriesId, fromMs,
                    toMs)):
                if first is None:
                    first = value
                last = value
                values.append(value)
        total = math.fsum(values)
        result = {"count": len(values), "sum": total,
                  "avg": total / len(values), "min": min(values),
                  "max": max(values), "first": first, "last": last}
        seconds = now() - started
        values.sort()
        rank = P99 * (len(values) - 1)
        result["p99"] = [values[math.floor(rank)], values[math.ceil(rank)]]
        return {"seconds": seconds, "result": result}

    def markers() -> dict[str, Any]:
        statement = session.prepare(
            f"SELECT count(*) FROM {keyspace}.rollup_dirty WHERE shard = ?")
        return {"markers": sum(session.execute(statement, (shard,)).one()[0]
                               for shard in range(DIRTY_SHARDS))}

    def drop(keyspaces: list[str]) -> dict[str, Any]:
        for name in keyspaces:
            session.execute(f"DROP KEYSPACE IF EXISTS {name}", timeout=120)
        return {"dropped": keyspaces}

    try:
        serveBlocking({"read-year": readYear, "markers": markers,
                       "drop": drop})
    finally:
        cluster.shutdown()


# The orchestrator

def rollupMetrics(daemon: Any) -> dict[str, float]:
    """
    The rollup figures of a daemon's C{/metrics}.
    """
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    text = daemon.get("/metrics").body.decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("meetr_rollup"):
                out[sample.name] = sample.value
    return out


class Client:
    """
    A keep-alive HTTP connection to a daemon, timing GETs.
    """

    def __init__(self, port: int) -> None:
        from http.client import HTTPConnection

        self.conn = HTTPConnection("127.0.0.1", port, timeout=300)

    def get(self, params: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        path = "/1.0/metrics?" + urlencode(params)
        for attempt in (0, 1):
            start = now()
            try:
                self.conn.request("GET", path)
                response = self.conn.getresponse()
                data = response.read()
                break
            except ConnectionError:  # closed while idle: once more
                self.conn.close()
                if attempt:
                    raise
        seconds = now() - start
        if response.status != 200:
            raise RuntimeError(f"GET {path}: {response.status} {data[:300]!r}")
        return seconds, json.loads(data)


def yearQueries(fromS: int, toS: int) -> list[tuple[str, dict[str, Any]]]:
    """
    The searches over the year: each aggregation over the whole of it,
    sum and avg by day, p99, and sum over a range off the day grid.
    """
    whole = {"metric": YEAR_METRIC, "from": fromS, "to": toS}
    queries = [(a, {**whole, "aggregation": a}) for a in AGGREGATIONS]
    queries += [(f"{a} interval=1d", {**whole, "aggregation": a,
                                      "interval": "1d"})
                for a in ("sum", "avg", "max")]
    queries.append(("p99", {**whole, "aggregation": "p99"}))
    queries.append(("sum unaligned", {
        "metric": YEAR_METRIC, "from": fromS + 12_345, "to": toS - 6_789,
        "aggregation": "sum"}))
    return queries


def checkYear(label: str, answer: dict[str, Any], truth: dict[str, Any]
              ) -> None:
    """
    An answer over the whole year against the driver's.
    """
    if "interval" in label or "unaligned" in label:
        return  # checked by count and by tests/test_rollup_exact.py
    aggregation = answer.get("aggregation", label)
    value = answer["value"]
    if aggregation == "p99":
        low, high = truth["p99"]
        if not low * 0.99 <= value <= high * 1.01:
            raise RuntimeError(f"year p99: {value}, exact {low}..{high}")
        return
    expected = truth[aggregation]
    ok = (math.isclose(value, expected, rel_tol=1e-9)
          if aggregation in ("sum", "avg") else value == expected)
    if not ok:
        raise RuntimeError(f"year {aggregation}: {value}, the driver "
                           f"{expected}")


class PageLoad:
    """
    Pages of PAGE_SERIES series of one node sent to a daemon as fast as
    C{connections} connections go, the timestamp the wall clock's.
    """

    def __init__(self, port: int, connections: int = 4) -> None:
        self.port = port
        self.connections = connections
        items = []
        for j in range(PAGE_SERIES):
            items.append('{"metric_id":"page.metric_%03d","ts":%%(ts)d,'
                         '"value":%d.5,"tags":{"node":"%%(node)s",'
                         '"item":"%d"}}' % (j % 100, j % 997, j // 100))
        self.template = "[" + ",".join(items) + "]"

    def run(self, seconds: float) -> dict[str, Any]:
        from http.client import HTTPConnection

        stop = now() + seconds
        counts = [0] * self.connections
        errors: list[str] = []
        turn = [0]
        lock = threading.Lock()

        def lane(i: int) -> None:
            conn = HTTPConnection("127.0.0.1", self.port, timeout=300)
            while now() < stop and not errors:
                with lock:
                    node = f"page-{turn[0] % PAGE_NODES}.example:9100"
                    turn[0] += 1
                body = (self.template % {"ts": int(time.time()),
                                         "node": node}).encode()
                conn.request("POST", "/1.0/metrics", body,
                             {"Content-Type": "application/json"})
                response = conn.getresponse()
                data = response.read()
                if response.status != 200:
                    errors.append(f"{response.status} {data[:200]!r}")
                    return
                counts[i] += PAGE_SERIES
            conn.close()

        started = now()
        threads = [threading.Thread(target=lane, args=(i,))
                   for i in range(self.connections)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise RuntimeError(f"page load: {errors[0]}")
        return {"points": sum(counts), "seconds": now() - started}


class Rollups:
    """
    The rollup benchmark: its keyspaces, workers and daemons, its runs and
    its figures.
    """

    def __init__(self, args: argparse.Namespace, log: Any) -> None:
        self.args = args
        self.log = log
        self.node = nodeAddress()
        self.cassandra = cassandraPid(self.node[1])
        tag = uuid.uuid4().hex[:8]
        self.keyspace = args.keyspace or f"meetr_bench_rollups_{tag}"
        self.ingestOn = f"meetr_bench_ingest_on_{tag}"
        self.ingestOff = f"meetr_bench_ingest_off_{tag}"
        self.workdir = Path(tempfile.mkdtemp(prefix="meetrd-rollups-"))
        self.started: list[Any] = []
        self.driver: Worker | None = None

    def daemon(self, name: str, keyspace: str, rollups: bool) -> Any:
        from bench.common import daemonSettingsFor
        from tests.support import Daemon

        settings = daemonSettingsFor(keyspace, self.node)
        settings["limits"] = {"max_search_points": 1_000_000,
                              "max_search_series": 10_000,
                              "max_batch_points": 50_000}
        if rollups:
            settings["rollups"] = LEVELS
            settings["rollup"] = {"interval": "1s", "grace": "0s"}
        daemon = Daemon(self.workdir / name, settings)
        self.started.append(daemon)
        return daemon.start().waitReady(120)

    def run(self) -> dict[str, Any]:
        results: dict[str, Any] = {"keyspace": self.keyspace}
        ok = False
        try:
            self.driver = Worker(HERE, "driver-worker", self.node[0],
                                 str(self.node[1]), self.keyspace,
                                 name="driver worker")
            loader = Worker(HERE, "store-worker", self.node[0],
                            str(self.node[1]), self.keyspace,
                            name="store worker")
            self.started.append(loader)
            daemon = self.daemon("rollups", self.keyspace, True)
            self.ranges()
            if self.args.keyspace:
                # Loaded by an earlier run kept with --keep (the same day:
                # the ranges end at last midnight).
                results["load"] = {"kept": self.args.keyspace}
            else:
                results["load"] = self.load(loader, daemon)
            loader.close()
            if not self.args.no_year:
                results["year"] = self.year(daemon)
            if not self.args.no_fleet:
                results["fleet"] = self.fleet(daemon)
            daemon.stop()
            if not self.args.no_ingest:
                results["ingest"] = self.ingest()
            ok = True
        except Exception:
            traceback.print_exc()
            for party in self.started:
                if hasattr(party, "log"):
                    self.log(f"--- daemon log ({party.logPath}):\n"
                             f"{party.log()[-3000:]}")
            results["aborted"] = True
        finally:
            for party in reversed(self.started):
                try:
                    party.stop() if hasattr(party, "stop") else party.close()
                except Exception:
                    traceback.print_exc()
            if self.driver is not None:
                if not self.args.keep:
                    try:
                        self.driver.call(cmd="drop", keyspaces=[
                            self.keyspace, self.ingestOn, self.ingestOff])
                    except Exception:
                        traceback.print_exc()
                self.driver.close()
            if ok and not self.args.keep:
                shutil.rmtree(self.workdir, ignore_errors=True)
        return results

    # Loading and rolling up

    def ranges(self) -> None:
        """
        The year's and the fleet's ranges, ending at last midnight UTC.
        """
        self.yearFrom = dayStart(366)
        self.yearPoints = 365 * 86400 // YEAR_STEP_S
        self.yearTo = self.yearFrom + 365 * 86400 - 1
        self.fleetFrom = dayStart(self.args.days + 1)
        self.fleetTo = self.fleetFrom + self.args.days * 86400 - 1

    def load(self, loader: Worker, daemon: Any) -> dict[str, Any]:
        args = self.args
        out: dict[str, Any] = {}
        watch = CpuWatch({"cassandra": self.cassandra, "loader": loader.pid,
                          "daemon": daemon.process.pid})
        watch.start()
        if not args.no_year:
            self.log(f"rollups: loading a year of 10 s points "
                     f"({self.yearPoints:,})")
            out["year"] = loader.call(cmd="load-year", fromS=self.yearFrom,
                                      points=self.yearPoints)
            self.log(f"rollups: year written in {out['year']['seconds']:.0f} s")
        if not args.no_fleet:
            self.log(f"rollups: loading {args.nodes} nodes x {args.days} "
                     f"days, a point every {args.step} s")
            out["fleet"] = loader.call(
                cmd="load-fleet", fromS=self.fleetFrom, nodes=args.nodes,
                days=args.days, stepS=args.step)
            self.log(f"rollups: fleet written in "
                     f"{out['fleet']['seconds']:.0f} s")
        loaded = now()
        out["rollup"] = self.waitRolled(daemon)
        out["rollup"]["seconds"] = now() - loaded
        out["cpu"] = watch.stop()
        self.log(f"rollups: rolled up {out['rollup']['partitions']:,.0f} "
                 f"partitions, {out['rollup']['seconds']:.0f} s after the "
                 f"writes")
        return out

    def waitRolled(self, daemon: Any, timeout: float = 3600) -> dict[str, Any]:
        """
        Wait until the daemon has rolled up every marked partition (no
        marker left in Cassandra) and merged every closed pack.
        """
        assert self.driver is not None
        deadline = now() + timeout
        rolled = False
        merged, stable = None, 0
        while True:
            figures = rollupMetrics(daemon)
            still = figures.get("meetr_rollup_packs_merged_total") == merged
            stable = stable + 1 if rolled and still and figures.get(
                "meetr_rollup_pack_backlog", 1) == 0 else 0
            if stable >= 3:
                # The looks of the last 6 s, once the raw markers were
                # gone, merged no more pack: every closed pack is merged.
                return {"partitions": figures.get(
                    "meetr_rollup_partitions_total", 0),
                    "packs": merged,
                    "failures": figures.get(
                    "meetr_rollup_failures_total", 0)}
            merged = figures.get("meetr_rollup_packs_merged_total")
            if not rolled and figures.get("meetr_rollup_backlog", 1) == 0:
                rolled = self.driver.call(cmd="markers")["markers"] == 0
            if now() > deadline:
                raise RuntimeError(f"rollups not done: {figures}")
            time.sleep(2)

    # The year

    def year(self, daemon: Any) -> dict[str, Any]:
        assert self.driver is not None
        client = Client(daemon.port)
        queries = yearQueries(self.yearFrom, self.yearTo)
        self.log("rollups: the driver reads the year")
        driver = [self.driver.call(cmd="read-year", fromS=self.yearFrom,
                                   toS=self.yearTo)
                  for _ in range(self.args.driver_rounds)]
        truth = driver[0]["result"]
        if truth["count"] != self.yearPoints:
            raise RuntimeError(f"year: {truth['count']} points read, "
                               f"{self.yearPoints} written")
        times: dict[str, list[float]] = {label: [] for label, _ in queries}
        cpu: dict[str, list[float]] = {label: [] for label, _ in queries}
        used: dict[str, str] = {}
        for _, params in queries:  # warm-up
            client.get(params)
        for _ in range(self.args.rounds):
            for label, params in queries:
                watch = CpuWatch({"daemon": daemon.process.pid,
                                  "cassandra": self.cassandra})
                watch.start()
                seconds, answer = client.get(params)
                spent = watch.stop()
                times[label].append(seconds)
                cpu[label].append(spent.get("daemon", 0)
                                  + spent.get("cassandra", 0))
                used[label] = answer.get("resolution", "?")
                checkYear(label, {**answer, "aggregation":
                                  params["aggregation"]}, truth)
                if "interval" in label and len(answer["points"]) != 365:
                    raise RuntimeError(f"year {label}: "
                                       f"{len(answer['points'])} days")
        return {"driver": [d["seconds"] for d in driver],
                "http": times, "cpu": cpu, "resolution": used}

    # The fleet

    def fleet(self, daemon: Any) -> dict[str, Any]:
        args = self.args
        client = Client(daemon.port)
        params = {"metric": FLEET_METRIC, "from": self.fleetFrom,
                  "to": self.fleetTo, "group_by": "node", "interval": "1h",
                  "aggregation": "avg"}
        hours = args.days * 24
        perHour = 3600 // args.step
        times, cpu = [], []
        client.get(params)  # warm-up
        for _ in range(args.fleet_rounds):
            watch = CpuWatch({"daemon": daemon.process.pid,
                              "cassandra": self.cassandra})
            watch.start()
            seconds, answer = client.get(params)
            spent = watch.stop()
            times.append(seconds)
            cpu.append(spent.get("daemon", 0) + spent.get("cassandra", 0))
        groups = answer["groups"]
        if len(groups) != args.nodes:
            raise RuntimeError(f"fleet: {len(groups)} groups")
        for group in groups[:: max(1, args.nodes // 10)]:
            node = int(group["tags"]["node"].split("-")[1].split(".")[0])
            points = group["points"]
            if len(points) != hours:
                raise RuntimeError(f"fleet: {len(points)} hours, from "
                                   f"{points[0]} to {points[-1]}, asked "
                                   f"{self.fleetFrom}..{self.fleetTo}")
            for h in (0, hours // 2, hours - 1):
                j = h * perHour
                expected = math.fsum(fleetValue(node, j + k)
                                     for k in range(perHour)) / perHour
                if not math.isclose(points[h][1], expected, rel_tol=1e-9):
                    raise RuntimeError(f"fleet: node {node} hour {h}: "
                                       f"{points[h][1]}, not {expected}")
        return {"http": times, "cpu": cpu,
                "resolution": answer.get("resolution"),
                "points": sum(len(g["points"]) for g in groups)}

    # Ingest with rollups on and off

    def ingest(self) -> dict[str, Any]:
        args = self.args
        on = self.daemon("ingest-on", self.ingestOn, True)
        off = self.daemon("ingest-off", self.ingestOff, False)
        load = {"on": PageLoad(on.port), "off": PageLoad(off.port)}
        daemons = {"on": on, "off": off}
        for mode in ("on", "off"):  # warm-up: index rows, connections
            load[mode].run(5)
        self.waitRolled(on, 300)
        runs: dict[str, list[dict[str, Any]]] = {"on": [], "off": []}
        for r in range(args.ingest_rounds):
            for mode in (("on", "off") if r % 2 == 0 else ("off", "on")):
                daemon = daemons[mode]
                watch = CpuWatch({"daemon": daemon.process.pid,
                                  "cassandra": self.cassandra})
                samples: list[dict[str, float]] = []
                stopSampling = threading.Event()

                def sample(daemon: Any = daemon) -> None:
                    while not stopSampling.wait(1.0):
                        samples.append(rollupMetrics(daemon))

                sampler = threading.Thread(target=sample)
                watch.start()
                if mode == "on":
                    sampler.start()
                result = load[mode].run(args.ingest_seconds)
                if mode == "on":
                    # The run's last partitions close within 36 s: their
                    # rollups are part of its cost.
                    time.sleep(40)
                    self.waitRolled(on, 300)
                    stopSampling.set()
                    sampler.join()
                result["cpu"] = watch.stop()
                result["rate"] = result["points"] / result["seconds"]
                result["lag"] = max((s.get("meetr_rollup_lag_seconds", 0)
                                     for s in samples), default=0.0)
                result["backlog"] = max((s.get("meetr_rollup_backlog", 0)
                                         for s in samples), default=0.0)
                runs[mode].append(result)
                self.log(f"rollups: ingest {mode}: {result['rate']:,.0f} "
                         f"points/s, max lag {result['lag']:.1f} s")
        return runs


def parseArgs(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7,
                        help="rounds of the year's searches (7)")
    parser.add_argument("--driver-rounds", type=int, default=2,
                        help="reads of the whole year by the driver (2)")
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--step", type=int, default=1800,
                        help="seconds between a fleet node's points (1800)")
    parser.add_argument("--fleet-rounds", type=int, default=5)
    parser.add_argument("--ingest-rounds", type=int, default=2)
    parser.add_argument("--ingest-seconds", type=float, default=60)
    parser.add_argument("--no-year", action="store_true")
    parser.add_argument("--no-fleet", action="store_true")
    parser.add_argument("--no-ingest", action="store_true")
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--keep", action="store_true",
                        help="keep the keyspaces and the daemons' folders")
    parser.add_argument("--keyspace", metavar="NAME",
                        help="search a keyspace a run with --keep loaded "
                        "the same day, without loading (implies --keep)")
    args = parser.parse_args(argv)
    if args.keyspace:
        args.keep = True
    return args


def report(results: dict[str, Any]) -> str:
    """
    The figures as a table.
    """
    lines = ["## Rollups", ""]
    load = results.get("load", {})
    for kind in ("year", "fleet"):
        if kind in load:
            figures = load[kind]
            lines.append(f"- {kind} written: {figures['written']:,} points in "
                         f"{figures['seconds']:.0f} s "
                         f"({figures['written'] / figures['seconds']:,.0f}/s)")
    if "rollup" in load:
        rolled = load["rollup"]
        lines.append(f"- rolled up: {rolled['partitions']:,.0f} raw "
                     f"partitions, done {rolled['seconds']:.0f} s after the "
                     f"last write ({rolled['failures']:.0f} failures)")
    year = results.get("year")
    if year:
        driver = median(year["driver"])
        lines += ["", f"One series, a year of 10 s points; driver read-all "
                  f"{driver * 1000:,.0f} ms (median of {len(year['driver'])})",
                  "", "| search | level read | http median ms | daemon+cassandra "
                  "CPU ms | driver / http |", "|---|---|---:|---:|---:|"]
        for label, times in year["http"].items():
            m = median(times)
            lines.append(f"| {label} | {year['resolution'][label]} | "
                         f"{m * 1000:.1f} | {median(year['cpu'][label]) * 1000:.1f}"
                         f" | {driver / m:,.0f}x |")
    fleet = results.get("fleet")
    if fleet:
        lines += ["", f"Fleet, group_by=node interval=1h avg: "
                  f"{median(fleet['http']) * 1000:,.0f} ms median "
                  f"(CPU {median(fleet['cpu']) * 1000:,.0f} ms), "
                  f"{fleet['points']:,} points, level {fleet['resolution']}"]
    ingest = results.get("ingest")
    if ingest:
        def perPoints(runs: list[dict[str, Any]], who: str) -> float:
            return median(r["cpu"].get(who, float("nan")) / r["points"] * 1000
                          for r in runs) * 1000

        on, off = ingest["on"], ingest["off"]
        rateOn = median(r["rate"] for r in on)
        rateOff = median(r["rate"] for r in off)
        lines += ["", "| ingest | points/s | daemon CPU ms/1k | cassandra CPU "
                  "ms/1k | max lag s | max backlog |",
                  "|---|---:|---:|---:|---:|---:|",
                  f"| rollups on | {rateOn:,.0f} | "
                  f"{perPoints(on, 'daemon'):.1f} | "
                  f"{perPoints(on, 'cassandra'):.1f} | "
                  f"{max(r['lag'] for r in on):.1f} | "
                  f"{max(r['backlog'] for r in on):.0f} |",
                  f"| rollups off | {rateOff:,.0f} | "
                  f"{perPoints(off, 'daemon'):.1f} | "
                  f"{perPoints(off, 'cassandra'):.1f} | | |",
                  "", f"on / off rate: {rateOn / rateOff:.2f}"]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """
    Run the benchmark and print its tables (and write the JSON).
    """
    return runAndReport(Rollups, parseArgs(argv), report)


if __name__ == "__main__":
    role = sys.argv[1] if len(sys.argv) > 1 else ""
    if role == "store-worker":
        storeWorker(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif role == "driver-worker":
        driverWorker(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        sys.exit(main(sys.argv[1:]))
