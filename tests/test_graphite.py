"""
The Graphite plaintext listener without Cassandra: lines parsed, bad ones
counted and skipped with the connection kept, points written in batches
by size and by time, written again after a failure, and reading paused
while too many points wait; with a Clock, C{StringTransport}s and a
store the test holds back.
"""

from __future__ import annotations

import pytest
from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from meetrd import graphite
from meetrd.graphite import (
    FLUSH_POINTS,
    FLUSH_SECONDS,
    GraphiteDrain,
    GraphiteFactory,
    GraphiteIntake,
    parseLine,
)
from meetrd.points import Point
from meetrd.settings import Limits
from meetrd.store import StoreUnavailable
from meetrd.validation import FieldProblem

NOW_S = 1_700_000_000


class HeldStore:
    """
    A store whose writes wait until the test ends them.
    """

    def __init__(self):
        self.writes = []

    def writePoints(self, points):
        d = Deferred()
        self.writes.append((list(points), d))
        return d


def connected(intake):
    """
    A connection of the listener on a C{StringTransport}.
    """
    protocol = GraphiteFactory(intake).buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport


def intakeOn(store=None):
    clock = Clock()
    clock.advance(NOW_S)
    return GraphiteIntake(store or HeldStore(), Limits(), clock), clock


@pytest.mark.parametrize("line, point", [
    (b"servers.web1.cpu 0.5 1700000000",
     Point("servers.web1.cpu", (), 1_700_000_000_000, 0.5)),
    (b"disk.used;host=web1;dc=eu 42 1699999999.25",
     Point("disk.used", (("dc", "eu"), ("host", "web1")),
           1_699_999_999_250, 42.0)),
    (b"  spaced\t-1e3   1700000000  ", Point("spaced", (), 1_700_000_000_000,
                                            -1000.0)),
    (b"now 1 -1", Point("now", (), NOW_S * 1000, 1.0)),
])
def test_goodLines(line, point):
    """
    Plain and tagged paths, fractional seconds kept to the millisecond,
    any whitespace between fields, C{-1} for now.
    """
    assert parseLine(line, Limits(), NOW_S * 1000) == point


@pytest.mark.parametrize("line, field", [
    (b"only.two 1", "line"),
    (b"a b c d", "line"),
    (b"bad*path 1 1700000000", "path"),
    (b"m;novalue 1 1700000000", "path"),
    (b"m;a=1;a=2 1 1700000000", "path"),
    (b"m;9bad=1 1 1700000000", "path"),
    (b"m one 1700000000", "value"),
    (b"m nan 1700000000", "value"),
    (b"m 1 yesterday", "timestamp"),
    (b"m 1 99999999999999", "timestamp"),
    (b"m 1 1800000000", "timestamp"),
    (b"m\xff 1 1700000000", "line"),
])
def test_badLinesNameTheirField(line, field):
    """
    Each way a line can be wrong names the part of it that is.
    """
    with pytest.raises(FieldProblem) as caught:
        parseLine(line, Limits(), NOW_S * 1000)
    assert caught.value.field == field


def test_badLineSkippedConnectionKept():
    """
    A bad line between good ones is counted and skipped; the good lines
    around it are kept (lines split across reads too) and the connection
    stays open.
    """
    intake, clock = intakeOn()
    protocol, transport = connected(intake)
    protocol.dataReceived(b"a 1 1700000000\nbroken line\nb 2 17000")
    protocol.dataReceived(b"00000\r\n")
    assert intake.linesBad == 1
    assert [p.metric for p in intake.pending] == ["a", "b"]
    assert not transport.disconnecting


def test_overlongLineSkippedWhole():
    """
    A line longer than the limit, however it arrives, is one bad line;
    the next line is read as usual.
    """
    intake, clock = intakeOn()
    protocol, transport = connected(intake)
    protocol.dataReceived(b"x" * (graphite.MAX_LINE + 10))
    protocol.dataReceived(b"y" * 100)
    protocol.dataReceived(b" 1 1700000000\nok 1 1700000000\n")
    assert intake.linesBad == 1
    assert [p.metric for p in intake.pending] == ["ok"]


