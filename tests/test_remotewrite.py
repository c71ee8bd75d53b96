"""
Prometheus remote write, without Cassandra: the body decoded into points
(labels to tags, C{__name__} to the metric, staleness markers and NaN left
out), every bad body or series a 4xx that names what is wrong with
nothing stored, and the status codes senders act on, over
C{treq.testing.StubTreq} with a store the test holds back.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import cramjam
import pytest
from twisted.internet.defer import fail

from meetrd.points import Point
from meetrd.proto.remote_pb2 import WriteRequest
from meetrd.remotewrite import (
    STALE_NAN_BITS,
    SeriesCache,
    decodeWriteRequest,
    pointsOf,
    uncompressedLength,
)
from meetrd.settings import Limits
from meetrd.store import StoreUnavailable
from tests.test_api_unit import (
    AUTH,
    READ,
    WRITE,
    HeldStore,
    bearer,
    client,
    result,
)

NOW = 10_000_000
STALE = struct.unpack("<d", struct.pack("<Q", STALE_NAN_BITS))[0]


def writeRequest(series):
    """
    A C{WriteRequest} of C{(labels, [(value, ts), ...])} series.
    """
    request = WriteRequest()
    for labels, samples in series:
        added = request.timeseries.add()
        for name, value in labels.items():
            label = added.labels.add()
            label.name, label.value = name, value
        for value, ts in samples:
            sample = added.samples.add()
            sample.value, sample.timestamp = value, ts
    return request


def compressed(request):
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


def post(treq, body, headers=None):
    return treq.post("http://x/api/v1/write", body, headers={
        "Content-Encoding": "snappy",
        "Content-Type": "application/x-protobuf",
        "X-Prometheus-Remote-Write-Version": "0.1.0", **(headers or {})})


def answer(d):
    response = result(d)
    return response.code, result(response.content())


def test_labelsBecomeTagsAndTheNameTheMetric():
    """
    C{__name__} is the metric, the other labels the tags (an empty label
    value is no label); staleness markers and NaN or infinite values are
    counted, not stored.
    """
    request = writeRequest([
        ({"__name__": "node_load1", "instance": "10.0.0.1:9100",
          "job": "node", "empty": ""},
         [(0.5, NOW - 2000), (0.75, NOW - 1000), (STALE, NOW)]),
        ({"__name__": "weird", "job": "x"},
         [(float("nan"), NOW), (float("inf"), NOW), (-1e300, NOW)])])
    received = pointsOf(decodeWriteRequest(compressed(request), 1 << 20),
                        Limits(), NOW)
    tags = (("instance", "10.0.0.1:9100"), ("job", "node"))
    assert received.points == [
        Point("node_load1", tags, NOW - 2000, 0.5),
        Point("node_load1", tags, NOW - 1000, 0.75),
        Point("weird", (("job", "x"),), NOW, -1e300)]
    assert (received.stale, received.notFinite) == (1, 2)


@pytest.mark.parametrize("body, problem", [
    (b"", "empty"),
    (b"\xff\xff\xff\xff\xff", "no length at its start"),
    (b"\x0aabc", "not snappy block-compressed data"),
    (bytes(cramjam.snappy.compress_raw(b"\x0a\xff\xff\xff\xff\x0f")),
     "not a remote write WriteRequest"),
    (b"\x80\x80\x80\x80\x04", "more than 1048576"),
])
def test_badBodiesNameTheirProblem(body, problem):
    """
    An empty body, one that is not snappy, one whose protobuf is garbage
    and one that claims more than the limit once uncompressed (refused
    from its header, before decompressing) each raise a problem of the
    body that says which.
    """
    with pytest.raises(Exception) as caught:
        decodeWriteRequest(body, 1 << 20)
    assert caught.value.field == "(body)"
    assert problem in caught.value.problem


def test_uncompressedLengthIsTheLeadingVarint():
    """
    The length a snappy block announces is read from its varint header.
    """
    data = b"x" * 300
    assert uncompressedLength(bytes(cramjam.snappy.compress_raw(data))) == 300


def test_everyBadSeriesIsNamed():
    """
    Bad series and samples are each named by their place in the request,
    and none of the request's points is returned.
    """
    request = writeRequest([
        ({"__name__": "ok", "job": "x"}, [(1.0, NOW)]),
        ({"job": "x"}, [(1.0, NOW)]),
        ({"__name__": "bad name!", "job": "x"}, [(1.0, NOW)]),
        ({"__name__": "m", "9key": "x"}, [(1.0, NOW)]),
        ({"__name__": "m", **{f"k{i}": "v" for i in range(40)}}, [(1, NOW)]),
        ({"__name__": "m"}, [(1.0, NOW + 3_600_000)]),
        ({"__name__": "m", "a": "1"}, [(1.0, NOW)]),
    ])
    request.timeseries[6].labels.add(name="a", value="2")
    with pytest.raises(Exception) as caught:
        pointsOf(request, Limits(), NOW)
    fields = [problem.field for problem in caught.value.problems]
    assert fields == [
        "timeseries[1].labels.__name__", "timeseries[2].labels.__name__",
        "timeseries[3].labels", "timeseries[4].labels",
        "timeseries[5].samples[0].timestamp", "timeseries[6].labels"]
    assert "given twice" in caught.value.problems[-1].problem


def test_labelSetsCheckedOncePerSender():
    """
    A label set checked once is taken from the cache by the next request
    (the same tag tuple, which the write planner groups by); a bad one is
    never cached and is refused every time.
    """
    cache = SeriesCache()
    good = ({"__name__": "up", "job": "n"}, [(1.0, NOW)])
    bad = ({"__name__": "bad name"}, [(1.0, NOW)])
    first = pointsOf(writeRequest([good]), Limits(), NOW, cache)
    second = pointsOf(writeRequest([good]), Limits(), NOW + 1, cache)
    assert first.points[0].tags is second.points[0].tags
    assert len(cache.known) == 1
    for _ in range(2):
        with pytest.raises(Exception):
            pointsOf(writeRequest([bad]), Limits(), NOW, cache)
    assert len(cache.known) == 1


def test_tooManySamplesIsRefusedWhole():
    """
    More samples than C{limits.max_batch_points} in one request is refused
    as a whole, naming the limit.
    """
    request = writeRequest([({"__name__": "m"},
                             [(1.0, NOW - i) for i in range(11)])])
    with pytest.raises(Exception) as caught:
        pointsOf(request, Limits(max_batch_points=10), NOW)
    assert caught.value.field == "timeseries"
    assert "more than 10" in caught.value.problem


def test_storedRequestAnswers204():
    """
    A good request is answered C{204} once the store has written its
    points, not before.
    """
    treq, store, api = client({})
    d = post(treq, compressed(writeRequest([
        ({"__name__": "up", "job": "n"}, [(1.0, 9_999_000)])])))
    early = []
    d.addBoth(early.append)
    assert early == []
    [(points, held)] = store.writes
    assert points == [Point("up", (("job", "n"),), 9_999_000, 1.0)]
    held.callback(1)
    treq.flush()
    [response] = early
    assert (response.code, result(response.content())) == (204, b"")
    assert api.writes.inFlight == 0


@pytest.mark.parametrize("headers, body, field", [
    ({"Content-Encoding": "gzip"}, None, "Content-Encoding"),
    ({"Content-Type": "application/json"}, None, "Content-Type"),
    ({"Content-Type": "application/x-protobuf;proto=io.prometheus.write.v2"
                      ".Request"}, None, "Content-Type"),
    ({}, b"garbage", "(body)"),
    ({}, bytes(cramjam.snappy.compress_raw(b"\x12\x00\x08")), "(body)"),
])
def test_requestsThatCanNeverSucceedAre4xx(headers, body, field):
    """
    A body of another encoding or type (remote write 2.0 included) is a
    C{415}, a corrupt one a C{400}; each names the field, and nothing
    reaches the store.
    """
    treq, store, _ = client({})
    if body is None:
        body = compressed(writeRequest([({"__name__": "m"}, [(1.0, NOW)])]))
    code, content = answer(post(treq, body, headers))
    assert code in (400, 415)
    assert (code == 415) == (field.startswith("Content"))
    assert json.loads(content)["field"] == field
    assert store.writes == []


def test_badSeriesAre400WithEveryProblem():
    """
    A request with a bad series is a C{400} listing it, and nothing of the
    request is stored.
    """
    treq, store, _ = client({})
    code, content = answer(post(treq, compressed(writeRequest([
        ({"__name__": "good"}, [(1.0, 9_999_000)]),
        ({"__name__": "bad name"}, [(1.0, 9_999_000)])]))))
    assert code == 400
    assert json.loads(content)["errors"] == [{
        "index": 1, "field": "timeseries[1].labels.__name__",
        "problem": json.loads(content)["errors"][0]["problem"]}]
    assert store.writes == []


def test_passingTroubleIs503SoSendersRetry():
    """
    Cassandra unreachable and too many writes in flight are C{503}s, which
    remote write senders send again.
    """
    class Down(HeldStore):
        def writePoints(self, points):
            return fail(StoreUnavailable("no host"))

    body = compressed(writeRequest([({"__name__": "m"}, [(1.0, 9_999_000)])]))
    treq, _, _ = client({}, Down())
    assert answer(post(treq, body))[0] == 503
    treq, store, _ = client({"http": {"max_writes_in_flight": 1}})
    first = post(treq, body)
    assert answer(post(treq, body))[0] == 503
    store.writes[0][1].callback(1)
    treq.flush()
    assert answer(first)[0] == 204


def test_writeRoleNeeded():
    """
    With tokens configured, remote write needs a token of the write role.
    """
    treq, store, _ = client(AUTH)
    body = compressed(writeRequest([({"__name__": "m"}, [(1.0, 9_999_000)])]))
    assert answer(post(treq, body))[0] == 401
    assert answer(post(treq, body, bearer(READ)))[0] == 403
    d = post(treq, body, bearer(WRITE))
    store.writes[0][1].callback(1)
    treq.flush()
    assert answer(d)[0] == 204


def test_generatedModuleMatchesTheProto(tmp_path):
    """
    C{meetrd/proto/remote_pb2.py} is what C{protoc} makes of
    C{remote.proto} today (C{make proto} regenerates it).
    """
    protoc = pytest.importorskip("grpc_tools.protoc")
    folder = Path(__file__).resolve().parent.parent / "meetrd" / "proto"
    assert protoc.main(["protoc", f"-I{folder}", f"--python_out={tmp_path}",
                        str(folder / "remote.proto")]) == 0
    assert (tmp_path / "remote_pb2.py").read_text() == \
        (folder / "remote_pb2.py").read_text()
