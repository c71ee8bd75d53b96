"""
Search: one day of 1-second points (86,400) of one series, aggregated.

  - C{driver + python}: what a user writes without meetrd: cassandra-driver
    (default connection class, default fetch size, so paging) reads every
    row of the day and Python sums them (by hour with C{interval});
  - C{store}: L{meetrd.search.runSearch} on a L{MetricStore} in a Twisted
    process, no HTTP;
  - C{http}: C{GET /1.0/metrics?...&aggregation=...} of the real daemon,
    from the orchestrator over a keep-alive connection;
  - C{floor}: the driver running, once, the very aggregate CQL the store
    sends for the day's partition: what Cassandra alone takes, which
    bounds meetrd from below.

The series has no node tag, so its day is one partition of meetrd's
layout.  Runs take turns (the order rotating every round); each figure is
the median over the rounds, in the process that sent the query.
"""

from __future__ import annotations

import json
import math
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import now  # noqa: E402

METRIC = "search.day"
TAGS = {"dc": "par1", "sensor": "day"}
DAY_POINTS = 86400
QUERIES = (("sum", None), ("avg", None), ("sum", "1h"), ("avg", "1h"))
PARTIES = ("naive", "store", "http")
_EPOCH = datetime(1970, 1, 1)


def dayValue(i: int) -> float:
    return ((i * 104729) % 100000) / 100.0


def intervalMs(interval: str | None) -> int | None:
    if interval is None:
        return None
    from meetrd.durations import parseDuration

    return round(parseDuration(interval) * 1000)


def _final(aggregation: str, total: float, count: int) -> float | None:
    if not count:
        return None
    return total if aggregation == "sum" else total / count


# In the naive worker: the plain driver session

def naiveHandlers(session: Any, keyspace: str) -> dict[str, Any]:
    from meetrd.layout import bucketsBetween, placeSeries
    from meetrd.points import freezeTags

    placement = placeSeries(METRIC, freezeTags(TAGS))
    where = ("WHERE source = ? AND bucket = ? AND series_id = ? "
             "AND ts >= ? AND ts <= ?")
    values = session.prepare(
        f"SELECT value FROM {keyspace}.points {where}")
    timedValues = session.prepare(
        f"SELECT ts, value FROM {keyspace}.points {where}")
    aggregates = "count(value), sum(value), min(value), max(value)"
    floorPlain = session.prepare(
        f"SELECT series_id, toUnixTimestamp(ts), value, {aggregates} "
        f"FROM {keyspace}.points WHERE source = ? AND bucket = ? "
        f"AND series_id IN ? AND ts >= ? AND ts <= ? GROUP BY series_id")
    floorInterval = session.prepare(
        f"SELECT series_id, toUnixTimestamp(floor(ts, ?)), "
        f"toUnixTimestamp(ts), value, {aggregates} "
        f"FROM {keyspace}.points WHERE source = ? AND bucket = ? "
        f"AND series_id IN ? AND ts >= ? AND ts <= ? "
        f"GROUP BY series_id, floor(ts, ?)")

    def naiveSearch(aggregation: str, interval: str | None, fromS: int,
                    toS: int) -> dict[str, Any]:
        fromMs, toMs = fromS * 1000, toS * 1000
        width = intervalMs(interval)
        start = now()
        total, count = 0.0, 0
        hours: dict[int, list[float]] = {}
        rows = 0
        for bucket in bucketsBetween(fromMs, toMs, placement.bucketMs):
            params = (placement.source, bucket, placement.seriesId, fromMs,
                      toMs)
            if width is None:
                for row in session.execute(values, params):
                    total += row.value
                    count += 1
            else:
                for row in session.execute(timedValues, params):
                    ms = (row.ts - _EPOCH) // _MILLISECOND
                    key = ms - ms % width
                    acc = hours.get(key)
                    if acc is None:
                        acc = hours[key] = [0.0, 0]
                    acc[0] += row.value
                    acc[1] += 1
                    rows += 1
        if width is None:
            result: Any = _final(aggregation, total, count)
        else:
            result = [_final(aggregation, *hours[k]) for k in sorted(hours)]
            count = rows
        end = now()
        return {"seconds": end - start, "result": result, "rows": count}

    def floorSearch(aggregation: str, interval: str | None, fromS: int,
                    toS: int) -> dict[str, Any]:
        from cassandra.util import Duration

        fromMs, toMs = fromS * 1000, toS * 1000
        width = intervalMs(interval)
        start = now()
        rows = []
        for bucket in bucketsBetween(fromMs, toMs, placement.bucketMs):
            if width is None:
                rows += list(session.execute(floorPlain, (
                    placement.source, bucket, [placement.seriesId], fromMs,
                    toMs)))
            else:
                d = Duration(0, 0, width * 1_000_000)
                rows += list(session.execute(floorInterval, (
                    d, placement.source, bucket, [placement.seriesId],
                    fromMs, toMs, d)))
        end = now()
        return {"seconds": end - start, "rows": len(rows)}

    def countDay(fromS: int, toS: int) -> dict[str, Any]:
        found = naiveSearch("sum", None, fromS, toS)
        return {"rows": found["rows"]}

    return {"naive-search": naiveSearch, "floor-search": floorSearch,
            "count-day": countDay}


_MILLISECOND = __import__("datetime").timedelta(milliseconds=1)


# In the store worker: MetricStore and runSearch

