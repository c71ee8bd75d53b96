"""
The reactor lag probe, on a Clock: how late its calls run is how long the
reactor was busy.
"""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from meetrd.reactorlag import ReactorLagProbe


def test_lateProbeMeasuresTheStall():
    """
    Probes that run on time report no lag; a stall of 0.8 s (the clock
    jumping past the due moment, as when one piece of work holds the
    reactor) is reported as the window's longest and the longest since
    the start, and leaves the window once 10 s have passed.
    """
    clock = Clock()
    seen = []
    probe = ReactorLagProbe(clock, interval=0.05, window=10.0,
                            observe=seen.append)
    probe.startService()
    clock.pump([0.05] * 20)
    assert seen and max(seen) == pytest.approx(0.0)
    assert probe.recentLongest() == pytest.approx(0.0)
    clock.advance(0.85)
    assert seen[-1] == pytest.approx(0.8)
    clock.pump([0.05] * 20)
    assert probe.recentLongest() == pytest.approx(0.8)
    assert probe.longest == pytest.approx(0.8)
    clock.pump([0.05] * 200)
    assert probe.recentLongest() == pytest.approx(0.0)
    assert probe.longest == pytest.approx(0.8)
    probe.stopService()
    assert clock.getDelayedCalls() == []


def test_windowKeepsTheLongestOfSeveralStalls():
    """
    Of several stalls in the window, the longest is reported, then the
    next longest once the first has left the window.
    """
    clock = Clock()
    probe = ReactorLagProbe(clock, interval=0.05, window=10.0)
    probe.startService()
    for stall in (0.3, 0.5, 0.2):
        clock.advance(0.05 + stall)
        clock.pump([0.05] * 40)  # 2 s apart
    assert probe.recentLongest() == pytest.approx(0.5)
    clock.pump([0.05] * 130)  # the 0.5 s stall is now over 10 s ago
    assert probe.recentLongest() == pytest.approx(0.2)
    probe.stopService()
