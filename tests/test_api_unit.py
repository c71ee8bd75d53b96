"""
Fast tests of the API's own rules, over C{treq.testing.StubTreq} with a
store whose answers the test holds back: the caps on requests in flight
and the roles of bearer tokens.
"""

from __future__ import annotations

import json

from treq.testing import StubTreq
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from meetrd.api import MetricsAPI
from meetrd.settings import settingsFromMapping

POINT = json.dumps([{"metric_id": "m", "ts": 1000, "value": 1}]).encode()
SEARCH = "http://x/1.0/metrics?metric=m&from=0&to=10&aggregation=sum"
READ = "r" * 20
WRITE = "w" * 20
ADMIN = "a" * 20


class HeldStore:
    """
    A store whose writes and searches wait until the test releases them.
    """

    ready = True
    lastError = ""

    def __init__(self):
        self.writes = []
        self.searches = []

    def writePoints(self, points, memo=None):
        d = Deferred()
        self.writes.append((list(points), d))
        return d

    sliceMs = 86_400_000

    def findSeries(self, metric, fromMs, toMs, filters, maxSeries,
                   progress=None):
        if progress is not None:
            progress.begin(f"reading the series index of {metric!r}", 3)
        d = Deferred()
        self.searches.append(d)
        return d

    def summarize(self, *args, **kwargs):
        return succeed([])

    def valueSummaries(self, *args, **kwargs):
        return succeed([])


def client(settings, store=None):
    store = store or HeldStore()
    clock = Clock()
    clock.advance(10_000)
    api = MetricsAPI(store, settingsFromMapping(settings, "test"), clock)
    return StubTreq(api.resource()), store, api


def post(treq, headers=None):
    return treq.post("http://x/1.0/metrics", POINT, headers={
        "Content-Type": "application/json", **(headers or {})})


def result(d):
    out = []
    d.addBoth(out.append)
    assert out, "no answer"
    return out[0]


def answeredAfterSearch(treq, store, pending):
    """
    Release the store's first held search; the code and JSON body of the
    answer to C{pending}.
    """
    treq.flush()
    store.searches[0].callback([])
    treq.flush()
    reply = result(pending)
    return reply.code, json.loads(result(reply.content()))


def test_writesOverCapAnswer503AtOnce():
    """
    Past max_writes_in_flight, a write is answered 503 with Retry-After at
    once, and once the held writes end new ones are accepted again.
    """
    treq, store, api = client({"http": {"max_writes_in_flight": 2}})
    first, second = post(treq), post(treq)
    assert len(store.writes) == 2
    shed = result(post(treq))
    assert shed.code == 503
    assert shed.headers.getRawHeaders("retry-after") == ["1"]
    assert "overloaded" in json.loads(result(shed.content()))["error"]
    assert len(store.writes) == 2
    for points, d in store.writes:
        d.callback(len(points))
    treq.flush()
    assert result(first).code == 200 and result(second).code == 200
    assert api.writes.inFlight == 0
    third = post(treq)
    assert len(store.writes) == 3
    store.writes[2][1].callback(1)
    treq.flush()
    assert result(third).code == 200


def test_failedWritesFreeTheirPlace():
    """
    A write that fails leaves the count of writes in flight as it was.
    """
    treq, store, api = client({"http": {"max_writes_in_flight": 1}})
    pending = post(treq)
    store.writes[0][1].errback(RuntimeError("boom"))
    treq.flush()
    assert result(pending).code == 500
    assert api.writes.inFlight == 0


def test_searchesOverCapAnswer503():
    """
    Past max_searches_in_flight, a search is answered 503 at once.
    """
    treq, store, api = client({"http": {"max_searches_in_flight": 1}})
    held = treq.get(SEARCH)
    shed = result(treq.get(SEARCH))
    assert shed.code == 503
    store.searches[0].callback([])
    treq.flush()
    assert result(held).code == 200
    assert api.searches.inFlight == 0


def test_searchPastItsDeadlineAnswers503():
    """
    A search still reading when limits.search_timeout passes is answered
    503 naming the setting and what it was reading, and frees its place.
    """
    treq, store, api = client({"limits": {"search_timeout": "5s"}})
    pending = treq.get(SEARCH)
    answered = []
    pending.addBoth(lambda r: answered.append(r) or r)
    treq.flush()
    api.clock.advance(4.9)
    treq.flush()
    assert answered == []
    api.clock.advance(0.2)
    treq.flush()
    reply = result(pending)
    assert reply.code == 503
    body = json.loads(result(reply.content()))
    assert body["field"] == "limits.search_timeout"
    assert body["reading"] == "reading the series index of 'm': 0 of 3 " \
        "reads done"
    assert "5s deadline" in body["error"]
    assert api.searches.inFlight == 0


