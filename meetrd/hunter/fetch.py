"""
Fetching one page from a node with treq: a deadline over the whole
exchange, gzip accepted, redirects bounded, the body's size capped while
it streams in, and non-2xx answers treated as failures.
"""

from __future__ import annotations

from dataclasses import dataclass
from http.cookiejar import CookieJar
from typing import Any

import treq
from hyperlink import EncodedURL
from treq.client import HTTPClient
from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from twisted.web.client import (
    Agent,
    HTTPConnectionPool,
    RedirectAgent,
    ResponseFailed,
    ResponseNeverReceived,
)

from meetrd.hunter.endpoints import ReusedEndpoints
from meetrd.logs import briefReason

USER_AGENT = b"meetrd-hunter/0.1"
ACCEPT = (b"text/plain;version=0.0.4;q=0.6,application/openmetrics-text;version=1.0.0;q=0.5,"
          b"application/json;q=0.4,*/*;q=0.1")
# Prepared URLs kept at most (the targets' and recent on-demand ones').
PREPARED_URLS = 20_000


class PreparedURL(EncodedURL):
    """
    A URL already in its URI form, with its text worked out once.

    treq asks the URL of every request for its URI form and that form's
    text; for a URL given as text that is a parse, an IDNA encoding of its
    host and a rebuild of the text, at every scrape of the same target.
    Made with L{prepare}, which does that work once.
    """

    def to_uri(self) -> "PreparedURL":
        """
        This URL, which is a URI already.
        """
        return self

    def to_text(self, with_password: bool = False) -> str:
        """
        The URI's text, worked out once.
        """
        if with_password:
            return super().to_text(with_password)
        text = self.__dict__.get("_text")
        if text is None:
            text = self.__dict__["_text"] = super().to_text()
        return text


def prepare(url: str) -> PreparedURL:
    """
    A URL given as text, parsed and in URI form (its host IDNA-encoded).

    An IPv6 address is kept as it is: IDNA refuses its colons, so that
    treq, given C{http://[::1]:9100/metrics} as text, cannot fetch it.
    """
    parsed = EncodedURL.from_text(url)
    if ":" in parsed.host:
        uri = parsed.replace(host="ipv6.invalid").to_uri().replace(
            host=parsed.host)
    else:
        uri = parsed.to_uri()
    return PreparedURL(scheme=uri.scheme, host=uri.host, path=uri.path,
                       query=uri.query, fragment=uri.fragment, port=uri.port,
                       rooted=uri.rooted, userinfo=uri.userinfo,
                       uses_netloc=uri.uses_netloc)


class FetchError(Exception):
    """
    A fetch failed; the message is the reason, fit for a report.
    """


class BodyTooLarge(Exception):
    """
    A body grew past its limit while it streamed in.
    """


@dataclass(frozen=True)
class Page:
    """
    A fetched page.
    """

    body: bytes
    contentType: str | None


