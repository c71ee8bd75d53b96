"""
Python's cyclic garbage collector, set for a long-lived daemon, and timed.

CPython starts a young collection every 700 allocations of container
objects net of frees, and a full one every 100 of those (10 x 10).  A
batch of 1,000 points allocates some tens of thousands of them (decoded
items, points, bound rows, Deferreds), nearly all freed by reference
counting within the request, so most young
collections find nothing to collect, and every tenth and hundredth one
walks the older generations: the modules, settings, caches and driver
state made at start-up, which live as long as the process.  Profiles of
the hunter put the collector at a quarter to a third of the reactor's
time.

So, when the service tree starts (the service is the tree's last):
  - the objects alive then are frozen (C{gc.freeze}): moved to a
    permanent generation that collections no longer walk;
  - a young collection runs every L{YOUNG_THRESHOLD} allocations, and
    the older generations after L{MIDDLE_THRESHOLD} and
    L{OLD_THRESHOLD} collections of the one below: still often enough
    that cycles (failures' tracebacks, Deferred chains) are freed within
    seconds under load.

The thresholds trade the number of collections for their length, and a
collection holds the reactor: a collection of the middle generation walks
what survived up to L{MIDDLE_THRESHOLD} young collections.  With 50,000
and 20, a client posting 50,000-point batches saw middle collections of
0.2 to 0.3 s (about a million objects, the requests and rows of a batch in
flight); with 5,000 and 10 they took 30 to 45 ms, for about the same total
time collecting (measured with the batches written through the store, the
collector timed as below).  Since then points and a batch's rows are no
longer objects the collector tracks, and a young threshold of 20,000 is
the better trade for the hunter: at 2,000 targets (200 scrapes a second)
the collector took 4.5 and 5.7% of the reactor in two runs, against 7.5
and 8.3% with 5,000 (young collections walk the objects of the scrapes in
flight, most of which are gone when collections come four times less
often); 50,000 was worse again (12%, young collections alone).  Those
figures were taken while every answered request stayed alive for a whole
request timeout (the driver's cancelled timers held them); since they are
let go at once (L{meetrd.twistedconnection}), the collector takes 1.2% of
the reactor at 2,000 targets.

Every collection is timed (C{gc.callbacks}): the share of time it takes
is on C{/metrics} as C{meetr_gc_seconds_total} by generation.
"""

from __future__ import annotations

import gc
import time
from typing import Any, Callable

from twisted.application.service import Service

YOUNG_THRESHOLD = 20_000
MIDDLE_THRESHOLD = 10
OLD_THRESHOLD = 100


class CollectorTuning(Service):
    """
    Freezes the start-up objects and sets the collector's thresholds when
    started; puts them back when stopped.  Times every collection.

    @ivar seconds: the time spent collecting, by generation.
    @ivar collections: the collections run, by generation.
    @ivar longest: the longest collection, in seconds.
    """

    def __init__(self, thresholds: tuple[int, int, int] = (
            YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD),
            timer: Callable[[], float] = time.perf_counter) -> None:
        self._thresholds = thresholds
        self._timer = timer
        self._previous: tuple[int, ...] | None = None
        self._started: float | None = None
        self.seconds = [0.0, 0.0, 0.0]
        self.collections = [0, 0, 0]
        self.longest = 0.0

    def startService(self) -> None:
        super().startService()
        self._previous = gc.get_threshold()
        gc.collect()
        gc.freeze()
        gc.set_threshold(*self._thresholds)
        gc.callbacks.append(self._timed)

    def stopService(self) -> None:
        super().stopService()
        if self._timed in gc.callbacks:
            gc.callbacks.remove(self._timed)
        if self._previous is not None:
            gc.set_threshold(*self._previous)
        gc.unfreeze()

    def _timed(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = self._timer()
            return
        if self._started is None:
            return
        spent = self._timer() - self._started
        self._started = None
        generation = min(info.get("generation", 2), 2)
        self.seconds[generation] += spent
        self.collections[generation] += 1
        self.longest = max(self.longest, spent)
