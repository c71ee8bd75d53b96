"""
Rollup packs: the rollup rows of one series over L{PACK_BUCKETS} buckets
of a level, merged across raw partitions and stored as one row.

A rollup row summarizes one series in one level bucket I{of one raw
partition}, so a fleet of nodes written in small raw partitions has as
many rows per level bucket as partitions: a month of a thousand nodes at
the hourly level is 720,000 rows, which Cassandra alone takes seconds to
read.  Once the buckets of a pack have closed and every raw partition
under them is rolled up, the rollup service merges their rows into one
pack row per series (C{rollup_packs}); a month of the fleet is then 23,000
rows.

A pack is used by a search only while it is exact: the rolling up of a
raw partition marks the packs it touches (C{pack_dirty}) before it writes
its rollup rows, and a search reads the rows, not the pack, where a pack
is marked or a raw partition under it still waits for its rollup; the
rollup service then merges the pack again.

The blob holds, for each of the pack's buckets in time order, the count,
sum, minimum, maximum, first and last points and sum of squared
deviations of the series, column after column (little-endian, 64-bit); a
bucket without points has a count of 0.
"""

from __future__ import annotations

import math
import struct
from array import array
from typing import Iterable, Sequence

from meetrd.aggregate import Partial
from meetrd.rollup import PART_BUCKETS

# Level buckets of one pack; a pack lies within one rollup partition.
PACK_BUCKETS = 32
assert PART_BUCKETS % PACK_BUCKETS == 0
# Levels this coarse or coarser are packed.  A pack of a finer level
# spans minutes: merging it costs about as many writes as its rows, and
# searches that read such a level span hours, not months.
PACKED_FROM_MS = 3_600_000


def packed(resolutionMs: int) -> bool:
    """
    Whether a level is packed.
    """
    return resolutionMs >= PACKED_FROM_MS

# The columns of a pack's blob: (name, array type code).
COLUMNS = (("count", "q"), ("total", "d"), ("minimum", "d"),
           ("maximum", "d"), ("firstTs", "q"), ("firstValue", "d"),
           ("lastTs", "q"), ("lastValue", "d"), ("m2", "d"))
COLUMN_BYTES = 8 * PACK_BUCKETS
_OFFSETS = {name: i * COLUMN_BYTES for i, (name, _) in enumerate(COLUMNS)}
_CODES = dict(COLUMNS)
_LITTLE = struct.pack("=h", 1) == struct.pack("<h", 1)


def packOf(tsMs: int, resolutionMs: int) -> int:
    """
    The number of the pack that holds the level bucket starting at (or
    the point at) C{tsMs}.
    """
    return tsMs // (resolutionMs * PACK_BUCKETS)


def packStart(pack: int, resolutionMs: int) -> int:
    """
    The first millisecond of a pack.
    """
    return pack * resolutionMs * PACK_BUCKETS


def packPart(pack: int, resolutionMs: int) -> int:
    """
    The rollup partition number a pack is stored under.
    """
    return pack * PACK_BUCKETS // PART_BUCKETS


def encodePack(cells: dict[int, Partial]) -> bytes:
    """
    The blob of a pack whose buckets (by their index in the pack, 0 to
    L{PACK_BUCKETS} - 1) summarize as C{cells}.
    """
    columns = {name: array(code, [0] * PACK_BUCKETS) if code == "q"
               else array(code, [0.0] * PACK_BUCKETS)
               for name, code in COLUMNS}
    # An empty bucket takes no part in a minimum or a maximum.
    columns["minimum"] = array("d", [math.inf] * PACK_BUCKETS)
    columns["maximum"] = array("d", [-math.inf] * PACK_BUCKETS)
    for index, cell in cells.items():
        for name, _ in COLUMNS:
            value = getattr(cell, name)
            if value is None:
                value = math.nan if _CODES[name] == "d" else 0
            columns[name][index] = value
    out = b"".join(_little(columns[name]).tobytes() for name, _ in COLUMNS)
    return out


def decodeColumn(blob: bytes, name: str) -> array:
    """
    One column of a pack's blob, L{PACK_BUCKETS} values.
    """
    start = _OFFSETS[name]
    column = array(_CODES[name])
    column.frombytes(blob[start:start + COLUMN_BYTES])
    return _little(column)


def decodePack(blob: bytes) -> dict[int, Partial]:
    """
    The buckets of a pack that hold points, by their index in the pack.
    """
    columns = {name: decodeColumn(blob, name) for name, _ in COLUMNS}
    cells = {}
    for index, count in enumerate(columns["count"]):
        if count:
            m2 = columns["m2"][index]
            cells[index] = Partial(
                count, columns["total"][index], columns["minimum"][index],
                columns["maximum"][index], columns["firstTs"][index],
                columns["firstValue"][index], columns["lastTs"][index],
                columns["lastValue"][index], None,
                None if math.isnan(m2) else m2)
    return cells


def mergeRows(rows: Iterable[Sequence]) -> dict[bytes, dict[int, Partial]]:
    """
    Merge rollup rows C{(seriesId, tsMs, count, sum, min, max, firstTs,
    firstValue, lastTs, lastValue, m2)} of one level and pack into the
    cells of each series' pack, by bucket index; C{resolutionMs} of the
    level is the caller's: C{tsMs} here is the bucket's index already.
    """
    packs: dict[bytes, dict[int, Partial]] = {}
    for (identifier, index, count, total, low, high, firstTs, firstValue,
         lastTs, lastValue, m2) in rows:
        part = Partial(count, total, low, high, firstTs, firstValue, lastTs,
                       lastValue, None, m2)
        cells = packs.setdefault(identifier, {})
        found = cells.get(index)
        if found is None:
            cells[index] = part
        else:
            found.merge(part)
    return packs


def _little(column: array) -> array:
    """
    A column as little-endian, in place (a no-op on little-endian
    machines).
    """
    if not _LITTLE:
        column.byteswap()
    return column
