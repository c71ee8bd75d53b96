"""
Tests for L{meetrd.jsonbatch}: the one-pass decoder answers every batch
as C{json.loads} and L{meetrd.validation.checkBatch} answer it.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings as hypothesisSettings
from hypothesis import strategies as st

from meetrd import jsonbatch
from meetrd.jsonbatch import decodeBatch
from meetrd.settings import Limits
from meetrd.validation import BatchProblems, FieldProblem, checkBatch, parseJSON

NOW = 1_800_000_000_000
LIMITS = Limits(max_batch_points=20)

metrics = st.sampled_from(["cpu.load", "a", "", ".bad", "x" * 300, "m:1/2-3"])
stamps = st.one_of(
    st.sampled_from([1_799_999_990, 1_799_999_990.5, 1_799_999_990_123,
                     "1799999990", "2027-01-15T08:00:00Z", "2003-12-18",
                     "soon", "", 10 ** 30, -1e300, 1_900_000_000, True]),
    st.integers(1_799_999_000, 1_800_000_100))
values = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                   st.integers(-10 ** 20, 10 ** 20), st.booleans(),
                   st.none(), st.sampled_from(["2.5", " 3 ", "x", "nan", ""]),
                   st.just(10 ** 400))
tagSets = st.one_of(
    st.none(), st.just({}),
    st.dictionaries(st.sampled_from(["node", "dc", "1bad", "a b", "_k"]),
                    st.sampled_from(["n1", "par1", "", "x\x01", 5]),
                    max_size=3),
    st.just('{"node": "n1"}'), st.just([1, 2]))
items = st.one_of(
    st.fixed_dictionaries({"metric_id": metrics, "ts": stamps,
                           "value": values},
                          optional={"tags": tagSets, "extra": st.just(1)}),
    st.just("not an object"), st.just({}))
batches = st.one_of(st.lists(items, max_size=25),
                    st.lists(items, max_size=5).map(
                        lambda listed: {"metrics": listed, "other": 1}),
                    st.just({"no": "metrics"}), st.just(3))


def slow(data: bytes):
    """
    The answer of the full check: the points, or the problem raised.
    """
    try:
        document = parseJSON(data, "(body)")
        if isinstance(document, dict) and "metrics" in document:
            document = document["metrics"]
        return checkBatch(document, LIMITS, NOW, field="(body)")
    except BatchProblems as e:
        return ("problems", [p.asJSON() for p in e.problems], e.total)
    except FieldProblem as e:
        return ("problem", e.asJSON())


def fast(data: bytes):
    """
    The answer of L{decodeBatch}, in the same form as L{slow}'s.
    """
    try:
        return decodeBatch(data, LIMITS, NOW)
    except BatchProblems as e:
        return ("problems", [p.asJSON() for p in e.problems], e.total)
    except FieldProblem as e:
        return ("problem", e.asJSON())


@hypothesisSettings(max_examples=400, deadline=None)
@given(batches)
def test_sameAnswerAsFullCheck(batch):
    """
    For generated batches, good and bad (wrong types, bad names, tags and
    values, timestamps out of the window, unknown fields, empty or too
    long batches, wrapped or not), the decoder gives the same points or
    raises the same problems as the full check.
    """
    data = json.dumps(batch).encode()
    assert fast(data) == slow(data)


@pytest.mark.parametrize("data", [
    b"", b"[", b'[{"metric_id": "a", "ts": NaN, "value": 1}]',
    b'[{"metric_id": "a", "ts": 1799999990, "value": Infinity}]',
    b'\xff\xfe', b'{"metrics": [], "x": 1}',
])
def test_malformedAsFullCheck(data):
    """
    Bodies that are not JSON, or use the literals Python's decoder takes
    and JSON does not, answer as the full check answers them.
    """
    assert fast(data) == slow(data)


def test_goodBatchTakesOnePass(monkeypatch):
    """
    A good batch is answered without the full check: the points come from
    the typed decoder, equal to the full check's.
    """
    batch = [{"metric_id": f"m.{i % 3}", "ts": 1_799_999_990 + i % 2,
              "value": i / 3, "tags": {"node": f"n{i % 4}", "dc": "par1"}}
             for i in range(20)]
    data = json.dumps(batch).encode()
    expected = slow(data)

    def refused(*args, **kwargs):
        raise AssertionError("the full check ran")

    monkeypatch.setattr(jsonbatch, "checkBatch", refused)
    assert decodeBatch(data, LIMITS, NOW) == expected


class Turns:
    """
    A reactor's turns, by hand: what a step schedules runs at the next
    L{turn}, not in the current one.
    """

    def __init__(self) -> None:
        self.pending: list = []

    def schedule(self, step):
        from twisted.internet.task import Clock

        self.pending.append(step)
        return Clock().callLater(0, lambda: None)

    def turn(self) -> None:
        due, self.pending = self.pending, []
        for step in due:
            step()


def steppedCooperator():
    """
    A cooperator that runs one step per turn, and its L{Turns}.
    """
    from twisted.internet.task import Cooperator

    turns = Turns()
    cooperator = Cooperator(terminationPredicateFactory=lambda: lambda: True,
                            scheduler=turns.schedule)
    return cooperator, turns


def largeBatch(count: int) -> list[dict]:
    """
    A batch of C{count} points of 100 series a node, larger than
    L{jsonbatch.LARGE_BODY} from about 8,000 points.
    """
    return [{"metric_id": f"agent.metric_{i % 100:03d}",
             "ts": 1_799_999_000 + i // 5_000, "value": i * 0.5,
             "tags": {"node": f"node-{i // 100}.example:9100", "dc": "par1"}}
            for i in range(count)]


def test_largeBodyCheckedInSlices():
    """
    A body over L{jsonbatch.LARGE_BODY} is decoded and checked a slice of
    L{jsonbatch.SLICE} items per turn (and its scan a turn of its own):
    nothing is answered before the last turn, and the points are those
    the one-go decoder gives.
    """
    limits = Limits()
    data = json.dumps(largeBatch(12_000)).encode()
    assert len(data) > jsonbatch.LARGE_BODY
    cooperator, turn = steppedCooperator()
    results: list = []
    decoded = jsonbatch.decodeBatchInSlices(data, limits, NOW, cooperator)
    decoded.addBoth(results.append)
    turns = 0
    while not results:
        assert turns < 100
        turn.turn()
        turns += 1
    assert turns >= 12_000 // jsonbatch.SLICE + 1
    assert results == [decodeBatch(data, limits, NOW)]
    assert len(results[0]) == 12_000


def test_largeBadBodyAnswersAsFullCheck():
    """
    A large body with a bad item deep inside fails, after its slices, with
    every problem the full check names, and nothing else.
    """
    limits = Limits()
    batch = largeBatch(12_000)
    batch[9_999]["value"] = "many"
    batch[11_000]["tags"] = {"node": ""}
    data = json.dumps(batch).encode()
    cooperator, turn = steppedCooperator()
    results: list = []
    jsonbatch.decodeBatchInSlices(data, limits, NOW, cooperator).addBoth(
        results.append)
    for _ in range(100):
        if results:
            break
        turn.turn()
    [failure] = results
    problems = failure.value
    assert isinstance(problems, BatchProblems)
    assert [(p.index, p.field) for p in problems.problems] == \
        [(9_999, "value"), (11_000, "tags")]
    with pytest.raises(BatchProblems) as full:
        checkBatch(json.loads(data), limits, NOW, field="(body)")
    assert [p.asJSON() for p in full.value.problems] == \
        [p.asJSON() for p in problems.problems]
