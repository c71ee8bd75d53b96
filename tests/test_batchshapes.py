"""
JSON writes planned from the shape of earlier ones (L{meetrd.batchshapes}):
the tables and their bounds, then agent-like batches posted to a real API
on the real Cassandra node.
"""

from __future__ import annotations

import json
import time

import pytest
import pytest_twisted
import treq
from twisted.internet import reactor

from meetrd.api import MetricsAPI
from meetrd.batchshapes import BatchShapes
from meetrd.jsonbatch import decodeBatch
from meetrd.points import Point, freezeTags
from meetrd.search import Query, runSearch
from meetrd.settings import settingsFromMapping
from meetrd.store import WRITE_SLICE, MetricStore
from meetrd.web import MeetrSite
from tests.support import recordShapedPlans

LIMITS = settingsFromMapping({}, "test").limits


def agentBody(ts, nodes=3, series=40, offset=0.0, tags=None):
    """
    A JSON body as an agent flushes it: C{nodes} x C{series} points at
    epoch second C{ts}, a node and a dc tag each (or C{tags(n, j)}).
    """
    items = []
    for n in range(nodes):
        for j in range(series):
            items.append({
                "metric_id": f"shapes.m{j:02d}", "ts": ts,
                "value": offset + n * 1000 + j,
                "tags": tags(n, j) if tags else {"node": f"agent-{n}",
                                                 "dc": "par1"}})
    return json.dumps(items).encode()


def batch(count, metric="m", tags=None):
    frozen = tags if tags is not None else freezeTags({"node": "a"})
    return [Point(metric, frozen, 1000, float(i)) for i in range(count)]


def test_aSignatureGetsItsMemoFromItsSecondWrite():
    """
    The first batch of a signature gets no memo (nothing is learnt from a
    one-off batch), the second a new memo and every later one that memo.
    """
    shapes = BatchShapes(WRITE_SLICE)
    points = batch(10)
    assert shapes.memoFor(points) is None
    memo = shapes.memoFor(points)
    assert memo is not None
    assert shapes.memoFor(list(points)) is memo
    assert shapes.memoFor(batch(11, tags=points[0].tags)) is None


def test_theSignatureIsSizeFirstAndLastPoints():
    """
    Batches that differ in size, or in the metric or tag tuple of their
    first or last point, have memos of their own.
    """
    shapes = BatchShapes(WRITE_SLICE)
    tags = freezeTags({"node": "a"})
    other = freezeTags({"node": "b"})
    base = batch(5, tags=tags)
    variants = [base, batch(6, tags=tags), batch(5, metric="n", tags=tags),
                [Point("m", other, 1000, 0.0)] + base[1:],
                base[:-1] + [Point("m", other, 1000, 0.0)],
                base[:-1] + [Point("x", tags, 1000, 0.0)]]
    memos = []
    for points in variants:
        assert shapes.memoFor(points) is None
        memos.append(shapes.memoFor(points))
    assert all(memo is not None for memo in memos)
    assert len({id(memo) for memo in memos}) == len(variants)


def test_noMemoForEmptyOrLargeBatches():
    """
    An empty batch, and one larger than the store plans from a shape, get
    no memo however often they come.
    """
    shapes = BatchShapes(100)
    large = batch(101)
    for _ in range(3):
        assert shapes.memoFor([]) is None
        assert shapes.memoFor(large) is None
    assert shapes.memoFor(batch(100)) is None
    assert shapes.memoFor(batch(100)) is not None


def test_keptShapesAreBoundedByTheirPoints():
    """
    The memos kept hold at most C{maxShapePoints} points together: the
    least recently used go first, and one used again stays.
    """
    shapes = BatchShapes(WRITE_SLICE, maxShapePoints=250)
    batches = [batch(100, metric=f"m{i}") for i in range(4)]
    memos = []
    for points in batches[:2]:
        shapes.memoFor(points)
        memos.append(shapes.memoFor(points))
    assert shapes.memoFor(batches[0]) is memos[0]
    shapes.memoFor(batches[2])
    third = shapes.memoFor(batches[2])
    assert shapes.shapePoints == 200
    assert shapes.memoFor(batches[0]) is memos[0]
    assert shapes.memoFor(batches[2]) is third
    # The second was the least recently used: it has to be seen twice again.
    assert shapes.memoFor(batches[1]) is None
    assert shapes.memoFor(batches[1]) is not memos[1]
    assert shapes.shapePoints <= 250


def test_signaturesSeenOnceAreBounded():
    """
    At most C{maxSeen} signatures wait for their second write; the oldest
    are forgotten.
    """
    shapes = BatchShapes(WRITE_SLICE, maxSeen=3)
    batches = [batch(10, metric=f"m{i}") for i in range(5)]
    for points in batches:
        assert shapes.memoFor(points) is None
    assert len(shapes._seen) == 3
    # The first two were forgotten: seen once more, they wait again.
    assert shapes.memoFor(batches[0]) is None
    assert shapes.memoFor(batches[4]) is not None


