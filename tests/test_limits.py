"""
Every input limit at its edge and just past it.
"""

from __future__ import annotations

import gzip
import json
from io import BytesIO

import pytest
import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.internet.defer import succeed
from twisted.web.client import FileBodyProducer
from twisted.web.iweb import UNKNOWN_LENGTH

from meetrd.api import MetricsAPI
from meetrd.readplan import (
    SearchTooWide,
    answerPoints,
    checkAnswerSize,
    checkPartitions,
    checkSeries,
)
from meetrd.settings import Limits, settingsFromMapping
from meetrd.validation import BatchProblems, FieldProblem, checkBatch, checkPoint
from meetrd.web import MeetrSite

NOW = 1_800_000_000_000


def item(**changes):
    value = {"metric_id": "m", "ts": NOW, "value": 1}
    value.update(changes)
    return value


EDGES = [
    ("max_metric_length", 10, lambda n: item(metric_id="m" * n), "metric_id"),
    ("max_tags", 3, lambda n: item(tags={f"k{i}": "v" for i in range(n)}),
     "tags"),
    ("max_tag_key_length", 5, lambda n: item(tags={"k" * n: "v"}), "tags"),
    ("max_tag_value_length", 5, lambda n: item(tags={"k": "v" * n}), "tags"),
]


@pytest.mark.parametrize("limit, edge, build, field", EDGES,
                         ids=[e[0] for e in EDGES])
def test_pointLimitEdges(limit, edge, build, field):
    """
    A point exactly at a limit is accepted; one past it is refused naming
    the field and the limit.
    """
    limits = Limits(**{limit: edge})
    checkPoint(build(edge), limits, NOW)
    with pytest.raises(FieldProblem) as caught:
        checkPoint(build(edge + 1), limits, NOW)
    assert caught.value.field == field
    assert str(edge) in caught.value.problem


def test_timeWindowEdges():
    """
    max_future and max_past accept their edges to the millisecond.
    """
    limits = Limits(max_future="1m", max_past="1h")
    checkPoint(item(ts=NOW + 60_000), limits, NOW)
    checkPoint(item(ts=NOW - 3_600_000), limits, NOW)
    for ts in (NOW + 60_001, NOW - 3_600_001):
        with pytest.raises(FieldProblem) as caught:
            checkPoint(item(ts=ts), limits, NOW)
        assert caught.value.field == "ts"


def test_batchEdge():
    """
    max_batch_points points pass; one more is refused whole.
    """
    limits = Limits(max_batch_points=5)
    assert len(checkBatch([item()] * 5, limits, NOW)) == 5
    with pytest.raises(FieldProblem, match="more than 5 points"):
        checkBatch([item()] * 6, limits, NOW)


def test_batchProblemsCountAll():
    """
    A batch's problems list every bad item, however many.
    """
    with pytest.raises(BatchProblems) as caught:
        checkBatch([item(value="x")] * 7, Limits(), NOW)
    assert len(caught.value.problems) == 7
    assert caught.value.total == 7


def test_searchBreadthEdges():
    """
    max_search_series, max_search_partitions and max_search_points accept
    their edges and refuse one past them.
    """
    checkSeries(3, 3)
    with pytest.raises(SearchTooWide):
        checkSeries(4, 3)
    plan = {("s", 1000): {0: [b"a"], 1: [b"a"]}}
    checkPartitions(plan, 4, 6)
    with pytest.raises(SearchTooWide):
        checkPartitions(plan, 5, 6)
    assert answerPoints(0, 9999, 1000, 3) == 30
    assert answerPoints(500, 1500, 1000, 0) == 2
    assert answerPoints(0, 9999, None, 0) == 1
    checkAnswerSize(30, 30)
    with pytest.raises(SearchTooWide) as caught:
        checkAnswerSize(31, 30)
    assert caught.value.field == "interval"
    assert "widen interval" in caught.value.problem


class AcceptingStore:
    """
    A store that acknowledges every write at once.
    """

    ready = True
    lastError = ""

    def writePoints(self, points, memo=None):
        return succeed(len(list(points)))


LIMIT = 4096


@pytest_twisted.async_yield_fixture()
async def site():
    """
    The API on a real loopback port with a body limit of 4096 bytes.
    """
    settings = settingsFromMapping({"http": {"max_body_size": LIMIT}}, "t")
    api = MetricsAPI(AcceptingStore(), settings, reactor)
    port = reactor.listenTCP(0, MeetrSite(api.resource(), LIMIT, False),
                             interface="127.0.0.1")
    yield f"http://127.0.0.1:{port.getHost().port}/1.0/metrics"
    await port.stopListening()


def padded(size):
    body = json.dumps([item(ts=1_000_000_000)]).encode()
    return body + b" " * (size - len(body))


@pytest_twisted.ensureDeferred
async def test_bodyLimitEdge(site):
    """
    A body of exactly max_body_size bytes is read; one byte more is 413,
    declared or streamed (chunked).
    """
    headers = {"Content-Type": "application/json"}
    atEdge = await treq.post(site, padded(LIMIT), headers=headers)
    assert atEdge.code == 200
    over = await treq.post(site, padded(LIMIT + 1), headers=headers)
    assert over.code == 413
    assert (await over.json())["limit"] == LIMIT

    producer = FileBodyProducer(BytesIO(padded(LIMIT + 1)))
    producer.length = UNKNOWN_LENGTH  # sent chunked, no Content-Length
    streamed = await treq.post(site, producer, headers=headers)
    assert streamed.code == 413


@pytest_twisted.ensureDeferred
async def test_decompressedLimitEdge(site):
    """
    A gzip body decompressing to exactly the limit is read; one byte more
    is 413, however small it was compressed.
    """
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    atEdge = await treq.post(site, gzip.compress(padded(LIMIT)),
                             headers=headers)
    assert atEdge.code == 200
    over = await treq.post(site, gzip.compress(padded(LIMIT + 1)),
                           headers=headers)
    assert over.code == 413
