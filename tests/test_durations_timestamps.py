"""
Tests for L{meetrd.durations} and L{meetrd.timestamps}.
"""

import pytest

from meetrd.durations import DurationError, formatDuration, parseDuration
from meetrd.timestamps import TimestampError, formatTimestamp, parseTimestamp

MEETR_TS = 1071730098000  # 2003-12-18 12:18:18+0530


@pytest.mark.parametrize("text, seconds", [
    ("500ms", 0.5), ("10s", 10), ("5m", 300), ("1h", 3600), ("30d", 2592000),
    ("2w", 1209600), ("1h30m", 5400), ("0", 0), (0, 0), ("1.5s", 1.5),
])
def test_durationsParse(text, seconds):
    """
    Durations in each unit, and combined, give seconds.
    """
    assert parseDuration(text) == seconds


@pytest.mark.parametrize("text", ["", "10", 10, "s", "10x", "1h 30m", "-5s",
                                  True, None, "5s5"])
def test_badDurations(text):
    """
    Anything but a duration with units is refused.
    """
    with pytest.raises(DurationError):
        parseDuration(text)


def test_formatDuration():
    """
    Seconds are written back as the shortest exact duration.
    """
    assert [formatDuration(s) for s in (0, 0.5, 90, 3600, 86400 * 7)] == \
        ["0s", "500ms", "90s", "1h", "1w"]


@pytest.mark.parametrize("text", [
    "2003-12-18 12:18:18+0530",
    "2003-12-18T12:18:18+05:30",
    "2003-12-18T06:48:18Z",
    "2003-12-18 06:48:18",
    "2003-12-18T01:48:18-05:00",
    "2003-12-18 12:18:18 0530",
    1071730098,
    1071730098000,
    "1071730098",
    1071730098.0,
])
def test_sameInstant(text):
    """
    The first Meetr's format, ISO 8601 in any zone, zone-less (UTC), a plus
    lost to form decoding, and epoch seconds or milliseconds all name the
    same instant.
    """
    assert parseTimestamp(text) == MEETR_TS


def test_fractions():
    """
    Fractions of a second are kept to the millisecond.
    """
    assert parseTimestamp("2003-12-18 12:18:18.250999+0530") == MEETR_TS + 250
    assert parseTimestamp(1071730098.25) == MEETR_TS + 250


@pytest.mark.parametrize("value", ["", "yesterday", "2003-13-01", True,
                                   float("nan"), float("inf"), [], None,
                                   "99999-01-01", 1e20])
def test_badTimestamps(value):
    """
    What is not an instant in years 1 to 9999 is refused.
    """
    with pytest.raises(TimestampError):
        parseTimestamp(value)


def test_formatTimestamp():
    """
    Milliseconds are written as ISO 8601 UTC, before and after the epoch.
    """
    assert formatTimestamp(MEETR_TS) == "2003-12-18T06:48:18Z"
    assert formatTimestamp(MEETR_TS + 5) == "2003-12-18T06:48:18.005Z"
    assert formatTimestamp(-1000) == "1969-12-31T23:59:59Z"
