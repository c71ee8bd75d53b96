"""
The bridge from cassandra-driver's standard-library records to Twisted's
log: levels carried over, and the driver's expected chatter lowered; the
one way errors are shortened into reasons.
"""

from __future__ import annotations

import logging

from twisted.logger import LogLevel, globalLogPublisher

from meetrd.logs import TwistedLogHandler, briefReason


def emitted(message: str, level: int = logging.WARNING) -> list[dict]:
    """
    The Twisted events one driver record becomes.
    """
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        TwistedLogHandler().emit(logging.LogRecord(
            "cassandra.protocol", level, __file__, 1, message, None, None))
    finally:
        globalLogPublisher.removeObserver(events.append)
    return [e for e in events if e.get("log_namespace") == "cassandra.protocol"]


def test_warningsStayWarnings():
    """
    A driver warning is a warning in Twisted's log, with its text.
    """
    [event] = emitted("Host 127.0.0.1:9042 is down")
    assert event["log_level"] == LogLevel.warn
    assert event["text"] == "Host 127.0.0.1:9042 is down"


def test_manyPartitionAggregationWarningIsDebug():
    """
    Cassandra's warning for an aggregate over several partitions, which
    the edges of a rollup search ask for on purpose, is logged at debug
    level, not as a warning on every search.
    """
    [event] = emitted("Server warning: Aggregation query used on multiple "
                      "partition keys (IN restriction)")
    assert event["log_level"] == LogLevel.debug


def test_protocolNegotiationIsInfo():
    """
    The driver stepping down to the node's protocol version is how it
    negotiates: info, without the advice that follows.
    """
    [event] = emitted("Downgrading core protocol version from 66 to 65 for "
                      "127.0.0.1:9042. To avoid this, it is best practice")
    assert event["log_level"] == LogLevel.info
    assert event["text"] == ("Downgrading core protocol version from 66 to "
                             "65 for 127.0.0.1:9042")


def test_briefReasonIsOneBoundedLine():
    """
    A reason is the message on one line, cut to the limit with C{...}, or
    the exception's class name when its message is empty.
    """
    assert briefReason(OSError("no route\n  to\thost ")) == "no route to host"
    long = briefReason(ValueError("x" * 400), 100)
    assert len(long) == 100 and long.endswith("x...")
    assert briefReason(ValueError("y" * 100), 100) == "y" * 100
    assert briefReason(TimeoutError()) == "TimeoutError"
