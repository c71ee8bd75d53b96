"""
The OpenAPI document of the HTTP API (C{meetrd/openapi.json}): it names
every route, it is valid OpenAPI 3.1, the daemon serves it, and a live
daemon answers what schemathesis generates from it as it says.
"""

from __future__ import annotations

import gzip
import ipaddress
import json
import re
import time
import zlib
from importlib.resources import files
from pathlib import Path
from typing import Any, Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS as REGISTERED_CHECKS
from schemathesis.checks import load_all_checks
from schemathesis.config import SchemathesisConfig
from schemathesis.transport.requests import (
    REQUESTS_TRANSPORT,
    urlencoded_serializer,
)

from tests.loopback import closedPort, pageNode
from tests.support import Daemon, daemonSettings, http

DOCUMENT_PATH = Path(str(files("meetrd").joinpath("openapi.json")))
DOCUMENT: dict[str, Any] = json.loads(DOCUMENT_PATH.read_text("utf-8"))
METHODS = ("get", "put", "post", "delete", "options", "head", "patch",
           "trace")

# The live daemon's tokens: the generated requests carry the admin one; the
# edge cases below try none, a wrong one and the read one.
ADMIN_TOKEN = "openapi-admin-token"
READ_TOKEN = "openapi-read-token"
AS_ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

# The generated run: deterministic (a fixed seed, no example database),
# valid and invalid requests ("all" modes), at most MAX_EXAMPLES fuzzed
# examples per operation (the examples and coverage phases add their own),
# and a time budget, shared evenly by the operations, after which an
# operation's remaining examples send nothing (so that every operation is
# reached however slow the machine).
SEED = 20031218
MAX_EXAMPLES = 60
TIME_BUDGET = 60.0
MIN_REQUESTS = 300
# Every check schemathesis has (as `st run --checks all`).
load_all_checks()
CHECKS = REGISTERED_CHECKS.get_all()
# What positive_data_acceptance takes for a schema-valid request: its
# defaults, and 422 everywhere (a well-formed request the server will not
# process: a search over the limits, `from` after `to`, an interval longer
# than ten thousand years or more than 1000000 of them, a time past the
# years 1 to 9999 or outside the window around now; a schema cannot
# relate one field to another, sum a duration, or know the clock or the
# data held).
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]
CONFIG = SchemathesisConfig.from_dict({
    "seed": SEED,
    "generation": {"mode": "all", "max-examples": MAX_EXAMPLES,
                   "database": "none"},
    "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED}},
    "operations": [
        # The Prometheus query routes also answer a schema-valid request
        # 400 (Prometheus's bad_data): a PromQL expression, a selector, a
        # duration or a timestamp is a string whose grammar a schema
        # cannot describe.
        {"include-path-regex": "^/api/v1/(query|query_range|series|labels"
                               "|label/[^/]+/values)$",
         "checks": {"positive_data_acceptance": {
             "expected-statuses": [*ACCEPTED, "400"]}}},
        # A remote write body is a snappy-compressed protobuf
        # WriteRequest, which the schema can only call binary: generated
        # bytes are refused 400 naming the body.
        {"include-path": "/api/v1/write",
         "checks": {"positive_data_acceptance": {
             "expected-statuses": [*ACCEPTED, "400"]}}},
    ],
})


def normalizedRoutes() -> set[tuple[str, str]]:
    """
    Every (path, method) the Klein application routes, with werkzeug
    converters written as OpenAPI path parameters.
    """
    from meetrd.api import MetricsAPI

    routes = set()
    for rule in MetricsAPI.app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in rule.methods or ():
            routes.add((path, method.lower()))
    return routes


def documentedOperations() -> set[tuple[str, str]]:
    """
    Every (path, method) the document describes.
    """
    return {(path, method) for path, item in DOCUMENT["paths"].items()
            for method in item if method in METHODS}


def test_everyRouteDocumented() -> None:
    """Every Klein route and method is an operation of the document, and every documented operation is a route."""
    routes = normalizedRoutes()
    documented = documentedOperations()
    assert routes, "no routes found in MetricsAPI.app.url_map"
    assert sorted(routes - documented) == [], "routes missing from openapi.json"
    assert sorted(documented - routes) == [], "documented but not routed"


