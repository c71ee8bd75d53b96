"""
The hunter's endpoints, made once per node rather than once per scrape.

C{twisted.web.client.Agent} makes a C{HostnameEndpoint} (host name
encoded with IDNA, a TLS connection creator for HTTPS) for every request,
even when its pool then hands out a connection that is already open: for
a hunter scraping the same nodes every few seconds that is most of the
cost of a request.  L{ReusedEndpoints} is an C{IAgentEndpointFactory} that
keeps the endpoint of each scheme, host and port, so that a scrape costs
a dictionary look-up.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.web.client import BrowserLikePolicyForHTTPS, URI
from twisted.web.error import SchemeNotSupported
from twisted.web.iweb import IAgentEndpointFactory, IPolicyForHTTPS
from zope.interface import implementer

# Endpoints kept: several times the targets one process hunts.
MAX_ENDPOINTS = 20_000


@implementer(IAgentEndpointFactory)
class ReusedEndpoints:
    """
    TCP endpoints for C{http} URLs, TLS over TCP for C{https}, one per
    scheme, host and port, the least recently used forgotten past
    C{size}.
    """

    def __init__(self, reactor: Any, policy: IPolicyForHTTPS | None = None,
                 size: int = MAX_ENDPOINTS) -> None:
        self._reactor = reactor
        self._policy = policy or BrowserLikePolicyForHTTPS()
        self._size = size
        self._endpoints: OrderedDict[tuple[bytes, bytes, int], Any] = \
            OrderedDict()
        self.made = 0

    def endpointForURI(self, uri: URI) -> Any:
        """
        The endpoint of C{uri}'s scheme, host and port.
        """
        key = (uri.scheme, uri.host, uri.port)
        endpoint = self._endpoints.get(key)
        if endpoint is not None:
            self._endpoints.move_to_end(key)
            return endpoint
        endpoint = self._make(uri)
        self._endpoints[key] = endpoint
        self.made += 1
        if len(self._endpoints) > self._size:
            self._endpoints.popitem(last=False)
        return endpoint

    def _make(self, uri: URI) -> Any:
        try:
            host = uri.host.decode("ascii")
        except UnicodeDecodeError:
            raise ValueError(f"the host of {uri.toBytes()!r} is not ASCII") \
                from None
        endpoint = HostnameEndpoint(self._reactor, host, uri.port)
        if uri.scheme == b"http":
            return endpoint
        if uri.scheme == b"https":
            return wrapClientTLS(
                self._policy.creatorForNetloc(uri.host, uri.port), endpoint)
        raise SchemeNotSupported(f"unsupported scheme: {uri.scheme!r}")
