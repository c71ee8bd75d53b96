"""
Quantile sketches of rollups: DDSketch with a relative accuracy of 1%,
stored as the library's own protobuf message.

A quantile answered from a sketch is within 1% (relative) of a value of
the data at that rank; sketches merge without losing that bound, so the
sketches of many buckets answer for all of them together.
"""

from __future__ import annotations

from typing import Iterable

from ddsketch import DDSketch
from ddsketch.pb.ddsketch_pb2 import DDSketch as SketchMessage
from ddsketch.pb.proto import DDSketchProto

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


def decodeSketch(data: bytes) -> DDSketch:
    """
    A sketch from L{encodeSketch}'s bytes.
    """
    message = SketchMessage()
    message.ParseFromString(data)
    return DDSketchProto.from_proto(message)
