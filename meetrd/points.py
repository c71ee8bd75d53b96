"""
The unit of data meetrd stores: a point of one series.

A series is a metric name plus its tags (string keys and values).  Points
are plain immutable values; validation of what clients send lives in
L{meetrd.validation}.
"""

from __future__ import annotations

from typing import Mapping, Tuple

import msgspec

Tags = Tuple[Tuple[str, str], ...]


def freezeTags(tags: Mapping[str, str] | None) -> Tags:
    """
    Turn a mapping of tags into the canonical sorted tuple used by L{Point}.
    """
    if not tags:
        return ()
    return tuple(sorted(tags.items()))


class Point(msgspec.Struct, frozen=True, gc=False):
    """
    One value of one series at one instant.

    A point holds strings and numbers only, so it is left out of the
    cyclic garbage collector's bookkeeping (C{gc=False}): a batch of
    50,000 points alive during its write would otherwise be walked by
    every collection of the older generations meanwhile.

    @ivar metric: the metric name.
    @ivar tags: the series' tags as a sorted tuple of C{(key, value)} pairs.
    @ivar ts_ms: milliseconds since the epoch, UTC.
    @ivar value: a finite float.
    """

    metric: str
    tags: Tags
    ts_ms: int
    value: float
