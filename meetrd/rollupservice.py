"""
The rollup service: rolls raw partitions up once they have closed, and
again when a late point or a rewrite marks them.

Writes mark the raw partitions they touch in C{rollup_dirty} (see
L{meetrd.writeplan}), in Cassandra, so a restart or a crash loses no
rollup work: the markers wait there, and the service catches up with
them after downtime.  The markers are spread over
L{meetrd.schema.DIRTY_SHARDS} partitions; an instance looks only at the
shards its C{hunter.shard} gives it (shard C{s} belongs to instance
C{s % count}), so with several instances each partition is rolled by one
of them.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredSemaphore, gatherResults
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from meetrd.schema import DIRTY_SHARDS
from meetrd.settings import RollupServiceSettings, Shard
from meetrd.store import StoreUnavailable

# Raw partitions rolled up at once.
ROLLING_AT_ONCE = 4


class RollupService(Service):
    """
    Rolls up the raw partitions of this instance's marker shards.

    @ivar lag: seconds since the oldest partition waiting for its rollup
        became due (0 when none waits), as of the last look.
    @ivar backlog: partitions due for rollup and not yet rolled, as of the
        last look.
    @ivar rolled: partitions rolled up so far.
    @ivar failures: rollups that failed so far (they are tried again).
    """

    log = Logger()

    def __init__(self, store: Any, settings: RollupServiceSettings,
                 shard: Shard, clock: Any) -> None:
        """
        @param store: a connected-or-connecting L{meetrd.store.MetricStore}
            with rollup levels.
        @param clock: an C{IReactorTime}.
        """
        self.store = store
        self._settings = settings
        self._clock = clock
        self.shards = [s for s in range(DIRTY_SHARDS)
                       if s % shard.count == shard.index]
        self._loop: LoopingCall | None = None
        self._running: Deferred[None] | None = None
        self.lag = 0.0
        self.backlog = 0
        self.rolled = 0
        self.failures = 0
        self._failedDue: list[float] = []

    def startService(self) -> None:
        """
        Look for work every C{rollup.interval}, starting one interval from
        now (the store connects meanwhile).
        """
        super().startService()
        self._loop = LoopingCall(self.tick)
        self._loop.clock = self._clock
        self._loop.start(self._settings.interval, now=False).addErrback(
            lambda f: self.log.failure("The rollup loop stopped", f))

    def stopService(self) -> Deferred[None] | None:
        """
        Stop looking for work; fire once the rollups under way are done.
        """
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self._running is not None:
            waiting: Deferred[None] = Deferred()
            self._running.addBoth(lambda _: waiting.callback(None))
            return waiting
        return None

    def tick(self) -> Deferred[None] | None:
        """
        Roll up every due partition of this instance's shards.
        """
        if not self.store.ready:
            return None
        self._running = Deferred.fromCoroutine(self._rollDue())

        def done(result: Any) -> None:
            self._running = None
            if hasattr(result, "check"):
                if result.check(StoreUnavailable):
                    self.log.warn("Rollups wait for Cassandra: {why}",
                                  why=result.getErrorMessage())
                else:
                    self.log.failure("Rolling up failed", result)

        return self._running.addBoth(done)

    async def _rollDue(self) -> None:
        now = self._clock.seconds()
        grace = self._settings.grace
        due = []
        for shard in self.shards:
            for source, bucket, width, markedAt in \
                    await self.store.dirtyPartitions(shard):
                dueAt = (bucket + 1) * width / 1000 + grace
                if now >= dueAt:
                    due.append((dueAt, shard, source, bucket, markedAt))
        due.sort()
        self._failedDue = []
        self.backlog = len(due)
        self.lag = now - due[0][0] if due else 0.0
        gate = DeferredSemaphore(ROLLING_AT_ONCE)
        await gatherResults([gate.run(self._rollOne, *item) for item in due],
                            consumeErrors=True).addErrback(lambda f: None)
        now = self._clock.seconds()
        self.lag = now - min(self._failedDue) if self._failedDue else 0.0

    def _rollOne(self, dueAt: float, shard: int, source: str, bucket: int,
                 markedAt: int) -> Deferred[None]:
        """
        Roll up one partition and clear its marker; a failure leaves the
        marker, so the next look tries again.
        """
        def cleared(_: Any) -> None:
            self.rolled += 1
            self.backlog -= 1

        def failed(failure: Any) -> None:
            self.failures += 1
            self._failedDue.append(dueAt)
            self.log.warn("Rolling up {source} bucket {bucket} failed, "
                          "will retry: {why}", source=source, bucket=bucket,
                          why=failure.getErrorMessage())

        d = self.store.rollPartition(source, bucket)
        d.addCallback(lambda _: self.store.clearDirty(shard, source, bucket,
                                                      markedAt))
        return d.addCallbacks(cleared, failed)
