"""
Checking what clients send before anything is written.

Every check returns a problem as text fit for a client; a batch is checked
whole, so that one bad item lists every bad index and nothing is stored.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from meetrd.names import (
    CONTROL_CHARACTER,
    METRIC_PATTERN,
    METRIC_RULE,
    TAG_KEY_PATTERN,
    TAG_KEY_RULE,
)
from meetrd.points import Point, Tags, freezeTags
from meetrd.settings import Limits
from meetrd.timestamps import (
    TimestampError,
    TimestampOutOfRange,
    parseTimestamp,
)


@dataclass(frozen=True)
class FieldProblem(Exception):
    """
    One field of one item is wrong.

    @ivar field: the field's name, as the client sent it.
    @ivar problem: what is wrong, in words.
    @ivar index: the item's position in a batch, or C{None}.
    @ivar status: the HTTP status it is answered with: C{400}, or C{422}
        for a well-formed value meetrd will not take (a time outside the
        years 1 to 9999 or the accepted window around now).
    """

    field: str
    problem: str
    index: int | None = None
    status: int = 400

    def asJSON(self) -> dict[str, Any]:
        """
        The problem as a JSON-ready mapping.
        """
        body: dict[str, Any] = {"field": self.field, "problem": self.problem}
        if self.index is not None:
            body["index"] = self.index
        return body


class Unprocessable(Exception):
    """
    A well-formed request the server will not process (C{422}): a search
    range the limits refuse, C{from} after C{to}, too many intervals.

    @ivar field: the parameter to change.
    @ivar problem: what is wrong, in words.
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(problem)
        self.field = field
        self.problem = problem


class BatchProblems(Exception):
    """
    Some items of a batch are wrong; C{problems} lists every one.
    """

    def __init__(self, problems: Sequence[FieldProblem], total: int) -> None:
        super().__init__(problems)
        self.problems = list(problems)
        self.total = total


def parseJSON(data: bytes | str, field: str) -> Any:
    """
    Parse JSON, or raise a L{FieldProblem} naming C{field}.
    """
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise FieldProblem(field, f"not valid JSON: {e}") from None


def checkMetric(name: object, limits: Limits, field: str = "metric_id") -> str:
    """
    Check a metric name and return it.
    """
    if not isinstance(name, str) or not name:
        raise FieldProblem(field, "required: a non-empty string")
    if len(name) > limits.max_metric_length:
        raise FieldProblem(
            field, f"longer than {limits.max_metric_length} characters")
    if not METRIC_PATTERN.fullmatch(name):
        raise FieldProblem(field, f"may hold only {METRIC_RULE}")
    return name


def checkTags(tags: object, limits: Limits, field: str = "tags"
              ) -> dict[str, str]:
    """
    Check a mapping of tags (or a JSON text of one) and return it.
    """
    if tags is None:
        return {}
    if isinstance(tags, str):
        try:
            tags = json.loads(tags) if tags.strip() else {}
        except ValueError:
            raise FieldProblem(field, "not a JSON object") from None
    if type(tags) is not dict and not isinstance(tags, Mapping):
        raise FieldProblem(field, "must be an object of string keys and "
                                  "string values")
    if len(tags) > limits.max_tags:
        raise FieldProblem(field, f"more than {limits.max_tags} tags")
    for key, value in tags.items():
        if not isinstance(key, str) or not TAG_KEY_PATTERN.fullmatch(key):
            raise FieldProblem(field, f"tag key {key!r} must be "
                                      f"{TAG_KEY_RULE}")
        if len(key) > limits.max_tag_key_length:
            raise FieldProblem(field, f"tag key {key[:40]!r}... is longer "
                               f"than {limits.max_tag_key_length} characters")
        if not isinstance(value, str) or not value:
            raise FieldProblem(field, f"tag {key!r} must have a non-empty "
                                      f"string value")
        if len(value) > limits.max_tag_value_length:
            raise FieldProblem(field, f"tag {key!r} is longer than "
                               f"{limits.max_tag_value_length} characters")
        if CONTROL_CHARACTER.search(value):
            raise FieldProblem(field, f"tag {key!r} holds control characters")
    return dict(tags)


