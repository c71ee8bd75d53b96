"""
cassandra-driver's Twisted connection class, the one place that names it.

It is deprecated in cassandra-driver 3.30 (hence the pin below 3.31); the
warning it gives on every new connection is silenced here, and only that
warning.  Six faults of the driver's classes are mended by a subclass:

  - a refused connection left its Deferred unhandled (an "Unhandled error
    in Deferred" in the log) and was only noticed after C{connect_timeout};
    here the failure is handed to the waiting driver at once;
  - every connection attempt logged its factory starting and stopping;
  - TLS went through a pyOpenSSL context of the driver's making; here it
    goes through Twisted's client TLS (see L{ClientTLS});
  - every request's bytes and its timeout timer were handed to the reactor
    with C{callFromThread}, which wakes the reactor with a write to its
    waker pipe (a system call) even when the caller is the reactor thread
    itself, as it is for every request meetrd sends; on the reactor thread
    they are now written and scheduled directly (at 1,000 requests a
    second, that was about a tenth of the reactor's time);
  - with protocol v5, a read that ended inside the six bytes of a
    segment's header lost those bytes (the connection's buffer was cut at
    its end rather than at the segment's start), and the connection died
    with "CRC mismatch on header" at the next read: under load, every few
    minutes; the bytes are now kept for the next read;
  - a request's timeout timer, cancelled when the answer came, stayed in
    the timer heap until its end still holding the request (its future,
    batch and rows): a request timeout's worth of answered requests alive
    for the garbage collector to walk, promoted to its oldest generation
    (at 200 scrapes a second and 5 s, about 1,300 requests and 60,000
    objects); a cancelled timer now lets go of its request.

The subclass also sends the batches of point rows that
L{meetrd.binding} packs as they are, without the driver's per-value
encoding (see L{meetrd.binding.encodeBatchFrame}).
"""

from __future__ import annotations

import ipaddress
import warnings
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

from twisted.internet.protocol import Factory


@dataclass(frozen=True)
class ClientTLS:
    """
    TLS to Cassandra the Twisted way, given to the driver as its
    C{ssl_context}: Twisted's client TLS options (TLS 1.2 at least, the
    chain checked against the CA, the node's name checked against the
    certificate's subject alternative names) instead of the driver's
    pyOpenSSL context (TLS 1.0 by default, the name compared with the
    common name only).

    @ivar creatorFor: gives the connection creator for a node's address.
    """

    creatorFor: Callable[[str], Any]


def clientTLS(caFile: str, certFile: str | None = None,
              keyFile: str | None = None, serverName: str | None = None,
              checkHostname: bool = True) -> ClientTLS:
    """
    Build L{ClientTLS} from PEM files.
    """
    from twisted.internet.ssl import (
        Certificate,
        CertificateOptions,
        PrivateCertificate,
        TLSVersion,
        optionsForClientTLS,
    )

    with open(caFile, "rb") as f:
        authority = Certificate.loadPEM(f.read())
    client = None
    if certFile is not None and keyFile is not None:
        with open(certFile, "rb") as f, open(keyFile, "rb") as g:
            client = PrivateCertificate.loadPEM(f.read() + b"\n" + g.read())

    def creatorFor(host: str) -> Any:
        if checkHostname:
            return optionsForClientTLS(
                serverName or host, trustRoot=authority,
                clientCertificate=client,
                extraCertificateOptions={
                    "raiseMinimumTo": TLSVersion.TLSv1_2})
        extra = {} if client is None else {
            "privateKey": client.privateKey.original,
            "certificate": client.original}
        return CertificateOptions(trustRoot=authority,
                                  raiseMinimumTo=TLSVersion.TLSv1_2, **extra)

    return ClientTLS(creatorFor)


def twistedConnectionClass() -> type:
    """
    The connection class to give C{Cluster(connection_class=...)}.
    """
    warnings.filterwarnings(
        "ignore",
        message=r".*deprecated class TwistedConnection.*",
        category=DeprecationWarning,
    )
    from cassandra.connection import Timer
    from cassandra.protocol import ProtocolHandler
    from cassandra.io.twistedreactor import (
        TwistedConnection,
        TwistedConnectionProtocol,
    )
    from twisted.python.threadable import isInIOThread

    from meetrd.binding import encodeBatchFrame
    from twisted.internet import reactor
    from twisted.internet.endpoints import (
        TCP4ClientEndpoint,
        TCP6ClientEndpoint,
        wrapClientTLS,
    )

    class _QuietFactory(Factory):
        noisy = False

    class _ReleasingTimer(Timer):  # type: ignore[misc]
        """
        A request's timeout timer that lets go of the request once it is
        cancelled (the request answered): a cancelled timer stays in the
        driver's timer heap until its end, a whole request timeout later.
        """

        def cancel(self) -> None:
            self.canceled = True
            self.callback = _nothing

    class MeetrTwistedConnection(TwistedConnection):  # type: ignore[misc]
        """
        The driver's Twisted connection, failing fast and quietly, with
        Twisted's client TLS, and sending directly from the reactor thread.
        """

        def add_connection(self) -> None:
            tls = self.ssl_context
            if not isinstance(tls, ClientTLS) and (tls or self.ssl_options):
                return super().add_connection()
            host, port = self.endpoint.resolve()
            endpointClass = TCP6ClientEndpoint if _isIPv6(host) \
                else TCP4ClientEndpoint
            endpoint = endpointClass(reactor, host, port,
                                     timeout=self.connect_timeout)
            if isinstance(tls, ClientTLS):
                endpoint = wrapClientTLS(tls.creatorFor(host), endpoint)
            factory = _QuietFactory.forProtocol(
                lambda: TwistedConnectionProtocol(self))
            endpoint.connect(factory).addErrback(self._connectFailed)

        def push(self, data: bytes) -> None:
            if isInIOThread() and self.transport is not None:
                self.transport.write(data)
            else:
                super().push(data)

        def send_msg(self, msg: Any, request_id: int, cb: Any,
                     encoder: Any = ProtocolHandler.encode_message,
                     decoder: Any = ProtocolHandler.decode_message,
                     result_metadata: Any = None) -> int:
            return super().send_msg(
                msg, request_id, cb,
                encoder=partial(encodeBatchFrame, encoder),
                decoder=decoder, result_metadata=result_metadata)

        @classmethod
        def create_timer(cls, timeout: float, callback: Any) -> Any:
            timer = _ReleasingTimer(timeout, callback)
            loop = cls._loop
            if not isInIOThread():
                loop.add_timer(timer)
                return timer
            loop._timers.add_timer(timer)
            loop._schedule_timeout(timer.end)
            return timer

        def _process_segment_buffer(self) -> None:
            buffered = self._io_buffer
            if buffered.readable_io_bytes() < \
                    self._segment_codec.header_length_with_crc:
                # Part of a header: keep it, from its first byte, for the
                # next read (the driver leaves the buffer at its end,
                # which the caller then cuts at).
                buffered._segment_consumed = False
                buffered.io_buffer.seek(0)
                return
            super()._process_segment_buffer()

        def _connectFailed(self, failure: Any) -> None:
            """
            Hand a failed connection attempt to the thread waiting for it.
            """
            self.last_error = failure.value
            self.connected_event.set()

    return MeetrTwistedConnection


def _nothing() -> None:
    """
    What a cancelled timer calls, should its end come first.
    """


def _isIPv6(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).version == 6
    except ValueError:
        return False