def test_pathParametersDeclared() -> None:
    """Every parameter of a documented path is declared as a required path parameter of each of its operations."""
    for path, item in DOCUMENT["paths"].items():
        names = set(re.findall(r"{([^{}]+)}", path))
        for method, operation in item.items():
            if method not in METHODS:
                continue
            declared = {p["name"] for p in operation.get("parameters", [])
                        + item.get("parameters", [])
                        if p.get("in") == "path" and p.get("required")}
            assert declared == names, (path, method)


def test_validOpenAPI31() -> None:
    """The document is valid against the OpenAPI 3.1 schema that schemathesis bundles, and schemathesis loads every operation of it."""
    from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

    assert DOCUMENT["openapi"].startswith("3.1.")
    errors = [f"{'/'.join(map(str, e.instance_path))}: {e.message}"
              for e in OPENAPI_31_VALIDATOR.iter_errors(DOCUMENT)]
    assert errors == []
    schema = schemathesis.openapi.from_path(DOCUMENT_PATH, config=CONFIG)
    schema.validate()
    loaded = [result.ok() for result in schema.get_all_operations()]
    assert {(op.path, op.method.lower()) for op in loaded} \
        == documentedOperations()


def _schemaObjects(node: Any, where: str = "#") -> Iterator[tuple[str, Any]]:
    """
    Every Schema Object of the document (under a C{schema} key or in
    C{components/schemas}), with where it is.
    """
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{where}/{key}"
            if key == "schema" or where == "#/components/schemas":
                yield here, value
            else:
                yield from _schemaObjects(value, here)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _schemaObjects(value, f"{where}/{index}")


def _values(node: Any, name: str) -> Iterator[Any]:
    """
    Every value under the key C{name}, at any depth.
    """
    if isinstance(node, dict):
        for key, value in node.items():
            if key == name:
                yield value
            yield from _values(value, name)
    elif isinstance(node, list):
        for value in node:
            yield from _values(value, name)


def test_schemasAreJSONSchema202012() -> None:
    """Every Schema Object is valid JSON Schema 2020-12 (the 3.1 dialect), its patterns compile, and every $ref of the document resolves."""
    import jsonschema_rs

    objects = list(_schemaObjects(DOCUMENT))
    assert len(objects) > 20
    for where, schema in objects:
        try:
            jsonschema_rs.meta.validate(
                {"$schema": "https://json-schema.org/draft/2020-12/schema",
                 **schema} if isinstance(schema, dict) else schema)
        except jsonschema_rs.ValidationError as e:
            pytest.fail(f"{where}: {e}")
    patterns = [p for _, schema in objects for p in _values(schema, "pattern")
                if isinstance(p, str)]
    assert len(patterns) > 10
    for pattern in patterns:
        jsonschema_rs.validator_for({"type": "string", "pattern": pattern})
    for ref in {r for r in _values(DOCUMENT, "$ref") if isinstance(r, str)}:
        assert ref.startswith("#/"), ref
        node: Any = DOCUMENT
        for part in ref[2:].split("/"):
            assert isinstance(node, dict) and part in node, ref
            node = node[part]


def _parameterSchema(path: str, method: str, name: str) -> dict[str, Any]:
    """
    The schema of the named parameter of an operation.
    """
    operation = DOCUMENT["paths"][path][method]
    [parameter] = [p for p in operation["parameters"] if p["name"] == name]
    return parameter["schema"]


def _valid(schema: dict[str, Any], value: Any) -> bool:
    import jsonschema_rs

    return jsonschema_rs.validator_for(schema).is_valid(value)


