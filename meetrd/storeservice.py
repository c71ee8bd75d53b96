"""
The service that owns the store's connection: it connects once the
reactor runs, keeps retrying with backoff while Cassandra cannot be
reached, and on stop lets writes in flight finish before closing.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.application.internet import backoffPolicy
from twisted.application.service import Service
from twisted.internet.defer import Deferred, TimeoutError
from twisted.logger import Logger

from meetrd.store import StoreUnavailable


class StoreService(Service):
    """
    Connects a L{meetrd.store.MetricStore} and closes it.

    @ivar attempts: connection attempts made so far.
    @ivar failures: attempts failed since the last connection (or the
        start): what the retry policy is asked about.
    """

    log = Logger()

    def __init__(self, store: Any, reactor: Any, maxDelay: float = 10.0,
                 grace: float = 30.0,
                 retryPolicy: Callable[[int], float] | None = None) -> None:
        """
        @param store: the store to connect.
        @param reactor: for C{callWhenRunning} and C{callLater}.
        @param maxDelay: the longest wait between two attempts, seconds,
            before jitter (up to a second more).
        @param grace: how long C{stopService} waits for requests in flight.
        @param retryPolicy: gives the wait before the next attempt from the
            number of failed attempts so far, as
            L{twisted.application.internet.ClientService}'s does; by default
            Twisted's L{backoffPolicy} from half a second, doubling up to
            C{maxDelay}, with jitter so that instances started together
            do not retry in step.
        """
        self.store = store
        self._reactor = reactor
        self._grace = grace
        self._retryPolicy = retryPolicy or backoffPolicy(
            initialDelay=0.5, maxDelay=maxDelay, factor=2.0)
        self._retry: Any = None
        self._connecting: Deferred[None] | None = None
        self.attempts = 0
        self.failures = 0

    def startService(self) -> None:
        """
        Connect as soon as the reactor runs (the driver starts a reactor
        thread of its own when it finds none running).
        """
        super().startService()
        self._reactor.callWhenRunning(self._attempt)

    def _attempt(self) -> None:
        self._retry = None
        if not self.running or self._connecting is not None:
            return
        self.attempts += 1
        self._connecting = self.store.connect()
        self._connecting.addCallbacks(self._connected, self._failed)

    def _connected(self, _: None) -> None:
        self._connecting = None
        self.failures = 0
        self.log.info("Connected to Cassandra at {points}",
                      points=self.store.contactPoints)

    def _failed(self, failure: Any) -> None:
        self._connecting = None
        if not failure.check(StoreUnavailable):
            self.log.failure("Connecting to Cassandra failed", failure)
        if not self.running:
            return
        delay = self._retryPolicy(self.failures)
        self.failures += 1
        self.log.error("{why}; retrying in {delay:.1f}s",
                       why=failure.getErrorMessage(), delay=delay)
        self._retry = self._reactor.callLater(delay, self._attempt)

    def stopService(self) -> Deferred[None]:
        """
        Stop retrying, let an attempt under way end, wait (up to the grace
        period) for requests in flight, then close the session.
        """
        super().stopService()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        return Deferred.fromCoroutine(self._close())

    async def _close(self) -> None:
        deadline = self._reactor.seconds() + self._grace
        connecting = self._connecting
        if connecting is not None:
            # The driver's connect cannot be interrupted; the attempt's
            # own callbacks have already dealt with its outcome.
            attempt: Deferred[None] = Deferred()
            connecting.addBoth(lambda _: attempt.callback(None))
            await attempt
        idle = self.store.whenIdle()
        idle.addTimeout(max(0.0, deadline - self._reactor.seconds()),
                        self._reactor)
        try:
            await idle
        except TimeoutError:
            self.log.warn("Closing Cassandra with {n} requests in flight",
                          n=self.store.inFlight)
        await self.store.close()
