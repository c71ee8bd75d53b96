"""
Durations written the way operators write them: C{500ms}, C{10s}, C{5m},
C{1h}, C{30d}, C{2w}, or a combination such as C{1h30m}.
"""

from __future__ import annotations

import re

_UNIT_SECONDS = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 7 * 86400.0,
}

# Ten thousand years: longer is a mistake, and would overflow later sums.
_LONGEST = 10_000 * 366 * 86400.0
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


class DurationError(ValueError):
    """
    A string is not a duration.
    """


class DurationTooLong(DurationError):
    """
    A well-formed duration longer than ten thousand years.
    """


def parseDuration(text: object) -> float:
    """
    Parse a duration into seconds.

    @param text: a string such as C{"10s"} or C{"1h30m"}; a bare C{0} is
        accepted as zero.
    @return: the duration in seconds, a non-negative float.
    @raise DurationError: when C{text} is not a duration; a
        L{DurationTooLong} when it is one longer than ten thousand years.
    """
    if isinstance(text, bool) or not isinstance(text, (str, int)):
        raise DurationError(
            f"expected a duration such as 500ms, 10s, 5m, 1h or 30d, "
            f"got {text!r}"
        )
    if isinstance(text, int) or text.strip() == "0":
        if text in (0, "0"):
            return 0.0
        raise DurationError(
            f"a duration needs a unit (ms, s, m, h, d, w), got {text!r}"
        )
    stripped = text.strip()
    position = 0
    total = 0.0
    for match in _PART.finditer(stripped):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position == 0 or position != len(stripped):
        raise DurationError(
            f"expected a duration such as 500ms, 10s, 5m, 1h or 30d, "
            f"got {text!r}"
        )
    if total > _LONGEST:
        raise DurationTooLong(f"{text[:60]!r} is longer than ten thousand "
                              f"years")
    return total


def formatDuration(seconds: float) -> str:
    """
    Write a number of seconds as the shortest exact duration string.
    """
    milliseconds = round(seconds * 1000)
    if milliseconds == 0:
        return "0s"
    for unit, size in (("w", 604800000), ("d", 86400000), ("h", 3600000),
                       ("m", 60000), ("s", 1000)):
        if milliseconds % size == 0:
            return f"{milliseconds // size}{unit}"
    return f"{milliseconds}ms"
