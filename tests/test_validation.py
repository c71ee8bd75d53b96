"""
Tests for L{meetrd.validation}.
"""

import pytest

from meetrd.settings import Limits
from meetrd.validation import (
    BatchProblems,
    FieldProblem,
    checkBatch,
    checkPoint,
)

NOW = 1_800_000_000_000
LIMITS = Limits()


def point(**changes):
    item = {"metric_id": "cpu.load", "ts": "2003-12-18 12:18:18+0530",
            "value": 1}
    item.update(changes)
    return {k: v for k, v in item.items() if v is not None}


def test_goodPoint():
    """
    A good point becomes a Point with sorted tags and a float value.
    """
    checked = checkPoint(point(value="2.5", tags={"b": "2", "a": "1"}),
                         LIMITS, NOW)
    assert (checked.metric, checked.ts_ms, checked.value, checked.tags) == (
        "cpu.load", 1071730098000, 2.5, (("a", "1"), ("b", "2")))


def test_tagsAsJSONText():
    """
    Tags may come as a JSON text (a form field).
    """
    assert checkPoint(point(tags='{"node": "a:1"}'), LIMITS, NOW).tags == (
        ("node", "a:1"),)


@pytest.mark.parametrize("changes, field", [
    ({"metric_id": ""}, "metric_id"),
    ({"metric_id": "has space"}, "metric_id"),
    ({"metric_id": "x" * 256}, "metric_id"),
    ({"metric_id": 5}, "metric_id"),
    ({"ts": "soon"}, "ts"),
    ({"ts": NOW / 1000 + 601}, "ts"),
    ({"value": "NaN"}, "value"),
    ({"value": float("inf")}, "value"),
    ({"value": True}, "value"),
    ({"value": "1,5"}, "value"),
    ({"value": 10**400}, "value"),
    ({"tags": {"a": 1}}, "tags"),
    ({"tags": {"1a": "x"}}, "tags"),
    ({"tags": ["a"]}, "tags"),
    ({"tags": []}, "tags"),
    ({"tags": False}, "tags"),
    ({"tags": 0}, "tags"),
    ({"tags": "{not json"}, "tags"),
    ({"tags": {"a": ""}}, "tags"),
    ({"tags": {"a": "x\n"}}, "tags"),
    ({"tags": {f"k{i}": "v" for i in range(33)}}, "tags"),
    ({"tags": {"k": "v" * 513}}, "tags"),
    ({"extra": 1}, "extra"),
])
def test_badPoint(changes, field):
    """
    Each bad field is named.
    """
    with pytest.raises(FieldProblem) as caught:
        checkPoint(point(**changes), LIMITS, NOW)
    assert caught.value.field == field


def test_missingFields():
    """
    A missing field is named as required.
    """
    for name in ("metric_id", "ts", "value"):
        item = point()
        del item[name]
        with pytest.raises(FieldProblem) as caught:
            checkPoint(item, LIMITS, NOW)
        assert caught.value.field == name


def test_futureWindowEdge():
    """
    A timestamp exactly max_future ahead is accepted; one ms more is not.
    """
    edge = NOW + 600_000
    assert checkPoint(point(ts=edge), LIMITS, NOW).ts_ms == edge
    with pytest.raises(FieldProblem):
        checkPoint(point(ts=edge + 1), LIMITS, NOW)


def test_pastWindow():
    """
    With max_past set, older points are refused; by default none are.
    """
    assert checkPoint(point(ts=0), LIMITS, NOW).ts_ms == 0
    strict = Limits(max_past="60s")
    with pytest.raises(FieldProblem):
        checkPoint(point(ts=NOW - 60_001), strict, NOW)


def test_batchListsEveryBadIndex():
    """
    A batch with bad items names every bad index and field.
    """
    with pytest.raises(BatchProblems) as caught:
        checkBatch([point(), point(value="x"), point(), point(ts="x"), 7],
                   LIMITS, NOW)
    assert [(p.index, p.field) for p in caught.value.problems] == [
        (1, "value"), (3, "ts"), (4, "(item)")]


@pytest.mark.parametrize("items", [[], {}, "x", None])
def test_batchMustBeList(items):
    """
    A batch that is not a non-empty list is refused as a whole.
    """
    with pytest.raises(FieldProblem):
        checkBatch(items, LIMITS, NOW)


def test_batchSizeEdge():
    """
    A batch of max_batch_points is fine; one more is refused.
    """
    limits = Limits(max_batch_points=3)
    assert len(checkBatch([point()] * 3, limits, NOW)) == 3
    with pytest.raises(FieldProblem):
        checkBatch([point()] * 4, limits, NOW)