def test_answerOverTheCapAnswers422():
    """
    A search whose answer would pass limits.max_search_points is refused
    with a 422 that says to widen the interval, before any point is read.
    """
    treq, store, api = client({"limits": {"max_search_points": 10}})
    code, body = answeredAfterSearch(
        treq, store, treq.get(SEARCH.replace("to=10", "to=11") +
                              "&interval=1s"))
    assert code == 422
    assert body["field"] == "interval"
    assert "widen interval" in body["error"]


AUTH = {"auth": {"tokens": [{"token": READ, "roles": ["read"]},
                            {"token": WRITE, "roles": ["write"]},
                            {"token": ADMIN, "roles": ["admin"]}]}}


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_tokensAndRoles():
    """
    With tokens set: none or a wrong one is 401 with WWW-Authenticate, a
    token without the role 403, the right role (or admin) passes.
    """
    treq, store, api = client(AUTH)
    missing = result(post(treq))
    assert missing.code == 401
    assert missing.headers.getRawHeaders("www-authenticate") == [
        'Bearer realm="meetr"']
    assert result(post(treq, bearer("x" * 20))).code == 401
    assert result(post(treq, {"Authorization": f"Basic {WRITE}"})).code == 401
    assert result(post(treq, bearer(READ))).code == 403
    assert store.writes == []
    pending = post(treq, bearer(WRITE))
    adminPending = post(treq, bearer(ADMIN))
    for points, d in store.writes:
        d.callback(1)
    treq.flush()
    assert result(pending).code == 200 and result(adminPending).code == 200
    assert result(treq.get(SEARCH)).code == 401
    assert result(treq.get(SEARCH, headers=bearer(WRITE))).code == 403
    assert result(treq.get("http://x/targets", headers=bearer(READ))).code \
        == 200
    fetch = result(treq.post("http://x/fetch", b"node=127.0.0.1:1&url=/m",
                             headers={"Content-Type":
                                      "application/x-www-form-urlencoded",
                                      **bearer(WRITE)}))
    assert fetch.code == 403


def test_openRoutesStayOpen():
    """
    /health, /ready and /openapi.json need no token; /metrics needs one only
    when metrics_need_token is set.
    """
    treq, store, api = client(AUTH)
    for path in ("/health", "/ready", "/openapi.json"):
        assert result(treq.get("http://x" + path)).code == 200, path
    assert result(treq.get("http://x/metrics")).code == 404
    guarded, _, _ = client({"auth": {**AUTH["auth"],
                                     "metrics_need_token": True}})
    assert result(guarded.get("http://x/metrics")).code == 401


def test_noTokensMeansOpen():
    """
    Without tokens, no request needs one.
    """
    treq, store, api = client({})
    pending = post(treq)
    store.writes[0][1].callback(1)
    treq.flush()
    assert result(pending).code == 200


def test_badAggregationsAnswer400():
    """
    An unknown aggregation, or a percentile outside (0, 100), is refused
    with a 400 naming the field; a percentile inside is taken.
    """
    treq, store, api = client({})
    for aggregation in ("p0", "p150", "p100", "median", "p-5"):
        reply = result(treq.get(SEARCH.replace("aggregation=sum",
                                               f"aggregation={aggregation}")))
        assert reply.code == 400, aggregation
        body = json.loads(result(reply.content()))
        assert body["field"] == "aggregation"
        assert "pQ" in body["valid"]
    code, body = answeredAfterSearch(treq, store, treq.get(
        SEARCH.replace("aggregation=sum", "aggregation=p99.9")))
    assert code == 200
    assert (body["aggregation"], body["value"]) == ("p99.9", None)


class FetchingHunter:
    """
    A hunter that records the fetches it is asked to start.
    """

    def __init__(self):
        self.started = []

    def startFetch(self, nodes, path):
        self.started.append((list(nodes), path))

        class Job:
            id = "job1"

        Job.nodes = tuple(nodes)
        return Job


def fetchReply(body):
    """
    POST C{body} to /fetch of an API with a recording hunter: the hunter,
    the answer's code and its JSON body.
    """
    hunter = FetchingHunter()
    clock = Clock()
    api = MetricsAPI(HeldStore(), settingsFromMapping({}, "test"), clock,
                     hunter=hunter)
    reply = result(StubTreq(api.resource()).post(
        "http://x/fetch", body,
        headers={"Content-Type": "application/x-www-form-urlencoded"}))
    return hunter, reply.code, json.loads(result(reply.content()))


