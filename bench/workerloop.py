"""
The command loop of the benchmarks' store workers: one JSON command a
line on stdin, one JSON answer a line on stdout.

A module of its own, not part of L{bench.common}: a worker that runs an
old tree's C{meetrd} has that tree first on its path, and so that tree's
C{bench.common}, which may predate this loop.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Callable


def serveStore(store: Any, handlers: dict[str, Callable[..., Any]],
               reactor: Any) -> None:
    """
    Run a worker process: connect C{store}, then take JSON commands on
    stdin, one a line (C{{"cmd": NAME, ...}}), and answer each with one
    JSON line once its handler is done; on stdin's end, close the store
    and stop.  A store that cannot connect answers the orchestrator's wait
    for readiness with the error.
    """
    from twisted.internet import defer, stdio
    from twisted.protocols.basic import LineReceiver

    class Commands(LineReceiver):
        delimiter = b"\n"
        MAX_LENGTH = 1 << 20

        def connectionMade(self) -> None:
            self.sendLine(b'{"ready": true}')

        def lineReceived(self, line: bytes) -> None:
            command = json.loads(line)
            name = command.pop("cmd")
            if name == "quit":
                self.sendLine(b'{"bye": true}')
                self.transport.loseConnection()
                return
            d = defer.ensureDeferred(handlers[name](**command))
            d.addErrback(lambda f: {"error": f.getTraceback()})
            d.addCallback(lambda answer: self.sendLine(
                json.dumps(answer).encode()))

        def connectionLost(self, reason: Any = None) -> None:
            store.close().addBoth(lambda _: reactor.stop())

    def started() -> None:
        def failed(f: Any) -> None:
            sys.stdout.write(json.dumps({"error": f.getTraceback()}) + "\n")
            sys.stdout.flush()
            reactor.stop()

        store.connect().addCallbacks(
            lambda _: stdio.StandardIO(Commands()), failed)

    reactor.callWhenRunning(started)
    reactor.run()
