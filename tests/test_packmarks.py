"""
Which packs a write marks, and which raw markers a search reads around
the packs it reads whole: pure logic, no node (the property test in
L{tests.test_packs_exact} proves the whole on the real node).
"""

from __future__ import annotations

from meetrd.packs import PACK_BUCKETS, packMarks, packsClosed, packsUnder
from meetrd.points import freezeTags
from meetrd.readplan import SeriesRow, markerRanges

HOUR = 3_600_000
DAY = 24 * HOUR
SPAN = HOUR * PACK_BUCKETS


def test_partitionsFallInTheirPacks():
    """
    An hourly raw partition falls in one pack of each packed level; a
    day-wide one that straddles two hourly packs falls in both; levels
    finer than an hour are not packed.
    """
    hourly = ("n:a", SPAN // HOUR - 1, HOUR)
    daily = ("t:x", SPAN // DAY, DAY)  # hours 24 to 47: packs 0 and 1
    assert packsUnder([hourly], [60_000, HOUR, DAY]) == [
        (HOUR, "n:a", 0), (DAY, "n:a", 0)]
    assert packsUnder([daily, daily], [HOUR]) == [
        (HOUR, "t:x", 0), (HOUR, "t:x", 1)]
    assert packsUnder([hourly], [60_000, 300_000]) == []


def test_openPacksMarkedOncePerProcessClosedOnesAlways():
    """
    An open pack is marked unless this process marked it already; a
    closed one at every write (a merge may have read it), and again once
    the write's points are in.
    """
    open_, closed = (HOUR, "n:a", 5), (HOUR, "n:a", 4)
    now = 5 * SPAN + HOUR
    assert packMarks([open_, closed], now, set()) == [open_, closed]
    assert packMarks([open_, closed], now, {open_, closed}) == [closed]
    assert packsClosed([open_, closed], now) == [closed]
    assert packsClosed([open_], 6 * SPAN) == [open_]


def row(source, width=HOUR):
    return SeriesRow("m", source.encode(), freezeTags({}), source, width,
                     None)


def test_markerRangesLeaveOutCleanPacks():
    """
    A source whose packs are clean has its raw markers read only before
    and after them; one without clean spans over the whole range; one
    whose range is all clean packs not at all.  Bucket numbers cover every
    partition that meets a range, at each of the source's widths.
    """
    fromMs, toMs = SPAN - 3 * HOUR + 5, 3 * SPAN + 2 * HOUR
    spans = {"n:a": [(SPAN, 3 * SPAN - 1)],
             "n:c": [(fromMs, toMs)]}
    series = [row("n:a"), row("n:b"), row("n:c"), row("n:b", DAY)]
    ranges = markerRanges(series, fromMs, toMs, spans)
    assert ranges["n:a"] == [((SPAN - 3 * HOUR) // HOUR, SPAN // HOUR - 1),
                             (3 * SPAN // HOUR, 3 * SPAN // HOUR + 2)]
    assert ranges["n:b"] == [(fromMs // DAY, toMs // HOUR)]
    assert ranges["n:c"] == []