class Fetcher:
    """
    Fetches pages over one pool of persistent connections.
    """

    def __init__(self, reactor: Any, maxBodySize: int, maxRedirects: int,
                 maxPerHost: int = 2) -> None:
        """
        @param reactor: the reactor the connections and deadlines use.
        @param maxBodySize: the largest (decoded) body accepted, in bytes.
        @param maxRedirects: redirects followed for configured targets;
            on-demand fetches, whose nodes were checked against
            C{hunter.allow}, follow none.
        @param maxPerHost: persistent connections kept per node.
        """
        self._reactor = reactor
        self._maxBodySize = maxBodySize
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.pool.maxPersistentPerHost = maxPerHost
        self.pool.cachedConnectionTimeout = 120
        self.endpoints = ReusedEndpoints(reactor)
        agent = Agent.usingEndpointFactory(reactor, self.endpoints,
                                           pool=self.pool)
        # What every request sends: treq takes a Headers as it is, and
        # the agents it wraps copy it before they add to it.
        self._headers = Headers({b"Accept": [ACCEPT],
                                 b"User-Agent": [USER_AGENT]})
        # A jar to pass as the request's cookies (none), so that treq does
        # not make one per request; cookies a node sets are kept by the
        # client's own jar, as before.
        self._noCookies = CookieJar()
        self._urls: dict[str, PreparedURL] = {}
        self._plain = HTTPClient(agent)
        self._client = HTTPClient(
            RedirectAgent(agent, redirectLimit=maxRedirects)
            if maxRedirects else agent)

    def fetch(self, url: str, timeout: float, followRedirects: bool = True
              ) -> Deferred[Page]:
        """
        Fetch C{url}; fail with L{FetchError} saying why.
        """
        client = self._client if followRedirects else self._plain
        prepared = self._urls.get(url)
        if prepared is None:
            if len(self._urls) >= PREPARED_URLS:
                self._urls.clear()
            try:
                prepared = self._urls[url] = prepare(url)
            except Exception as e:
                return fail(FetchError(f"bad URL: {briefReason(e)}"))
        d = client.get(prepared, headers=self._headers,
                       cookies=self._noCookies, allow_redirects=False,
                       unbuffered=True, reactor=self._reactor)
        d.addCallback(self._read)
        # Cancelled by the deadline, the request fails with whatever the
        # client makes of the cancellation: that is a timeout.
        d.addTimeout(timeout, self._reactor, onTimeoutCancel=_timedOut)

        def explain(failure: Any) -> None:
            if failure.check(FetchError):
                return failure
            if failure.check(BodyTooLarge):
                raise FetchError(f"body larger than {self._maxBodySize} bytes")
            if failure.check(CancelledError):
                raise FetchError("cancelled")
            raise FetchError(_reason(failure))

        return d.addErrback(explain)

    def _read(self, response: Any) -> Deferred[Page]:
        """
        Check the status and the declared length, then stream the body.
        """
        if not 200 <= response.code < 300:
            response.deliverBody(_Discard())
            raise FetchError(f"HTTP {response.code} "
                             f"{response.phrase.decode('latin-1', 'replace')}")
        if isinstance(response.length, int) and \
                response.length > self._maxBodySize and \
                not response.headers.hasHeader(b"content-encoding"):
            response.deliverBody(_Discard())
            raise BodyTooLarge()
        chunks: list[bytes] = []
        size = [0]
        limit = self._maxBodySize

        def collector(data: bytes) -> None:
            size[0] += len(data)
            if size[0] > limit:
                raise BodyTooLarge()
            chunks.append(data)

        contentType = response.headers.getRawHeaders(b"content-type", [None])[-1]
        if isinstance(contentType, bytes):
            contentType = contentType.decode("latin-1")
        return treq.collect(response, collector).addCallback(
            lambda _: Page(b"".join(chunks), contentType))

    def close(self) -> Deferred[None]:
        """
        Close the pooled connections.
        """
        return self.pool.closeCachedConnections()


def _timedOut(result: Any, timeout: float) -> Failure:
    return Failure(FetchError(f"timed out after {timeout:g}s"))


class _Discard:
    """
    A body protocol that drops what it gets, so the connection can close.
    """

    transport: Any = None

    def makeConnection(self, transport: Any) -> None:
        self.transport = transport
        transport.stopProducing()

    def dataReceived(self, data: bytes) -> None:
        pass

    def connectionLost(self, reason: Any) -> None:
        pass


def _reason(failure: Any) -> str:
    """
    The cause of a failed fetch in a few words.
    """
    error = failure.value
    if isinstance(error, (ResponseFailed, ResponseNeverReceived)):
        reasons = getattr(error, "reasons", None) or []
        inner = "; ".join(briefReason(r.value) for r in reasons) \
            or "no answer"
        if isinstance(error, ResponseNeverReceived):
            return f"no response: {inner}"
        return f"response broken off: {inner}"
    return briefReason(error)
