"""
Reading what a request carries: its body (decompressed, by its
C{Content-Type}), its query and form arguments, and from them the points to
write, the search to run, the metric names asked for or the fetch to start.

Everything wrong is raised as the API answers it: a L{FieldProblem} or
L{BatchProblems} (C{400}), an L{ApiError} (C{4xx} with a JSON body), or
L{TooLarge} (C{413}).
"""

from __future__ import annotations

import zlib
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Cooperator
from twisted.web.iweb import IRequest

from meetrd.aggregate import AGGREGATIONS, isAggregation
from meetrd.durations import DurationError, DurationTooLong, parseDuration
from meetrd.jsonbatch import LARGE_BODY, decodeBatch, decodeBatchInSlices
from meetrd.points import Point, Tags
from meetrd.remotewrite import Received, SeriesCache, decodeWriteRequest
from meetrd.remotewrite import pointsOf as remotePointsOf
from meetrd.search import Query
from meetrd.settings import Limits
from meetrd.timestamps import (
    TimestampError,
    TimestampOutOfRange,
    parseTimestamp,
)
from meetrd.validation import (
    FieldProblem,
    Unprocessable,
    checkBatch,
    checkMetric,
    checkPoint,
    parseJSON,
)
from meetrd.web import ApiError

# How many metric names /1.0/metric_names answers by default, and at most.
METRIC_NAMES_LIMIT = 100
METRIC_NAMES_MAX_LIMIT = 10_000
# The longest C{url} a fetch takes (the path, less its leading slash, fits
# the hunter's 2048 characters).
FETCH_URL_MAX_LENGTH = 2047


