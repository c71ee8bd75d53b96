"""
cassandra-driver's Twisted connection class, the one place that names it.

It is deprecated in cassandra-driver 3.30 (hence the pin below 3.31); the
warning it gives on every new connection is silenced here, and only that
warning.  Two faults of the driver's class are mended by a subclass:

  - a refused connection left its Deferred unhandled (an "Unhandled error
    in Deferred" in the log) and was only noticed after C{connect_timeout};
    here the failure is handed to the waiting driver at once;
  - every connection attempt logged its factory starting and stopping.
"""

from __future__ import annotations

import ipaddress
import warnings
from typing import Any

from twisted.internet.protocol import Factory


def twistedConnectionClass() -> type:
    """
    The connection class to give C{Cluster(connection_class=...)}.
    """
    warnings.filterwarnings(
        "ignore",
        message=r".*deprecated class TwistedConnection.*",
        category=DeprecationWarning,
    )
    from cassandra.io.twistedreactor import (
        TwistedConnection,
        TwistedConnectionProtocol,
    )
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint

    class _QuietFactory(Factory):
        noisy = False

    class MeetrTwistedConnection(TwistedConnection):  # type: ignore[misc]
        """
        The driver's Twisted connection, failing fast and quietly.
        """

        def add_connection(self) -> None:
            if self.ssl_context or self.ssl_options:
                return super().add_connection()
            host, port = self.endpoint.resolve()
            endpointClass = TCP6ClientEndpoint if _isIPv6(host) \
                else TCP4ClientEndpoint
            endpoint = endpointClass(reactor, host, port,
                                     timeout=self.connect_timeout)
            factory = _QuietFactory.forProtocol(
                lambda: TwistedConnectionProtocol(self))
            endpoint.connect(factory).addErrback(self._connectFailed)

        def _connectFailed(self, failure: Any) -> None:
            """
            Hand a failed connection attempt to the thread waiting for it.
            """
            self.last_error = failure.value
            self.connected_event.set()

    return MeetrTwistedConnection


def _isIPv6(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).version == 6
    except ValueError:
        return False