def test_badLinesLoggedAtMostEveryTenSeconds():
    """
    Bad lines are logged a line every ten seconds at most, saying how
    many there were.
    """
    intake, clock = intakeOn()
    logged = []
    intake.log = type("L", (), {"warn": lambda self, f, **k: logged.append(
        k["count"])})()
    protocol, _ = connected(intake)
    protocol.dataReceived(b"bad\n" * 5)
    clock.advance(graphite.LOG_EVERY)
    protocol.dataReceived(b"bad\n")
    assert logged == [1, 5]
    assert intake.linesBad == 6


def test_batchesBySizeAndByTime():
    """
    Points are written once L{FLUSH_POINTS} wait, or L{FLUSH_SECONDS}
    after the first of a smaller batch came.
    """
    store = HeldStore()
    intake, clock = intakeOn(store)
    protocol, _ = connected(intake)
    protocol.dataReceived(b"m 1 1700000000\n" * 10)
    assert store.writes == []
    clock.advance(FLUSH_SECONDS)
    [(points, d)] = store.writes
    assert len(points) == 10
    d.callback(10)
    protocol.dataReceived(b"m 1 1700000000\n" * FLUSH_POINTS)
    assert len(store.writes) == 2 and len(store.writes[1][0]) == FLUSH_POINTS
    store.writes[1][1].callback(FLUSH_POINTS)
    assert intake.written == FLUSH_POINTS + 10


def test_failedWriteWrittenAgainFirst():
    """
    A batch whose write failed waits again ahead of newer points and is
    written again after a back-off that grows; nothing is dropped.
    """
    store = HeldStore()
    intake, clock = intakeOn(store)
    protocol, _ = connected(intake)
    protocol.dataReceived(b"first 1 1700000000\n")
    clock.advance(FLUSH_SECONDS)
    store.writes[0][1].errback(StoreUnavailable("down"))
    protocol.dataReceived(b"second 1 1700000000\n")
    clock.advance(0.9)
    assert len(store.writes) == 1
    clock.advance(0.1)
    assert [p.metric for p in store.writes[1][0]] == ["first", "second"]
    store.writes[1][1].errback(StoreUnavailable("down"))
    clock.advance(1.9)
    assert len(store.writes) == 2
    clock.advance(0.1)
    store.writes[2][1].callback(2)
    assert intake.written == 2 and intake.pending == []


def test_readingPausedWhileTooMuchWaits(monkeypatch):
    """
    While more than the high-water mark of points waits, every connection
    stops reading (new ones too); under half of it, they read again.
    """
    monkeypatch.setattr(graphite, "HIGH_WATER", 20)
    store = HeldStore()
    intake, clock = intakeOn(store)
    protocol, transport = connected(intake)
    protocol.dataReceived(b"m 1 1700000000\n" * 25)
    assert transport.producerState == "paused"
    _, late = connected(intake)
    assert late.producerState == "paused"
    clock.advance(FLUSH_SECONDS)
    store.writes[0][1].callback(25)
    assert transport.producerState == "producing"
    assert late.producerState == "producing"


def test_stopClosesConnectionsAndWritesWhatWaits():
    """
    At stop the connections are closed and what waits is written (again
    after a failure) before the stop ends, within the grace.
    """
    store = HeldStore()
    intake, clock = intakeOn(store)
    protocol, transport = connected(intake)
    protocol.dataReceived(b"m 1 1700000000\n" * 3)
    drain = GraphiteDrain(intake, 30)
    drain.startService()
    stopped = drain.stopService()
    assert transport.disconnecting
    store.writes[0][1].errback(StoreUnavailable("down"))
    assert not stopped.called
    clock.advance(0.5)
    store.writes[1][1].callback(3)
    assert stopped.called and intake.written == 3


def test_stopGivesUpAfterTheGrace():
    """
    With Cassandra gone for good, the stop ends once the grace is over.
    """
    class Down:
        def writePoints(self, points):
            return fail(StoreUnavailable("down"))

    intake, clock = intakeOn(Down())
    protocol, _ = connected(intake)
    protocol.dataReceived(b"m 1 1700000000\n")
    drain = GraphiteDrain(intake, 3)
    drain.startService()
    stopped = drain.stopService()
    for _ in range(20):
        clock.advance(0.5)
    assert stopped.called and len(intake.pending) == 1
