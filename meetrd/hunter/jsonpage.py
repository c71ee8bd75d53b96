"""
JSON pages: a node's own JSON document, or a list of Meetr points.

B{An object} is flattened: nested objects join their keys with C{.}, so
C{{"cpu": {"core1": "80%"}}} gives the metric C{cpu.core1} with the value
80, at the hunt's time and with the base tags only.  A leaf is stored when
it is:
  - a number (an integer too large for a double is skipped);
  - a boolean: 1 or 0;
  - a string of a number with an optional unit suffix, blanks allowed
    around it and between number and unit: C{%} leaves the number as it is
    (C{"80%"} is 80); C{K}, C{M}, C{G}, C{T} multiply by powers of 1000 and
    C{Ki}, C{Mi}, C{Gi}, C{Ti} by powers of 1024 (C{"1234M"} is 1.234e9,
    C{"2Ki"} is 2048).  Other suffixes (C{k}, C{MB}, C{ms}...) are not
    units here and the leaf is skipped.
Every other leaf (C{null}, other strings, lists, NaN/Infinity) is skipped
and counted; an empty object gives nothing and counts nothing.  A leaf whose
flattened name breaks the naming rules of L{meetrd.hunter.pagebuild} (an
empty key, a key with a blank...) is skipped and counted too.

B{A list} is a list of Meetr points: C{{"metric_id": "...", "value": ...,
"ts": ..., "tags": {...}}}.  The value is read like a leaf above; C{ts} may
be absent (the hunt's time) or ISO 8601 text (C{2003-12-18T12:18:18Z},
C{2003-12-18 12:18:18+0530}; no zone means UTC), or epoch seconds or
milliseconds as a number or a string of one (1e11 and above are
milliseconds); C{tags} is an optional object of string values, treated as
scraped labels.  An item that is not such an object, or whose metric,
value, timestamp or tags cannot be used, is skipped and counted.

Any other JSON document (a bare number, string...) fails the page.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Iterator

from meetrd.hunter.pagebuild import (
    PageBuilder,
    PageError,
)
from meetrd.timestamps import EPOCH_MS_THRESHOLD, MAX_TS_MS, MIN_TS_MS

_NUMBER_WITH_UNIT = re.compile(
    r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(%|[KMGT]i?)?\s*")
_PLAIN_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_UNITS = {
    "K": 1000, "M": 1000 ** 2, "G": 1000 ** 3, "T": 1000 ** 4,
    "Ki": 1024, "Mi": 1024 ** 2, "Gi": 1024 ** 3, "Ti": 1024 ** 4,
}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_MS = timedelta(milliseconds=1)


def leafValue(leaf: object) -> float | None:
    """
    A JSON leaf as a finite float, or C{None} when it is not stored (see
    the module docstring).
    """
    if leaf.__class__ is float:
        return leaf if math.isfinite(leaf) else None  # type: ignore
    if leaf is True:
        return 1.0
    if leaf is False:
        return 0.0
    if leaf.__class__ is int:
        try:
            return float(leaf)  # type: ignore[arg-type]
        except OverflowError:
            return None
    if isinstance(leaf, str):
        return _stringValue(leaf)
    return None


def _stringValue(text: str) -> float | None:
    match = _NUMBER_WITH_UNIT.fullmatch(text)
    if match is None:
        return None
    number, unit = match.groups()
    if unit is None or unit == "%":
        value = float(number)
    else:
        # Exact decimal arithmetic: "1.1K" is 1100, not 1100.0000000000002.
        try:
            value = float(Decimal(number) * _UNITS[unit])
        except ArithmeticError:  # decimal overflow and the like
            return None
    return value if math.isfinite(value) else None


def _parseTimestamp(raw: object) -> int:
    """
    A Meetr point's C{ts} in ms since the epoch.

    @raise ValueError: when C{raw} is not a timestamp.
    """
    if isinstance(raw, bool):
        raise ValueError("a boolean is not a timestamp")
    if isinstance(raw, str):
        text = raw.strip()
        if _PLAIN_NUMBER.fullmatch(text):
            number: float = float(text)
        else:
            parsed = datetime.fromisoformat(text)
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=timezone.utc)
            return _inRange((parsed - _EPOCH) // _ONE_MS)
    elif isinstance(raw, (int, float)):
        number = raw
    else:
        raise ValueError(f"a {type(raw).__name__} is not a timestamp")
    if not math.isfinite(number):
        raise ValueError("timestamp is not finite")
    if abs(number) >= EPOCH_MS_THRESHOLD:
        return _inRange(math.floor(number))
    return _inRange(math.floor(number * 1000))


def _inRange(ms: int) -> int:
    if not MIN_TS_MS <= ms <= MAX_TS_MS:
        raise ValueError("timestamp out of range")
    return ms


def _decode(body: bytes) -> Any:
    try:
        return json.loads(body)
    except json.JSONDecodeError as e:
        raise PageError(f"invalid JSON at line {e.lineno} column {e.colno}: "
                        f"{e.msg}") from None
    except UnicodeDecodeError as e:
        raise PageError(f"invalid JSON: not UTF-8 ({e.reason} at byte "
                        f"{e.start})") from None
    except RecursionError:
        raise PageError("invalid JSON: nested too deeply") from None


def _leaves(document: dict[str, Any]) -> Iterator[tuple[str | None, Any]]:
    """
    The leaves of an object as C{(flattened name, leaf)}, in document
    order, without recursion (the document may be as deep as the JSON
    decoder allows).  The name is C{None} when a key on the way is empty.
    """
    stack: list[tuple[str | None, Iterator[tuple[str, Any]]]] = [
        ("", iter(document.items()))]
    while stack:
        prefix, items = stack[-1]
        for key, value in items:
            name = None if prefix is None or not key else prefix + key
            if value.__class__ is dict:
                stack.append((None if name is None else name + ".",
                              iter(value.items())))
                break
            yield name, value
        else:
            stack.pop()


def readJSON(body: bytes, builder: PageBuilder) -> None:
    """
    Read a JSON page into C{builder} (see the module docstring).

    @raise PageError: when the body is not JSON, is neither an object nor
        a list, or breaks a limit.
    """
    document = _decode(body)
    if isinstance(document, dict):
        _readObject(document, builder)
    elif isinstance(document, list):
        _readPoints(document, builder)
    else:
        raise PageError(f"JSON page must be an object or a list, not "
                        f"{_jsonType(document)}")


def _jsonType(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return "a string"


def _readObject(document: dict[str, Any], builder: PageBuilder) -> None:
    tsMs = builder.defaultTsMs
    for name, leaf in _leaves(document):
        value = leafValue(leaf)
        if value is None:
            builder.skip()
            continue
        tags = None if name is None else builder.series(name, None)
        if tags is None:
            builder.skip()
            continue
        builder.add(name, tags, tsMs, value)


def _readPoints(items: list[Any], builder: PageBuilder) -> None:
    for item in items:
        if not isinstance(item, dict):
            builder.skip()
            continue
        metric = item.get("metric_id")
        labels = item.get("tags")
        value = leafValue(item.get("value"))
        if not isinstance(metric, str) or value is None:
            builder.skip()
            continue
        if labels is None:
            labels = {}
        elif not isinstance(labels, dict) or not all(
                isinstance(v, str) for v in labels.values()):
            builder.skip()
            continue
        raw = item.get("ts")
        if raw is None:
            tsMs = builder.defaultTsMs
        else:
            try:
                tsMs = _parseTimestamp(raw)
            except (ValueError, OverflowError):
                builder.skip()
                continue
        tags = builder.series(metric, labels)
        if tags is None:
            builder.skip()
            continue
        builder.add(metric, tags, tsMs, value)
