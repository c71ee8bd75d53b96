"""
The unit of data meetrd stores: a point of one series.

A series is a metric name plus its tags (string keys and values).  Points
are plain immutable values; validation of what clients send lives in
L{meetrd.validation}.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Tuple

Tags = Tuple[Tuple[str, str], ...]


def freezeTags(tags: Mapping[str, str] | None) -> Tags:
    """
    Turn a mapping of tags into the canonical sorted tuple used by L{Point}.
    """
    if not tags:
        return ()
    return tuple(sorted(tags.items()))


@dataclass(frozen=True, slots=True)
class Point:
    """
    One value of one series at one instant.

    @ivar metric: the metric name.
    @ivar tags: the series' tags as a sorted tuple of C{(key, value)} pairs.
    @ivar ts_ms: milliseconds since the epoch, UTC.
    @ivar value: a finite float.
    """

    metric: str
    tags: Tags
    ts_ms: int
    value: float

    @property
    def tagDict(self) -> dict[str, str]:
        """
        The tags as a new dictionary.
        """
        return dict(self.tags)
