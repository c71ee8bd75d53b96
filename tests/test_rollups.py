"""
Rollups against the real Cassandra node: markers written with the points
survive a restart, late points and rewrites roll a bucket up again, a
marker written during a rollup is kept, rollups outlive raw points, and
two instances roll each partition once.
"""

from __future__ import annotations

import math
import statistics
import time

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock, deferLater

from meetrd.points import Point, freezeTags
from meetrd.rollupservice import MARKER_SETTLE, RollupService
from meetrd.schema import TABLES, dirtyShard
from meetrd.search import Query, runSearch
from meetrd.settings import Shard, settingsFromMapping
from meetrd.store import MetricStore
from tests.support import uniqueKeyspace

pytestmark = pytest.mark.cassandra

HOUR = 3_600_000
LEVELS = [{"resolution": "1m", "retention": 0}, {"resolution": "1h"}]


def settingsFor(node, keyspace, **rollup):
    return settingsFromMapping({
        "cassandra": {"contact_points": [node[0]], "port": node[1],
                      "keyspace": keyspace,
                      "consistency": {"read": "ONE", "write": "ONE"},
                      "request_timeout": "30s"},
        "rollups": LEVELS, "rollup": {"grace": "0s", **rollup}}, "test")


async def openStore(node, keyspace, retention=0):
    settings = settingsFor(node, keyspace)
    store = MetricStore(settings.cassandra, retention, reactor,
                        rollups=settings.rollups)
    await store.connect()
    return store


def serviceFor(store, node, keyspace, index=0, count=1, withClock=False):
    """
    A rollup service on a Clock set half a minute past the time a marker
    is left to settle: ticks run when the test says, and see the markers
    the test writes as due.
    """
    clock = Clock()
    clock.advance(time.time() + MARKER_SETTLE + 30)
    settings = settingsFor(node, keyspace)
    rollup = RollupService(store, settings.rollup,
                           Shard(index=index, count=count), clock)
    return (rollup, clock) if withClock else rollup


def rollupRows(cql, keyspace, source, resolution=60_000):
    return list(cql.execute(
        f"SELECT series_id, ts, raw_bucket, count, sum, min, max, first_value, "
        f"last_value FROM {keyspace}.rollups WHERE resolution = %s AND "
        f"source = %s ALLOW FILTERING", (resolution, source)))


def markers(cql, keyspace, source):
    return list(cql.execute(
        f"SELECT bucket FROM {keyspace}.rollup_dirty WHERE shard = %s AND "
        f"source = %s", (dirtyShard(source), source)))


@pytest_twisted.async_yield_fixture()
async def keyspace(cql):
    """
    A keyspace of the test's own.
    """
    name = uniqueKeyspace("rollup")
    yield name
    cql.execute(f"DROP KEYSPACE IF EXISTS {name}")


