"""
Index rows written behind the points they lead to.

A scrape of a node met for the first time brings a hundred new series, and
a thousand such nodes bring a hundred thousand index rows at once, into a
few index partitions (one a metric and slice).  Written with each scrape,
they hold every first scrape back until Cassandra has taken them all.  A
scrape's points may instead go at once and its new index rows wait here:
they are written a partition at a time, as single-partition batches (one
mutation for Cassandra however many rows), a few batches in flight, and a
failed batch is tried again with a backoff until it lands.

Until its index row lands a new series is in Cassandra but not found by
searches; that is the trade, and only the hunter makes it (an API write is
acknowledged once its index rows are written).  A process that stops with
rows still queued loses them, and a restarted one writes them again with
the next scrape of their series, since its cache of written rows starts
empty.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any, Callable, Iterable

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from meetrd.writeplan import IndexRow

CacheKey = tuple[bytes, int, str]
PartitionKey = tuple[str, int]
Chunk = list[tuple[CacheKey, IndexRow]]

# Rows the queue holds at most (about 100 MB): past that, a write waits
# for its index rows as an API write does, so a flood of new series (a
# label that changes at every scrape) slows the hunt down rather than
# growing the queue without end.
QUEUED_AT_MOST = 200_000
# The first wait after a failed batch, doubled up to the second.
FIRST_RETRY = 1.0
LAST_RETRY = 30.0


class IndexQueue:
    """
    Index rows waiting to be written, by index partition.

    @ivar queued: rows waiting or in flight.
    @ivar written: rows written so far.
    @ivar failures: batches that failed (and were queued again).
    @ivar limit: rows queued at most (see L{hasRoom}).
    """

    log = Logger()

    def __init__(self, send: Callable[[list[IndexRow]], Deferred[Any]],
                 clock: Any, inFlight: int, rowsPerWrite: int) -> None:
        """
        @param send: writes the rows of one index partition, firing once
            Cassandra has them.
        @param clock: for the backoff after a failure.
        @param inFlight: batches written at once.
        @param rowsPerWrite: rows of one batch at most.
        """
        self._send = send
        self._clock = clock
        self._maxInFlight = inFlight
        self._rowsPerWrite = rowsPerWrite
        # Each partition's rows in batches of at most rowsPerWrite, the
        # last one filling up; taking a batch is then as cheap for a
        # partition of ten thousand rows as for one of ten.
        self._waiting: OrderedDict[PartitionKey, deque[Chunk]] = \
            OrderedDict()
        # The rows waiting (not those in flight), for adding each once.
        self._keys: set[CacheKey] = set()
        self._inFlight = 0
        self._retry: Any = None
        self._backoff = FIRST_RETRY
        self._emptyWaiters: list[Deferred[None]] = []
        self._stopped = False
        self.queued = 0
        self.written = 0
        self.failures = 0
        self.limit = QUEUED_AT_MOST

    def hasRoom(self, rows: int) -> bool:
        """
        Whether C{rows} more rows may be queued.
        """
        return self.queued + rows <= self.limit

    def add(self, rows: Iterable[tuple[CacheKey, IndexRow]]) -> None:
        """
        Queue index rows; a row already waiting is not queued twice.
        """
        waiting = self._waiting
        keys = self._keys
        size = self._rowsPerWrite
        for item in rows:
            key, row = item
            if key in keys:
                continue
            keys.add(key)
            partition = (row.metric, row.slice)
            chunks = waiting.get(partition)
            if chunks is None:
                waiting[partition] = chunks = deque([[]])
            last = chunks[-1]
            if len(last) >= size:
                last = []
                chunks.append(last)
            last.append(item)
            self.queued += 1
        self._pump()

    def whenEmpty(self) -> Deferred[None]:
        """
        Fire once no row waits or is in flight.  Cancelling the Deferred
        stops the wait.
        """
        if self.queued == 0:
            return succeed(None)
        waiter: Deferred[None] = Deferred(self._emptyWaiters.remove)
        self._emptyWaiters.append(waiter)
        return waiter

    def stop(self) -> None:
        """
        Stop writing: no retry is scheduled any more, and rows still
        waiting stay unwritten.
        """
        self._stopped = True
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None

    def _pump(self) -> None:
        waiting = self._waiting
        while (not self._stopped and self._retry is None
               and self._inFlight < self._maxInFlight and waiting):
            partition, chunks = next(iter(waiting.items()))
            batch = chunks.popleft()
            if chunks:
                # The rest of this partition goes after the others.
                waiting.move_to_end(partition)
            else:
                del waiting[partition]
            for key, _ in batch:
                self._keys.discard(key)
            self._inFlight += 1
            self._send([row for _, row in batch]).addCallbacks(
                self._sent, self._failed, callbackArgs=(batch,),
                errbackArgs=(partition, batch))

    def _sent(self, _: Any, batch: Chunk) -> None:
        self._inFlight -= 1
        self.queued -= len(batch)
        self.written += len(batch)
        self._backoff = FIRST_RETRY
        if self.queued == 0:
            waiting, self._emptyWaiters = self._emptyWaiters, []
            for waiter in waiting:
                waiter.callback(None)
        self._pump()

    def _failed(self, failure: Any, partition: PartitionKey,
                batch: Chunk) -> None:
        self._inFlight -= 1
        self.failures += 1
        # Back at the head of the queue, but for rows of the same series
        # queued again meanwhile.
        keys = self._keys
        again = []
        for item in batch:
            if item[0] in keys:
                self.queued -= 1
            else:
                keys.add(item[0])
                again.append(item)
        if again:
            chunks = self._waiting.get(partition)
            if chunks is None:
                self._waiting[partition] = deque([again])
            else:
                chunks.appendleft(again)
            self._waiting.move_to_end(partition, last=False)
        if self._stopped:
            return
        if self._retry is None:
            self.log.warn(
                "Writing {rows} index rows failed ({error}); {queued} rows "
                "wait, trying again in {seconds:g}s", rows=len(batch),
                error=failure.getErrorMessage()[:200], queued=self.queued,
                seconds=self._backoff)
            self._retry = self._clock.callLater(self._backoff, self._again)
            self._backoff = min(self._backoff * 2, LAST_RETRY)

    def _again(self) -> None:
        self._retry = None
        self._pump()
