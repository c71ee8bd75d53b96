"""
Answered requests are let go at once: once a write or a read has fired,
nothing keeps the driver's future of its requests (with their batches and
rows) alive, so reference counting frees them without the cyclic garbage
collector, against the real Cassandra node.
"""

from __future__ import annotations

import gc
import weakref

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater

from meetrd.points import Point, freezeTags
from meetrd.settings import settingsFromMapping
from meetrd.store import MetricStore

pytestmark = pytest.mark.cassandra

BASE = 1_700_000_000_000


@pytest_twisted.async_yield_fixture()
async def store(node, keyspace):
    """
    A connected store on the module's keyspace, with a request timeout of
    30 s (the time a held request would stay alive).
    """
    settings = settingsFromMapping({"cassandra": {
        "contact_points": [node[0]], "port": node[1], "keyspace": keyspace,
        "consistency": {"read": "ONE", "write": "ONE"},
        "request_timeout": "30s"}}, "test")
    store = MetricStore(settings.cassandra, 0, reactor)
    await store.connect()
    yield store
    await store.close()


def recordFutures(store, monkeypatch):
    """
    Weak references to the driver futures of every request the store
    sends from now on.
    """
    futures = []
    session = store._session
    execute = session.execute_async

    def recording(*args, **kwargs):
        future = execute(*args, **kwargs)
        futures.append(weakref.ref(future))
        return future

    monkeypatch.setattr(session, "execute_async", recording)
    return futures


@pytest_twisted.ensureDeferred
async def test_answeredRequestsAreFreedWithoutTheCollector(store,
                                                           monkeypatch):
    """
    With the collector off, the futures of a 3,000-point write (new
    series, so index rows too) and of a search are gone a reactor turn
    after each fires: neither the request's timeout timer (which stays in
    the driver's timer heap for 30 s) nor the callbacks that page
    through the answer hold them.
    """
    from meetrd.search import Query, runSearch

    futures = recordFutures(store, monkeypatch)
    points = [Point(f"release.m{j}", freezeTags({"node": f"release-{n}"}),
                    BASE + k * 1000, float(n + j + k))
              for n in range(10) for j in range(100) for k in range(3)]
    enabled = gc.isenabled()
    gc.disable()
    try:
        assert await store.writePoints(points) == 3000
        await deferLater(reactor, 0.05, lambda: None)
        written = len(futures)
        assert written >= 10
        alive = [ref for ref in futures if ref() is not None]
        assert alive == []
        query = Query("release.m7", str(BASE), str(BASE + 10_000), BASE,
                      BASE + 10_000, "count")
        settings = settingsFromMapping({}, "test")
        found = await runSearch(store, query, settings.limits)
        assert found["value"] == 30
        await deferLater(reactor, 0.05, lambda: None)
        assert len(futures) > written
        assert [ref for ref in futures if ref() is not None] == []
    finally:
        if enabled:
            gc.enable()
