"""
From cassandra-driver's C{ResponseFuture} to Twisted's C{Deferred}.

The driver may run a future's callbacks on the reactor thread, on the
calling thread or on one of its own executor threads (retries, timeouts),
so every result is handed over in the reactor's next turn: with
C{reactor.callFromThread} from another thread, with C{callLater(0)} from
the reactor thread itself.
"""

from __future__ import annotations

from typing import Any, Sequence

from twisted.internet.defer import Deferred
from twisted.python.threadable import isInIOThread


def executeAsync(reactor: Any, session: Any, statement: Any,
                 parameters: Sequence[Any] | None, timeout: float
                 ) -> Deferred[list[Any]]:
    """
    Run one statement and fire with every row of every page.

    @param reactor: provides C{callFromThread}.
    @param session: a connected C{cassandra.cluster.Session}.
    @param timeout: the driver's per-request timeout, in seconds.
    """
    result: Deferred[list[Any]] = Deferred()
    rows: list[Any] = []

    try:
        future = session.execute_async(statement, parameters, timeout=timeout)
    except Exception as e:  # raised before any I/O: a bad statement
        result.errback(e)
        return result

    # The future keeps these callbacks, and they reach the future through
    # this list, emptied once the last page or the error is in: a future
    # that referred to itself through them would wait for the garbage
    # collector, with its request, its batch and its rows.
    pending = [future]

    def onPage(page: Any) -> None:
        if not pending:
            return
        if page:
            rows.extend(page)
        current = pending[0]
        if current.has_more_pages:
            current.start_fetching_next_page()
        else:
            pending.clear()
            _handOver(reactor, _fire, result, rows)

    def onError(error: BaseException) -> None:
        pending.clear()
        _handOver(reactor, _fail, result, error)

    future.add_callbacks(onPage, onError)
    return result


def _handOver(reactor: Any, function: Any, *args: Any) -> None:
    """
    Call C{function} in the reactor's next turn: from another thread
    through C{callFromThread}; from the reactor thread (where the driver
    reads most answers) with C{callLater(0)}, which needs no wake-up of
    the reactor.
    """
    if isInIOThread():
        reactor.callLater(0, function, *args)
    else:
        reactor.callFromThread(function, *args)


def _fire(result: Deferred[list[Any]], rows: list[Any]) -> None:
    if not result.called:
        result.callback(rows)


def _fail(result: Deferred[list[Any]], error: BaseException) -> None:
    if not result.called:
        result.errback(error)
