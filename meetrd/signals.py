"""
Signals of a running meetrd: SIGTERM stops it gracefully and exits 0,
SIGHUP reloads what can change without a restart.
"""

from __future__ import annotations

import signal
from typing import Any, Callable

from twisted.application.service import Service
from twisted.logger import Logger


class SignalService(Service):
    """
    Installs meetrd's signal handlers: SIGHUP's at start, SIGTERM's once
    the reactor runs (after Twisted's own, which it replaces); both hand
    their work to the reactor thread.

    Twisted's SIGTERM handler makes twistd end by re-raising the signal, so
    its exit status is "killed by SIGTERM"; a graceful stop asked for by
    SIGTERM exits 0 here instead.
    """

    log = Logger()

    def __init__(self, reactor: Any, onReload: Callable[[], None],
                 keepUSR1: bool = False) -> None:
        """
        @param onReload: what SIGHUP does.
        @param keepUSR1: survive SIGUSR1 (twistd rotates its text log on it,
            but installs no handler when another log observer is used).
        """
        self._reactor = reactor
        self._onReload = onReload
        self._keepUSR1 = keepUSR1
        self._previous: dict[int, Any] = {}

    def startService(self) -> None:
        """
        Install the SIGHUP handler at once (nothing else claims it), and the
        SIGTERM one when the reactor runs, after Twisted's.
        """
        super().startService()
        self._previous[signal.SIGHUP] = signal.signal(signal.SIGHUP,
                                                      self._hangUp)
        if self._keepUSR1:
            self._previous[signal.SIGUSR1] = signal.signal(signal.SIGUSR1,
                                                           self._usr1)
        self._reactor.callWhenRunning(self._install)

    def _install(self) -> None:
        if not self.running:
            return
        self._previous[signal.SIGTERM] = signal.signal(signal.SIGTERM,
                                                       self._terminate)

    def _usr1(self, number: int, frame: Any) -> None:
        self._reactor.callFromThread(
            self.log.info, "SIGUSR1 ignored: the JSON log rotates by size")

    def stopService(self) -> None:
        """
        Put the previous handlers back.
        """
        super().stopService()
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    def _terminate(self, number: int, frame: Any) -> None:
        self._reactor.callFromThread(self._stop)

    def _stop(self) -> None:
        self.log.info("SIGTERM: stopping gracefully")
        if self._reactor.running:
            self._reactor.stop()

    def _hangUp(self, number: int, frame: Any) -> None:
        self._reactor.callFromThread(self._reload)

    def _reload(self) -> None:
        self.log.info("SIGHUP: reloading")
        try:
            self._onReload()
        except Exception:
            self.log.failure("Reloading failed; nothing was changed")
