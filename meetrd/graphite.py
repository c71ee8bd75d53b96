"""
The Graphite plaintext protocol: C{path value timestamp} lines over TCP,
and Graphite's tagged form C{name;tag=value;... value timestamp}.

Each connection's lines are parsed as they come (L{parseLine}); a bad line
is counted and logged (at most one log line every L{LOG_EVERY} seconds,
saying how many were bad meanwhile) and skipped, with the good lines
around it kept and the connection open.  The points of every connection
go to one L{GraphiteIntake}, which writes them in batches and writes them
again after a failure; while too many points wait, it stops reading from
the connections (TCP pushes back on the senders) rather than drop any.

The plaintext protocol acknowledges nothing: a point is in Cassandra once
its batch is written, and a point still waiting when meetrd is killed is
lost, as with carbon.  A stop (SIGTERM) writes what waits first, within
C{shutdown_grace}.
"""

from __future__ import annotations

import math
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

from meetrd.points import Point, freezeTags
from meetrd.settings import Limits
from meetrd.validation import FieldProblem, checkMetric, checkTags, checkWindow

# A line longer than this is skipped (counted as bad).
MAX_LINE = 4096
# A batch is written once this many points wait, or FLUSH_SECONDS after
# the first of them arrived.
FLUSH_POINTS = 5000
FLUSH_SECONDS = 1.0
# Reading from the connections stops while this many points wait, and
# starts again under half of it.
HIGH_WATER = 100_000
# Seconds between two writes of the same batch after a failure, at most.
RETRY_MAX = 30.0
# Seconds between two log lines about bad lines, at least.
LOG_EVERY = 10.0


def parseLine(line: bytes, limits: Limits, nowMs: int) -> Point:
    """
    The point of one plaintext line, or a L{FieldProblem} saying what is
    wrong with it.  A timestamp is in seconds (a fraction keeps
    milliseconds); C{-1} means now, as carbon takes it.
    """
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise FieldProblem("line", "not UTF-8") from None
    fields = text.split()
    if len(fields) != 3:
        raise FieldProblem("line", f"expected 'path value timestamp', got "
                                   f"{len(fields)} field(s)")
    path, valueText, tsText = fields
    name, *pairs = path.split(";")
    metric = checkMetric(name, limits, "path")
    tags: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key in tags:
            raise FieldProblem("path", f"tag {pair[:40]!r} is not a new "
                                       f"key=value")
        tags[key] = value
    checked = freezeTags(checkTags(tags, limits, "path"))
    try:
        value = float(valueText)
    except ValueError:
        raise FieldProblem("value", f"{valueText[:40]!r} is not a "
                                    f"number") from None
    if not math.isfinite(value):
        raise FieldProblem("value", "must be finite (no NaN or infinity)")
    try:
        seconds = float(tsText)
    except ValueError:
        raise FieldProblem("timestamp", f"{tsText[:40]!r} is not a number "
                                        f"of seconds") from None
    if seconds == -1:
        tsMs = nowMs
    elif math.isfinite(seconds) and 0 <= seconds < 253402300800:
        tsMs = int(seconds * 1000)
    else:
        raise FieldProblem("timestamp", f"{tsText[:40]!r} is not a time "
                                        f"in seconds since the epoch")
    return Point(metric, checked, checkWindow(tsMs, limits, nowMs,
                                              "timestamp"), value)


