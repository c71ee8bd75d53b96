"""
Tests for L{meetrd.collector}: the collector's settings for a long-lived
daemon, put back on stop, and the timing of every collection.
"""

from __future__ import annotations

import gc

from meetrd.collector import CollectorTuning
from meetrd.selfmetrics import SelfMetrics


class Ticks:
    """
    A timer that moves on by a quarter of a second at each reading.
    """

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.25
        return self.now


def test_startFreezesAndSetsThresholds():
    """
    Started, the service freezes what is alive and sets its thresholds;
    stopped, it puts the previous thresholds back and unfreezes.
    """
    before = gc.get_threshold()
    tuning = CollectorTuning((12_345, 7, 9), Ticks())
    tuning.startService()
    try:
        assert gc.get_threshold() == (12_345, 7, 9)
        assert gc.get_freeze_count() > 0
    finally:
        tuning.stopService()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
    assert tuning._timed not in gc.callbacks


def test_collectionsAreTimed():
    """
    Each collection counts once under its generation, with the time
    between its start and its end, and the longest is kept.
    """
    tuning = CollectorTuning(timer=Ticks())
    tuning.startService()
    try:
        gc.collect(0)
        gc.collect(2)
    finally:
        tuning.stopService()
    assert tuning.collections[0] >= 1 and tuning.collections[2] >= 1
    assert tuning.seconds[0] == 0.25 * tuning.collections[0]
    assert tuning.longest == 0.25


def test_timingsOnMetrics():
    """
    The timings are on C{/metrics}: seconds and collections by generation,
    and the longest collection.
    """
    tuning = CollectorTuning(timer=Ticks())
    tuning.startService()
    try:
        gc.collect(1)
    finally:
        tuning.stopService()
    text = SelfMetrics(collector=tuning).render().decode()
    assert 'meetr_gc_seconds_total{generation="1"} 0.25' in text
    assert 'meetr_gc_collections_total{generation="1"} 1.0' in text
    assert "meetr_gc_longest_seconds 0.25" in text
