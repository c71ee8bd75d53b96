"""
Writes planned from the shape of a target's last write
(L{meetrd.writeplan.WriteShape}) against the same writes planned point by
point: the same rows, index rows, bucket, slice and rollup markers, for
any sequence of pages, times, acknowledgements and overflows.
"""

from __future__ import annotations

from hypothesis import example, given, settings, strategies as st

from meetrd.points import Point, freezeTags
from meetrd.writeplan import ShapeMemo, WriteCache, learnShape, planWrite

DAY = 86_400_000
BASE = DAY * 20_000

# Tag tuples of a hunted node's page (the page cache hands out the same
# tuples at every scrape), some of another node, some of no node.
TAGS = [freezeTags({"node": "a", "i": "0"}), freezeTags({"node": "a", "i": "1"}),
        freezeTags({"node": "a", "i": "2"}), freezeTags({"node": "b", "i": "0"}),
        freezeTags({"i": "lone"}), freezeTags({})]

# A page: (metric, tag tuple number, a copy of the tuple rather than it).
pages = st.lists(st.tuples(st.sampled_from(["m", "n"]),
                           st.integers(0, len(TAGS) - 1),
                           st.sampled_from([True, True, True, False])),
                 min_size=1, max_size=8)
steps = st.lists(st.tuples(
    st.integers(0, 2),                                   # which page
    st.sampled_from([0, 1000, DAY - 1, DAY, DAY + 5]),   # time of its points
    st.booleans(),                                       # one point later
    st.sampled_from([0.0, 1.0, 30_000.0, 50_000.0]),     # seconds passing
    st.booleans()),                                      # acknowledged
    min_size=1, max_size=12)


def pointsOf(page, ts, oneLater, value):
    points = []
    for position, (metric, number, same) in enumerate(page):
        tags = TAGS[number] if same else tuple(list(TAGS[number]))
        points.append(Point(metric, tags, ts, float(value + position)))
    if oneLater:
        last = points[-1]
        points[-1] = Point(last.metric, last.tags, ts + 1, last.value)
    return points


def planned(plan):
    """
    What a plan sends, in the order it sends it.
    """
    return (list(plan.partitions.items()),
            [(key, row) for key, row in plan.indexRows], plan.bucketRows,
            plan.sliceRows, plan.dirtyRows, plan.widths, plan.count)


@settings(max_examples=400, deadline=None)
@example(  # a series indexed long before the others of its page falls due
    # first: the shape must keep the oldest index time, not the newest
    [[("m", 0, True)], [("m", 0, True), ("m", 1, True)], [("m", 0, True)]],
    [(0, 0, False, 0.0, True), (1, 0, False, 30_000.0, True),
     (1, 0, False, 30_000.0, True)], 3600, 500, False)
@given(st.lists(pages, min_size=3, max_size=3), steps,
       st.sampled_from([0, 3600]), st.sampled_from([3, 500]), st.booleans())
def test_shapedPlansArePointByPointPlans(pageList, stepList, retention,
                                         bound, rollups):
    """
    A sequence of writes planned with a memo gives, write for write, the
    plan made without one, and leaves the caches as it does; a write is
    learnt from only once acknowledged.
    """
    shaped = WriteCache(retention, DAY, rollups=rollups, maxPartitionRows=bound)
    plain = WriteCache(retention, DAY, rollups=rollups, maxPartitionRows=bound)
    memo = ShapeMemo()
    now = 1_000_000.0
    for number, (which, offset, oneLater, passing, acknowledged) in \
            enumerate(stepList):
        now += passing
        points = pointsOf(pageList[which], BASE + offset, oneLater, number)
        withMemo = planWrite(points, shaped, now, memo=memo)
        without = planWrite(points, plain, now)
        assert planned(withMemo) == planned(without)
        if acknowledged:
            shaped.remember(withMemo, now)
            plain.remember(without, now)
            if not withMemo.shaped:
                memo.shape = learnShape(points, withMemo, shaped)
    assert list(shaped.partitionRows.items()) == \
        list(plain.partitionRows.items())
    assert shaped.overflows == plain.overflows


def test_aHuntedPageIsPlannedFromItsShape():
    """
    The same page again, acknowledged, is planned from its shape; a new
    series, another index slice, or index rows due to be written again
    (half a slice with a retention) plan it point by point, listing what
    they need.
    """
    cache = WriteCache(3600, DAY)
    memo = ShapeMemo()
    page = [("m", 0, True), ("m", 1, True), ("n", 3, True), ("m", 4, True)]

    def write(ts, now, extra=()):
        points = pointsOf(page + list(extra), ts, False, 0)
        plan = planWrite(points, cache, now, memo=memo)
        cache.remember(plan, now)
        if not plan.shaped:
            memo.shape = learnShape(points, plan, cache)
        return plan

    first = write(BASE, 0.0)
    assert not first.shaped and len(first.indexRows) == 4
    again = write(BASE + 10_000, 10.0)
    assert again.shaped and again.indexRows == [] and again.count == 4
    assert sorted(again.partitions) == sorted(first.partitions)
    assert not write(BASE + 20_000, 20.0, [("m", 2, True)]).shaped
    assert write(BASE + 30_000, 30.0, [("m", 2, True)]).shaped
    nextDay = write(BASE + DAY, 40.0, [("m", 2, True)])
    assert not nextDay.shaped and len(nextDay.indexRows) == 5
    due = write(BASE + DAY + 1, 40.0 + DAY / 2000, [("m", 2, True)])
    assert not due.shaped and len(due.indexRows) == 5


def test_unacknowledgedWritesTeachNothing():
    """
    A write that was not acknowledged leaves no shape: its index rows may
    not be in Cassandra, so the next write plans them again.
    """
    cache = WriteCache(0, DAY)
    memo = ShapeMemo()
    points = pointsOf([("m", 0, True)], BASE, False, 0)
    planWrite(points, cache, 0.0, memo=memo)
    assert memo.shape is None
    assert len(planWrite(points, cache, 1.0, memo=memo).indexRows) == 1
