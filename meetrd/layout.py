"""
Where a series' points live in Cassandra.

Points are stored in partitions keyed by a I{source} and a time bucket,
clustered by series then time:

  - a series with a C{node} tag (every hunted sample has one) lives in the
    partition of that node: one scrape of a node, however many series it
    holds, is one partition and one write request;
  - any other series lives in a partition of its own.

Node partitions are one hour wide, since a node writes many series into
them; series partitions are one day wide.  Both bound a partition's size
while keeping the number of partitions a search reads small.  The source
and the width of each series are recorded in the series index, so a later
change of these rules leaves old data readable.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterator

from meetrd.points import Tags

NODE_TAG = "node"
NODE_BUCKET_MS = 3600 * 1000
SERIES_BUCKET_MS = 86400 * 1000


@dataclass(frozen=True, slots=True)
class Placement:
    """
    The partition family of one series.

    @ivar seriesId: 16 bytes naming the series (metric plus tags).
    @ivar source: the partition key's first part.
    @ivar bucketMs: the width of the partition's time bucket.
    """

    seriesId: bytes
    source: str
    bucketMs: int


def seriesId(metric: str, tags: Tags) -> bytes:
    """
    A stable 16-byte identifier of a series: a BLAKE2b digest of its metric
    and sorted tags, each part length-prefixed so that no two series share
    an encoding.
    """
    digest = hashlib.blake2b(digest_size=16)
    for part in (metric, *(item for pair in tags for item in pair)):
        encoded = part.encode("utf-8")
        digest.update(len(encoded).to_bytes(4, "big"))
        digest.update(encoded)
    return digest.digest()


def placeSeries(metric: str, tags: Tags) -> Placement:
    """
    Decide the partition family of a series.
    """
    identifier = seriesId(metric, tags)
    for key, value in tags:
        if key == NODE_TAG:
            return Placement(identifier, "n:" + value, NODE_BUCKET_MS)
    return Placement(identifier, "s:" + identifier.hex(), SERIES_BUCKET_MS)


def bucketOf(tsMs: int, bucketMs: int) -> int:
    """
    The bucket number of an instant: whole bucket widths since the epoch.
    """
    return tsMs // bucketMs


def bucketsBetween(fromMs: int, toMs: int, bucketMs: int) -> Iterator[int]:
    """
    Every bucket that holds part of the inclusive range C{[fromMs, toMs]}.
    """
    return iter(range(fromMs // bucketMs, toMs // bucketMs + 1))


def bucketCount(fromMs: int, toMs: int, bucketMs: int) -> int:
    """
    How many buckets L{bucketsBetween} yields.
    """
    return max(0, toMs // bucketMs - fromMs // bucketMs + 1)
