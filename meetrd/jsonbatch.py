"""
JSON batches of points decoded and checked in one pass.

A batch is decoded by msgspec into typed items (the types of every field
checked while decoding, in C), then each item's values are checked as
L{meetrd.validation.checkPoint} checks them, with what repeats across a
batch (metric names, tag sets, timestamps) checked once.  This path only
ever accepts a batch whole: at the first thing it does not take (a
malformed body, a field of the wrong type, a bad value, a form it does not
know, such as tags sent as a JSON string), the batch goes through
C{json.loads} and L{checkBatch}, which accept the same batches and name
every bad item of the others.  So both paths answer alike, which
C{tests/test_jsonbatch.py} checks on generated batches.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Union

import msgspec
from twisted.internet.defer import Deferred
from twisted.internet.task import Cooperator
from twisted.python.failure import Failure

from meetrd.points import Point, Tags, freezeTags
from meetrd.settings import Limits
from meetrd.validation import (
    FieldProblem,
    checkBatch,
    checkMetric,
    checkTags,
    checkTimestamp,
    checkValue,
    parseJSON,
)

__all__ = ["decodeBatch", "decodeBatchInSlices"]


class _Item(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    metric_id: str
    ts: Union[int, float, str]
    value: Union[float, str]
    tags: Union[dict[str, str], None] = None


class _Wrapped(msgspec.Struct):
    metrics: list[_Item]


class _WrappedRaw(msgspec.Struct):
    metrics: list[msgspec.Raw]


_DECODER = msgspec.json.Decoder(Union[list[_Item], _Wrapped])
_ITEMS = msgspec.json.Decoder(list[_Item])
# A large body is first cut into its items' texts (the array scanned, no
# object made), then decoded and checked L{SLICE} items at a time.
_RAW_ITEMS = msgspec.json.Decoder(Union[list[msgspec.Raw], _WrappedRaw])

# Bodies above this size are decoded in slices (about 8,000 points).
LARGE_BODY = 1024 * 1024
# Items decoded and checked in one step: about 10 ms of the reactor.
SLICE = 2_000


class _Slow(Exception):
    """
    The batch is one for the full check (L{checkBatch}).
    """


_FAST_REFUSED = (msgspec.MsgspecError, _Slow, FieldProblem)


def decodeBatch(data: bytes, limits: Limits, nowMs: int,
                field: str = "(body)",
                tagSets: dict[Any, Tags] | None = None) -> list[Point]:
    """
    The points of a JSON batch (a list of points, or an object whose
    C{metrics} is one), checked whole: raise what L{checkBatch} raises for
    a bad batch.

    @param tagSets: raw tag items already checked under C{limits}, with
        their frozen tags, kept from one batch to the next (see
        L{meetrd.batchshapes}); the batch's new ones are added to it.
    """
    points: list[Point] = []
    try:
        for _ in _steps(data, limits, nowMs, points, tagSets):
            pass
        return points
    except _FAST_REFUSED:
        return _fullCheck(data, limits, nowMs, field)


def decodeBatchInSlices(data: bytes, limits: Limits, nowMs: int,
                        cooperator: Cooperator, field: str = "(body)",
                        tagSets: dict[Any, Tags] | None = None
                        ) -> Deferred[list[Point]]:
    """
    L{decodeBatch}, a slice of L{SLICE} items per step of C{cooperator},
    so that a batch of 50,000 points does not hold the reactor for the
    time it takes to check them all.
    """
    points: list[Point] = []

    def refused(failure: Failure) -> list[Point]:
        failure.trap(*_FAST_REFUSED)
        return _fullCheck(data, limits, nowMs, field)

    task = cooperator.cooperate(_steps(data, limits, nowMs, points, tagSets))
    return task.whenDone().addCallback(lambda _: points).addErrback(refused)


def _fullCheck(data: bytes, limits: Limits, nowMs: int,
               field: str) -> list[Point]:
    document = parseJSON(data, field)
    if isinstance(document, dict) and "metrics" in document:
        document = document["metrics"]
    return checkBatch(document, limits, nowMs, field=field)


def _steps(data: bytes, limits: Limits, nowMs: int, points: list[Point],
           tagSets: dict[Any, Tags] | None = None) -> Iterator[None]:
    """
    Decode and check a batch into C{points}, yielding between slices;
    raise at the first thing the fast path does not take.
    """
    if len(data) > LARGE_BODY:
        raws = _RAW_ITEMS.decode(data)
        if isinstance(raws, _WrappedRaw):
            raws = raws.metrics
        count = len(raws)
        slices: Iterable[list[_Item]] = (
            _ITEMS.decode(b"[" + b",".join(raws[start:start + SLICE]) + b"]")
            for start in range(0, count, SLICE))
    else:
        decoded = _DECODER.decode(data)
        items = decoded.metrics if isinstance(decoded, _Wrapped) else decoded
        count = len(items)
        slices = [items]
    if not count or count > limits.max_batch_points:
        raise _Slow()
    if len(data) > LARGE_BODY:
        # The scan of a large body is a step of its own.
        yield None
    metrics: set[str] = set()
    if tagSets is None:
        tagSets = {}
    times: dict[object, int] = {}
    append = points.append
    for items in slices:
        for item in items:
            metric = item.metric_id
            if metric not in metrics:
                checkMetric(metric, limits)
                metrics.add(metric)
            rawTags = item.tags
            if rawTags:
                key = tuple(rawTags.items())
                tags = tagSets.get(key)
                if tags is None:
                    tags = tagSets[key] = freezeTags(checkTags(rawTags,
                                                               limits))
            else:
                tags = ()
            ts = item.ts
            # 1 and 1.0 are equal keys and the same instant.
            tsMs = times.get(ts)
            if tsMs is None:
                tsMs = times[ts] = checkTimestamp(ts, limits, nowMs)
            value = item.value
            if type(value) is not float or value - value != 0.0:
                value = checkValue(value)
            append(Point(metric, tags, tsMs, value))
        yield None
