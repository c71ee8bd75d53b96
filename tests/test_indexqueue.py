"""
The queue of index rows written behind their points
(L{meetrd.indexqueue}), driven by C{twisted.internet.task.Clock}.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from meetrd.indexqueue import FIRST_RETRY, IndexQueue
from meetrd.writeplan import IndexRow


def rows(metric: str, count: int, first: int = 0):
    """
    C{count} index rows of one metric and slice, with their cache keys
    (whose series identifier, like L{meetrd.layout.seriesId}'s, differs
    from one metric to another).
    """
    made = []
    for i in range(first, first + count):
        identifier = metric.encode() + i.to_bytes(4, "big")
        made.append(((identifier, 7, "n:node"), IndexRow(
            metric, 7, identifier, "n:node", 3_600_000,
            (("node", f"n{i}"),))))
    return made


class Sender:
    """
    Holds each batch's Deferred for the test to fire.
    """

    def __init__(self):
        self.batches: list[tuple[list[IndexRow], Deferred[None]]] = []

    def __call__(self, batch):
        d: Deferred[None] = Deferred()
        self.batches.append((batch, d))
        return d


def test_rowsGoByPartitionInFewBatches():
    """
    Rows are written a partition at a time, at most C{rowsPerWrite} a
    batch and C{inFlight} batches at once; a partition larger than a batch
    waits behind the others.
    """
    send = Sender()
    queue = IndexQueue(send, Clock(), inFlight=2, rowsPerWrite=100)
    queue.add(rows("cpu", 250) + rows("mem", 30))
    assert queue.queued == 280
    assert [(len(b), b[0].metric) for b, _ in send.batches] == [
        (100, "cpu"), (30, "mem")]
    send.batches[1][1].callback(None)
    assert [(len(b), b[0].metric) for b, _ in send.batches[2:]] == [
        (100, "cpu")]
    send.batches[0][1].callback(None)
    send.batches[2][1].callback(None)
    assert [len(b) for b, _ in send.batches[3:]] == [50]
    assert queue.queued == 50
    done = queue.whenEmpty()
    assert not done.called
    send.batches[3][1].callback(None)
    assert done.called
    assert queue.queued == 0 and queue.written == 280
    written = [(row.metric, row.seriesId) for b, _ in send.batches
               for row in b]
    assert len(written) == len(set(written)) == 280


def test_aRowWaitingIsNotQueuedTwice():
    """
    A row added again while it waits (the next scrape of a new series) is
    written once.
    """
    send = Sender()
    queue = IndexQueue(send, Clock(), inFlight=1, rowsPerWrite=10)
    queue.add(rows("cpu", 10))
    queue.add(rows("mem", 5))
    queue.add(rows("mem", 5))
    assert queue.queued == 15
    send.batches[0][1].callback(None)
    assert len(send.batches[1][0]) == 5
    send.batches[1][1].callback(None)
    assert queue.queued == 0 and queue.written == 15


def test_failedBatchIsTriedAgainWithBackoff():
    """
    A batch that fails goes back to the head of the queue and is sent
    again after a backoff that doubles while failures go on; nothing is
    lost and the queue is empty once Cassandra takes it.
    """
    clock = Clock()
    send = Sender()
    queue = IndexQueue(send, clock, inFlight=1, rowsPerWrite=10)
    queue.add(rows("cpu", 10))
    queue.add(rows("mem", 3))
    send.batches[0][1].errback(RuntimeError("Cassandra timed out"))
    assert queue.failures == 1 and queue.queued == 13
    assert len(send.batches) == 1
    clock.advance(FIRST_RETRY)
    assert send.batches[1][0][0].metric == "cpu"
    send.batches[1][1].errback(RuntimeError("Cassandra timed out"))
    clock.advance(FIRST_RETRY)
    assert len(send.batches) == 2
    clock.advance(FIRST_RETRY)
    assert len(send.batches) == 3
    send.batches[2][1].callback(None)
    send.batches[3][1].callback(None)
    assert queue.queued == 0 and queue.written == 13
    assert sorted(row.metric for b, _ in send.batches[2:] for row in b) == \
        ["cpu"] * 10 + ["mem"] * 3


def test_stopEndsTheRetries():
    """
    After C{stop} no retry is scheduled and nothing more is sent.
    """
    clock = Clock()
    send = Sender()
    queue = IndexQueue(send, clock, inFlight=1, rowsPerWrite=10)
    queue.add(rows("cpu", 10))
    send.batches[0][1].errback(RuntimeError("down"))
    queue.stop()
    assert clock.getDelayedCalls() == []
    queue.add(rows("mem", 2))
    clock.advance(60)
    assert len(send.batches) == 1
    assert queue.queued == 12


def test_roomIsBounded():
    """
    The queue has room while what it holds and what is added stay within
    its limit.
    """
    queue = IndexQueue(Sender(), Clock(), inFlight=1, rowsPerWrite=10)
    queue.limit = 25
    assert queue.hasRoom(25)
    queue.add(rows("cpu", 20))
    assert queue.hasRoom(5) and not queue.hasRoom(6)


def test_rowQueuedAgainWhileItsBatchFailsIsWrittenOnce():
    """
    A row queued again while its batch is in flight (the next scrape of
    its series) is written once when that batch fails: the batch goes
    back to the head without it, and the queue counts it once.
    """
    clock = Clock()
    send = Sender()
    queue = IndexQueue(send, clock, inFlight=1, rowsPerWrite=10)
    queue.add(rows("cpu", 25))
    assert [len(b) for b, _ in send.batches] == [10]
    queue.add(rows("cpu", 4))
    assert queue.queued == 29
    send.batches[0][1].errback(RuntimeError("Cassandra timed out"))
    assert queue.queued == 25
    clock.advance(FIRST_RETRY)
    while len(send.batches) > sum(1 for _, d in send.batches if d.called):
        send.batches[-1][1].callback(None)
    assert queue.queued == 0 and queue.written == 25
    written = [row.seriesId for b, _ in send.batches[1:] for row in b]
    assert sorted(written) == sorted(r.seriesId for _, r in rows("cpu", 25))
    assert [len(b) for b, _ in send.batches[1:]] == [6, 10, 9]
