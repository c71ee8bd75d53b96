"""
The metrics API: a Klein application over the store, its routes and the
answers they give; what a request carries is read by L{meetrd.decoding},
and writes and searches are let in by L{meetrd.admission}.

Every error is JSON naming the field and the problem: C{400} for bad input,
C{404}/C{405} for routes, C{413} for bodies over the limit (see
L{meetrd.web}), C{415} for bodies of an unknown type and C{503} with
C{Retry-After} when Cassandra cannot answer in time.
"""

from __future__ import annotations

from typing import Any

from klein import Klein
from twisted.internet.defer import CancelledError, Deferred, maybeDeferred
from twisted.internet.task import Cooperator
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from meetrd.admission import AdmissionGate
from meetrd.auth import AuthError, Authorizer
from meetrd.batchshapes import BatchShapes
from meetrd.consolefiles import SECURITY_HEADERS, ConsoleFiles
from meetrd.decoding import (
    fetchOf,
    metricNamesOf,
    pointsOf,
    queryOf,
    remoteWriteOf,
)
from meetrd.points import Point
from meetrd.promql.httpapi import QueryAPI
from meetrd.remotewrite import Received, SeriesCache
from meetrd.search import SearchTimedOut, runSearch
from meetrd.settings import Settings
from meetrd.store import WRITE_SLICE, ReadProgress, StoreUnavailable
from meetrd.validation import BatchProblems, FieldProblem, Unprocessable
from meetrd.web import ApiError, jsonBody

RETRY_AFTER_SECONDS = 5
def _respond(request: IRequest, code: int, payload: Any,
             headers: dict[str, str] | None = None) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    for name, value in (headers or {}).items():
        request.setHeader(name.encode("ascii"), value.encode("ascii"))
    return jsonBody(payload)


