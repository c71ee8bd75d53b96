"""
Logging: the JSON log format, and the driver's standard-library log
records carried into Twisted's log.
"""

from __future__ import annotations

import logging
import sys

from twisted.logger import ILogObserver, LogLevel, Logger, jsonFileLogObserver

_NEGOTIATION = "Downgrading core protocol version"
# Searches have Cassandra aggregate a short range of several sources' raw
# partitions in one request on purpose (the edges of a rollup search);
# Cassandra warns of it every time.
_MANY_PARTITIONS = ("Server warning: Aggregation query used on multiple "
                    "partition keys")
_LEVELS = (
    (logging.CRITICAL, LogLevel.critical),
    (logging.ERROR, LogLevel.error),
    (logging.WARNING, LogLevel.warn),
    (logging.INFO, LogLevel.info),
)


def jsonObserver(logfile: str | None, nodaemon: bool) -> ILogObserver:
    """
    An observer writing one JSON object per event, to the file twistd was
    told (rotated as twistd rotates its own), or to standard output in the
    foreground without one.
    """
    if logfile == "-" or (nodaemon and not logfile):
        return jsonFileLogObserver(sys.stdout)
    from twisted.python.logfile import LogFile

    return jsonFileLogObserver(LogFile.fromFullPath(logfile or "twistd.log"))


class TwistedLogHandler(logging.Handler):
    """
    Sends standard-library log records (cassandra-driver's) to Twisted's
    log, under the record's logger name.
    """

    def emit(self, record: logging.LogRecord) -> None:
        level = LogLevel.debug
        for threshold, twistedLevel in _LEVELS:
            if record.levelno >= threshold:
                level = twistedLevel
                break
        try:
            text = record.getMessage()
        except Exception:
            text = str(record.msg)
        if text.startswith(_NEGOTIATION):
            # The driver offers its newest protocol first and steps down
            # to the node's; that is how it negotiates, not a fault.
            level = LogLevel.info
            text = text.split(". To avoid this")[0]
        elif text.startswith(_MANY_PARTITIONS):
            level = LogLevel.debug
        Logger(namespace=record.name).emit(level, "{text}", text=text)


def bridgeDriverLogs(level: int = logging.WARNING) -> None:
    """
    Carry cassandra-driver's records of C{level} and above into Twisted's
    log (once per process).
    """
    driver = logging.getLogger("cassandra")
    if not any(isinstance(h, TwistedLogHandler) for h in driver.handlers):
        driver.addHandler(TwistedLogHandler())
    driver.setLevel(level)
    driver.propagate = False


def briefReason(error: BaseException, limit: int = 300) -> str:
    """
    An exception's message as one line of at most C{limit} characters (cut
    ones end in C{...}), or its class's name when it says nothing: a reason
    fit for a log line, a report or an answer.
    """
    text = " ".join(str(error).split()) or type(error).__name__
    if len(text) > limit:
        text = text[:limit - 3] + "..."
    return text