def test_documentSaysWhatTheServerRefuses() -> None:
    """The document refuses what the server refuses for a field alone: a zero search interval, a metric_names limit outside 1 to 10000, an empty fetch url or one with a scheme, fields other than node and url in a fetch, a bracketed node that is not an IPv6 address, and timestamps that are not dates of the calendar or that the server cannot read."""
    for method in ("get", "head"):
        interval = _parameterSchema("/1.0/metrics", method, "interval")
        for refused in ("0ms", "0s0ms", "0.0s", "00h"):
            assert not _valid(interval, refused), refused
        for taken in ("0.4ms", "1m", "0s1ms", "1h30m"):
            assert _valid(interval, taken), taken
        limit = _parameterSchema("/1.0/metric_names", method, "limit")
        for refused in ("0", "000", "10001", "0000000001", "99999"):
            assert not _valid(limit, refused), refused
        for taken in ("1", "20", "10000", "000000020"):
            assert _valid(limit, taken), taken
    fetch = DOCUMENT["paths"]["/fetch"]["post"]["requestBody"]["content"][
        "application/x-www-form-urlencoded"]["schema"]
    for refused in ("", "http://node/metrics", "x://y"):
        assert not _valid(fetch, {"node": ["127.0.0.1:9100"],
                                  "url": refused}), refused
    assert _valid(fetch, {"node": ["127.0.0.1:9100"], "url": "metrics"})
    assert not _valid(fetch, {"node": ["127.0.0.1:9100"], "url": "/m",
                              "extra": "1"})
    for refused in ("[B:A]:3", "[1::2::3]:80", "[::1]:0", "::1:80"):
        assert not _valid(fetch, {"node": [refused], "url": "m"}), refused
    for taken in ("[::1]:9100", "[fe80::1:2]:80", "[::ffff:127.0.0.1]:1",
                  "node-1.example:65535"):
        assert _valid(fetch, {"node": [taken], "url": "m"}), taken
    timestamp = DOCUMENT["components"]["schemas"]["TimestampText"]
    for refused in ("0000-01-01", "2001-02-29", "2003-04-31",
                    "2003-12-18T20 2000"):
        assert not _valid(timestamp, refused), refused
    for taken in ("2000-02-29", "2003-12-18T20", "2003-12-18 12:18 0530",
                  "2003-12-18T06:48:18.250Z", "1071730100"):
        assert _valid(timestamp, taken), taken


# The live daemon


# A node with a Prometheus page, so that a target of the daemon is up.
PROM_PAGE = b"# TYPE up gauge\nup 1\nmeetr_openapi_test_total 3\n"


@pytest.fixture(scope="module")
def promNode() -> Iterator[str]:
    """
    A loopback node serving a Prometheus page, as C{host:port}.
    """
    with pageNode(PROM_PAGE) as address:
        yield address


@pytest.fixture(scope="module")
def daemon(node: tuple[str, int], keyspace: str, promNode: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """
    A real C{twistd -n meetr}, ready, hunting one node that is up and one
    that is down, with an admin and a read token.  C{hunter.allow} keeps
    its default (loopback only).
    """
    config = daemonSettings(keyspace, node, hunter={"targets": [
        {"job": "up", "nodes": [promNode], "interval": "1s"},
        {"job": "down", "nodes": [f"127.0.0.1:{closedPort()}"],
         "interval": "1s", "labels": {"team": "ops"}},
    ]}, auth={"tokens": [{"token": ADMIN_TOKEN, "roles": ["admin"]},
                         {"token": READ_TOKEN, "roles": ["read"]}]})
    assert "allow" not in config["hunter"]
    process = Daemon(tmp_path_factory.mktemp("openapi"), config)
    process.start()
    try:
        process.waitReady()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            targets = http("GET", process.base + "/targets",
                           headers=AS_ADMIN).json()["targets"]
            health = {t["health"] for t in targets}
            if health == {"up", "down"}:
                break
            time.sleep(0.2)
        yield process
    finally:
        process.stop()


@pytest.mark.cassandra
@pytest.mark.daemon
def test_servesTheDocument(daemon: Daemon) -> None:
    """GET /openapi.json serves exactly the packaged document as application/json."""
    reply = http("GET", daemon.base + "/openapi.json")
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    assert reply.json() == DOCUMENT


def _loopback(node: str) -> bool:
    host = node.rpartition(":")[0].strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Run:
    """
    What the generated run did: requests sent, by operation and status.
    """

    started: dict[str, float] = {}
    requests = 0
    skipped = 0
    statuses: dict[str, dict[int, int]] = {}


RUN = _Run()
# Hypothesis warns when the global random state moves while it draws; here
# the driver threads of the conftest's Cassandra session move it, not the
# strategies.
RANDOM_MOVED = pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies"
    ":hypothesis.errors.HypothesisDeprecationWarning")
@schemathesis.serializer("application/x-protobuf")
def _protobufBody(context: Any, value: Any) -> bytes:
    """
    A generated remote write body (a binary string) sent as it is: the
    daemon must answer it as the document says, whatever its bytes.
    """
    return value if isinstance(value, bytes) else str(value).encode()


