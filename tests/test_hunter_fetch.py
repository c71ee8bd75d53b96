"""
The hunter's fetches against real HTTP servers on loopback: connections
kept alive and reused, gzip, redirects followed up to the limit (and none
on demand), the deadline and the body limit while streaming.
"""

from __future__ import annotations

import gzip
import json

import pytest
import pytest_twisted
from twisted.internet import reactor

from twisted.web.resource import EncodingResourceWrapper, Resource
from twisted.web.server import GzipEncoderFactory, NOT_DONE_YET, Site
from twisted.web.util import Redirect

from hyperlink import EncodedURL

from meetrd.hunter.fetch import ACCEPT, USER_AGENT, FetchError, Fetcher, prepare
from tests.nodes import Page

PAGE = json.dumps({"a": 1}).encode()


class CountingSite(Site):
    """
    A site that counts the connections it accepts.
    """

    connections = 0

    def buildProtocol(self, addr):
        self.connections += 1
        return super().buildProtocol(addr)


class Trickle(Resource):
    """
    Sends a body slowly and without end, a chunk at a time.
    """

    isLeaf = True

    def render_GET(self, request):
        def more():
            if not request.finished and not getattr(request, "_gone", False):
                request.write(b"x" * 1024)
                reactor.callLater(0.01, more)

        request.notifyFinish().addErrback(lambda _: setattr(request, "_gone",
                                                            True))
        more()
        return NOT_DONE_YET


class Recorder(Resource):
    """
    Records the request target and headers of every request, and sets a
    cookie on the first.
    """

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.seen = []

    def render_GET(self, request):
        self.seen.append((request.uri, request.requestHeaders.copy()))
        if len(self.seen) == 1:
            request.addCookie(b"visit", b"1", path=b"/")
        request.setHeader(b"content-type", b"application/json")
        return PAGE


@pytest_twisted.async_yield_fixture()
async def server():
    """
    One loopback server with every kind of page.
    """
    root = Resource()
    page = Page(PAGE, b"application/json")
    root.putChild(b"page", page)
    root.putChild(b"zipped", EncodingResourceWrapper(
        Page(PAGE * 1, b"application/json"), [GzipEncoderFactory()]))
    root.putChild(b"hop", Redirect(b"/page"))
    root.putChild(b"loop", Redirect(b"/loop"))
    root.putChild(b"trickle", Trickle())
    root.putChild(b"big", Page(b"y" * 5000, b"text/plain"))
    root.putChild(b"rec", Recorder())
    site = CountingSite(root)
    site.root = root
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    yield f"http://127.0.0.1:{port.getHost().port}", site, page
    await port.stopListening()


@pytest_twisted.async_yield_fixture()
async def fetcher():
    """
    A fetcher with a 4 KiB body limit and up to 2 redirects.
    """
    fetcher = Fetcher(reactor, maxBodySize=4096, maxRedirects=2)
    yield fetcher
    await fetcher.close()


@pytest_twisted.ensureDeferred
async def test_connectionsReused(server, fetcher):
    """
    Twenty fetches of one node, one after the other, use one connection.
    """
    base, site, page = server
    for _ in range(20):
        fetched = await fetcher.fetch(base + "/page", 5)
        assert fetched.body == PAGE
    assert page.hits == 20
    assert site.connections == 1


@pytest_twisted.ensureDeferred
async def test_endpointsMadeOncePerNode(server, fetcher):
    """
    Fetches of one node, its pages and redirects included, make its
    endpoint once; another address of the same host makes a second one.
    """
    base, site, page = server
    for path in ("/page", "/hop", "/page", "/zipped"):
        await fetcher.fetch(base + path, 5)
    assert fetcher.endpoints.made == 1
    await fetcher.fetch(base.replace("127.0.0.1", "localhost") + "/page", 5)
    assert fetcher.endpoints.made == 2
    assert page.hits == 4


@pytest_twisted.ensureDeferred
async def test_gzipAccepted(server, fetcher):
    """
    A gzip-encoded answer arrives decoded.
    """
    base, _, _ = server
    fetched = await fetcher.fetch(base + "/zipped", 5)
    assert fetched.body == PAGE
    assert gzip.compress(PAGE) != PAGE


@pytest_twisted.ensureDeferred
async def test_redirectsBounded(server, fetcher):
    """
    A redirect is followed for scheduled scrapes, a loop fails, and
    on-demand fetches follow none.
    """
    base, _, _ = server
    assert (await fetcher.fetch(base + "/hop", 5)).body == PAGE
    with pytest.raises(FetchError, match="redirect"):
        await fetcher.fetch(base + "/loop", 5)
    with pytest.raises(FetchError, match="HTTP 302"):
        await fetcher.fetch(base + "/hop", 5, followRedirects=False)


@pytest_twisted.ensureDeferred
async def test_bodyLimitWhileStreaming(server, fetcher):
    """
    A body past the limit fails as it streams in, declared or not, and
    the deadline covers the whole exchange.
    """
    base, _, _ = server
    with pytest.raises(FetchError, match="body larger than 4096 bytes"):
        await fetcher.fetch(base + "/big", 5)
    with pytest.raises(FetchError, match="body larger than 4096 bytes"):
        await fetcher.fetch(base + "/trickle", 5)
    slow = Fetcher(reactor, maxBodySize=10**9, maxRedirects=0)
    try:
        with pytest.raises(FetchError, match="timed out after 0.3s"):
            await slow.fetch(base + "/trickle", 0.3)
    finally:
        await slow.close()


