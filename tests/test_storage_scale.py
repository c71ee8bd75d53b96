"""
The time-scoped index and bounded searches against the real Cassandra
node: index rows outlive their points, churned series do not weigh on
searches, results past a driver page, wide partitions, deadlines, the
answer cap, and keyspaces written by the earlier layout.
"""

from __future__ import annotations

import time

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater

from meetrd.layout import seriesId
from meetrd.points import Point, freezeTags
from meetrd.readplan import SearchTooWide
from meetrd.search import Query, SearchTimedOut, runSearch
from meetrd.settings import settingsFromMapping
from meetrd.store import MetricStore
from tests.support import uniqueKeyspace

pytestmark = pytest.mark.cassandra

DAY = 86_400_000
BASE = 1_700_000_000_000 - 1_700_000_000_000 % DAY


def settingsFor(node, keyspace, limits=None, **cassandra):
    return settingsFromMapping({
        "cassandra": {"contact_points": [node[0]], "port": node[1],
                      "keyspace": keyspace,
                      "consistency": {"read": "ONE", "write": "ONE"},
                      "request_timeout": "30s", **cassandra},
        "limits": limits or {}}, "test")


async def openStore(node, keyspace, retention=0, **cassandra):
    store = MetricStore(settingsFor(node, keyspace, **cassandra).cassandra,
                        retention, reactor)
    await store.connect()
    return store


@pytest_twisted.async_yield_fixture()
async def store(node, keyspace):
    """
    A connected store on the module's keyspace, without retention.
    """
    store = await openStore(node, keyspace)
    yield store
    await store.close()


async def search(store, metric, fromMs, toMs, aggregation, limits=None,
                 **options):
    settings = settingsFromMapping({"limits": limits or {}}, "test")
    query = Query(metric, str(fromMs), str(toMs), fromMs, toMs, aggregation,
                  **options)
    return await runSearch(store, query, settings.limits, reactor)


def sleep(seconds):
    return deferLater(reactor, seconds, lambda: None)


