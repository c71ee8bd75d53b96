"""
From cassandra-driver's C{ResponseFuture} to Twisted's C{Deferred}.

The driver may run a future's callbacks on the reactor thread, on the
calling thread or on one of its own executor threads (retries, timeouts),
so every result is handed over with C{reactor.callFromThread}, which is
safe from any of them.
"""

from __future__ import annotations

from typing import Any, Sequence

from twisted.internet.defer import Deferred


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

    def onPage(page: Any) -> None:
        if page:
            rows.extend(page)
        if future.has_more_pages:
            future.start_fetching_next_page()
        else:
            reactor.callFromThread(_fire, result, rows)

    def onError(error: BaseException) -> None:
        reactor.callFromThread(_fail, result, error)

    future.add_callbacks(onPage, onError)
    return result


def _fire(result: Deferred[list[Any]], rows: list[Any]) -> None:
    if not result.called:
        result.callback(rows)


def _fail(result: Deferred[list[Any]], error: BaseException) -> None:
    if not result.called:
        result.errback(error)
