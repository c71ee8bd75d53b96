"""
Timestamps as clients send them.

Accepted forms:
  - the first Meetr's C{YYYY-MM-DD HH:MM:SS[.ffffff]+HHMM};
  - ISO 8601 with C{T} or a space, with C{Z}, C{+HH:MM}, C{+HHMM} or no
    zone at all (a time without a zone is UTC);
  - a date alone (C{YYYY-MM-DD}, midnight UTC);
  - C{12:18:18 0530}: an offset whose C{+} became a space because a form
    body was not URL-encoded is read as C{+0530};
  - epoch seconds or milliseconds, as a JSON number or a string of digits:
    values of 1e11 and above are milliseconds (1e11 seconds lies in the
    year 5138; 1e11 milliseconds in 1973).

Cassandra keeps timestamps to the millisecond; finer digits are truncated.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
EPOCH_MS_THRESHOLD = 1e11
"""An epoch number of this size or more (either sign) is milliseconds; a
smaller one is seconds."""

MIN_TS_MS = -62135596800000
"""The first instant of the year 1, in ms since the epoch: the earliest
meetrd stores (what datetime and Cassandra's timestamp both hold)."""

MAX_TS_MS = 253402300799999
"""The last millisecond of the year 9999: the latest meetrd stores."""

_NUMBER = re.compile(r"-?\d+(\.\d+)?")
# "12:18:18 0530": a "+0530" whose plus became a space in a form body
# that was not URL-encoded.
_PLUS_AS_SPACE = re.compile(r"(\d\d:\d\d(?::\d\d(?:\.\d+)?)?) (\d\d:?\d\d)$")


class TimestampError(ValueError):
    """
    A value is not a timestamp meetrd understands.
    """


class TimestampOutOfRange(TimestampError):
    """
    A well-formed timestamp outside the years 1 to 9999.
    """


def parseTimestamp(value: object) -> int:
    """
    Parse a client's timestamp.

    @param value: a string or a number (see the module docstring).
    @return: milliseconds since the epoch, UTC.
    @raise TimestampError: with a message fit for a client.
    """
    if isinstance(value, bool):
        raise TimestampError("expected a timestamp, got a boolean")
    if isinstance(value, (int, float)):
        return _fromEpoch(value)
    if not isinstance(value, str):
        raise TimestampError(
            f"expected a timestamp string or number, got {type(value).__name__}"
        )
    text = value.strip()
    if not text:
        raise TimestampError("empty timestamp")
    if _NUMBER.fullmatch(text):
        if len(text) > 24:
            raise TimestampOutOfRange(f"{value[:30]!r}... is out of range "
                                      f"(years 1 to 9999)")
        return _fromEpoch(float(text) if "." in text else int(text))
    text = _PLUS_AS_SPACE.sub(r"\1+\2", text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise TimestampError(
            f"{value!r} is not a timestamp: use ISO 8601 "
            f"(2003-12-18T12:18:18+05:30), '2003-12-18 12:18:18+0530' "
            f"or epoch seconds/milliseconds"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    try:
        delta = parsed - _EPOCH
    except OverflowError:
        raise TimestampOutOfRange(f"{value!r} is out of range") from None
    return _checkRange(
        delta.days * 86400000 + delta.seconds * 1000
        + delta.microseconds // 1000,
        value,
    )


def _fromEpoch(number: int | float) -> int:
    """
    Epoch seconds or milliseconds to milliseconds.
    """
    if isinstance(number, float) and not math.isfinite(number):
        raise TimestampError("timestamp must be a finite number")
    if abs(number) >= EPOCH_MS_THRESHOLD:
        milliseconds = int(number)
    else:
        milliseconds = int(math.floor(number * 1000))
    return _checkRange(milliseconds, number)


def _checkRange(milliseconds: int, original: object) -> int:
    """
    Refuse instants outside the years 1 to 9999.
    """
    if not MIN_TS_MS <= milliseconds <= MAX_TS_MS:
        raise TimestampOutOfRange(f"{original!r} is out of range (years 1 "
                                  f"to 9999)")
    return milliseconds


def formatTimestamp(milliseconds: int) -> str:
    """
    Format milliseconds since the epoch as ISO 8601 UTC with a C{Z}.
    """
    seconds, millis = divmod(milliseconds, 1000)
    moment = _EPOCH + timedelta(seconds=seconds)
    text = (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T"
            f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}")
    if millis:
        text += f".{millis:03d}"
    return text + "Z"