class TooLarge(ApiError):
    """
    A decompressed body is over the size limit.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, {"error": f"decompressed body larger than "
                                        f"{limit} bytes",
                               "field": "(body)", "limit": limit})


# Arguments

def arg(request: IRequest, name: str) -> str | None:
    """
    The first value of an argument (query string or form), or C{None}.
    """
    values = request.args.get(name.encode("ascii"))
    if not values:
        return None
    try:
        return values[0].decode("utf-8")
    except UnicodeDecodeError:
        raise FieldProblem(name, "not valid UTF-8") from None


def args(request: IRequest, name: str) -> list[str]:
    """
    Every value of an argument, in order.
    """
    try:
        return [v.decode("utf-8")
                for v in request.args.get(name.encode("ascii"), [])]
    except UnicodeDecodeError:
        raise FieldProblem(name, "not valid UTF-8") from None


def required(request: IRequest, name: str) -> str:
    """
    The first value of an argument that must be there and not be empty.
    """
    value = arg(request, name)
    if value is None or value == "":
        raise FieldProblem(name, "required")
    return value


def intArg(request: IRequest, name: str, default: int, low: int,
           high: int) -> int:
    """
    A whole number argument from C{low} to C{high}; C{default} when absent.
    """
    text = arg(request, name)
    if text is None:
        return default
    if not text.isascii() or not text.isdigit() or len(text) > 9:
        raise FieldProblem(name, f"must be a whole number from {low} to "
                                 f"{high}")
    value = int(text)
    if not low <= value <= high:
        raise FieldProblem(name, f"must be from {low} to {high}")
    return value


def timeArg(text: str, field: str) -> int:
    """
    A timestamp argument in milliseconds.
    """
    try:
        return parseTimestamp(text)
    except TimestampOutOfRange as e:
        raise Unprocessable(field, str(e)) from None
    except TimestampError as e:
        raise FieldProblem(field, str(e)) from None


# Bodies

def contentEncoding(request: IRequest) -> bytes:
    """
    The request's C{Content-Encoding}, lower case (C{identity} when none),
    when it is one meetrd reads; otherwise a C{415} naming the header.
    """
    encoding = (request.getHeader(b"content-encoding") or b"identity")
    encoding = encoding.strip().lower() or b"identity"
    if encoding not in (b"identity", b"gzip", b"x-gzip", b"deflate"):
        raise ApiError(415, {"error": "unsupported Content-Encoding",
                             "field": "Content-Encoding",
                             "supported": ["gzip", "deflate", "identity"]})
    return encoding


def readBody(request: IRequest, limit: int) -> bytes:
    """
    The request body, decompressed when it came gzip-encoded; at most
    C{limit} bytes either way.
    """
    request.content.seek(0)
    body = request.content.read()
    encoding = contentEncoding(request)
    if encoding == b"identity":
        return body
    wbits = 31 if encoding != b"deflate" else 15
    inflater = zlib.decompressobj(wbits)
    try:
        plain = inflater.decompress(body, limit + 1)
    except zlib.error as e:
        raise FieldProblem("(body)", f"cannot decompress: {e}") from None
    if len(plain) > limit or inflater.unconsumed_tail:
        raise TooLarge(limit)
    return plain


def pointsOf(request: IRequest, limits: Limits, maxBodySize: int,
             nowMs: int, cooperator: Cooperator,
             tagSets: dict[Any, Tags] | None = None
             ) -> list[Point] | Deferred[list[Point]]:
    """
    The points a write sends, checked whole: one point (form fields), a
    batch (form field C{batch} plus C{metrics}) or a JSON body, a large
    one checked in slices on C{cooperator} (then a Deferred).  A JSON
    body's tag sets are looked up in C{tagSets} (see
    L{meetrd.jsonbatch.decodeBatch}).
    """
    contentType = (request.getHeader(b"content-type") or b"")
    mediaType = contentType.split(b";")[0].strip().lower()
    if mediaType in (b"application/json", b"text/json"):
        body = readBody(request, maxBodySize)
        if len(body) > LARGE_BODY:
            return decodeBatchInSlices(body, limits, nowMs, cooperator,
                                       field="(body)", tagSets=tagSets)
        return decodeBatch(body, limits, nowMs, field="(body)",
                           tagSets=tagSets)
    if mediaType not in (b"application/x-www-form-urlencoded",
                         b"multipart/form-data", b""):
        raise ApiError(415, {
            "error": "unsupported Content-Type",
            "field": "Content-Type",
            "supported": ["application/x-www-form-urlencoded",
                          "multipart/form-data", "application/json"],
        })
    # A form is read as it came, but an encoding meetrd does not know is
    # refused here as for a JSON body.
    contentEncoding(request)
    if b"batch" in request.args:
        metrics = required(request, "metrics")
        return checkBatch(parseJSON(metrics, "metrics"), limits, nowMs)
    item: dict[str, Any] = {}
    for name in ("metric_id", "ts", "value", "tags"):
        value = arg(request, name)
        if value is not None:
            item[name] = value
    for name in ("metric_id", "ts", "value"):
        if name not in item:
            raise FieldProblem(name, "required")
    return [checkPoint(item, limits, nowMs)]


def remoteWriteOf(request: IRequest, limits: Limits, maxBodySize: int,
                  nowMs: int, series: SeriesCache) -> Received:
    """
    The samples of a Prometheus remote write 1.0 body (a snappy-compressed
    protobuf C{WriteRequest}), as points.
    """
    encoding = (request.getHeader(b"content-encoding") or b"").strip()
    if encoding.lower() != b"snappy":
        raise ApiError(415, {
            "error": "remote write bodies are snappy-compressed",
            "field": "Content-Encoding", "supported": ["snappy"]})
    contentType = request.getHeader(b"content-type") or b""
    mediaType, _, parameters = contentType.partition(b";")
    proto = parameters.strip().lower()
    if mediaType.strip().lower() != b"application/x-protobuf" or \
            proto not in (b"", b"proto=prometheus.writerequest"):
        raise ApiError(415, {
            "error": "remote write 1.0 is supported: a "
                     "prometheus.WriteRequest protobuf",
            "field": "Content-Type",
            "supported": ["application/x-protobuf"]})
    request.content.seek(0)
    body = request.content.read(maxBodySize + 1)
    if len(body) > maxBodySize:
        raise TooLarge(maxBodySize)
    parsed = decodeWriteRequest(body, maxBodySize)
    return remotePointsOf(parsed, limits, nowMs, series)


# Reads

def queryOf(request: IRequest, limits: Limits) -> Query:
    """
    The search a C{GET /1.0/metrics} asks for.
    """
    metric = checkMetric(required(request, "metric"), limits, field="metric")
    fromText = required(request, "from")
    toText = required(request, "to")
    fromMs = timeArg(fromText, "from")
    toMs = timeArg(toText, "to")
    if fromMs > toMs:
        raise Unprocessable("from", "must not be after 'to'")
    aggregation = required(request, "aggregation")
    if not isAggregation(aggregation):
        problem = f"unknown aggregation {aggregation[:40]!r}"
        if aggregation.startswith("p"):
            problem += ": a percentile is pQ with 0 < Q < 100 (p50, p99.9)"
        raise ApiError(400, {
            "error": problem, "field": "aggregation",
            "valid": [*AGGREGATIONS, "pQ"]})
    filters: dict[str, set[str]] = {}
    for tag in args(request, "tag"):
        key, sep, value = tag.partition(":")
        if not sep or not key or not value:
            raise FieldProblem("tag", f"{tag[:60]!r} is not KEY:VALUE")
        filters.setdefault(key, set()).add(value)
    groupBy = arg(request, "group_by")
    if groupBy is not None and not groupBy:
        raise FieldProblem("group_by", "names a tag key")
    intervalMs = None
    intervalText = arg(request, "interval")
    if intervalText is not None:
        try:
            seconds = parseDuration(intervalText)
        except DurationTooLong as e:
            raise Unprocessable("interval", str(e)) from None
        except DurationError as e:
            raise FieldProblem("interval", str(e)) from None
        if seconds <= 0:
            raise FieldProblem("interval", "must be at least 1ms")
        # Timestamps are kept to the millisecond: a finer interval is
        # rounded to it, and never below it.
        intervalMs = max(1, round(seconds * 1000))
        if (toMs - fromMs) // intervalMs > 1_000_000:
            raise Unprocessable("interval", "more than 1000000 intervals "
                                             "in the range")
    return Query(
        metric=metric, fromText=fromText, toText=toText, fromMs=fromMs,
        toMs=toMs, aggregation=aggregation,
        tagFilters=tuple((k, frozenset(v))
                         for k, v in sorted(filters.items())),
        groupBy=groupBy, intervalMs=intervalMs)


def metricNamesOf(request: IRequest, limits: Limits) -> tuple[str, int]:
    """
    The C{prefix} and C{limit} of a C{GET /1.0/metric_names}.
    """
    prefix = arg(request, "prefix") or ""
    if len(prefix) > limits.max_metric_length:
        raise FieldProblem("prefix", f"longer than "
                           f"{limits.max_metric_length} characters")
    limit = intArg(request, "limit", METRIC_NAMES_LIMIT, 1,
                   METRIC_NAMES_MAX_LIMIT)
    return prefix, limit


# Hunts

def fetchOf(request: IRequest, rules: Any) -> tuple[list[str], str]:
    """
    The nodes and the path of a C{POST /fetch}, each node allowed by
    C{rules} (the hunter's C{allow}; a C{403} naming the first that is
    not).
    """
    from meetrd.hunter.allow import NotAllowed, checkAllowed
    from meetrd.hunter.ondemand import BadPath, normalizePath
    from meetrd.settings import parseNode

    for name in sorted(request.args):
        if name not in (b"node", b"url"):
            raise FieldProblem(name.decode("utf-8", "replace")[:64],
                               "unknown field: a fetch takes node and url")
    nodes = args(request, "node")
    if not nodes:
        raise FieldProblem("node", "required: one or more host:port")
    url = required(request, "url")
    if len(url) > FETCH_URL_MAX_LENGTH:
        raise FieldProblem("url", f"longer than {FETCH_URL_MAX_LENGTH} "
                                  f"characters")
    try:
        path = normalizePath(url)
    except BadPath as e:
        raise FieldProblem("url", str(e)) from None
    if len(nodes) > 1000:
        raise FieldProblem("node", "more than 1000 nodes in one fetch")
    for node in nodes:
        try:
            host, _ = parseNode(node)
        except ValueError as e:
            raise FieldProblem("node", str(e)) from None
        try:
            checkAllowed(host, rules)
        except NotAllowed as e:
            raise ApiError(403, {"error": str(e), "field": "node",
                                 "node": node, "allow": list(rules)})
    return nodes, path
