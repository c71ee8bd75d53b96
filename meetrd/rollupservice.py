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

Rolling a raw partition up marks the packs of the packed levels it
touches (L{meetrd.packs}); once a pack's buckets have closed (and
C{grace} has passed) and no raw partition under it waits for its rollup,
the instance that owns its shard merges it again and clears its marker.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredSemaphore, gatherResults
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from meetrd.packs import packStart
from meetrd.schema import DIRTY_SHARDS
from meetrd.settings import RollupServiceSettings, Shard
from meetrd.store import StoreUnavailable

# Groups of raw partitions rolled up at once.
ROLLING_AT_ONCE = 4
# Seconds a marker is left alone after it was written: a write marks an
# ended partition before its points and again once they are in, so that
# a rollup between the two is done again; waiting this long lets the
# points land first, so that a backfill is mostly rolled up once.
MARKER_SETTLE = 5.0
# Pack markers cleared by one request at most.
CLEARED_TOGETHER = 100
# Partitions of one shard and bucket number rolled up together at most
# (one read, shared batches): a fleet of small nodes catching up after
# downtime costs a few requests per group, not five per partition.
ROLLED_TOGETHER = 32


class RollupService(Service):
    """
    Rolls up the raw partitions of this instance's marker shards.

    @ivar lag: seconds since the oldest partition waiting for its rollup
        became due (0 when none waits), as of the last look.
    @ivar backlog: partitions due for rollup and not yet rolled, as of the
        last look.
    @ivar rolled: partitions rolled up so far.
    @ivar failures: rollups that failed so far (they are tried again).
    @ivar packBacklog: packs due for merging and not yet merged, as of the
        last look.
    @ivar packsMerged: packs merged so far.
    """

    log = Logger()

    def __init__(self, store: Any, settings: RollupServiceSettings,
                 shard: Shard | str, clock: Any,
                 membership: Any = None) -> None:
        """
        @param store: a connected-or-connecting L{meetrd.store.MetricStore}
            with rollup levels.
        @param shard: the fixed share of the marker shards (C{"auto"}: all
            of them, unless a C{membership} says otherwise).
        @param clock: an C{IReactorTime}.
        @param membership: with C{hunter.shard: auto}, the
            L{meetrd.membership.Membership} whose live members share the
            marker shards by rendezvous hashing, as they share the targets.
        """
        self.store = store
        self._settings = settings
        self._clock = clock
        if isinstance(shard, Shard):
            self.shards = [s for s in range(DIRTY_SHARDS)
                           if s % shard.count == shard.index]
        else:
            self.shards = list(range(DIRTY_SHARDS))
        self.membership = membership
        if membership is not None:
            self.shards = []
            membership.listeners.append(self._share)
        self._loop: LoopingCall | None = None
        self._running: Deferred[None] | None = None
        self.lag = 0.0
        self.backlog = 0
        self.rolled = 0
        self.failures = 0
        self.packBacklog = 0
        self.packsMerged = 0
        self._failedDue: list[float] = []

    def _share(self, members: tuple[str, ...]) -> None:
        """
        Take the marker shards rendezvous hashing gives this instance
        among the members.
        """
        self.shards = [s for s in range(DIRTY_SHARDS)
                       if self.membership.owns(f"rollup|{s}")]

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
                dueAt = max((bucket + 1) * width / 1000 + grace,
                            markedAt / 1e6 + MARKER_SETTLE)
                if now >= dueAt:
                    due.append((dueAt, shard, source, bucket, markedAt))
        due.sort()
        self._failedDue = []
        self.backlog = len(due)
        self.lag = now - due[0][0] if due else 0.0
        gate = DeferredSemaphore(ROLLING_AT_ONCE)
        await gatherResults([gate.run(self._rollGroup, group)
                             for group in groupDue(due)],
                            consumeErrors=True).addErrback(lambda f: None)
        now = self._clock.seconds()
        self.lag = now - min(self._failedDue) if self._failedDue else 0.0
        await self._mergePacks()

    async def _mergePacks(self) -> None:
        """
        Merge the marked packs of this instance's shards whose buckets
        have closed, past C{grace}, whose markers have settled
        (L{MARKER_SETTLE}), and under which no raw partition waits for its
        rollup; clear the markers of those merged.  A failure
        leaves its marker for the next look.
        """
        grace = self._settings.grace
        due: list[tuple[int, tuple[int, str, int, int]]] = []
        for shard in self.shards:
            marks = await self.store.packMarkers(shard)
            if not marks:
                continue
            waiting: dict[str, list[tuple[int, int]]] = {}
            for source, bucket, width, _ in \
                    await self.store.dirtyPartitions(shard):
                waiting.setdefault(source, []).append(
                    (bucket * width, (bucket + 1) * width))
            now = self._clock.seconds()
            for mark in marks:
                resolution, source, pack, markedAt = mark
                start = packStart(pack, resolution)
                end = packStart(pack + 1, resolution)
                # A write marks its raw partition and its packs together:
                # a pack marked moments ago may have a raw marker still on
                # its way, which this look would not see.
                if now < max(end / 1000 + grace,
                             markedAt / 1e6 + MARKER_SETTLE) or any(
                        low < end and high > start
                        for low, high in waiting.get(source, ())):
                    continue
                due.append((shard, mark))
        self.packBacklog = len(due)
        gate = DeferredSemaphore(ROLLING_AT_ONCE)

        def merge(shard: int, mark: tuple[int, str, int, int]
                  ) -> Deferred[Any]:
            def merged(_: Any) -> tuple[int, tuple[int, str, int, int]]:
                self.packsMerged += 1
                self.packBacklog -= 1
                return shard, mark

            def failed(failure: Any) -> None:
                self.failures += 1
                self.log.warn("Merging the pack {pack} of {source} failed, "
                              "will retry: {why}", pack=mark[2],
                              source=mark[1], why=failure.getErrorMessage())

            return self.store.mergePack(*mark[:3]).addCallbacks(
                merged, failed)

        results = await gatherResults(
            [gate.run(merge, shard, mark) for shard, mark in due],
            consumeErrors=True)
        byShard: dict[int, list[tuple[int, str, int, int]]] = {}
        for result in results:
            if result is not None:
                byShard.setdefault(result[0], []).append(result[1])
        for shard, marks in byShard.items():
            for start in range(0, len(marks), CLEARED_TOGETHER):
                await self.store.clearPackMarkers(
                    shard, marks[start:start + CLEARED_TOGETHER])

    async def _rollGroup(self, group: list[Due]) -> None:
        """
        Roll up a group of partitions of one shard and bucket number
        together, and clear their markers; when they are too large to be
        read at once, one by one.  A failure leaves the markers, so the
        next look tries again.
        """
        _, shard, _, bucket, _ = group[0]
        if len(group) > 1:
            try:
                rolled = await self.store.rollPartitions(
                    bucket, [source for _, _, source, _, _ in group])
                if rolled:
                    await self.store.clearDirty(shard, [
                        (source, bucket, markedAt)
                        for _, _, source, _, markedAt in group])
                    self.rolled += len(group)
                    self.backlog -= len(group)
                    return
            except Exception as e:
                self._failed(group, e)
                return
        for item in group:
            dueAt, shard, source, bucket, markedAt = item
            try:
                await self.store.rollPartition(source, bucket)
                await self.store.clearDirty(shard,
                                            [(source, bucket, markedAt)])
            except Exception as e:
                self._failed([item], e)
            else:
                self.rolled += 1
                self.backlog -= 1

    def _failed(self, group: list[Due], error: Exception) -> None:
        """
        Count and log a rollup that failed, and remember when its
        partitions were due.
        """
        self.failures += len(group)
        self._failedDue.extend(dueAt for dueAt, *_ in group)
        first = group[0]
        self.log.warn("Rolling up {source} bucket {bucket}{more} failed, "
                      "will retry: {why}", source=first[2], bucket=first[3],
                      more=f" and {len(group) - 1} more" if len(group) > 1
                      else "", why=str(error) or type(error).__name__)


# A partition due for rollup: (due at, shard, source, bucket, marked at).
Due = tuple[float, int, str, int, int]


def groupDue(due: list[Due]) -> list[list[Due]]:
    """
    The due partitions in groups that can be rolled up together: of one
    shard and one bucket number, at most L{ROLLED_TOGETHER} each, in the
    order of their oldest member's due time.
    """
    groups: dict[tuple[int, int], list[list[Due]]] = {}
    ordered: list[list[Due]] = []
    for item in due:
        key = (item[1], item[3])
        found = groups.get(key)
        if found is None or len(found[-1]) == ROLLED_TOGETHER:
            fresh: list[Due] = [item]
            groups.setdefault(key, []).append(fresh)
            ordered.append(fresh)
        else:
            found[-1].append(item)
    return ordered
