"""
Fast tests of what the web console needs from the daemon, over
C{treq.testing.StubTreq}: its files served without a token (and nothing
else from the package), C{GET /1.0/metric_names} with its checks, caps,
deadline and roles, and the pinned chart library's integrity check.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile

import pytest
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from meetrd.api import MetricsAPI
from meetrd.consolefiles import ConsoleFiles
from tools.consolevendor import (
    FILES,
    IntegrityError,
    checkIntegrity,
    extract,
    present,
)
from meetrd.settings import settingsFromMapping

READ = "r" * 20
WRITE = "w" * 20
AUTH = {"auth": {"tokens": [{"token": READ, "roles": ["read"]},
                            {"token": WRITE, "roles": ["write"]}]}}
NAMES = ["cpu.load", "cpu.user", "disk.free", "up"]


class NamesStore:
    """
    A store that knows a few metric names, or holds its answer back.
    """

    ready = True
    lastError = ""

    def __init__(self, names=NAMES, hold=False):
        self.names = names
        self.hold = hold
        self.held = []

    def metricNames(self, progress=None):
        if self.hold:
            d = Deferred()
            self.held.append(d)
            return d
        return succeed(list(self.names))


def client(settings=None, store=None, consoleFiles=None):
    store = store or NamesStore()
    clock = Clock()
    api = MetricsAPI(store, settingsFromMapping(settings or {}, "test"),
                     clock, consoleFiles=consoleFiles)
    return StubTreq(api.resource()), store, api


def answer(treq, d):
    """
    The code, headers and body of a finished request.
    """
    treq.flush()
    out = []
    d.addBoth(out.append)
    assert out, "no answer"
    reply = out[0]
    body = []
    reply.content().addBoth(body.append)
    treq.flush()
    return reply.code, reply.headers, body[0]


def getJSON(treq, url, **kwargs):
    code, _, body = answer(treq, treq.get("http://x" + url, **kwargs))
    return code, json.loads(body)


def test_metricNamesByPrefix():
    """
    /1.0/metric_names answers the stored names that start with the prefix,
    sorted, cut at limit with truncated saying so; every name without one.
    """
    treq, _, _ = client()
    assert getJSON(treq, "/1.0/metric_names?prefix=cpu.") == (200, {
        "prefix": "cpu.", "metrics": ["cpu.load", "cpu.user"],
        "truncated": False})
    assert getJSON(treq, "/1.0/metric_names?prefix=cpu&limit=1") == (200, {
        "prefix": "cpu", "metrics": ["cpu.load"], "truncated": True})
    assert getJSON(treq, "/1.0/metric_names") == (200, {
        "prefix": "", "metrics": NAMES, "truncated": False})
    assert getJSON(treq, "/1.0/metric_names?prefix=nothing")[1]["metrics"] \
        == []


@pytest.mark.parametrize("query, field", [
    ("limit=0", "limit"), ("limit=10001", "limit"), ("limit=ten", "limit"),
    ("limit=-1", "limit"), ("limit=" + "9" * 5000, "limit"),
    ("prefix=" + "a" * 256, "prefix"), ("prefix=%ff", "prefix"),
])
def test_metricNamesBadInput(query, field):
    """
    A bad limit or prefix is a 400 whose JSON body names the field.
    """
    treq, _, _ = client()
    code, body = getJSON(treq, "/1.0/metric_names?" + query)
    assert code == 400
    assert body["field"] == field
    assert body["problem"]


def test_metricNamesNeedsTheReadRole():
    """
    With tokens set, /1.0/metric_names needs a token with the read role.
    """
    treq, _, _ = client(AUTH)
    assert getJSON(treq, "/1.0/metric_names")[0] == 401
    assert getJSON(treq, "/1.0/metric_names", headers={
        "Authorization": f"Bearer {WRITE}"})[0] == 403
    assert getJSON(treq, "/1.0/metric_names", headers={
        "Authorization": f"Bearer {READ}"})[0] == 200


def test_metricNamesCountAsSearches():
    """
    A names read holds a place among the searches in flight: past
    max_searches_in_flight the next one is a 503, and the place is freed
    once it is answered.
    """
    treq, store, api = client({"http": {"max_searches_in_flight": 1}},
                              NamesStore(hold=True))
    pending = treq.get("http://x/1.0/metric_names")
    treq.flush()
    assert api.searches.inFlight == 1
    assert getJSON(treq, "/1.0/metric_names")[0] == 503
    store.held[0].callback(["a"])
    code, _, body = answer(treq, pending)
    assert (code, json.loads(body)["metrics"]) == (200, ["a"])
    assert api.searches.inFlight == 0


def test_metricNamesPastTheDeadline():
    """
    A names read still going at limits.search_timeout is answered 503
    naming the setting, and frees its place.
    """
    treq, store, api = client({"limits": {"search_timeout": "2s"}},
                              NamesStore(hold=True))
    pending = treq.get("http://x/1.0/metric_names")
    treq.flush()
    api.clock.advance(2.1)
    code, headers, body = answer(treq, pending)
    assert code == 503
    assert json.loads(body)["field"] == "limits.search_timeout"
    assert headers.getRawHeaders("retry-after") == ["1"]
    assert api.searches.inFlight == 0


def consoleFolder(tmp_path):
    folder = tmp_path / "console"
    (folder / "vendor").mkdir(parents=True)
    (folder / "index.html").write_text("<!doctype html><title>t</title>")
    (folder / "app.js").write_text("export const a = 1;")
    (folder / "vendor" / "chart.css").write_text("b{}")
    (folder / ".hidden.js").write_text("secret")
    (folder / "notes.py").write_text("secret")
    (tmp_path / "outside.js").write_text("secret")
    return folder


def test_consoleFilesWithoutToken(tmp_path):
    """
    With tokens set, the page at / and its files under /console/ are
    served without one, each with its type, an ETag and the page's
    security headers.
    """
    treq, _, _ = client(AUTH, consoleFiles=ConsoleFiles(
        consoleFolder(tmp_path)))
    code, headers, body = answer(treq, treq.get("http://x/"))
    assert (code, body) == (200, b"<!doctype html><title>t</title>")
    assert headers.getRawHeaders("content-type") == [
        "text/html; charset=utf-8"]
    assert "script-src 'self'" in headers.getRawHeaders(
        "content-security-policy")[0]
    code, headers, body = answer(treq, treq.get("http://x/console/app.js"))
    assert (code, body) == (200, b"export const a = 1;")
    assert headers.getRawHeaders("content-type") == [
        "text/javascript; charset=utf-8"]
    code, headers, body = answer(
        treq, treq.get("http://x/console/vendor/chart.css"))
    assert (code, body) == (200, b"b{}")
    assert headers.getRawHeaders("content-type") == ["text/css; charset=utf-8"]


def test_consoleFileUnchanged(tmp_path):
    """
    A file asked for again with its ETag in If-None-Match is a 304.
    """
    treq, _, _ = client(consoleFiles=ConsoleFiles(consoleFolder(tmp_path)))
    _, headers, _ = answer(treq, treq.get("http://x/console/app.js"))
    etag = headers.getRawHeaders("etag")[0]
    code, _, body = answer(treq, treq.get(
        "http://x/console/app.js", headers={"If-None-Match": etag}))
    assert (code, body) == (304, b"")
    code, _, _ = answer(treq, treq.get(
        "http://x/console/app.js", headers={"If-None-Match": '"other"'}))
    assert code == 200


@pytest.mark.parametrize("path", [
    "/console/.hidden.js", "/console/notes.py", "/console/../outside.js",
    "/console/..%2Foutside.js", "/console/vendor/../../outside.js",
    "/console/missing.js", "/console/vendor", "/console/%00.js",
])
def test_consoleServesOnlyItsFiles(tmp_path, path):
    """
    Hidden files, other kinds of file, paths out of the folder and
    missing files are a JSON 404.
    """
    treq, _, _ = client(consoleFiles=ConsoleFiles(consoleFolder(tmp_path)))
    code, headers, body = answer(treq, treq.get("http://x" + path))
    assert code == 404
    assert b"secret" not in body
    assert json.loads(body)["error"]


def test_packagedConsole():
    """
    The package ships the console's page, its script and the pinned chart
    library, all served.
    """
    treq, _, _ = client()
    code, _, page = answer(treq, treq.get("http://x/"))
    assert code == 200 and b"console/console.js" in page
    for name in ("console.js", "console.css", "vendor/uPlot.iife.min.js",
                 "vendor/uPlot.min.css"):
        assert answer(treq, treq.get(f"http://x/console/{name}"))[0] == 200


def tarball(files):
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as tar:
        for name, body in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return data.getvalue()


def test_vendorIntegrity(tmp_path):
    """
    The chart library's tarball is taken only with the pinned sha512; its
    files land in the vendor folder, which then counts as present.
    """
    data = tarball({member: member.encode() for member in FILES})
    good = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    checkIntegrity(data, good)
    with pytest.raises(IntegrityError):
        checkIntegrity(data + b"x", good)
    with pytest.raises(IntegrityError):
        checkIntegrity(data, "sha1-" + good[7:])
    folder = tmp_path / "vendor"
    assert not present(folder)
    extract(data, folder)
    assert present(folder)
    for member, name in FILES.items():
        assert (folder / name).read_bytes() == member.encode()
