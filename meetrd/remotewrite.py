"""
Prometheus remote write 1.0, received: a snappy-compressed protobuf
C{WriteRequest} into points.

Each time series' C{__name__} label is the metric and its other labels
are the tags (a label with an empty value is no label, as in Prometheus).
Series and samples go through the same checks as every other write; one
bad series refuses the whole request, so that nothing is half-written and
the sender, told 400, does not send it again.

Samples whose value is not a finite number are not stored and are counted
apart: Prometheus' staleness markers (a NaN that ends a series) and NaN
or infinite values, which meetrd's searches cannot sum.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

import cramjam
from google.protobuf.message import DecodeError

from meetrd.points import Point, freezeTags
from meetrd.proto.remote_pb2 import WriteRequest
from meetrd.settings import Limits
from meetrd.timestamps import MAX_TS_MS, MIN_TS_MS
from meetrd.validation import (
    BatchProblems,
    FieldProblem,
    checkMetric,
    checkTags,
    checkWindow,
)

NAME_LABEL = "__name__"
# The bits of the NaN Prometheus writes as a staleness marker.
STALE_NAN_BITS = 0x7FF0000000000002
# Problems listed in one answer at most.
MAX_PROBLEMS = 100


@dataclass(slots=True)
class Received:
    """
    What a remote write request carried.

    @ivar points: the points to store.
    @ivar stale: staleness markers, not stored.
    @ivar notFinite: other NaN or infinite values, not stored.
    """

    points: list[Point]
    stale: int = 0
    notFinite: int = 0


def uncompressedLength(body: bytes) -> int:
    """
    The length a snappy block says it holds once uncompressed: the varint
    that starts it.  Read before decompressing, so that a small body that
    claims gigabytes is refused without allocating them.
    """
    length = shift = 0
    for index, byte in enumerate(body[:5]):
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return length
        shift += 7
    raise FieldProblem("(body)", "not snappy block-compressed data: no "
                                 "length at its start")


def decodeWriteRequest(body: bytes, maxBytes: int) -> WriteRequest:
    """
    Decompress and parse a remote write body, or raise a L{FieldProblem}
    that says what is wrong with it.

    @param maxBytes: the most the body may hold once uncompressed.
    """
    if not body:
        raise FieldProblem("(body)", "empty: a snappy-compressed "
                                     "WriteRequest is expected")
    length = uncompressedLength(body)
    if length > maxBytes:
        raise FieldProblem("(body)", f"uncompressed, the body would hold "
                                     f"{length} bytes, more than {maxBytes}")
    try:
        plain = bytes(cramjam.snappy.decompress_raw(body))
    except cramjam.DecompressionError as e:
        raise FieldProblem("(body)", f"not snappy block-compressed data: "
                                     f"{e}") from None
    request = WriteRequest()
    try:
        request.ParseFromString(plain)
    except DecodeError as e:
        raise FieldProblem("(body)", f"not a remote write WriteRequest "
                                     f"(protobuf): {e}") from None
    return request


def _checkMs(tsMs: int, limits: Limits, nowMs: int, field: str) -> int:
    """
    Check a sample's timestamp (milliseconds) against what meetrd stores
    and the accepted window around now.
    """
    if not MIN_TS_MS <= tsMs <= MAX_TS_MS:
        raise FieldProblem(field, f"{tsMs} ms is outside years 1 to 9999")
    return checkWindow(tsMs, limits, nowMs, field)


class SeriesCache:
    """
    The checked metric and tags of label sets seen before: a sender sends
    the same series request after request, and checking a label set costs
    more than reading its samples.  Cleared when full.
    """

    def __init__(self, size: int = 200_000) -> None:
        self.size = size
        self.known: dict[tuple[tuple[str, str], ...], tuple[str, Any]] = {}

    def get(self, key: tuple[tuple[str, str], ...]) -> tuple[str, Any] | None:
        return self.known.get(key)

    def put(self, key: tuple[tuple[str, str], ...],
            value: tuple[str, Any]) -> None:
        if len(self.known) >= self.size:
            self.known.clear()
        self.known[key] = value


def _checkSeries(key: tuple[tuple[str, str], ...], limits: Limits,
                 where: str) -> tuple[str, Any]:
    """
    The metric and tags of a series' labels (as sent, in order), checked.
    """
    labels: dict[str, str] = {}
    for name, value in key:
        if name in labels:
            raise FieldProblem(f"{where}.labels",
                               f"label {name!r} given twice")
        if value:
            labels[name] = value
    metric = checkMetric(labels.pop(NAME_LABEL, None), limits,
                         f"{where}.labels.{NAME_LABEL}")
    return metric, freezeTags(checkTags(labels, limits, f"{where}.labels"))


def pointsOf(request: WriteRequest, limits: Limits, nowMs: int,
             cache: SeriesCache | None = None) -> Received:
    """
    The points of a parsed request, checked as every write is; raise
    L{BatchProblems} naming every bad series or sample (up to
    L{MAX_PROBLEMS}), or a L{FieldProblem} when the request is empty or
    too large.

    @param cache: label sets checked before (with the same limits).
    """
    samples = sum(len(series.samples) for series in request.timeseries)
    if samples > limits.max_batch_points:
        raise FieldProblem("timeseries", f"{samples} samples, more than "
                                         f"{limits.max_batch_points} in one "
                                         f"request")
    cache = cache if cache is not None else SeriesCache()
    received = Received([])
    points = received.points
    problems: list[FieldProblem] = []
    isfinite = math.isfinite
    # Timestamps inside this window need no other check.
    earliest = max(MIN_TS_MS, nowMs - limits.max_past * 1000
                   if limits.max_past else MIN_TS_MS)
    latest = min(MAX_TS_MS, nowMs + limits.max_future * 1000)
    for index, series in enumerate(request.timeseries):
        try:
            key = tuple([(label.name, label.value)
                         for label in series.labels])
            checked = cache.get(key)
            if checked is None:
                checked = _checkSeries(key, limits, f"timeseries[{index}]")
                cache.put(key, checked)
            metric, tags = checked
            for number, sample in enumerate(series.samples):
                value = sample.value
                tsMs = sample.timestamp
                if not isfinite(value):
                    if math.isnan(value) and _bits(value) == STALE_NAN_BITS:
                        received.stale += 1
                    else:
                        received.notFinite += 1
                    continue
                if not earliest <= tsMs <= latest:
                    _checkMs(tsMs, limits, nowMs, f"timeseries[{index}]."
                                                  f"samples[{number}]."
                                                  f"timestamp")
                points.append(Point(metric, tags, tsMs, value))
        except FieldProblem as problem:
            problems.append(FieldProblem(problem.field, problem.problem,
                                         index))
            if len(problems) >= MAX_PROBLEMS:
                break
    if problems:
        raise BatchProblems(problems, samples)
    return received


def _bits(value: float) -> int:
    """
    The 64 bits of a double.
    """
    return struct.unpack("<Q", struct.pack("<d", value))[0]