class MetricsAPI:
    """
    The HTTP API of meetrd.

    @ivar app: the Klein application; C{resource()} serves it.
    """

    app = Klein()
    log = Logger()

    def __init__(self, store: Any, settings: Settings,
                 clock: Any, hunter: Any = None,
                 selfMetrics: Any = None,
                 consoleFiles: ConsoleFiles | None = None) -> None:
        """
        @param store: a L{meetrd.store.MetricStore} (or one like it).
        @param settings: the daemon's settings.
        @param clock: provides C{seconds()}.
        @param hunter: the hunter, for the routes that start or report
            hunts; C{None} when there is none.
        @param selfMetrics: a L{meetrd.selfmetrics.SelfMetrics}, served at
            C{/metrics} and told of points written and rejected.
        @param consoleFiles: the web console's files (the package's by
            default).
        """
        self.store = store
        self.settings = settings
        self.clock = clock
        self.hunter = hunter
        self.selfMetrics = selfMetrics
        self.authorizer = Authorizer(settings.auth)
        self.writes = AdmissionGate(settings.http.max_writes_in_flight,
                                    "writes")
        self.searches = AdmissionGate(settings.http.max_searches_in_flight,
                                      "searches")
        self.remoteSeries = SeriesCache()
        self.shapes = BatchShapes(WRITE_SLICE)
        self.queries = QueryAPI(
            store, settings.limits, clock,
            None if selfMetrics is None
            else lambda read: selfMetrics.queryReads.labels(read).inc())
        self._cooperator: Cooperator | None = None
        self.consoleFiles = consoleFiles or ConsoleFiles()

    @property
    def cooperator(self) -> Cooperator:
        """
        Runs long work (large batches) in steps, each in a reactor turn of
        its own, on the API's clock (which then also provides
        C{callLater}).
        """
        if self._cooperator is None:
            clock = self.clock
            self._cooperator = Cooperator(
                scheduler=lambda step: clock.callLater(0, step))
        return self._cooperator

    def resource(self) -> Any:
        """
        The twisted.web resource serving this API.
        """
        return self.app.resource()

    def _nowMs(self) -> int:
        return int(self.clock.seconds() * 1000)

    # Writes

    @app.route("/1.0/metrics", methods=["POST"])
    def write(self, request: IRequest) -> Any:
        """
        Store one point (form fields) or a batch (form field C{batch} plus
        C{metrics}, or a JSON body); answer once Cassandra has it.
        """
        self.authorizer.check(request, "write")

        def check() -> Any:
            # A large JSON body is checked in slices (a Deferred),
            # anything else at once; either way a bad batch fails before
            # any write.
            limits = self.settings.limits
            d = maybeDeferred(
                pointsOf, request, limits,
                self.settings.http.max_body_size, self._nowMs(),
                self.cooperator, self.shapes.tagSets(limits))
            return d.addCallback(self._writeBatch)

        d = self.writes.run(check)

        def written(count: int) -> bytes:
            if self.selfMetrics is not None:
                self.selfMetrics.pointsWritten.inc(count)
            return _respond(request, 200, {"status": "ok", "written": count})

        return d.addCallback(written)

    def _writeBatch(self, points: list[Point]) -> Deferred[int]:
        """
        Write a checked batch, planned from the shape of the earlier
        writes of its signature when they fit (see L{meetrd.batchshapes}).
        """
        return self.store.writePoints(points,
                                      memo=self.shapes.memoFor(points))

    @app.route("/api/v1/write", methods=["POST"])
    def remoteWrite(self, request: IRequest) -> Any:
        """
        Prometheus remote write 1.0: store the samples of a
        snappy-compressed protobuf C{WriteRequest}; C{204} once Cassandra
        has them.  A request that can never succeed is a C{4xx} (senders
        drop it), trouble that passes (Cassandra unreachable, too many
        writes in flight) a C{503} (senders send it again).
        """
        self.authorizer.check(request, "write")

        def store(received: Received) -> Any:
            if self.selfMetrics is not None:
                skipped = self.selfMetrics.remoteSkipped
                if received.stale:
                    skipped.labels("stale").inc(received.stale)
                if received.notFinite:
                    skipped.labels("not_finite").inc(received.notFinite)
            if not received.points:
                return 0
            return self.store.writePoints(received.points)

        def written(count: int) -> bytes:
            if self.selfMetrics is not None:
                self.selfMetrics.pointsWritten.inc(count)
            request.setResponseCode(204)
            return b""

        d = self.writes.run(
            lambda: store(remoteWriteOf(
                request, self.settings.limits,
                self.settings.http.max_body_size, self._nowMs(),
                self.remoteSeries)))
        return d.addCallback(written)

    # Searches

    @app.route("/1.0/metrics", methods=["GET", "HEAD"])
    def search(self, request: IRequest) -> Any:
        """
        Aggregate a metric over an inclusive time range.
        """
        self.authorizer.check(request, "read")
        d = self.searches.run(
            lambda: runSearch(self.store,
                              queryOf(request, self.settings.limits),
                              self.settings.limits, self.clock))
        return d.addCallback(lambda body: _respond(request, 200, body))

    @app.route("/1.0/metric_names", methods=["GET", "HEAD"])
    def metricNames(self, request: IRequest) -> Any:
        """
        The names of the stored metrics that start with C{prefix}, sorted,
        at most C{limit} of them: what the console types ahead from.
        """
        self.authorizer.check(request, "read")
        prefix, limit = metricNamesOf(request, self.settings.limits)
        progress = ReadProgress()
        progress.begin("reading the metric names", 1)
        seconds = self.settings.limits.search_timeout

        def timedOut(result: Any, timeout: float) -> Any:
            if isinstance(result, Failure) and result.check(CancelledError):
                return Failure(SearchTimedOut(seconds, progress.describe()))
            return result

        def read() -> Deferred[list[str]]:
            d = self.store.metricNames(progress)
            return d.addTimeout(seconds, self.clock, onTimeoutCancel=timedOut)

        d = self.searches.run(read)

        def answer(names: list[str]) -> bytes:
            matching = [n for n in names if n.startswith(prefix)]
            return _respond(request, 200, {
                "prefix": prefix, "metrics": matching[:limit],
                "truncated": len(matching) > limit})

        return d.addCallback(answer)

    # The Prometheus query API

    def _prometheus(self, request: IRequest, run: Any,
                    counted: bool = True) -> Any:
        """
        Answer a route of the Prometheus query API: C{run} is called with
        the request's parameters (query string and form body) and fires
        with the code and body.
        """
        self.authorizer.check(request, "read")
        if counted:
            d = self.searches.run(run, request.args)
        else:
            d = maybeDeferred(run, request.args)

        def respond(answer: tuple[int, Any]) -> bytes:
            code, body = answer
            headers = {"Retry-After": "1"} if code == 503 else None
            return _respond(request, code, body, headers)

        return d.addCallback(respond)

    @app.route("/api/v1/query", methods=["GET", "POST"])
    def promQuery(self, request: IRequest) -> Any:
        """
        PromQL at one instant, as Prometheus's C{/api/v1/query}.
        """
        return self._prometheus(request, self.queries.query)

    @app.route("/api/v1/query_range", methods=["GET", "POST"])
    def promQueryRange(self, request: IRequest) -> Any:
        """
        PromQL over a range, as Prometheus's C{/api/v1/query_range}.
        """
        return self._prometheus(request, self.queries.queryRange)

    @app.route("/api/v1/series", methods=["GET", "POST"])
    def promSeries(self, request: IRequest) -> Any:
        """
        The series that match selectors, as Prometheus's C{/api/v1/series}.
        """
        return self._prometheus(request, self.queries.series)

    @app.route("/api/v1/labels", methods=["GET", "POST"])
    def promLabels(self, request: IRequest) -> Any:
        """
        Label names, as Prometheus's C{/api/v1/labels}.
        """
        return self._prometheus(request, self.queries.labels)

    @app.route("/api/v1/label/<string:name>/values", methods=["GET"])
    def promLabelValues(self, request: IRequest, name: str) -> Any:
        """
        A label's values, as Prometheus's C{/api/v1/label/<name>/values}.
        """
        return self._prometheus(
            request, lambda args: self.queries.labelValues(name, args))

    @app.route("/api/v1/metadata", methods=["GET"])
    def promMetadata(self, request: IRequest) -> Any:
        """
        Metric metadata (C{HELP}, C{TYPE}), which meetrd does not keep: an
        empty map, as Prometheus answers for metrics it has none of.
        """
        return self._prometheus(request, lambda args: (200, {
            "status": "success", "data": {}}), counted=False)

    @app.route("/api/v1/status/buildinfo", methods=["GET"])
    def promBuildInfo(self, request: IRequest) -> Any:
        """
        Which Prometheus API meetrd answers like.
        """
        return self._prometheus(
            request, lambda args: self.queries.buildInfo(), counted=False)

    # Hunting

    @app.route("/fetch", methods=["POST"])
    def fetch(self, request: IRequest) -> bytes:
        """
        Start fetching a path from nodes, as Artemis did; C{202} at once.
        """
        self.authorizer.check(request, "admin")
        if self.hunter is None:
            raise ApiError(404, {"error": "no hunter in this process"})
        nodes, path = fetchOf(request, self.settings.hunter.allow)
        job = self.hunter.startFetch(nodes, path)
        request.setHeader(b"location", f"/fetch/{job.id}".encode("ascii"))
        return _respond(request, 202, {"job": job.id, "nodes": list(job.nodes),
                                       "url": path})

    @app.route("/fetch/<string:jobId>", methods=["GET", "HEAD"])
    def fetchReport(self, request: IRequest, jobId: str) -> bytes:
        """
        How an on-demand fetch is going, node by node.
        """
        self.authorizer.check(request, "read")
        job = None if self.hunter is None else self.hunter.fetchJob(jobId)
        if job is None:
            raise ApiError(404, {"error": "no such fetch job (jobs are "
                                          "kept for a bounded time)",
                                 "field": "job", "job": jobId[:64]})
        return _respond(request, 200, job.asJSON())

    @app.route("/targets", methods=["GET", "HEAD"])
    def targets(self, request: IRequest) -> bytes:
        """
        Every target this instance hunts, with its health; with
        C{hunter.shard: auto}, this instance's name and the live members
        that share the hunt (each hunts its own share: ask each for its
        targets).
        """
        self.authorizer.check(request, "read")
        if self.hunter is None:
            return _respond(request, 200, {"targets": [], "instance": None,
                                           "members": []})
        return _respond(request, 200, {
            "targets": self.hunter.report(),
            "instance": self.hunter.instanceName(),
            "members": self.hunter.members()})

    # The web console

    @app.route("/", methods=["GET", "HEAD"])
    def console(self, request: IRequest) -> bytes:
        """
        The web console's page (it holds no data: no token needed).
        """
        return self._consoleFile(request, "index.html")

    @app.route("/console/<path:asset>", methods=["GET", "HEAD"])
    def consoleAsset(self, request: IRequest, asset: str) -> bytes:
        """
        A script, style or the chart library of the web console.
        """
        return self._consoleFile(request, asset)

    def _consoleFile(self, request: IRequest, name: str) -> bytes:
        found = self.consoleFiles.get(name)
        if found is None:
            raise ApiError(404, {"error": "no such console file",
                                 "path": request.path.decode(
                                     "utf-8", "replace")})
        request.setHeader(b"etag", found.etag.encode("ascii"))
        request.setHeader(b"cache-control", b"no-cache")
        for header, value in SECURITY_HEADERS.items():
            request.setHeader(header.encode("ascii"), value.encode("ascii"))
        if request.getHeader(b"if-none-match") == found.etag.encode("ascii"):
            request.setResponseCode(304)
            return b""
        request.setHeader(b"content-type", found.contentType.encode("ascii"))
        return found.body

    # Health

    @app.route("/health", methods=["GET", "HEAD"])
    def health(self, request: IRequest) -> bytes:
        """
        C{200} while the process runs.
        """
        return _respond(request, 200, {"status": "ok"})

    @app.route("/ready", methods=["GET", "HEAD"])
    def ready(self, request: IRequest) -> bytes:
        """
        C{200} when the Cassandra session is up, the schema in place and
        (with C{hunter.shard: auto}) the members sharing the hunt known.
        """
        waitingForMembers = self.hunter is not None and \
            not self.hunter.membersKnown()
        if self.store.ready and not waitingForMembers:
            return _respond(request, 200, {"status": "ready"})
        if self.store.ready:
            return _respond(request, 503, {
                "status": "not ready",
                "error": "reading the members that share the hunt"},
                {"Retry-After": "1"})
        return _respond(request, 503, {"status": "not ready",
                                       "error": self.store.lastError},
                        {"Retry-After": str(RETRY_AFTER_SECONDS)})

    @app.route("/metrics", methods=["GET", "HEAD"])
    def metrics(self, request: IRequest) -> bytes:
        """
        meetrd's own metrics in the Prometheus text format.
        """
        if self.settings.auth.metrics_need_token:
            self.authorizer.check(request, "read")
        if self.selfMetrics is None:
            raise ApiError(404, {"error": "no self-metrics in this process"})
        from prometheus_client import CONTENT_TYPE_LATEST

        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
        return self.selfMetrics.render()

    @app.route("/openapi.json", methods=["GET", "HEAD"])
    def openapi(self, request: IRequest) -> bytes:
        """
        The OpenAPI 3.1 document of this API.
        """
        from importlib.resources import files

        request.setHeader(b"content-type", b"application/json")
        return files("meetrd").joinpath("openapi.json").read_bytes()

    def _rejected(self, count: int) -> None:
        if self.selfMetrics is not None:
            self.selfMetrics.pointsRejected.inc(count)

    # Errors

    @app.handle_errors(FieldProblem)
    def fieldProblem(self, request: IRequest, failure: Failure) -> bytes:
        """
        One field is wrong: C{400} naming it (C{422} for a time outside
        the years 1 to 9999 or the accepted window).
        """
        problem = failure.value
        if request.method == b"POST" and request.path == b"/1.0/metrics":
            self._rejected(1)
        body = {"error": f"{problem.field}: {problem.problem}"}
        body.update(problem.asJSON())
        return _respond(request, problem.status, body)

    @app.handle_errors(BatchProblems)
    def batchProblems(self, request: IRequest, failure: Failure) -> bytes:
        """
        Items of a batch are wrong: C{400} listing every one (C{422} when
        each is only a time outside the years 1 to 9999 or the window).
        """
        problems = failure.value.problems
        self._rejected(failure.value.total)
        # 422 when every item is well formed but its time out of range or
        # of the accepted window; 400 when any is malformed.
        code = 422 if all(p.status == 422 for p in problems) else 400
        return _respond(request, code, {
            "error": f"{len(problems)} invalid point(s); nothing was stored",
            "errors": [p.asJSON() for p in problems[:1000]],
        })

    @app.handle_errors(Unprocessable)
    def unprocessable(self, request: IRequest, failure: Failure) -> bytes:
        """
        A well-formed request meetrd will not process (a search over the
        limits, C{from} after C{to}): C{422} naming the field to change.
        """
        return _respond(request, 422, {"error": failure.value.problem,
                                       "field": failure.value.field})

    @app.handle_errors(SearchTimedOut)
    def timedOut(self, request: IRequest, failure: Failure) -> bytes:
        """
        A search past its deadline: C{503} saying what it was reading.
        """
        return _respond(request, 503, {
            "error": str(failure.value), "field": "limits.search_timeout",
            "reading": failure.value.reading}, {"Retry-After": "1"})

    @app.handle_errors(ApiError)
    def apiError(self, request: IRequest, failure: Failure) -> bytes:
        """
        An answer decided by a route.
        """
        error = failure.value
        return _respond(request, error.code, error.body, error.headers)

    @app.handle_errors(AuthError)
    def authError(self, request: IRequest, failure: Failure) -> bytes:
        """
        No valid token (C{401}), or one without the role (C{403}).
        """
        error = failure.value
        headers = {}
        if error.code == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="meetr"'
        return _respond(request, error.code, {
            "error": error.message, "field": "Authorization",
            "role": error.role}, headers)

    @app.handle_errors(StoreUnavailable)
    def unavailable(self, request: IRequest, failure: Failure) -> bytes:
        """
        Cassandra cannot answer: C{503}, try again later.
        """
        self.log.warn("Cassandra unavailable for {method} {path}: {why}",
                      method=request.method.decode("ascii", "replace"),
                      path=request.path.decode("ascii", "replace"),
                      why=str(failure.value))
        return _respond(request, 503, {
            "error": f"Cassandra is unavailable: {failure.value}"},
            {"Retry-After": str(RETRY_AFTER_SECONDS)})

    @app.handle_errors(HTTPException)
    def httpError(self, request: IRequest, failure: Failure) -> bytes:
        """
        Routing errors (C{404}, C{405}) as JSON.
        """
        error = failure.value
        headers = {}
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            headers["Allow"] = ", ".join(error.valid_methods)
        return _respond(request, error.code, {
            "error": error.name.lower(), "path": request.path.decode(
                "utf-8", "replace")}, headers)

    @app.handle_errors(Exception)
    def unexpected(self, request: IRequest, failure: Failure) -> bytes:
        """
        A fault of meetrd's own: logged in full, C{500} without details.
        """
        self.log.failure("Unexpected error answering {path}", failure,
                         path=request.path.decode("utf-8", "replace"))
        return _respond(request, 500, {"error": "internal error; see the "
                                                "server log"})