def storeHandlers(store: Any, settings: Any) -> dict[str, Any]:
    from twisted.internet import defer

    from meetrd.points import Point, freezeTags
    from meetrd.search import Query, runSearch

    async def loadDay(fromS: int) -> dict[str, Any]:
        tags = freezeTags(TAGS)
        points = [Point(METRIC, tags, (fromS + i) * 1000, dayValue(i))
                  for i in range(DAY_POINTS)]
        chunks = [points[i:i + 1000] for i in range(0, len(points), 1000)]
        chunks.reverse()
        written = 0

        async def lane() -> None:
            nonlocal written
            while chunks:
                n = await store.writePoints(chunks.pop())
                written += n

        await defer.gatherResults([defer.ensureDeferred(lane())
                                   for _ in range(4)], consumeErrors=True)
        return {"written": written}

    async def search(aggregation: str, interval: str | None, fromS: int,
                     toS: int) -> dict[str, Any]:
        query = Query(METRIC, str(fromS), str(toS), fromS * 1000, toS * 1000,
                      aggregation, intervalMs=intervalMs(interval))
        start = now()
        body = await runSearch(store, query, settings.limits)
        end = now()
        return {"seconds": end - start, "result": _resultOf(body, interval)}

    return {"load-day": loadDay, "search": search}


def _resultOf(body: dict[str, Any], interval: str | None) -> Any:
    if interval is None:
        return body["value"]
    return [value for _, value in body["points"]]


# The orchestrator's part

class SearchBench:
    """
    The search measurements against the day loaded by L{load}.
    """

    def __init__(self, naive: Any, store: Any, daemon: Any,
                 fromS: int, cassandraPid: int | None = None) -> None:
        from http.client import HTTPConnection

        self.cassandraPid = cassandraPid
        self.naive = naive
        self.store = store
        self.daemon = daemon
        self.fromS = fromS
        self.toS = fromS + DAY_POINTS - 1
        self.conn = HTTPConnection("127.0.0.1", daemon.port, timeout=120)

    def load(self) -> None:
        written = self.store.call(cmd="load-day", fromS=self.fromS)["written"]
        rows = self.naive.call(cmd="count-day", fromS=self.fromS,
                               toS=self.toS)["rows"]
        if written != DAY_POINTS or rows != DAY_POINTS:
            raise RuntimeError(f"search day: {written} written, {rows} read")

    def http(self, aggregation: str, interval: str | None) -> dict[str, Any]:
        from urllib.parse import urlencode

        params = {"metric": METRIC, "from": self.fromS, "to": self.toS,
                  "aggregation": aggregation}
        if interval:
            params["interval"] = interval
        path = "/1.0/metrics?" + urlencode(params)
        start = now()
        try:
            self.conn.request("GET", path)
            response = self.conn.getresponse()
        except ConnectionError:  # closed while idle: again, on a new one
            self.conn.close()
            start = now()
            self.conn.request("GET", path)
            response = self.conn.getresponse()
        data = response.read()
        end = now()
        if response.status != 200:
            raise RuntimeError(f"GET {path}: {response.status} {data[:300]!r}")
        return {"seconds": end - start,
                "result": _resultOf(json.loads(data), interval)}

    def one(self, party: str, aggregation: str, interval: str | None
            ) -> dict[str, Any]:
        """
        One search by C{party}, with the CPU seconds its process and
        Cassandra spent meanwhile.
        """
        from bench.common import CpuWatch

        args = {"aggregation": aggregation, "interval": interval,
                "fromS": self.fromS, "toS": self.toS}
        process = {"naive": self.naive.pid, "floor": self.naive.pid,
                   "store": self.store.pid,
                   "http": self.daemon.process.pid}[party]
        watch = CpuWatch({"cassandra": self.cassandraPid, "party": process})
        watch.start()
        if party == "naive":
            answer = self.naive.call(cmd="naive-search", **args)
        elif party == "store":
            answer = self.store.call(cmd="search", **args)
        elif party == "floor":
            answer = self.naive.call(cmd="floor-search", **args)
        else:
            answer = self.http(aggregation, interval)
        answer["cpu"] = watch.stop()
        return answer

    def measure(self, rounds: int) -> dict[str, dict[str, Any]]:
        """
        Seconds of every party for every query, C{rounds} each, taking
        turns, and the CPU seconds of Cassandra and of the party's process
        (keys C{PARTY cassandra}, C{PARTY process}); results are checked
        to agree.
        """
        times: dict[str, dict[str, list[float]]] = {}
        parties = (*PARTIES, "floor")
        for aggregation, interval in QUERIES:
            for party in parties:  # warm-up: prepared paths, caches
                self.one(party, aggregation, interval)
        for r in range(rounds):
            order = parties[r % len(parties):] + parties[:r % len(parties)]
            for aggregation, interval in QUERIES:
                label = aggregation + (f" interval={interval}"
                                       if interval else "")
                results = {}
                for party in order:
                    answer = self.one(party, aggregation, interval)
                    mine = times.setdefault(label, {})
                    mine.setdefault(party, []).append(answer["seconds"])
                    for key, name in (("cassandra", "cassandra"),
                                      ("party", "process")):
                        mine.setdefault(f"{party} {name}", []).append(
                            answer["cpu"].get(key, float("nan")))
                    if "result" in answer:
                        results[party] = answer["result"]
                _agree(label, results)
        return times


def _agree(label: str, results: dict[str, Any]) -> None:
    reference = results["naive"]
    for party, result in results.items():
        a = reference if isinstance(reference, list) else [reference]
        b = result if isinstance(result, list) else [result]
        if len(a) != len(b) or not all(
                math.isclose(x, y, rel_tol=1e-9) for x, y in zip(a, b)):
            raise RuntimeError(f"search {label}: {party} answered "
                               f"{str(result)[:200]}, the driver loop "
                               f"{str(reference)[:200]}")