SCHEMA = schemathesis.openapi.from_path(DOCUMENT_PATH, config=CONFIG)
SCHEMA_OPERATIONS = documentedOperations()
FORM = "application/x-www-form-urlencoded"


@REQUESTS_TRANSPORT.serializer(FORM)
def _formBody(context: Any, value: Any) -> dict[str, Any]:
    """
    A URL-encoded body with the fields the document encodes as JSON
    (C{encoding.contentType}) written as JSON, as schemathesis does for
    multipart bodies but not for URL-encoded ones.  The case keeps the
    body as generated: schemathesis judges a body the caller replaced
    against the schema again, and a JSON field written as text is not
    the object the schema describes.
    """
    case = context.case
    if isinstance(value, dict):
        operation = DOCUMENT["paths"][case.operation.path][
            case.operation.method.lower()]
        encoding = operation["requestBody"]["content"][FORM].get(
            "encoding", {})
        asJSON = {name for name, e in encoding.items()
                  if e.get("contentType") == "application/json"}
        # The JSON fields from the case as generated: the value given here
        # has its nested nulls already written as the text "null".
        generated = case.body if isinstance(case.body, dict) else value
        value = {name: json.dumps(generated.get(name, field))
                 if name in asJSON
                 and not isinstance(generated.get(name, field), str)
                 else field for name, field in value.items()}
    return urlencoded_serializer(context, value)


def _send(case: Any, daemon: Daemon, headers: dict[str, str]) -> Any:
    """
    Send C{case} to the daemon.
    """
    return case.call(base_url=daemon.base, headers=headers, timeout=30)


# One test item per operation.  (With pytest 9, schemathesis 4.32.5's items
# all get the node id `test_liveDaemonConforms`; their names and failure
# reports still carry the operation, as in `[POST /1.0/metrics]`.)
@pytest.mark.cassandra
@pytest.mark.daemon
@RANDOM_MOVED
@SCHEMA.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_liveDaemonConforms(case: Any, daemon: Daemon) -> None:
    """A live daemon answers every generated request, valid or not, as every schemathesis check wants: no 5xx; the status, content type, headers and body the document gives; schema-valid requests accepted (or 422) and schema-invalid ones refused."""
    started = RUN.started.setdefault(case.operation.label, time.monotonic())
    if time.monotonic() - started > TIME_BUDGET / len(SCHEMA_OPERATIONS):
        RUN.skipped += 1
        return
    response = _send(case, daemon, AS_ADMIN)
    RUN.requests += 1
    byStatus = RUN.statuses.setdefault(case.operation.label, {})
    byStatus[response.status_code] = byStatus.get(response.status_code, 0) + 1
    case.validate_response(response, checks=CHECKS)
    if case.operation.label == "POST /fetch" and response.status_code == 202:
        # No operation is excluded from the run: the daemon keeps
        # hunter.allow's default (loopback only), so generated nodes off
        # this machine are refused 403 before any traffic.  Check that
        # every node a job was started for is indeed loopback.
        nodes = response.json()["nodes"]
        assert all(_loopback(n) for n in nodes), nodes


@pytest.mark.cassandra
@pytest.mark.daemon
def test_runWasLargeEnough() -> None:
    """The generated run sent a few hundred requests and reached every documented operation."""
    if not RUN.started:
        pytest.skip("the generated run did not run")
    summary = {label: dict(sorted(codes.items()))
               for label, codes in sorted(RUN.statuses.items())}
    print(f"\nschemathesis run: {RUN.requests} requests, {RUN.skipped} "
          f"examples past the time budget; by operation and status: "
          f"{json.dumps(summary)}")
    assert RUN.requests >= MIN_REQUESTS, summary
    labels = {f"{m.upper()} {p}" for p, m in documentedOperations()}
    assert set(RUN.statuses) == labels


