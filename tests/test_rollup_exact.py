"""
Rollups answer exactly what the raw points answer, against the real
Cassandra node: random points, random late writes and rewrites (some
rolled up again, some still waiting), random ranges, intervals,
aggregations and groups; the answer from a store with rollup levels is
compared with the one from a store without, on the same keyspace.
"""

from __future__ import annotations

import itertools
import math
import time

import pytest
import pytest_twisted
from hypothesis import HealthCheck, example, given, settings as hypothesisSettings
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.threads import blockingCallFromThread, deferToThread

from meetrd.points import Point, freezeTags
from meetrd.rollupservice import MARKER_SETTLE, RollupService
from meetrd.search import Query, runSearch
from meetrd.settings import Shard, settingsFromMapping
from meetrd.store import MetricStore
from tests.support import uniqueKeyspace

pytestmark = pytest.mark.cassandra

MINUTE = 60_000
HOUR = 60 * MINUTE
# Six hours that ended at least two hours ago: every bucket has closed.
WINDOW = 6 * HOUR
START = (int(time.time() * 1000) // HOUR - 9) * HOUR
AGGREGATIONS = ("sum", "avg", "min", "max", "count", "first", "last", "p50",
                "p99", "p0.5", "stddev")
SERIES = [freezeTags({"node": "exact:1", "cpu": "0"}),
          freezeTags({"node": "exact:1", "cpu": "1"}),
          freezeTags({"node": "exact:2", "cpu": "0"}),
          freezeTags({"dc": "eu"})]
_names = itertools.count()


class Stores:
    """
    Two stores on one keyspace, one with rollup levels (and its rollup
    service on a Clock) and one without.
    """

    def __init__(self, node, keyspace,
                 levels=("1m", "5m", "1h")):
        def settingsWith(rollups):
            return settingsFromMapping({
                "cassandra": {"contact_points": [node[0]], "port": node[1],
                              "keyspace": keyspace,
                              "consistency": {"read": "ONE", "write": "ONE"},
                              "request_timeout": "30s"},
                "rollups": rollups, "rollup": {"grace": "0s"}}, "test")

        levels = settingsWith([{"resolution": level} for level in levels])
        self.limits = levels.limits
        self.rolled = MetricStore(levels.cassandra, 0, reactor,
                                  rollups=levels.rollups)
        self.raw = MetricStore(settingsWith([]).cassandra, 0, reactor)
        self.clock = Clock()
        self.clock.advance(time.time())
        self.service = RollupService(self.rolled, levels.rollup, Shard(),
                                     self.clock)

    async def tick(self):
        """
        Two looks of the rollup service, its clock moved each time to the
        wall clock's time past the markers' settling time: every marker
        written so far is due at the first, and the packs the first one's
        rollups marked are merged at the second.
        """
        for _ in range(2):
            self.clock.advance(max(0.0, time.time() + MARKER_SETTLE + 1
                                   - self.clock.seconds()))
            await self.service.tick()

    async def connect(self):
        await self.rolled.connect()
        await self.raw.connect()
        # Rollups (and packs) answer from the time each level was first
        # configured; these tests write points in the past on purpose.
        self.rolled.rollupSince = {level: 0 for level in self.rolled.rollupSince}
        self.rolled.packsSince = {level: 0 for level in self.rolled.packsSince}

    async def close(self):
        await self.rolled.close()
        await self.raw.close()


values = st.one_of(st.integers(-1000, 1000).map(float),
                   st.floats(-1e6, 1e6, allow_nan=False, width=64))
points = st.lists(st.tuples(st.integers(0, len(SERIES) - 1),
                            st.integers(0, WINDOW - 1), values),
                  min_size=1, max_size=60)
ranges = st.tuples(st.integers(-HOUR, WINDOW), st.integers(0, WINDOW + HOUR))
intervals = st.sampled_from([None, MINUTE, 5 * MINUTE, 10 * MINUTE, HOUR,
                             2 * HOUR, 90_000])


def close(a, b):
    if a is None or b is None:
        return a == b
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def sameAnswer(rolled, raw):
    assert rolled.keys() == raw.keys()
    assert close(rolled["value"], raw["value"]), (rolled, raw)
    for key in ("points",):
        if key in raw:
            assert [p[0] for p in rolled[key]] == [p[0] for p in raw[key]]
            assert all(close(a[1], b[1]) for a, b in zip(rolled[key], raw[key]))
    if "groups" in raw:
        assert [g["tags"] for g in rolled["groups"]] == \
            [g["tags"] for g in raw["groups"]]
        for a, b in zip(rolled["groups"], raw["groups"]):
            assert close(a["value"], b["value"]), (a, b)
            if "points" in b:
                assert [p[0] for p in a["points"]] == [p[0] for p in b["points"]]
                assert all(close(x[1], y[1])
                           for x, y in zip(a["points"], b["points"]))


async def compareSearches(stores, metric, start, searched):
    """
    Run each C{((a, b), interval, aggregation, groupBy)} search (its range
    from C{start + min(a, b)} to C{start + max(a, b)}) on both stores and
    check that the answers are the same; return the resolutions the
    store with rollups read.
    """
    readFrom = []
    for (a, b), interval, aggregation, groupBy in searched:
        fromMs, toMs = start + min(a, b), start + max(a, b)
        query = Query(metric, "a", "b", fromMs, toMs, aggregation,
                      groupBy=groupBy, intervalMs=interval)
        rolled = await runSearch(stores.rolled, query, stores.limits)
        raw = await runSearch(stores.raw, query, stores.limits)
        assert raw["resolution"] == "raw"
        rolled["resolution"], resolution = "raw", rolled["resolution"]
        sameAnswer(rolled, raw)
        readFrom.append(resolution)
    return readFrom


@hypothesisSettings(max_examples=30, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
# Every level read at least once, whatever hypothesis draws: a whole
# window by the hour level, 5 minute intervals, minute intervals.
@example(first=[(0, 30 * MINUTE, 1.0), (1, 3 * HOUR + 7, 2.5)],
         late=[(2, 4 * HOUR, -3.0), (0, 30 * MINUTE, 4.0)],
         rewriteAfterRollup=True,
         searched=[((0, WINDOW - 1), None, "sum", None),
                   ((0, 2 * HOUR + 5 * MINUTE - 1), 5 * MINUTE, "avg",
                    "node"),
                   ((0, 11 * MINUTE - 1), MINUTE, "max", None)])
@given(first=points, late=points, rewriteAfterRollup=st.booleans(),
       searched=st.lists(
           st.tuples(ranges, intervals, st.sampled_from(AGGREGATIONS),
                     st.sampled_from([None, "node", "cpu"])),
           min_size=1, max_size=6))
def rollupsEqualRaw(stores, first, late, rewriteAfterRollup, searched):
    """
    One example, run in a thread: the Twisted work is handed to the
    reactor and waited for.
    """
    metric = f"exact.{next(_names)}"

    def write(batch):
        return stores.rolled.writePoints([
            Point(metric, SERIES[s], START + ts, value)
            for s, ts, value in batch])

    async def scenario():
        await write(first)
        await stores.tick()
        await write(late)
        if rewriteAfterRollup:
            await stores.tick()
        return await compareSearches(stores, metric, START, searched)

    stores.resolutions.extend(blockingCallFromThread(
        reactor, lambda: Deferred.fromCoroutine(scenario())))


@pytest_twisted.ensureDeferred
async def test_rollupsEqualRaw(node, cql):
    """
    For random points, late points and rewrites (rolled up again or still
    waiting), and random searches, the answer read from rollups equals the
    raw answer: count, min, max, first and last exactly, sum, avg and
    stddev to a relative 1e-9.  Rollups were really read, at every level: the
    comparisons were not all raw against raw.
    """
    keyspace = uniqueKeyspace("exact")
    stores = Stores(node, keyspace)
    stores.resolutions = []
    await stores.connect()
    try:
        await deferToThread(rollupsEqualRaw, stores)
    finally:
        await stores.close()
        cql.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")
    assert {"1m", "5m", "1h"} <= set(stores.resolutions), stores.resolutions
    # Partitions were rolled up: not every answer came from raw points
    # read for partitions still waiting.
    assert stores.service.rolled > 0


@pytest_twisted.ensureDeferred
async def test_manySourcesAnswerFromFewRequests(node, cql):
    """
    120 nodes, each its own source, grouped by node by the hour over two
    whole hours and half of a third: the hour level's rows and the edge's
    (from the minute level) are read for many sources a request (a handful of requests, where one a
    source and part made it more than 240), and every aggregation equals
    the raw answer, group by group and hour by hour.
    """
    keyspace = uniqueKeyspace("fleet")
    stores = Stores(node, keyspace)
    await stores.connect()
    nodes = 120
    try:
        await stores.rolled.writePoints([
            Point("fleet", freezeTags({"node": f"fleet:{n}"}),
                  START + j * 5 * MINUTE + n, float((n * 31 + j * 7) % 97) - 40.5)
            for n in range(nodes) for j in range(36)])
        clock = Clock()
        clock.advance(time.time() + 60)
        service = RollupService(stores.rolled, stores.service._settings,
                                Shard(), clock)
        while True:
            before = service.rolled
            await service.tick()
            if service.rolled == before:
                break
        assert service.rolled >= nodes * 3
        for aggregation in ("avg", "sum", "count", "min", "max", "first",
                            "last"):
            query = Query("fleet", "a", "b", START, START + 150 * MINUTE - 1,
                          aggregation, groupBy="node", intervalMs=HOUR)
            sent = stores.rolled.requests
            rolled = await runSearch(stores.rolled, query, stores.limits)
            requests = stores.rolled.requests - sent
            raw = await runSearch(stores.raw, query, stores.limits)
            assert rolled["resolution"] == "1h"
            assert len(rolled["groups"]) == nodes
            assert all(len(g["points"]) == 3 for g in rolled["groups"])
            rolled["resolution"] = "raw"
            sameAnswer(rolled, raw)
            if aggregation != "last":
                # The index, two of markers, three of the hour level's rows
                # and three of the edge's minute rows (read newest first,
                # "last" reads one source a request).
                assert requests <= 12, (aggregation, requests)
    finally:
        await stores.close()
        cql.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")