def test_bodiesShareFrozenTagsThroughTheTable():
    """
    Decoded with the table, the same tags in two bodies are one tuple,
    which is what a shape compares; decoded without it they are two.
    """
    shapes = BatchShapes(WRITE_SLICE)
    now = int(time.time() * 1000)
    body1 = agentBody(now // 1000 - 60)
    body2 = agentBody(now // 1000 - 50, offset=0.5)
    table = shapes.tagSets(LIMITS)
    first = decodeBatch(body1, LIMITS, now, tagSets=table)
    second = decodeBatch(body2, LIMITS, now, tagSets=shapes.tagSets(LIMITS))
    assert all(a.tags is b.tags for a, b in zip(first, second))
    assert len(table) == 3
    alone = decodeBatch(body2, LIMITS, now)
    assert alone == second
    assert not any(a.tags is b.tags for a, b in zip(first, alone))


def test_theTagTableStartsAgainForOtherLimitsOrWhenFull():
    """
    Tags checked under other limits are not reused, and the table does
    not grow past its bound.
    """
    shapes = BatchShapes(WRITE_SLICE, maxTagSets=5)
    now = int(time.time() * 1000)
    table = shapes.tagSets(LIMITS)
    decodeBatch(agentBody(now // 1000, nodes=4), LIMITS, now, tagSets=table)
    assert shapes.tagSets(LIMITS) is table
    stricter = settingsFromMapping({"limits": {"max_tags": 1}}, "test").limits
    assert shapes.tagSets(stricter) is not table
    assert shapes.tagSets(stricter) == {}
    table = shapes.tagSets(LIMITS)
    decodeBatch(agentBody(now // 1000, nodes=6), LIMITS, now, tagSets=table)
    assert len(table) == 6
    assert shapes.tagSets(LIMITS) == {}


@pytest.mark.cassandra
@pytest_twisted.ensureDeferred
async def test_agentBatchesArePlannedFromTheirShape(node, keyspace,
                                                    monkeypatch):
    """
    An agent posts the same 1,000 series eight times over HTTP: from the
    third post on the writes are planned from their shape, a post whose
    middle point has other tags (same signature) is planned point by
    point, and every value of every post is in Cassandra.
    """
    shaped = recordShapedPlans(monkeypatch)
    settings = settingsFromMapping({"cassandra": {
        "contact_points": [node[0]], "port": node[1], "keyspace": keyspace,
        "consistency": {"read": "ONE", "write": "ONE"}}}, "test")
    store = MetricStore(settings.cassandra, 0, reactor)
    await store.connect()
    api = MetricsAPI(store, settings, reactor)
    port = reactor.listenTCP(0, MeetrSite(api.resource(), 1 << 24, False),
                             interface="127.0.0.1")
    url = f"http://127.0.0.1:{port.getHost().port}/1.0/metrics"
    start = int(time.time()) - 3600
    try:
        for post in range(8):
            body = agentBody(start + post * 10, nodes=10, series=100,
                             offset=post / 4)
            response = await treq.post(url, data=body, headers={
                "Content-Type": "application/json"})
            assert response.code == 200, await response.text()
            assert (await response.json())["written"] == 1000

        def moved(n, j):
            return {"node": "elsewhere" if (n, j) == (5, 50) else
                    f"agent-{n}", "dc": "par1"}

        response = await treq.post(url, data=agentBody(
            start + 80, nodes=10, series=100, offset=2.0, tags=moved),
            headers={"Content-Type": "application/json"})
        assert response.code == 200, await response.text()
        assert shaped == [False, False] + [True] * 6 + [False]

        fromMs, toMs = start * 1000, (start + 90) * 1000
        for j in (0, 50, 99):
            query = Query(f"shapes.m{j:02d}", str(fromMs), str(toMs), fromMs,
                          toMs, "count", groupBy="node")
            found = await runSearch(store, query, settings.limits)
            counts = {group["tags"]["node"]: group["value"]
                      for group in found["groups"]}
            expected = {f"agent-{n}": 9 for n in range(10)}
            if j == 50:
                expected["agent-5"] = 8
                expected["elsewhere"] = 1
            assert counts == expected
            query = Query(f"shapes.m{j:02d}", str(fromMs), str(toMs), fromMs,
                          toMs, "sum")
            total = (await runSearch(store, query, settings.limits))["value"]
            assert total == sum(post / 4 + n * 1000 + j for post in range(8)
                                for n in range(10)) + sum(
                2.0 + n * 1000 + j for n in range(10))
    finally:
        await port.stopListening()
        await store.close()


def test_aBadBatchIsRefusedAsWithoutTheTable():
    """
    A batch with a bad tag is refused with the same problem (naming the
    item and the field) whether its tags go through the shared table or
    not, after a good batch filled the table; its good items' tags stay
    usable for the next batch.
    """
    from meetrd.validation import BatchProblems, FieldProblem

    shapes = BatchShapes(WRITE_SLICE)
    now = int(time.time() * 1000)
    good = agentBody(now // 1000 - 60)
    decodeBatch(good, LIMITS, now, tagSets=shapes.tagSets(LIMITS))

    def badTags(n, j):
        if (n, j) == (1, 7):
            return {"node": f"agent-{n}", "bad key!": "x"}
        return {"node": f"agent-{n}", "dc": "par1"}

    bad = agentBody(now // 1000 - 50, tags=badTags)
    refused = []
    for table in (shapes.tagSets(LIMITS), None):
        with pytest.raises((FieldProblem, BatchProblems)) as raised:
            decodeBatch(bad, LIMITS, now, tagSets=table)
        refused.append((type(raised.value), str(raised.value)))
    assert refused[0] == refused[1]
    assert "47" in refused[0][1] and "tags" in refused[0][1]
    again = decodeBatch(good, LIMITS, now, tagSets=shapes.tagSets(LIMITS))
    assert again == decodeBatch(good, LIMITS, now)