def test_fetchRefusesUnknownFields():
    """
    A fetch with a field other than node and url is refused with a 400
    naming that field, and nothing is fetched.
    """
    hunter, code, body = fetchReply(
        b"node=127.0.0.1:9100&url=/metrics&x-extra=42")
    assert (code, body["field"]) == (400, "x-extra")
    assert hunter.started == []
    hunter, code, body = fetchReply(b"node=127.0.0.1:9100&url=/metrics")
    assert code == 202
    assert hunter.started == [(["127.0.0.1:9100"], "/metrics")]


def test_fetchRefusesEmptyAndOverlongUrls():
    """
    An empty url, or one over 2047 characters, is a 400 naming url; 2047
    characters are taken.
    """
    for url in (b"", b"a" * 2048, b"/" + b"a" * 2047):
        hunter, code, body = fetchReply(b"node=127.0.0.1:9100&url=" + url)
        assert (code, body["field"]) == (400, "url"), url[:10]
        assert hunter.started == []
    hunter, code, body = fetchReply(b"node=127.0.0.1:9100&url=" + b"a" * 2047)
    assert code == 202


def test_formWithUnknownEncodingAnswers415():
    """
    A form write with a Content-Encoding meetrd does not know is refused
    with a 415 naming the header, as a JSON write is; nothing is written.
    """
    treq, store, api = client({})
    reply = result(treq.post(
        "http://x/1.0/metrics", b"metric_id=m&ts=1000&value=1",
        headers={"Content-Type": "application/x-www-form-urlencoded",
                 "Content-Encoding": "{}"}))
    assert reply.code == 415
    assert json.loads(result(reply.content()))["field"] == "Content-Encoding"
    assert store.writes == []


def test_intervalBelowAMillisecondIsRoundedUp():
    """
    A search interval of zero is a 400 naming interval; a nonzero one
    finer than a millisecond is taken as 1 ms.
    """
    treq, store, api = client({})
    for interval in ("0ms", "0s0ms", "0.0s"):
        reply = result(treq.get(SEARCH + f"&interval={interval}"))
        assert reply.code == 400, interval
        assert json.loads(result(reply.content()))["field"] == "interval"
    code, body = answeredAfterSearch(treq, store, treq.get(
        SEARCH + "&interval=0.4ms"))
    assert code == 200, body
    assert body["interval"] == 0.001


def test_searchesTheServerWillNotRunAnswer422():
    """
    A well-formed search meetrd will not run (C{from} after C{to}, more
    than 1000000 intervals in the range, an interval longer than ten
    thousand years, a time past the year 9999) is a 422 naming the field
    to change; no search reaches the store.
    """
    treq, store, api = client({})
    for query, field in (
            ("metric=m&from=10&to=0&aggregation=sum", "from"),
            ("metric=m&from=0&to=2000001&aggregation=sum&interval=1ms",
             "interval"),
            ("metric=m&from=0&to=1&aggregation=sum&interval=530000w",
             "interval"),
            ("metric=m&from=0&to=374513492105544.4&aggregation=sum", "to")):
        reply = result(treq.get(f"http://x/1.0/metrics?{query}"))
        assert reply.code == 422, query
        assert json.loads(result(reply.content()))["field"] == field
    assert store.searches == []


def test_pointsOutsideTheTimeWindowAnswer422():
    """
    A write whose only fault is a time outside the accepted window (more
    than limits.max_future ahead) or past the year 9999 is a 422 naming
    ts, as a single form point and as a batch; a batch with a malformed
    item as well is a 400.  Nothing is written.
    """
    treq, store, api = client({})
    future = 10_000 + 3600
    reply = result(treq.post(
        "http://x/1.0/metrics", f"metric_id=m&ts={future}&value=1".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"}))
    assert reply.code == 422
    assert json.loads(result(reply.content()))["field"] == "ts"
    late = {"metric_id": "m", "ts": future, "value": 1}
    for batch, code in (([late, {**late, "ts": 374513492105544.4}], 422),
                        ([late, {**late, "ts": "soon"}], 400)):
        reply = result(treq.post(
            "http://x/1.0/metrics", json.dumps(batch).encode(),
            headers={"Content-Type": "application/json"}))
        assert reply.code == code, batch
        errors = json.loads(result(reply.content()))["errors"]
        assert errors[0]["field"] == "ts"
    assert store.writes == []
