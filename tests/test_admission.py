"""
Tests for L{meetrd.admission}: the gate that bounds requests in flight.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail, succeed

from meetrd.admission import AdmissionGate, Overloaded


def outcome(d):
    """
    What a fired Deferred holds: its result, or its Failure (handled).
    """
    results = []
    d.addBoth(results.append)
    assert results, "the Deferred has not fired"
    return results[0]


def test_slotReleasedAfterSuccess():
    """
    A call whose Deferred succeeds holds its slot until then, gives its
    result, and frees the slot.
    """
    gate = AdmissionGate(1, "writes")
    held = Deferred()
    d = gate.run(lambda: held)
    assert gate.inFlight == 1
    held.callback(7)
    assert outcome(d) == 7
    assert gate.inFlight == 0


def test_slotReleasedAfterSynchronousResult():
    """
    A call that returns a plain value frees its slot at once, and its value
    is the Deferred's result.
    """
    gate = AdmissionGate(1, "writes")
    assert outcome(gate.run(lambda a, b=0: a + b, 2, b=3)) == 5
    assert gate.inFlight == 0


def test_slotReleasedAfterFailedDeferred():
    """
    A call whose Deferred fails frees its slot, and the failure reaches the
    caller.
    """
    gate = AdmissionGate(1, "writes")
    held = Deferred()
    d = gate.run(lambda: held)
    held.errback(RuntimeError("boom"))
    assert outcome(d).check(RuntimeError)
    assert gate.inFlight == 0
    assert outcome(gate.run(lambda: succeed("again"))) == "again"


def test_slotReleasedAfterSynchronousException():
    """
    A call that raises before returning a Deferred frees its slot, and the
    exception reaches the caller as a failed Deferred.
    """
    gate = AdmissionGate(1, "searches")

    def broken():
        raise ValueError("bad query")

    assert outcome(gate.run(broken)).check(ValueError)
    assert gate.inFlight == 0
    assert outcome(gate.run(lambda: fail(KeyError("k")))).check(KeyError)
    assert gate.inFlight == 0
    assert outcome(gate.run(lambda: 1)) == 1


def test_limitRefusesTheNextCall():
    """
    With C{limit} calls in flight the next is refused with a 503 naming
    the kind and the count, carrying C{Retry-After}, and is not called.
    """
    gate = AdmissionGate(2, "writes")
    held = [Deferred(), Deferred()]
    for d in held:
        gate.run(lambda d=d: d)
    called = []
    refused = outcome(gate.run(lambda: called.append(1)))
    assert refused.check(Overloaded)
    error = refused.value
    assert (error.code, error.headers) == (503, {"Retry-After": "1"})
    assert error.body == {"error": "overloaded: 2 writes in flight; try "
                                   "again shortly"}
    assert called == []
    assert gate.inFlight == 2
    held[0].callback(None)
    assert gate.inFlight == 1
    assert outcome(gate.run(lambda: "in")) == "in"


def test_countUnderConcurrency():
    """
    Calls that end out of order, some succeeding and some failing, keep the
    count exact: it is the number of calls not yet ended, and a refused call
    does not change it.
    """
    gate = AdmissionGate(3, "searches")
    held = [Deferred() for _ in range(3)]
    answers = [gate.run(lambda d=d: d) for d in held]
    assert gate.inFlight == 3
    assert outcome(gate.run(lambda: None)).check(Overloaded)
    assert gate.inFlight == 3
    held[1].errback(RuntimeError("lost"))
    assert gate.inFlight == 2
    late = Deferred()
    answers.append(gate.run(lambda: late))
    assert gate.inFlight == 3
    held[2].callback("c")
    held[0].callback("a")
    assert gate.inFlight == 1
    late.callback("d")
    assert gate.inFlight == 0
    assert [outcome(d) if i != 1 else outcome(d).check(RuntimeError)
            for i, d in enumerate(answers)] == ["a", RuntimeError, "c", "d"]


def test_cancelledCallFreesItsSlot():
    """
    Cancelling the gate's Deferred cancels the call and frees its slot.
    """
    gate = AdmissionGate(1, "searches")
    held = Deferred()
    d = gate.run(lambda: held)
    d.cancel()
    assert held.called
    assert gate.inFlight == 0
    outcome(d)