@pytest.mark.cassandra
@pytest.mark.daemon
@RANDOM_MOVED
def test_fetchWorkflow(daemon: Daemon, promNode: str) -> None:
    """Following the links of POST /fetch, GET and HEAD /fetch/{jobId} report real jobs as the document says."""
    reports: dict[int, int] = {}
    states: dict[str, int] = {}

    class Workflow(SCHEMA.as_state_machine()):  # type: ignore[misc]
        def before_call(self, case: Any) -> None:
            # Generated nodes are nearly all refused (403) by hunter.allow;
            # point the fetches at the loopback node so that jobs start.
            if case.operation.label == "POST /fetch" \
                    and isinstance(case.body, dict):
                case.body = {**case.body, "node": [promNode]}
            elif case.operation.path == "/fetch/{jobId}":
                # A moment for the fetch of a local page to finish, so that
                # the reports show finished nodes as well as pending ones.
                time.sleep(0.05)

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"base_url": daemon.base, "headers": AS_ADMIN,
                    "timeout": 30}

        def validate_response(self, response: Any, case: Any,
                              additional_checks: Any = None,
                              **kwargs: Any) -> None:
            if case.operation.path == "/fetch/{jobId}":
                reports[response.status_code] = \
                    reports.get(response.status_code, 0) + 1
                if response.status_code == 200 and case.method == "GET":
                    for node in response.json()["nodes"].values():
                        states[node["state"]] = \
                            states.get(node["state"], 0) + 1
            case.validate_response(response, checks=CHECKS)

    Workflow.run(settings=settings(
        max_examples=15, stateful_step_count=4, deadline=None, database=None,
        derandomize=True, suppress_health_check=list(HealthCheck)))
    assert reports.get(200, 0) >= 1, reports
    assert "ok" in states, states


# Requests the generated run is unlikely to make, each checked with the same
# schemathesis checks, among them the faults this run once found (now
# fixed): huge numbers, an overflowing sum, intervals before 1970 and a
# broken multipart body.

_DIGITS = "1" * 4301


def _points(daemon: Daemon, metric: str, *points: tuple[Any, ...]) -> None:
    body = json.dumps([{"metric_id": metric, "ts": p[0], "value": p[1],
                        "tags": p[2] if len(p) > 2 else {}}
                       for p in points]).encode()
    reply = daemon.post("/1.0/metrics", body, "application/json", AS_ADMIN)
    assert reply.status == 200, reply.body


_BIG_JSON = b"[" + b" " * (16 * 1024 * 1024) + b"]"