@pytest_twisted.ensureDeferred
async def test_indexRowsOutliveTheirPoints(node, cql):
    """
    With a retention of 30 s (and a 10 s index slice), every point still
    stored is found by a search at every moment, and once the points have
    expired the index, slice and bucket rows that led to them are gone
    too.
    """
    keyspace = uniqueKeyspace("ttl")
    store = await openStore(node, keyspace, retention=30, index_slice="10s")
    try:
        assert store.sliceMs == 10_000
        tags = freezeTags({"dc": "eu"})
        source = "s:" + seriesId("expiring", tags).hex()
        count = cql.prepare(f"SELECT count(*) FROM {keyspace}.points "
                            f"WHERE source = ? AND bucket = ?")
        start = int(time.time() * 1000)
        lastWrite = start
        checks = 0
        while time.time() * 1000 < start + 75_000:
            now = int(time.time() * 1000)
            if now < start + 25_000:
                await store.writePoints([Point("expiring", tags, now, 1.0)])
                lastWrite = now
            # Points only ever disappear, so the stored count read after
            # the search is a lower bound of what the search must find,
            # and the one read before an upper bound.
            before = cql.execute(count, (source, now // DAY)).one()[0]
            found = await search(store, "expiring", start, now, "count")
            after = cql.execute(count, (source, now // DAY)).one()[0]
            assert after <= (found["value"] or 0) <= before, (now - start)
            checks += 1
            if now > lastWrite + 30_000 and after == 0:
                break
            await sleep(0.5)
        assert checks > 40
        assert cql.execute(count, (source, start // DAY)).one()[0] == 0
        # Index rows carry retention + one slice: wait that out.
        await sleep(max(0.0, (lastWrite + 41_000 - time.time() * 1000) / 1000))
        for table in ("series_index", "slices", "buckets"):
            left = list(cql.execute(f"SELECT * FROM {keyspace}.{table}"))
            assert left == [], table
    finally:
        await store.close()
        cql.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")


@pytest_twisted.ensureDeferred
async def test_churnedSeriesDoNotWeighOnSearches(node, cql):
    """
    110,000 series that lived in an earlier slice and expired leave
    110,000 tombstones in that slice's index partition, past Cassandra's
    tombstone_failure_threshold (100,000), so that reading it fails; a
    search of the current range reads only its own slice and answers.
    """
    from cassandra import ReadFailure

    keyspace = uniqueKeyspace("churn")
    store = await openStore(node, keyspace, retention=1, index_slice="10s")
    try:
        first = int(time.time() * 1000)
        churned = [Point("churn", freezeTags({"node": f"n{i // 1000}",
                                              "i": str(i)}), first, 1.0)
                   for i in range(110_000)]
        for start in range(0, len(churned), 5_000):
            await store.writePoints(churned[start:start + 5_000])
        # Index rows live for the retention plus one slice (11 s).
        await sleep(12)
        # The new series is written without a TTL: with a retention of one
        # second, a slow search would otherwise outlive the point it looks
        # for.
        kept = await openStore(node, keyspace, retention=0,
                               index_slice="10s")
        try:
            now = int(time.time() * 1000)
            await kept.writePoints([Point("churn", freezeTags({"i": "new"}),
                                          now, 7.0)])
        finally:
            await kept.close()
        before = store.indexRowsRead
        result = await search(store, "churn", now - 5_000, now, "sum",
                              groupBy="i")
        assert result["value"] == 7.0
        assert result["groups"] == [{"tags": {"i": "new"}, "value": 7.0}]
        assert store.indexRowsRead - before == 1
        with pytest.raises(ReadFailure, match="TOO_MANY_TOMBSTONES"):
            cql.execute(f"SELECT series_id FROM {keyspace}.series_index "
                        f"WHERE metric = 'churn' AND slice = %s",
                        (first // 10_000,), timeout=120)
    finally:
        await store.close()
        cql.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")


@pytest_twisted.ensureDeferred
async def test_resultsPastOnePage(store):
    """
    An index read of 6,000 series and an interval answer of 6,000 values
    both span more than one driver page (5,000 rows) and are whole.
    """
    await store.writePoints([Point("paged.series", freezeTags({"k": str(i)}),
                                   BASE + 1000, 1.0) for i in range(6000)])
    result = await search(store, "paged.series", BASE, BASE + 2000, "count",
                          groupBy="k")
    assert result["value"] == 6000
    assert len(result["groups"]) == 6000
    one = freezeTags({"node": "paged:1"})
    await store.writePoints([Point("paged.points", one, BASE + i * 1000,
                                   float(i)) for i in range(6000)])
    stepped = await search(store, "paged.points", BASE, BASE + 5999 * 1000,
                           "max", intervalMs=1000)
    assert len(stepped["points"]) == 6000
    assert [v for _, v in stepped["points"]] == [float(i) for i in range(6000)]


@pytest_twisted.ensureDeferred
async def test_manySeriesInOnePartition(store):
    """
    A node with 250 series keeps them in one partition; a search reads it
    in IN lists of 100 and sums all of them.
    """
    await store.writePoints([
        Point("wide.node", freezeTags({"node": "wide:1", "core": str(i)}),
              BASE + 5000, float(i)) for i in range(250)])
    result = await search(store, "wide.node", BASE, BASE + 10_000, "sum")
    assert result["value"] == sum(range(250))
    one = await search(store, "wide.node", BASE, BASE + 10_000, "sum",
                       tagFilters=(("core", frozenset({"17"})),))
    assert one["value"] == 17.0


@pytest_twisted.ensureDeferred
async def test_largePagesGetNarrowBuckets(store, cql, keyspace):
    """
    A write carrying 1,500 series of one node puts them in six-minute
    buckets of their own family; searches find them, and the partition
    holds the write's rows only.
    """
    await store.writePoints([
        Point("big.page", freezeTags({"node": "big:1", "s": str(i)}),
              BASE + 7 * 60_000, 1.0) for i in range(1500)])
    rows = cql.execute(
        f"SELECT count(*) FROM {keyspace}.points WHERE source = %s AND "
        f"bucket = %s", ("n:big:1/6m", (BASE + 7 * 60_000) // 360_000)).one()
    assert rows[0] == 1500
    result = await search(store, "big.page", BASE, BASE + DAY - 1, "count")
    assert result["value"] == 1500


def partitionRows(cql, keyspace, source, bucket):
    return cql.execute(
        f"SELECT count(*) FROM {keyspace}.points WHERE source = %s AND "
        f"bucket = %s", (source, bucket)).one()[0]


@pytest_twisted.ensureDeferred
async def test_tricklingClientsCannotGrowAPartitionPastTheBound(
        node, keyspace, cql):
    """
    With C{max_partition_rows} at 1,000: 2,500 series of one node sent 50
    a write (no write is large, so the node keeps its hourly family), and
    one series sent 2,300 points 10 ms apart, 100 a write.  No partition
    in Cassandra holds more than 1,000 rows; the rows past the bound are in
    overflow partitions, and searches find every point: totals, one series
    by its tags, and the fast series interval by interval.
    """
    store = await openStore(node, keyspace, max_partition_rows=1000)
    try:
        for start in range(0, 2500, 50):
            await store.writePoints([
                Point("trickle", freezeTags({"node": "t:1", "s": str(i)}),
                      BASE + 60_000, float(i))
                for i in range(start, start + 50)])
        fast = freezeTags({"node": "fast:1"})
        for start in range(0, 2300, 100):
            await store.writePoints([
                Point("fast", fast, BASE + 10 * i, 1.0)
                for i in range(start, start + 100)])
    finally:
        await store.close()
    hour = (BASE + 60_000) // 3_600_000
    assert [partitionRows(cql, keyspace, source, hour)
            for source in ("n:t:1", "n:t:1~1", "n:t:1~2", "n:t:1~3")] == [
        1000, 1000, 500, 0]
    assert [partitionRows(cql, keyspace, source, BASE // 3_600_000)
            for source in ("n:fast:1", "n:fast:1~1", "n:fast:1~2",
                           "n:fast:1~3")] == [1000, 1000, 300, 0]
    reader = await openStore(node, keyspace)
    try:
        total = await search(reader, "trickle", BASE, BASE + DAY - 1, "sum")
        assert total["value"] == sum(range(2500))
        late = await search(reader, "trickle", BASE, BASE + DAY - 1, "max",
                            tagFilters=(("s", frozenset({"2499"})),))
        assert late["value"] == 2499.0
        counts = await search(reader, "fast", BASE, BASE + 22_999, "count",
                              intervalMs=1000)
        assert [v for _, v in counts["points"]] == [100] * 23
    finally:
        await reader.close()


@pytest_twisted.ensureDeferred
async def test_tagFiltersReadOnlyMatchingSeries(store):
    """
    A search with two single-valued tag filters reads one index row; a
    filter with two values reads the rows of both, and no other.
    """
    await store.writePoints([
        Point("filtered", freezeTags({"node": f"f{n}", "cpu": str(c)}),
              BASE + 1000, float(n * 10 + c))
        for n in range(20) for c in range(10)])
    before = store.indexRowsRead
    one = await search(store, "filtered", BASE, BASE + 2000, "sum",
                       tagFilters=(("node", frozenset({"f3"})),
                                   ("cpu", frozenset({"4"}))))
    assert one["value"] == 34.0
    assert store.indexRowsRead - before == 1
    before = store.indexRowsRead
    two = await search(store, "filtered", BASE, BASE + 2000, "count",
                       tagFilters=(("node", frozenset({"f3", "f5"})),))
    assert two["value"] == 20
    assert store.indexRowsRead - before == 20


@pytest_twisted.ensureDeferred
async def test_searchPastItsDeadline(store):
    """
    A search that cannot finish within limits.search_timeout fails with
    what it was reading.
    """
    await store.writePoints([
        Point("slow", freezeTags({"k": str(i)}), BASE + i, 1.0)
        for i in range(2000)])
    with pytest.raises(SearchTimedOut) as caught:
        await search(store, "slow", BASE, BASE + 5000, "sum",
                     limits={"search_timeout": "1ms"})
    assert "reading" in str(caught.value)
    assert caught.value.reading.startswith("reading")


@pytest_twisted.ensureDeferred
async def test_answerCap(store):
    """
    A search whose answer holds exactly limits.max_search_points values
    answers; one more interval is refused before any point is read.
    """
    await store.writePoints([Point("capped", (), BASE + i * 1000, 1.0)
                             for i in range(100)])
    limits = {"max_search_points": 100}
    at = await search(store, "capped", BASE, BASE + 99_999, "count",
                      limits=limits, intervalMs=1000)
    assert len(at["points"]) == 100
    before = store.requests
    with pytest.raises(SearchTooWide) as caught:
        await search(store, "capped", BASE, BASE + 100_000, "count",
                     limits=limits, intervalMs=1000)
    assert caught.value.field == "interval"
    # The index was read (one request), no point partition.
    assert store.requests - before == 1


@pytest_twisted.ensureDeferred
async def test_tooManySeriesRefusedEarly(store):
    """
    A search matching more series than max_search_series is refused
    without reading the points, and its index read stops one row past
    the cap.
    """
    await store.writePoints([Point("many", freezeTags({"k": str(i)}),
                                   BASE + 1000, 1.0) for i in range(300)])
    before = store.indexRowsRead
    with pytest.raises(SearchTooWide) as caught:
        await search(store, "many", BASE, BASE + 2000, "sum",
                     limits={"max_search_series": 100}, groupBy="k")
    assert caught.value.field == "tag"
    assert store.indexRowsRead - before == 101


LEGACY_SERIES = """CREATE TABLE {ks}.series (
    metric text, series_id blob, tags map<text, text>, source text,
    bucket_ms bigint, PRIMARY KEY ((metric), series_id))"""
LEGACY_POINTS = """CREATE TABLE {ks}.points (
    source text, bucket bigint, series_id blob, ts timestamp, value double,
    PRIMARY KEY ((source, bucket), series_id, ts))"""
LEGACY_BUCKETS = """CREATE TABLE {ks}.buckets (
    source text, bucket bigint, PRIMARY KEY ((source), bucket))"""


@pytest_twisted.ensureDeferred
async def test_legacyKeyspaceKeepsAnswering(node, cql):
    """
    A keyspace written by the earlier layout (one series partition per
    metric, no slices) is read together with the new index: old points
    and new ones of the same series both count, once.
    """
    keyspace = uniqueKeyspace("legacy")
    cql.execute(f"CREATE KEYSPACE {keyspace} WITH replication = "
                f"{{'class': 'SimpleStrategy', 'replication_factor': 1}}")
    for ddl in (LEGACY_SERIES, LEGACY_POINTS, LEGACY_BUCKETS):
        cql.execute(ddl.format(ks=keyspace))
    tags = freezeTags({"node": "old:1"})
    identifier = seriesId("legacy.cpu", tags)
    cql.execute(f"INSERT INTO {keyspace}.series (metric, series_id, tags, "
                f"source, bucket_ms) VALUES (%s, %s, %s, %s, %s)",
                ("legacy.cpu", identifier, dict(tags), "n:old:1", 3_600_000))
    for i in range(10):
        ts = BASE + i * 600_000
        cql.execute(f"INSERT INTO {keyspace}.points (source, bucket, "
                    f"series_id, ts, value) VALUES (%s, %s, %s, %s, %s)",
                    ("n:old:1", ts // 3_600_000, identifier, ts, 1.0))
        cql.execute(f"INSERT INTO {keyspace}.buckets (source, bucket) "
                    f"VALUES (%s, %s)", ("n:old:1", ts // 3_600_000))
    store = await openStore(node, keyspace)
    try:
        assert store.legacy
        old = await search(store, "legacy.cpu", BASE, BASE + DAY, "count")
        assert old["value"] == 10
        await store.writePoints([Point("legacy.cpu", tags,
                                       BASE + 6_000_000 + 1, 5.0)])
        both = await search(store, "legacy.cpu", BASE, BASE + DAY, "sum",
                            tagFilters=(("node", frozenset({"old:1"})),))
        assert both["value"] == 15.0
    finally:
        await store.close()
        cql.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")