@pytest_twisted.ensureDeferred
async def test_restartMidBucketLosesNoRollupWork(node, cql, keyspace):
    """
    Points written into the open bucket before and after a restart of the
    writer are all in the rollup made once the bucket has closed: the
    marker lives in Cassandra, not in the process.
    """
    tags = freezeTags({"node": "restart:1"})
    if HOUR - time.time() * 1000 % HOUR < 60_000:
        # Not across the end of an hour, even on the service's clock: the
        # bucket must stay open.
        await deferLater(reactor, 60, lambda: None)
    now = int(time.time() * 1000)
    bucket = now // HOUR
    store = await openStore(node, keyspace)
    await store.writePoints([Point("r", tags, bucket * HOUR + 1000, 1.0)])
    await store.close()
    assert [m.bucket for m in markers(cql, keyspace, "n:restart:1")] == \
        [bucket]
    store = await openStore(node, keyspace)
    try:
        await store.writePoints([Point("r", tags, bucket * HOUR + 2000, 2.0)])
        rollup, clock = serviceFor(store, node, keyspace, withClock=True)
        await rollup.tick()
        assert rollup.rolled == 0  # the bucket is still open
        clock.advance((bucket + 1) * HOUR / 1000 - time.time() + 1)
        await rollup.tick()
        assert rollup.rolled == 1
        rows = rollupRows(cql, keyspace, "n:restart:1", HOUR)
        assert [(r.count, r.sum) for r in rows] == [(2, 3.0)]
        assert markers(cql, keyspace, "n:restart:1") == []
    finally:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_latePointAndRewriteRollAgain(node, cql, keyspace):
    """
    A late point into a bucket rolled up an hour ago, and a rewrite of a
    point, mark the bucket again, and the next rollup includes them.
    """
    tags = freezeTags({"node": "late:1"})
    old = (int(time.time() * 1000) // HOUR - 2) * HOUR
    store = await openStore(node, keyspace)
    try:
        rollup = serviceFor(store, node, keyspace)
        await store.writePoints([Point("late", tags, old + i * 10_000, 1.0)
                                 for i in range(6)])
        await rollup.tick()
        rows = rollupRows(cql, keyspace, "n:late:1")
        assert [(r.count, r.sum) for r in rows] == [(6, 6.0)]
        await store.writePoints([Point("late", tags, old + 65_000, 5.0)])
        await rollup.tick()
        rows = rollupRows(cql, keyspace, "n:late:1")
        assert sorted((r.ts.timestamp() * 1000 - old, r.count, r.sum)
                      for r in rows) == [(0, 6, 6.0), (60_000, 1, 5.0)]
        await store.writePoints([Point("late", tags, old + 10_000, 100.0)])
        await rollup.tick()
        minute = [r for r in rollupRows(cql, keyspace, "n:late:1")
                  if r.ts.timestamp() * 1000 == old][0]
        assert (minute.count, minute.sum, minute.max) == (6, 105.0, 100.0)
        assert rollup.rolled == 3
    finally:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_rollupBetweenMarkerAndPointsIsDoneAgain(node, cql, keyspace):
    """
    A rollup that runs after a write's marker is in but before its points
    are (the partition's bucket has ended, so it is due at once) and
    clears that marker does not lose the points: the write marks the
    partition again once its points are in, and the next rollup has them.
    """
    tags = freezeTags({"node": "between:1"})
    old = (int(time.time() * 1000) // HOUR - 2) * HOUR
    store = await openStore(node, keyspace)
    rollup = serviceFor(store, node, keyspace)
    writePlan = store._writePlan

    async def rollFirst(*args):
        # What the rollup service may do between the marker and the
        # points: roll the partition (empty so far) and clear its marker.
        await rollup.tick()
        return await writePlan(*args)

    try:
        store._writePlan = lambda *args: Deferred.fromCoroutine(
            rollFirst(*args))
        await store.writePoints([Point("between", tags, old + i * 1000, 1.0)
                                 for i in range(10)])
        store._writePlan = writePlan
        assert rollup.rolled == 1
        assert [m.bucket for m in markers(cql, keyspace, "n:between:1")] == \
            [old // HOUR]
        await rollup.tick()
        rows = rollupRows(cql, keyspace, "n:between:1", HOUR)
        assert [(r.count, r.sum) for r in rows] == [(10, 10.0)]
        assert markers(cql, keyspace, "n:between:1") == []
    finally:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_markerWrittenDuringRollupIsKept(node, cql, keyspace):
    """
    Clearing a marker at the write time it was read with keeps a marker
    written after that read, so that the point behind it is rolled up.
    """
    tags = freezeTags({"node": "race:1"})
    old = (int(time.time() * 1000) // HOUR - 2) * HOUR
    store = await openStore(node, keyspace)
    try:
        await store.writePoints([Point("race", tags, old, 1.0)])
        shard = dirtyShard("n:race:1")
        [(source, bucket, width, markedAt)] = [
            m for m in await store.dirtyPartitions(shard)
            if m[0] == "n:race:1"]
        await deferLater(reactor, 0.01, lambda: None)
        await store.writePoints([Point("race", tags, old + 1, 1.0)])
        await store.clearDirty(shard, [(source, bucket, markedAt)])
        assert [m.bucket for m in markers(cql, keyspace, "n:race:1")] == \
            [bucket]
        [(_, _, _, later)] = [m for m in await store.dirtyPartitions(shard)
                              if m[0] == "n:race:1"]
        await store.clearDirty(shard, [(source, bucket, later)])
        assert markers(cql, keyspace, "n:race:1") == []
    finally:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_rollupsOutliveRawPoints(node, cql, keyspace):
    """
    With a raw retention of 6 s and rollups kept forever, the rollup rows
    are still there once the raw points have expired, and searches answer
    from them alone: a range of a whole hour and one more minute is
    answered by the hour's row and, for the minute, by the finer level.
    """
    tags = freezeTags({"node": "expire:1"})
    old = (int(time.time() * 1000) // HOUR - 3) * HOUR
    store = await openStore(node, keyspace, retention=6)
    try:
        await store.writePoints([Point("expire", tags, old + i * 1000, 2.0)
                                 for i in range(30)] +
                                [Point("expire", tags, old + HOUR + i * 1000,
                                       3.0) for i in range(30)])
        await serviceFor(store, node, keyspace).tick()
        await deferLater(reactor, 7, lambda: None)
        raw = cql.execute(f"SELECT count(*) FROM {keyspace}.points WHERE "
                          f"source = %s AND bucket = %s",
                          ("n:expire:1", old // HOUR)).one()[0]
        assert raw == 0
        rows = rollupRows(cql, keyspace, "n:expire:1")
        assert sorted((r.count, r.sum) for r in rows) == [(30, 60.0),
                                                          (30, 90.0)]
        # The levels keep their rows forever: so do the index rows that
        # lead a search to them (raw retention alone would give them 6 s
        # and a day).
        ttls = {row[0] for row in cql.execute(
            f"SELECT ttl(bucket_ms) FROM {keyspace}.series_index "
            f"WHERE metric = 'expire' ALLOW FILTERING")}
        assert ttls == {None}
        # The keyspace held no point when the levels were configured:
        # they answer for any time, these old points included.
        assert set(store.rollupSince.values()) == {0}
        settings = settingsFor(node, keyspace)
        for query, resolution in (
                (Query("expire", "a", "b", old, old + HOUR - 1, "sum"), "1h"),
                (Query("expire", "a", "b", old, old + 59_999, "count",
                       intervalMs=60_000), "1m"),
                (Query("expire", "a", "b", old, old + HOUR + 59_999, "sum"),
                 "1h")):
            found = await runSearch(store, query, settings.limits)
            assert found["resolution"] == resolution
            assert found["value"] == {old + HOUR - 1: 60.0,
                                      old + 59_999: 30,
                                      old + HOUR + 59_999: 150.0}[query.toMs]
    finally:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_stddevFromRollupsEqualsTheValuesOwn(node, cql, keyspace):
    """
    Two series of 10 s points around 1e9 over two closed hours and a
    half, rolled up: the standard deviation of the whole range (hour rows,
    minute rows and raw points at its edges), of each series and of each
    hour equals the population standard deviation of the values written,
    computed here from the values themselves.
    """
    start = (int(time.time() * 1000) // HOUR - 4) * HOUR
    written = {}
    points = []
    for cpu in ("0", "1"):
        tags = freezeTags({"node": "spread:1", "cpu": cpu})
        for i in range(900):
            value = 1e9 + ((i * 7919 + int(cpu) * 31) % 1000) / 8
            points.append(Point("spread", tags, start + i * 10_000, value))
            written.setdefault(cpu, []).append((start + i * 10_000, value))
    store = await openStore(node, keyspace)
    try:
        await store.writePoints(points)
        await serviceFor(store, node, keyspace).tick()
        limits = settingsFor(node, keyspace).limits
        fromMs, toMs = start + 95_000, start + 8_995_000

        def expected(cpus, lo=fromMs, hi=toMs):
            return statistics.pstdev(
                [v for cpu in cpus for ts, v in written[cpu] if lo <= ts <= hi])

        whole = await runSearch(store, Query(
            "spread", "a", "b", fromMs, toMs, "stddev"), limits)
        assert whole["resolution"] == "1h"
        assert math.isclose(whole["value"], expected("01"), rel_tol=1e-9)
        grouped = await runSearch(store, Query(
            "spread", "a", "b", fromMs, toMs, "stddev", groupBy="cpu",
            intervalMs=HOUR), limits)
        for group in grouped["groups"]:
            cpu = group["tags"]["cpu"]
            assert math.isclose(group["value"], expected(cpu), rel_tol=1e-9)
            assert len(group["points"]) == 3
            for hour, (_, value) in enumerate(group["points"]):
                lo = max(fromMs, start + hour * HOUR)
                hi = min(toMs, start + (hour + 1) * HOUR - 1)
                assert math.isclose(value, expected(cpu, lo, hi),
                                    rel_tol=1e-9)
    finally:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_rollupTableOfAnEarlierVersionGetsItsSpread(node, cql):
    """
    A keyspace whose rollups table was made before it kept sums of squared
    deviations gets the column at start: its older rows answer C{stddev}
    with C{null} (they do not know it), and once their partition is rolled
    again the search answers it.
    """
    keyspace = uniqueKeyspace("spread")
    cql.execute(f"CREATE KEYSPACE {keyspace} WITH replication = "
                f"{{'class': 'SimpleStrategy', 'replication_factor': 1}}")
    [ddl] = [table for table in TABLES if ".rollups (" in table]
    cql.execute(ddl.replace("        m2 double,\n", "").format(ks=keyspace))

    def columns():
        return {row[0] for row in cql.execute(
            "SELECT column_name FROM system_schema.columns WHERE "
            "keyspace_name = %s AND table_name = 'rollups'", (keyspace,))}

    assert "m2" not in columns() and "sketch" in columns()
    old = (int(time.time() * 1000) // HOUR - 2) * HOUR
    tags = freezeTags({"node": "spread:2"})
    store = await openStore(node, keyspace)
    try:
        assert "m2" in columns()
        await store.writePoints([Point("older", tags, old + i * 1000,
                                       float(i % 2)) for i in range(10)])
        await serviceFor(store, node, keyspace).tick()
        # As an earlier version left them: no spread.
        for row in cql.execute(
                f"SELECT resolution, part, series_id, ts, raw_bucket FROM "
                f"{keyspace}.rollups WHERE source = 'n:spread:2' "
                f"ALLOW FILTERING"):
            cql.execute(f"DELETE m2 FROM {keyspace}.rollups WHERE "
                        f"resolution = %s AND source = 'n:spread:2' AND "
                        f"part = %s AND series_id = %s AND ts = %s AND "
                        f"raw_bucket = %s", tuple(row))
        limits = settingsFor(node, keyspace).limits
        query = Query("older", "a", "b", old, old + HOUR - 1, "stddev")
        unknown = await runSearch(store, query, limits)
        assert unknown["resolution"] == "1h" and unknown["value"] is None
        await store.writePoints([Point("older", tags, old + 10_000, 0.0)])
        await serviceFor(store, node, keyspace).tick()
        known = await runSearch(store, query, limits)
        assert math.isclose(known["value"], statistics.pstdev(
            [float(i % 2) for i in range(10)] + [0.0]), rel_tol=1e-12)
    finally:
        await store.close()
        cql.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")


@pytest_twisted.ensureDeferred
async def test_levelsAddedToAKeyspaceWithPointsAnswerFromThen(node, cql,
                                                              keyspace):
    """
    Levels first configured on a keyspace that already holds points (which
    were written without markers) answer only from an hour after that
    moment, and keep that instant across restarts; levels configured on an
    empty keyspace answer for all time.
    """
    settings = settingsFor(node, keyspace)
    plain = MetricStore(settings.cassandra, 0, reactor)
    await plain.connect()
    try:
        await plain.writePoints([Point("before", freezeTags({}), 1000, 1.0)])
    finally:
        await plain.close()
    before = int(time.time() * 1000)
    store = await openStore(node, keyspace)
    await store.close()
    since = store.rollupSince
    assert sorted(since) == [60_000, HOUR]
    for value in since.values():
        assert before + HOUR <= value <= int(time.time() * 1000) + HOUR
    again = await openStore(node, keyspace)
    await again.close()
    assert again.rollupSince == since

    fresh = uniqueKeyspace("rollup")
    try:
        store = await openStore(node, fresh)
        await store.close()
        assert store.rollupSince == {60_000: 0, HOUR: 0}
    finally:
        cql.execute(f"DROP KEYSPACE IF EXISTS {fresh}")


@pytest_twisted.ensureDeferred
async def test_partitionsRolledTogetherAsOneByOne(node, cql, keyspace,
                                                  monkeypatch):
    """
    Forty small partitions of one bucket rolled up by one read and packed
    batches hold the very rollup rows that rolling them one by one gives;
    partitions holding more rows than one read takes are refused (none
    rolled) so that they are rolled one by one.
    """
    import meetrd.store

    old = (int(time.time() * 1000) // HOUR - 3) * HOUR
    store = await openStore(node, keyspace)
    try:
        sources = [f"n:together:{i}" for i in range(40)]
        points = [Point("together", freezeTags({"node": source[2:],
                                                "k": str(k)}),
                        old + j * 61_000 + i, float(i * j + k))
                  for i, source in enumerate(sources)
                  for k in range(3) for j in range(50)]
        await store.writePoints(points)
        bucket = old // HOUR
        assert await store.rollPartitions(bucket, sources) == sources
        together = {source: sorted(rollupRows(cql, keyspace, source))
                    for source in sources}
        cql.execute(f"TRUNCATE {keyspace}.rollups")
        for source in sources:
            await store.rollPartition(source, bucket)
        for source in sources:
            alone = sorted(rollupRows(cql, keyspace, source))
            assert len(alone) == 3 * 50
            assert together[source] == alone
        monkeypatch.setattr(meetrd.store, "ROLL_TOGETHER_ROWS", 3 * 50 * 5)
        assert await store.rollPartitions(bucket, sources[:5]) == sources[:5]
        assert await store.rollPartitions(bucket, sources[:6]) == []
    finally:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_twoInstancesRollEachPartitionOnce(node, cql, keyspace):
    """
    Two instances sharing the marker shards roll 40 partitions between
    them, each exactly once: the rollup rows written add up to one set.
    """
    old = (int(time.time() * 1000) // HOUR - 2) * HOUR
    first = await openStore(node, keyspace)
    second = await openStore(node, keyspace)
    try:
        await first.writePoints([
            Point("shared", freezeTags({"node": f"shared:{i}"}), old + j, 1.0)
            for i in range(40) for j in range(3)])
        a = serviceFor(first, node, keyspace, 0, 2)
        b = serviceFor(second, node, keyspace, 1, 2)
        await a.tick()
        await b.tick()
        assert a.rolled + b.rolled == 40
        assert a.rolled > 0 and b.rolled > 0
        # One series per partition, one row per level.
        assert first.rollupRowsWritten + second.rollupRowsWritten == 40 * 2
        await a.tick()
        await b.tick()
        assert a.rolled + b.rolled == 40
    finally:
        await first.close()
        await second.close()


def test_daemonRollsUpAndReports(tmp_path, node, cql, keyspace):
    """
    A real twistd process with rollup levels rolls up the partitions it
    writes to and reports it on /metrics; its searches say what they
    read.
    """
    import json as jsonlib

    from tests.support import Daemon, daemonSettings

    settings = daemonSettings(keyspace, node)
    settings["rollups"] = LEVELS
    settings["rollup"] = {"interval": "200ms", "grace": "0s"}
    daemon = Daemon(tmp_path, settings).start().waitReady()
    try:
        old = (int(time.time() * 1000) // HOUR - 2) * HOUR
        body = jsonlib.dumps([{"metric_id": "daemon.rolled", "ts": old + i,
                               "value": 1, "tags": {"node": "d:1"}}
                              for i in range(5)]).encode()
        reply = daemon.post("/1.0/metrics", body, "application/json")
        assert reply.status == 200
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            metrics = daemon.get("/metrics").body.decode()
            if "meetr_rollup_partitions_total 1.0" in metrics:
                break
            time.sleep(0.2)
        assert "meetr_rollup_partitions_total 1.0" in metrics, metrics
        assert "meetr_rollup_backlog 0.0" in metrics
        rows = rollupRows(cql, keyspace, "n:d:1")
        assert [(r.count, r.sum) for r in rows] == [(5, 5.0)]
        answer = daemon.get("/1.0/metrics", metric="daemon.rolled",
                            **{"from": old, "to": old + HOUR,
                               "aggregation": "count"}).json()
        # The keyspace was empty when the levels were configured: its
        # rollups answer, even for points of two hours ago.
        assert (answer["value"], answer["resolution"]) == (5, "1h")
    finally:
        daemon.stop()


@pytest_twisted.ensureDeferred
async def test_markerTombstonesArePurgedEarly(node, cql):
    """
    The marker tables keep their tombstones 3 hours, not Cassandra's 10
    days: in a new keyspace, and in one whose marker table was made with
    the default before.
    """
    from meetrd.schema import MARKER_GC_GRACE

    def grace(keyspace, table):
        return cql.execute(
            "SELECT gc_grace_seconds FROM system_schema.tables WHERE "
            "keyspace_name = %s AND table_name = %s",
            (keyspace, table)).one()[0]

    fresh = uniqueKeyspace("grace")
    older = uniqueKeyspace("grace")
    cql.execute(f"CREATE KEYSPACE {older} WITH replication = "
                f"{{'class': 'SimpleStrategy', 'replication_factor': 1}}")
    [ddl] = [table for table in TABLES if ".rollup_dirty (" in table]
    cql.execute(ddl.split("\n      AND gc_grace_seconds")[0].format(
        ks=older))
    assert grace(older, "rollup_dirty") == 864000
    try:
        for keyspace in (fresh, older):
            store = await openStore(node, keyspace)
            await store.close()
            assert MARKER_GC_GRACE == 3 * 3600
            assert grace(keyspace, "rollup_dirty") == MARKER_GC_GRACE
            assert grace(keyspace, "pack_dirty") == MARKER_GC_GRACE
    finally:
        for keyspace in (fresh, older):
            cql.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")
