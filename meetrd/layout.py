"""
Where a series' points live in Cassandra.

Points are stored in partitions keyed by a I{source} and a time bucket,
clustered by series then time:

  - a series with a C{node} tag (every hunted sample has one) lives in a
    partition of that node: one scrape of a node, however many series it
    holds, is one partition and one write request;
  - any other series lives in a partition of its own.

Node partitions are one hour wide while a write carries at most
L{NODE_SERIES_PER_CLASS} series of the node; a write that carries more
(a large page) puts them in narrower buckets of their own family (see
L{NODE_CLASSES}), so that the series of a partition times the points
each can have in it stays bounded.  Series partitions are one day wide.
The source and the width of each series are recorded in the series
index, per index slice, so a later change of these rules leaves old data
readable.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterator

from meetrd.points import Tags

NODE_TAG = "node"
NODE_BUCKET_MS = 3600 * 1000
SERIES_BUCKET_MS = 86400 * 1000
# The families of node partitions, by how many series of the node one
# write carries: (at most this many series, bucket width, source suffix).
# Series times bucket width stays at or under 1,000 series-hours, so at
# one point per series every 10 s a partition holds at most 360,000 rows.
NODE_SERIES_PER_CLASS = 1000
NODE_CLASSES = (
    (1_000, NODE_BUCKET_MS, ""),
    (10_000, 360 * 1000, "/6m"),
    (100_000, 36 * 1000, "/36s"),
)


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


def nodeOf(tags: Tags) -> str | None:
    """
    The value of a series' C{node} tag, if it has one.
    """
    for key, value in tags:
        if key == NODE_TAG:
            return value
    return None


def nodeClass(seriesInWrite: int) -> tuple[int, str]:
    """
    The bucket width and source suffix of a node's partitions for a write
    that carries C{seriesInWrite} series of that node.
    """
    for most, width, suffix in NODE_CLASSES:
        if seriesInWrite <= most:
            return width, suffix
    return NODE_CLASSES[-1][1], NODE_CLASSES[-1][2]


def placeSeries(metric: str, tags: Tags, nodeSeries: int = 1) -> Placement:
    """
    Decide the partition family of a series.

    @param nodeSeries: how many series of the same node the write that
        carries this series holds (the page size, for a scrape).
    """
    return placementOf(seriesId(metric, tags), nodeOf(tags), nodeSeries)


def placementOf(identifier: bytes, node: str | None, nodeSeries: int = 1
                ) -> Placement:
    """
    The partition family of the series C{identifier}, whose C{node} tag
    is C{node} (or which has none).
    """
    if node is not None:
        width, suffix = nodeClass(nodeSeries)
        return Placement(identifier, "n:" + node + suffix, width)
    return Placement(identifier, "s:" + identifier.hex(), SERIES_BUCKET_MS)


def sliceOf(tsMs: int, sliceMs: int) -> int:
    """
    The index slice of an instant: whole slice widths since the epoch.
    """
    return tsMs // sliceMs


def slicesBetween(fromMs: int, toMs: int, sliceMs: int) -> range:
    """
    Every index slice that holds part of the inclusive range.
    """
    return range(fromMs // sliceMs, toMs // sliceMs + 1)


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
