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

A pack row holds, for each of the pack's buckets in time order, the
count, sum, minimum, maximum, first and last points and sum of squared
deviations of the series, as columns of 64-bit little-endian values: one
blob each for the counts, sums, minimums and maximums (a search reads the
counts and the one it needs), and one for the rest.  A bucket without
points has a count of 0.
"""

from __future__ import annotations

import math
import struct
from array import array
from typing import Any, Container, Iterable, Sequence

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

# The columns of a pack: each a blob of PACK_BUCKETS values (name, array
# type code).  The last five share one blob, C{edges}: no search reads
# them yet, and a search by count, sum, average, minimum or maximum reads
# the counts and one other column only.
VALUE_COLUMNS = (("counts", "q"), ("totals", "d"), ("minimums", "d"),
                 ("maximums", "d"))
EDGE_COLUMNS = (("firstTs", "q"), ("firstValue", "d"), ("lastTs", "q"),
                ("lastValue", "d"), ("m2", "d"))
COLUMN_BYTES = 8 * PACK_BUCKETS
_LITTLE = struct.pack("=h", 1) == struct.pack("<h", 1)
# Partial's field of each column.
_FIELDS = {"counts": "count", "totals": "total", "minimums": "minimum",
           "maximums": "maximum", "firstTs": "firstTs",
           "firstValue": "firstValue", "lastTs": "lastTs",
           "lastValue": "lastValue", "m2": "m2"}
# An empty bucket's value: it takes no part in a minimum or a maximum.
_EMPTY = {"minimums": math.inf, "maximums": -math.inf}


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


def packsUnder(partitions: Iterable[tuple[str, int, int]],
               resolutions: Sequence[int]) -> list[tuple[int, str, int]]:
    """
    The packs C{(resolutionMs, source, pack)} of the packed levels among
    C{resolutions} that raw partitions C{(source, bucket, bucketMs)} fall
    in (a day-wide partition may straddle two hourly packs).
    """
    found: dict[tuple[int, str, int], None] = {}
    for source, bucket, width in partitions:
        for resolution in resolutions:
            if not packed(resolution):
                continue
            for pack in range(packOf(bucket * width, resolution),
                              packOf((bucket + 1) * width - 1, resolution) + 1):
                found[resolution, source, pack] = None
    return list(found)


def packMarks(packs: Iterable[tuple[int, str, int]], nowMs: float,
              marked: Container[tuple[int, str, int]]
              ) -> list[tuple[int, str, int]]:
    """
    The packs a write marks before its points: once per process while the
    pack is open (C{marked} holds those this process marked; the marker
    stays until the pack is merged, after it closes), and at every write
    once it has closed, since it may have been merged already.
    """
    return [key for key in packs
            if nowMs >= packStart(key[2] + 1, key[0]) or key not in marked]


def packsClosed(packs: Iterable[tuple[int, str, int]], nowMs: float
                ) -> list[tuple[int, str, int]]:
    """
    The packs that had closed by C{nowMs}: a merge may have read their
    rows before a write's points landed, so the write marks them again
    once its points are in.
    """
    return [key for key in packs if nowMs >= packStart(key[2] + 1, key[0])]


def packPart(pack: int, resolutionMs: int) -> int:
    """
    The rollup partition number a pack is stored under.
    """
    return pack * PACK_BUCKETS // PART_BUCKETS


def encodePack(cells: dict[int, Partial]) -> tuple[bytes, ...]:
    """
    The blobs of a pack whose buckets (by their index in the pack, 0 to
    L{PACK_BUCKETS} - 1) summarize as C{cells}: one a value column, then
    the edge columns in one.
    """
    def encoded(name: str, code: str) -> bytes:
        empty = _EMPTY.get(name, 0 if code == "q" else 0.0)
        column = array(code, [empty] * PACK_BUCKETS)
        field = _FIELDS[name]
        for index, cell in cells.items():
            value = getattr(cell, field)
            if value is None:
                value = math.nan if code == "d" else 0
            column[index] = value
        return _little(column).tobytes()

    return (*(encoded(name, code) for name, code in VALUE_COLUMNS),
            b"".join(encoded(name, code) for name, code in EDGE_COLUMNS))


def column(blob: bytes, code: str, offset: int = 0) -> Any:
    """
    One column of L{PACK_BUCKETS} values from a blob (at C{offset}
    columns in): a view of the bytes where the machine is little-endian,
    as the blobs are, else an array.
    """
    start = offset * COLUMN_BYTES
    if _LITTLE:
        return memoryview(blob)[start:start + COLUMN_BYTES].cast(code)
    values = array(code)
    values.frombytes(blob[start:start + COLUMN_BYTES])
    return _little(values)


def decodePack(blobs: Sequence[bytes]) -> dict[int, Partial]:
    """
    The buckets of a pack that hold points, by their index in the pack,
    from the blobs L{encodePack} gave.
    """
    columns = {name: column(blob, code)
               for (name, code), blob in zip(VALUE_COLUMNS, blobs)}
    columns.update((name, column(blobs[-1], code, offset))
                   for offset, (name, code) in enumerate(EDGE_COLUMNS))
    cells = {}
    for index, count in enumerate(columns["counts"]):
        if count:
            m2 = columns["m2"][index]
            cells[index] = Partial(
                count, columns["totals"][index], columns["minimums"][index],
                columns["maximums"][index], columns["firstTs"][index],
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
