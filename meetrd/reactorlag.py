"""
How long the reactor keeps everything else waiting.

One thread runs every request, scrape and rollup of meetrd; while one
piece of work holds it, every other waits.  A probe scheduled every
C{interval} runs late by exactly the time the reactor was busy past its
due moment, so its lateness is a direct measure of the stalls that
C{/health}, searches and the hunter's ticks see.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

from twisted.application.service import Service

# Seconds between two probes: the finest stall it can see.
PROBE_INTERVAL = 0.05
# Seconds over which the longest lateness is reported.
WINDOW = 10.0


class ReactorLagProbe(Service):
    """
    Schedules a call every L{PROBE_INTERVAL} and measures how late it runs.

    @ivar longest: the longest lateness seen since the start, in seconds.
    @ivar observe: called with each probe's lateness (a histogram's
        C{observe}), or C{None}.
    """

    def __init__(self, clock: Any, interval: float = PROBE_INTERVAL,
                 window: float = WINDOW,
                 observe: Callable[[float], None] | None = None) -> None:
        """
        @param clock: an C{IReactorTime}.
        """
        self._clock = clock
        self._interval = interval
        self._window = window
        self.observe = observe
        self.longest = 0.0
        self._recent: deque[tuple[float, float]] = deque()
        self._due = 0.0
        self._call: Any = None

    def startService(self) -> None:
        super().startService()
        self._schedule()

    def stopService(self) -> None:
        super().stopService()
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _schedule(self) -> None:
        self._due = self._clock.seconds() + self._interval
        self._call = self._clock.callLater(self._interval, self._probe)

    def _probe(self) -> None:
        now = self._clock.seconds()
        lateness = max(0.0, now - self._due)
        self.longest = max(self.longest, lateness)
        recent = self._recent
        # Keep only a decreasing run of lateness values: an older one that
        # is smaller than a newer one can never be the window's longest.
        while recent and recent[-1][1] <= lateness:
            recent.pop()
        recent.append((now, lateness))
        if self.observe is not None:
            self.observe(lateness)
        self._schedule()

    def recentLongest(self) -> float:
        """
        The longest lateness of the probes of the last L{WINDOW} seconds
        (0 before the first probe).
        """
        recent = self._recent
        cutoff = self._clock.seconds() - self._window
        while recent and recent[0][0] < cutoff:
            recent.popleft()
        return recent[0][1] if recent else 0.0
