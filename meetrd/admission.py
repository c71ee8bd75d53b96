"""
Admission of requests of one kind: at most so many in flight, the next one
refused at once with a C{503} and C{Retry-After}, so that a burst is shed
instead of queued behind Cassandra.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from twisted.internet.defer import Deferred, fail, maybeDeferred

from meetrd.web import ApiError

_T = TypeVar("_T")


class Overloaded(ApiError):
    """
    Too many requests of a kind in flight: try again shortly.
    """

    def __init__(self, kind: str, inFlight: int) -> None:
        super().__init__(503, {"error": f"overloaded: {inFlight} {kind} in "
                                        f"flight; try again shortly"},
                         {"Retry-After": "1"})


class AdmissionGate:
    """
    Lets at most C{limit} calls be in flight at once.

    @ivar limit: how many calls may be in flight.
    @ivar name: what the calls are, in words (C{"writes"}): the refusal
        names it.
    @ivar inFlight: how many calls are in flight now.
    """

    def __init__(self, limit: int, name: str) -> None:
        self.limit = limit
        self.name = name
        self.inFlight = 0

    def run(self, f: Callable[..., Deferred[_T] | _T], *args: Any,
            **kwargs: Any) -> Deferred[_T]:
        """
        Call C{f(*args, **kwargs)} in a slot of the gate, which is held
        until the call's result (a Deferred or not) is known, whether it
        succeeded, failed or raised at once.

        @return: a Deferred of what C{f} gives, or failed with
            L{Overloaded} (C{f} not called) when C{limit} calls are in
            flight.
        """
        if self.inFlight >= self.limit:
            return fail(Overloaded(self.name, self.inFlight))
        self.inFlight += 1
        d = maybeDeferred(f, *args, **kwargs)
        d.addBoth(self._release)
        return d

    def _release(self, result: Any) -> Any:
        self.inFlight -= 1
        return result
