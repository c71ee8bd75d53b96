"""
Quantile sketches of rollups: DDSketch with a relative accuracy of 1%,
stored as the library's own protobuf message.

A quantile answered from a sketch is within 1% (relative) of a value of
the data at that rank; sketches merge without losing that bound, so the
sketches of many buckets answer for all of them together.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

from ddsketch import DDSketch
from ddsketch.ddsketch import BaseDDSketch
from ddsketch.pb.ddsketch_pb2 import DDSketch as SketchMessage
from ddsketch.pb.proto import DDSketchProto, KeyMappingProto
from ddsketch.store import DenseStore

RELATIVE_ACCURACY = 0.01


def sketchOf(values: Iterable[float]) -> DDSketch:
    """
    A sketch of some values.
    """
    sketch = DDSketch(RELATIVE_ACCURACY)
    for value in values:
        sketch.add(value)
    return sketch


def encodeSketch(sketch: DDSketch) -> bytes:
    """
    A sketch as bytes, for a blob column.
    """
    return DDSketchProto.to_proto(sketch).SerializeToString()


def decodeSketch(data: bytes) -> BaseDDSketch:
    """
    A sketch from L{encodeSketch}'s bytes.

    The library's own C{from_proto} adds the bins one by one; this fills
    each store from its message at once (about 8 times faster), setting
    the attributes C{DenseStore.copy} sets, in the state C{add} would
    leave them in.
    """
    message = SketchMessage()
    message.ParseFromString(data)
    return BaseDDSketch(
        mapping=KeyMappingProto.from_proto(message.mapping),
        store=_storeOf(message.positiveValues),
        negative_store=_storeOf(message.negativeValues),
        zero_count=message.zeroCount)


def _storeOf(message: Any) -> DenseStore:
    """
    A dense store holding the bins of a store message.
    """
    store = DenseStore()
    bins = list(message.contiguousBinCounts)
    filled = [i for i, count in enumerate(bins) if count]
    if filled:
        store.bins = bins
        store.offset = message.contiguousBinIndexOffset
        store.count = math.fsum(bins)
        store.min_key = store.offset + filled[0]
        store.max_key = store.offset + filled[-1]
    return store