class GraphiteIntake:
    """
    The points of every Graphite connection, written in batches.

    @ivar pending: points not yet handed to the store.
    @ivar writing: points handed to the store and not yet written.
    @ivar linesBad: lines refused since start.
    @ivar written: points written since start.
    """

    log = Logger()

    def __init__(self, store: Any, limits: Limits, clock: Any,
                 selfMetrics: Any = None) -> None:
        self.store = store
        self.limits = limits
        self.clock = clock
        self.selfMetrics = selfMetrics
        self.pending: list[Point] = []
        self.writing = 0
        self.linesBad = 0
        self.written = 0
        self.paused = False
        self.connections: set[Any] = set()
        self._flushCall: Any = None
        self._failures = 0
        self._inFlight: Deferred[Any] | None = None
        self._badSinceLog = 0
        self._lastLog = -math.inf

    def nowMs(self) -> int:
        return int(self.clock.seconds() * 1000)

    def accept(self, points: list[Point]) -> None:
        """
        Queue points of a connection; write once enough wait or soon.
        """
        self.pending.extend(points)
        if len(self.pending) >= FLUSH_POINTS and self._inFlight is None \
                and not self._failures:
            self.flush()
        elif self._flushCall is None and self._inFlight is None:
            self._flushCall = self.clock.callLater(FLUSH_SECONDS, self.flush)
        self._pushBack()

    def refused(self, line: bytes, problem: FieldProblem) -> None:
        """
        Count a bad line and log it, a line every L{LOG_EVERY} seconds at
        most.
        """
        self.linesBad += 1
        self._badSinceLog += 1
        if self.selfMetrics is not None:
            self.selfMetrics.graphiteLinesBad.inc()
        now = self.clock.seconds()
        if now - self._lastLog >= LOG_EVERY:
            self.log.warn("Graphite: {count} bad line(s); the last: "
                          "{field}: {problem}: {line!r}",
                          count=self._badSinceLog, field=problem.field,
                          problem=problem.problem, line=line[:200])
            self._badSinceLog = 0
            self._lastLog = now

    def flush(self) -> Deferred[Any]:
        """
        Write every point waiting, in one go; on failure they wait again,
        first in line, and are written again after a back-off.
        """
        if self._flushCall is not None and self._flushCall.active():
            self._flushCall.cancel()
        self._flushCall = None
        if self._inFlight is not None:
            return self._inFlight
        if not self.pending:
            return succeed(None)
        batch = self.pending[:self.limits.max_batch_points]
        del self.pending[:len(batch)]
        self.writing = len(batch)
        d = Deferred.fromCoroutine(self._write(batch))
        if not d.called:
            # Still writing (a store that fails at once has finished).
            self._inFlight = d
        return d

    async def _write(self, batch: list[Point]) -> None:
        try:
            await self.store.writePoints(batch)
        except Exception as e:
            self._failures += 1
            self.pending[:0] = batch
            delay = min(RETRY_MAX, 2 ** (self._failures - 1))
            self.log.warn("Graphite: writing {count} points failed ({why}); "
                          "again in {delay:g}s", count=len(batch),
                          why=str(e) or type(e).__name__, delay=delay)
        else:
            self._failures = 0
            self.written += len(batch)
            if self.selfMetrics is not None:
                self.selfMetrics.pointsWritten.inc(len(batch))
            delay = 0 if len(self.pending) >= FLUSH_POINTS else FLUSH_SECONDS
        finally:
            self.writing = 0
            self._inFlight = None
        if self.pending:
            self._flushCall = self.clock.callLater(delay, self.flush)
        self._pushBack()

    def _pushBack(self) -> None:
        """
        Stop reading from the connections while too many points wait;
        read again once half of them are written.
        """
        waiting = len(self.pending) + self.writing
        if not self.paused and waiting >= HIGH_WATER:
            self.paused = True
            for connection in self.connections:
                connection.transport.pauseProducing()
        elif self.paused and waiting < HIGH_WATER // 2:
            self.paused = False
            for connection in self.connections:
                connection.transport.resumeProducing()

    async def drain(self, deadline: float) -> None:
        """
        Write what waits, until C{deadline} (the clock's seconds).
        """
        while (self.pending or self._inFlight is not None) and \
                self.clock.seconds() < deadline:
            if self._inFlight is not None:
                await DeferredList([self._inFlight])
            elif self._failures:
                await _sleep(self.clock, 0.5)
                self.flush()
            else:
                await self.flush()
        if self.pending:
            self.log.error("Graphite: {count} points not written at stop",
                           count=len(self.pending))


def _sleep(clock: Any, seconds: float) -> Deferred[None]:
    d: Deferred[None] = Deferred()
    clock.callLater(seconds, d.callback, None)
    return d


class GraphiteLines(Protocol):
    """
    One Graphite connection: lines in, points to the intake.
    """

    def __init__(self, intake: GraphiteIntake) -> None:
        self.intake = intake
        self._buffer = b""
        self._skipping = False

    def connectionMade(self) -> None:
        self.intake.connections.add(self)
        if self.intake.paused:
            self.transport.pauseProducing()

    def connectionLost(self, reason: Any = None) -> None:
        self.intake.connections.discard(self)
        if self._buffer and not self._skipping:
            self._lines([self._buffer])
        self._buffer = b""

    def dataReceived(self, data: bytes) -> None:
        lines = (self._buffer + data).split(b"\n")
        self._buffer = lines.pop()
        if self._skipping and lines:
            # The end of a line too long to keep.
            lines.pop(0)
            self._skipping = False
        if len(self._buffer) > MAX_LINE:
            self.intake.refused(self._buffer[:MAX_LINE], FieldProblem(
                "line", f"longer than {MAX_LINE} bytes"))
            self._buffer = b""
            self._skipping = True
        self._lines(lines)

    def _lines(self, lines: list[bytes]) -> None:
        intake = self.intake
        limits = intake.limits
        nowMs = intake.nowMs()
        points = []
        for line in lines:
            line = line.strip()
            if not line:
                continue
            if len(line) > MAX_LINE:
                intake.refused(line[:MAX_LINE], FieldProblem(
                    "line", f"longer than {MAX_LINE} bytes"))
                continue
            try:
                points.append(parseLine(line, limits, nowMs))
            except FieldProblem as problem:
                intake.refused(line, problem)
        if points:
            intake.accept(points)


class GraphiteFactory(Factory):
    """
    Makes a L{GraphiteLines} per connection, all feeding one intake.
    """

    def __init__(self, intake: GraphiteIntake) -> None:
        self.intake = intake

    def buildProtocol(self, addr: Any) -> GraphiteLines:
        protocol = GraphiteLines(self.intake)
        protocol.factory = self
        return protocol


class GraphiteDrain(Service):
    """
    Writes what the Graphite connections left waiting when meetrd stops
    (after the listener has stopped accepting), within C{grace} seconds.
    """

    def __init__(self, intake: GraphiteIntake, grace: float) -> None:
        self.intake = intake
        self.grace = grace

    def stopService(self) -> Deferred[None]:
        """
        Close the connections (the listener has stopped already), then
        write what waits.
        """
        Service.stopService(self)
        for connection in list(self.intake.connections):
            connection.transport.loseConnection()
        return Deferred.fromCoroutine(self.intake.drain(
            self.intake.clock.seconds() + self.grace))