URLS = [
    "http://127.0.0.1:9100/metrics",
    "http://127.0.0.1:9100/rec/a%20b/c?x=1&y=%2F&z",
    "http://[::1]:9100/metrics?name[]=up",
    "https://bücher.example/métriques?q=ü#frag",
    "http://user:secret@node.example:80/",
    "http://NODE.example/",
]


def test_preparedURLsAreTreqsURIs():
    """
    A prepared URL's text is what treq makes of the same URL given as
    text (the URI form, an IDN host in ASCII, the password kept), and
    asking for it again gives the same text.
    """
    for url in URLS:
        prepared = prepare(url)
        if "[::1]" in url:
            # treq's own URI form of it fails in IDNA; the expected text is
            # the one it gives for an ordinary host, with the address in.
            expected = EncodedURL.from_text(url.replace("[::1]", "v6")
                                            ).to_uri().to_text().replace(
                                                "v6", "[::1]")
        else:
            expected = EncodedURL.from_text(url).to_uri().to_text()
        assert prepared.to_uri().to_text() == expected
        assert prepared.to_text() == expected
        assert prepared.to_uri() is prepared
    assert prepare(URLS[3]).host == "xn--bcher-kva.example"


@pytest_twisted.ensureDeferred
async def test_preparedRequestsSendWhatTreqSends(server, fetcher):
    """
    Fetches through prepared URLs and shared headers send the request
    target, Accept, User-Agent and Accept-Encoding treq sends, each URL is
    prepared once, and a cookie the node sets comes back as it did.
    """
    base, site, _ = server
    recorder = site.root.children[b"rec"]
    url = base + "/rec/a%20b/c?x=1&y=%2F&z"
    for _ in range(3):
        assert (await fetcher.fetch(url, 5)).body == PAGE
    assert len(fetcher._urls) == 1
    assert [uri for uri, _ in recorder.seen] == [b"/rec/a%20b/c?x=1&y=%2F&z"] * 3
    for number, (_, headers) in enumerate(recorder.seen):
        assert headers.getRawHeaders(b"accept") == [ACCEPT]
        assert headers.getRawHeaders(b"user-agent") == [USER_AGENT]
        assert headers.getRawHeaders(b"accept-encoding") == [b"gzip"]
        assert headers.getRawHeaders(b"cookie") == \
            (None if number == 0 else [b"visit=1"])


@pytest_twisted.ensureDeferred
async def test_anIPv6NodeIsFetched():
    """
    A node at an IPv6 address (C{http://[::1]:PORT/...}) is fetched, with
    its address in brackets in the Host header.
    """
    recorder = Recorder()
    port = reactor.listenTCP(0, Site(recorder), interface="::1")
    fetcher = Fetcher(reactor, maxBodySize=4096, maxRedirects=0)
    try:
        number = port.getHost().port
        fetched = await fetcher.fetch(f"http://[::1]:{number}/metrics", 5)
        assert fetched.body == PAGE
        assert recorder.seen[0][0] == b"/metrics"
        assert recorder.seen[0][1].getRawHeaders(b"host") == \
            [f"[::1]:{number}".encode()]
    finally:
        await fetcher.close()
        await port.stopListening()


def test_aBadURLFailsItsFetch():
    """
    A URL that cannot be parsed fails its fetch with a reason, not with
    an exception out of C{fetch}.
    """
    fetcher = Fetcher(reactor, maxBodySize=4096, maxRedirects=0)
    failures = []
    fetcher.fetch("http://[::1/metrics", 5).addErrback(failures.append)
    assert failures and failures[0].check(FetchError)
    assert "bad URL" in str(failures[0].value)


def test_endpointsForgetTheLeastRecentlyUsed():
    """
    Past their size, the endpoints kept are the most recently used; an
    unknown scheme is refused as Agent refuses it.
    """
    from twisted.internet.endpoints import HostnameEndpoint
    from twisted.web.client import URI
    from twisted.web.error import SchemeNotSupported

    from meetrd.hunter.endpoints import ReusedEndpoints

    endpoints = ReusedEndpoints(reactor, size=2)
    first = endpoints.endpointForURI(URI.fromBytes(b"http://a.example:1/x"))
    assert isinstance(first, HostnameEndpoint)
    endpoints.endpointForURI(URI.fromBytes(b"https://b.example/y"))
    assert endpoints.endpointForURI(
        URI.fromBytes(b"http://a.example:1/z")) is first
    endpoints.endpointForURI(URI.fromBytes(b"http://c.example/"))
    assert endpoints.made == 3
    # b was the least recently used: made again; a was kept.
    endpoints.endpointForURI(URI.fromBytes(b"https://b.example/y"))
    assert endpoints.made == 4
    with pytest.raises(SchemeNotSupported):
        endpoints.endpointForURI(URI.fromBytes(b"ftp://a.example/"))