def _edge(name: str, method: str, path: str, expected: int,
          data: Any = None, bug: str | None = None, sent: Any = None,
          token: str | None = ADMIN_TOKEN, **parts: Any) -> Any:
    """
    One edge case: the request's parts (as for C{APIOperation.Case}),
    headers to send as they are, the bearer token, points to write first,
    and the status expected (beyond conforming to the document).
    """
    marks = [pytest.mark.xfail(reason=bug, strict=True)] if bug else []
    headers = dict(sent or {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return pytest.param(method, path, parts, headers, data, expected,
                        id=name, marks=marks)


EDGE_CASES = [
    _edge("search-interval-groups", "GET", "/1.0/metrics", 200,
          query={"metric": "edge", "from": "2003-12-18",
                 "to": "2003-12-19", "aggregation": "count",
                 "interval": "1h", "group_by": "dc"},
          data=("edge", [("2003-12-18T06:48:18Z", 1.0, {"dc": "eu"}),
                         ("2003-12-18T07:48:18.250Z", 2.0, {"dc": "us"}),
                         ("2003-12-18T07:50:00Z", 3.0,
                          {"dc": "us", "node": "a"}),
                         ("2003-12-18T08:00:00Z", 4.0, {"node": "b"})])),
    _edge("search-no-points", "GET", "/1.0/metrics", 200,
          query={"metric": "edge.none", "from": "2003-12-18",
                 "to": "2003-12-19", "aggregation": "avg",
                 "interval": "1h", "group_by": "dc",
                 "tag": ["dc:eu", "dc:us"]}),
    _edge("write-json-gzip", "POST", "/1.0/metrics", 200,
          body=gzip.compress(b'[{"metric_id":"edge","ts":1,"value":1}]'),
          media_type="application/json",
          sent={"Content-Type": "application/json",
                "Content-Encoding": "gzip"}),
    _edge("write-json-deflate", "POST", "/1.0/metrics", 200,
          body=zlib.compress(b'{"metrics":[{"metric_id":"edge","ts":2,'
                             b'"value":1}]}'),
          media_type="application/json",
          sent={"Content-Type": "text/json", "Content-Encoding": "deflate"}),
    _edge("write-gzip-bomb", "POST", "/1.0/metrics", 413,
          body=gzip.compress(_BIG_JSON), media_type="application/json",
          sent={"Content-Type": "application/json",
                "Content-Encoding": "gzip"}),
    _edge("write-body-over-limit", "POST", "/1.0/metrics", 413,
          body=_BIG_JSON, media_type="application/json",
          sent={"Content-Type": "application/json"}),
    _edge("write-unknown-encoding", "POST", "/1.0/metrics", 415,
          body=b"[]", media_type="application/json",
          sent={"Content-Type": "application/json",
                "Content-Encoding": "br"}),
    _edge("write-unknown-type", "POST", "/1.0/metrics", 415,
          body=b"metric_id=edge", media_type="application/json",
          sent={"Content-Type": "text/plain"}),
    _edge("fetch-address-not-allowed", "POST", "/fetch", 403,
          body={"node": ["127.0.0.1:9", "10.1.2.3:80"], "url": "/m"},
          media_type="application/x-www-form-urlencoded"),
    _edge("fetch-name-not-allowed", "POST", "/fetch", 403,
          body={"node": ["localhost:80"], "url": "metrics"},
          media_type="application/x-www-form-urlencoded"),
    _edge("search-no-token", "GET", "/1.0/metrics", 401, token=None,
          query={"metric": "edge", "from": "0", "to": "1",
                 "aggregation": "sum"}),
    _edge("targets-unknown-token", "GET", "/targets", 401, token="nope"),
    _edge("write-read-token", "POST", "/1.0/metrics", 403, token=READ_TOKEN,
          body=[{"metric_id": "edge", "ts": 1, "value": 1}],
          media_type="application/json"),
    _edge("fetch-read-token", "POST", "/fetch", 403, token=READ_TOKEN,
          body={"node": ["127.0.0.1:9"], "url": "/metrics"},
          media_type="application/x-www-form-urlencoded"),
    _edge("search-read-token", "HEAD", "/1.0/metrics", 200, token=READ_TOKEN,
          query={"metric": "edge", "from": "0", "to": "1",
                 "aggregation": "max"}),
    _edge("health-no-token", "GET", "/health", 200, token=None),
    _edge("metrics-no-token", "GET", "/metrics", 200, token=None),
    _edge("search-from-4301-digits", "GET", "/1.0/metrics", 422,
          query={"metric": "edge", "from": _DIGITS, "to": "1",
                 "aggregation": "sum"}),
    _edge("write-ts-4301-digits", "POST", "/1.0/metrics", 422,
          body={"metric_id": "edge", "ts": _DIGITS, "value": 1},
          media_type="application/x-www-form-urlencoded"),
    _edge("search-interval-overflow", "GET", "/1.0/metrics", 422,
          query={"metric": "edge", "from": "0", "to": "1",
                 "aggregation": "sum", "interval": "1" * 400 + "s"}),
    _edge("search-sum-overflows", "GET", "/1.0/metrics", 200,
          query={"metric": "edge.huge", "from": "0", "to": "10",
                 "aggregation": "sum"},
          data=("edge.huge", [(1, 1.7e308), (2, 1.7e308)])),
    _edge("search-interval-before-1970", "GET", "/1.0/metrics", 200,
          query={"metric": "edge.old", "from": "-100", "to": "0",
                 "aggregation": "sum", "interval": "1s"},
          data=("edge.old", [(-5, 1.0)])),
    _edge("write-malformed-multipart", "POST", "/1.0/metrics", 400,
          body=b"garbage", media_type="multipart/form-data",
          sent={"Content-Type": "multipart/form-data; boundary=xyz"}),
]


@pytest.mark.cassandra
@pytest.mark.daemon
@pytest.mark.parametrize("method, path, parts, sent, data, expected",
                         EDGE_CASES)
def test_edgeCasesConform(daemon: Daemon, method: str, path: str,
                          parts: dict[str, Any], sent: dict[str, str],
                          data: Any, expected: int) -> None:
    """Requests at the edges (tokens missing or short of a role, compressed, oversized or broken bodies, refused nodes, huge numbers, overflowing sums, old timestamps) get the documented answers, never a 5xx."""
    if data is not None:
        metric, points = data
        _points(daemon, metric, *points)
    case = SCHEMA[path][method].Case(**parts)
    response = _send(case, daemon, sent)
    case.validate_response(response, checks=CHECKS)
    assert response.status_code == expected, response.text
