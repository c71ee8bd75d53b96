"""
What repeats from one JSON write to the next.

An agent that posts its points flushes the same series at every interval:
the same metrics, the same tags, in the same order, all at the flush's
time.  A hunted page is planned from the shape of its target's last write
(L{meetrd.writeplan.planShaped}); L{BatchShapes} lets such API writes be
planned the same way:

  - the tag sets of JSON bodies are checked and frozen once for the
    process rather than once per request (L{BatchShapes.tagSets}), so
    that the same tags come back as the same tuple, which is what a shape
    compares;
  - a batch's shape memo is found by a signature of its size, first and
    last points (L{BatchShapes.memoFor}).  The signature only chooses the
    memo: L{meetrd.writeplan.planShaped} checks every point against the
    shape, and a batch that does not fit is planned point by point.

A shape is learnt from the second write of its signature on (a one-off
batch costs no learning), and used from the third.  Both tables are
bounded.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

from meetrd.points import Point
from meetrd.writeplan import ShapeMemo

#: Distinct raw tag sets kept frozen; past this the table starts again.
MAX_TAG_SETS = 100_000
#: The points of all kept shapes together (a shape holds about 150 bytes
#: a point).
MAX_SHAPE_POINTS = 200_000
#: Signatures seen once, waiting for a second write.
MAX_SEEN = 10_000

Signature = tuple[int, str, int, str, int]


class BatchShapes:
    """
    The frozen tag sets and the shape memos of one API's JSON writes.

    @param largest: the most points a write can be planned from its shape
        in (the store's write slice); larger batches get no memo.
    """

    def __init__(self, largest: int, maxTagSets: int = MAX_TAG_SETS,
                 maxShapePoints: int = MAX_SHAPE_POINTS,
                 maxSeen: int = MAX_SEEN) -> None:
        self.largest = largest
        self.maxTagSets = maxTagSets
        self.maxShapePoints = maxShapePoints
        self.maxSeen = maxSeen
        self._limits: Any = None
        self._tagSets: dict[Any, Any] = {}
        self._memos: OrderedDict[Signature, tuple[ShapeMemo, int]] = \
            OrderedDict()
        self._seen: OrderedDict[Signature, None] = OrderedDict()
        self.shapePoints = 0

    def tagSets(self, limits: Any) -> dict[Any, Any]:
        """
        The table of frozen tag sets (raw items to checked tags) to decode
        a body with under C{limits}: emptied when the limits are others
        (the tags were checked against the old ones) or when it has grown
        past its bound.
        """
        if limits is not self._limits or len(self._tagSets) > self.maxTagSets:
            self._limits = limits
            self._tagSets = {}
        return self._tagSets

    def memoFor(self, points: Sequence[Point]) -> ShapeMemo | None:
        """
        The shape memo for a batch: C{None} the first time its signature
        is seen (and for a batch too large or empty), then the same memo
        while it is kept.
        """
        count = len(points)
        if not count or count > self.largest:
            return None
        first, last = points[0], points[-1]
        signature = (count, first.metric, id(first.tags), last.metric,
                     id(last.tags))
        found = self._memos.get(signature)
        if found is not None:
            self._memos.move_to_end(signature)
            return found[0]
        seen = self._seen
        if signature not in seen:
            seen[signature] = None
            if len(seen) > self.maxSeen:
                seen.popitem(last=False)
            return None
        del seen[signature]
        memo = ShapeMemo()
        self._memos[signature] = (memo, count)
        self.shapePoints += count
        while self.shapePoints > self.maxShapePoints:
            _, (_, dropped) = self._memos.popitem(last=False)
            self.shapePoints -= dropped
        return memo