def checkValue(value: object, field: str = "value") -> float:
    """
    Check a value: a finite number, or a string of one.
    """
    if isinstance(value, bool) or value is None:
        raise FieldProblem(field, "required: a finite number")
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise FieldProblem(field, f"{value[:40]!r} is not a number") \
                from None
    elif isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:
            raise FieldProblem(field, "too large for a double") from None
    else:
        raise FieldProblem(field, "required: a finite number")
    if not math.isfinite(number):
        raise FieldProblem(field, "must be finite (no NaN or infinity)")
    return number


def checkTimestamp(value: object, limits: Limits, nowMs: int,
                   field: str = "ts") -> int:
    """
    Check a timestamp, including the accepted window around now.
    """
    if value is None or value == "":
        raise FieldProblem(field, "required: a timestamp")
    try:
        tsMs = parseTimestamp(value)
    except TimestampOutOfRange as e:
        raise FieldProblem(field, str(e), status=422) from None
    except TimestampError as e:
        raise FieldProblem(field, str(e)) from None
    return checkWindow(tsMs, limits, nowMs, field)


def checkWindow(tsMs: int, limits: Limits, nowMs: int, field: str) -> int:
    """
    Check that an instant (milliseconds) is within the accepted window
    around now (C{limits.max_future}, C{limits.max_past}).
    """
    if tsMs > nowMs + limits.max_future * 1000:
        raise FieldProblem(field, f"more than {limits.max_future:g}s in the "
                                  f"future", status=422)
    if limits.max_past and tsMs < nowMs - limits.max_past * 1000:
        raise FieldProblem(field, f"more than {limits.max_past:g}s in the "
                                  f"past", status=422)
    return tsMs


_FIELDS = frozenset({"metric_id", "ts", "value", "tags"})


def checkPoint(item: object, limits: Limits, nowMs: int,
               index: int | None = None,
               seen: dict[object, object] | None = None) -> Point:
    """
    Check one client point C{{metric_id, ts, value, tags?}}.

    @param seen: a memo shared by the points of one batch: metric names and
        tag sets already checked are not checked again.
    """
    try:
        if type(item) is not dict and not isinstance(item, Mapping):
            raise FieldProblem("(item)", "must be an object with metric_id, "
                                         "ts and value")
        if len(item) > 4 or not _FIELDS.issuperset(item):
            unknown = set(item) - _FIELDS
            raise FieldProblem(sorted(map(str, unknown))[0], "unknown field")
        name = item.get("metric_id")
        if seen is not None and type(name) is str and name in seen:
            metric = name
        else:
            metric = checkMetric(name, limits)
            if seen is not None:
                seen[metric] = True
        tsMs = checkTimestamp(item.get("ts"), limits, nowMs)
        value = checkValue(item.get("value"))
        rawTags = item.get("tags")
        # No tags: null, left out or {}; a false value of another type
        # (false, 0, []) is not an object, and checkTags refuses it.
        if rawTags is None or (type(rawTags) is dict and not rawTags):
            tags: Tags = ()
        elif seen is not None and type(rawTags) is dict:
            key = tuple(rawTags.items())
            try:
                cached = seen.get(key)
            except TypeError:
                cached = None
            if cached is None:
                cached = freezeTags(checkTags(rawTags, limits))
                seen[key] = cached
            tags = cached  # type: ignore[assignment]
        else:
            tags = freezeTags(checkTags(rawTags, limits))
    except FieldProblem as problem:
        if index is None:
            raise
        raise FieldProblem(problem.field, problem.problem, index,
                           problem.status) from None
    return Point(metric, tags, tsMs, value)


def checkBatch(items: object, limits: Limits, nowMs: int,
               field: str = "metrics") -> list[Point]:
    """
    Check a whole batch; raise L{BatchProblems} listing every bad item, or
    a L{FieldProblem} when the batch itself is not a list.
    """
    if not isinstance(items, list):
        raise FieldProblem(field, "must be a JSON list of points")
    if not items:
        raise FieldProblem(field, "the batch is empty")
    if len(items) > limits.max_batch_points:
        raise FieldProblem(field, f"more than {limits.max_batch_points} "
                                  f"points in one batch")
    points = []
    problems = []
    seen: dict[object, object] = {}
    for index, item in enumerate(items):
        try:
            points.append(checkPoint(item, limits, nowMs, index, seen))
        except FieldProblem as problem:
            problems.append(problem)
    if problems:
        raise BatchProblems(problems, len(items))
    return points
