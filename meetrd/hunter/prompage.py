"""
Prometheus text (0.0.4) and OpenMetrics 1.0 pages, read with
prometheus_client's parsers; this module writes no parser of the formats.

Every sample becomes a point: the sample's own name is the metric (so a
histogram gives C{x_bucket}, C{x_sum} and C{x_count} series), its labels
become tags (see L{meetrd.hunter.pagebuild} for how they meet the base
tags), its timestamp is kept when the node sends one, and a NaN or +/-Inf
value is skipped and counted.  Exemplars are ignored; OpenMetrics native
histogram samples (which have no single value) are skipped and counted.

B{OpenMetrics} pages go through the library's public
C{prometheus_client.openmetrics.parser.text_string_to_metric_families},
with all its checks (C{# EOF}, histogram consistency...).

B{Prometheus text} pages are read line by line with the library's own
sample-line parser, C{prometheus_client.parser._parse_sample}, which is
what its public C{text_string_to_metric_families} calls for each sample
line.  Blank lines and C{#} lines are passed over as that function does.
This is about as fast as the public function (the line parser is nearly
all of the cost; see C{bench/parse.py}); what it buys is exact names and
the cache below.  It differs from the public function in two ways only:
  - C{# HELP} and C{# TYPE} lines are not checked; they carry nothing
    meetrd stores;
  - a counter sample keeps the name the page gives it, as Prometheus
    stores it: the public function renames the samples of
    C{# TYPE foo counter} / C{foo 1} to C{foo_total}.
Should a future prometheus_client drop those helpers, the public function
is used instead (with its renaming).

With a L{PageCache} (one per target), a line whose series (everything up to
the closing C{}}, or the bare name) was on the target's previous page is
not parsed again: its metric and tags come from the cache and only the
value and timestamp are parsed, by the library's own
C{_parse_value_and_timestamp} -- the very function its line parser ends
with.  A series enters the cache only after the library parsed its line and
a probe line made of the same series and the value C{0} gave the same
name, labels, value and no timestamp: this proves the library splits any
line of that series at the same place, so a cached read gives exactly what
the library would.  Lines with a tab and no braces are always parsed
afresh.  A page whose every sample line is plain (a cached series, one
space and a value, as a node's unchanged page has them) is read with still
less work a line (L{_readRepeated}), to the same result.  The series
parts proven so are also kept, with the name and labels the library gave
them, in the hunter's L{meetrd.hunter.pagebuild.SeriesLines}, which every
target's cache shares: the first page of a new target is not parsed line
by line where other targets' pages had the same lines (its own base tags
are then applied).

Timestamps: the text format writes milliseconds and the library gives
seconds (the ms divided by 1000), OpenMetrics writes seconds and the
library gives a C{Timestamp} (seconds and nanoseconds) or a float of
seconds; both become integer ms.  A timestamp that is not finite or falls
outside the years 1 to 9999 makes its sample skipped and counted.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as _openMetricsFamilies,
)
from prometheus_client.parser import (
    text_string_to_metric_families as _textFamilies,
)
from prometheus_client.samples import Timestamp

from meetrd.hunter.pagebuild import (
    PageBuilder,
    PageCache,
    PageError,
)
from meetrd.logs import briefReason
from meetrd.points import Point
from meetrd.timestamps import MAX_TS_MS, MIN_TS_MS

_SampleLine = Callable[[str], Any]
try:
    from prometheus_client.parser import (
        _parse_sample as _LIBRARY_SAMPLE_LINE,
        _parse_value_and_timestamp as _LIBRARY_VALUE_LINE,
    )
except ImportError:  # pragma: no cover - depends on prometheus_client
    _LIBRARY_SAMPLE_LINE = None
    _LIBRARY_VALUE_LINE = None

_REASON_LENGTH = 160


def decodeText(body: bytes) -> str:
    """
    A Prometheus or OpenMetrics body as text (UTF-8, as both formats say).

    @raise PageError: when the body is not UTF-8.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PageError(f"not UTF-8 text: byte {e.start} is "
                        f"{body[e.start:e.start + 1]!r}") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    return text


def _brief(error: BaseException) -> str:
    """
    An exception of the library as a short one-line reason (the parser's
    bare C{ValueError} means a malformed line).
    """
    if type(error) is ValueError and not str(error).strip():
        return "malformed line"
    return briefReason(error, _REASON_LENGTH)


def timestampMs(timestamp: object, default: int) -> int | None:
    """
    A timestamp as prometheus_client gives it, in integer ms.

    @param timestamp: C{None}, a float of seconds or a L{Timestamp}.
    @param default: what C{None} gives.
    @return: ms since the epoch, or C{None} when the timestamp is not
        finite or out of range.
    """
    if timestamp is None:
        return default
    if isinstance(timestamp, Timestamp):
        # Timestamp keeps nsec with the sign of sec.
        ms = timestamp.sec * 1000 + int(timestamp.nsec / 1_000_000)
    else:
        try:
            seconds = float(timestamp)  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):
            return None
        if not math.isfinite(seconds):
            return None
        ms = round(seconds * 1000)
    if MIN_TS_MS <= ms <= MAX_TS_MS:
        return ms
    return None


def _finite(value: object) -> float | None:
    if value.__class__ is float:
        return value if math.isfinite(value) else None  # type: ignore
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _seriesKey(line: str) -> tuple[str | None, str]:
    """
    Split a stripped sample line into its series part and the rest: up to
    and including the last C{}} when there is one, else the bare name up to
    the first space.  C{None} when the line is not one the cache may serve.
    """
    end = line.rfind("}") + 1
    if end:
        return line[:end], line[end:]
    if "{" in line or "\t" in line:
        return None, line
    name, space, tail = line.partition(" ")
    if not space:
        return None, line
    return name, tail


def readText(text: str, builder: PageBuilder,
             cache: PageCache | None = None) -> None:
    """
    Read a Prometheus text (0.0.4) page into C{builder}.

    @param text: the decoded page.
    @param builder: where points go.
    @param cache: the target's L{PageCache}, or C{None}.
    @raise PageError: for a line the library refuses, or a limit.
    """
    sampleLine = _LIBRARY_SAMPLE_LINE
    valueLine = _LIBRARY_VALUE_LINE
    if sampleLine is None or valueLine is None:
        _readFamilies(lambda: _textFamilies(text), builder,
                      "not a Prometheus text page")
        return

    shared = None
    if cache is not None:
        context = (builder.baseTags, builder.limits)
        if cache.context != context:
            cache.clear()
            cache.context = context
        old = cache.series
        shared = cache.shared
    else:
        old = {}
    new: dict[str, tuple[str, Any]] = {}

    if cache is not None and old and _readRepeated(text, builder, cache,
                                                    old):
        return

    limits = builder.limits
    maxSamples = limits.maxSamples
    defaultTs = builder.defaultTsMs
    points = builder.points
    append = points.append
    skipped = 0
    isfinite = math.isfinite
    lineNumber = 0
    for line in text.split("\n"):
        lineNumber += 1
        line = line.strip()
        if not line or line[0] == "#":
            continue
        key, tail = _seriesKey(line)
        entry = old.get(key) if key is not None else None
        known = shared.get(key) if shared is not None and entry is None \
            and key is not None else None
        try:
            if entry is not None or known is not None:
                bare = tail.lstrip()
                if bare and " " not in bare and "\t" not in bare \
                        and "_" not in bare:
                    # A value without a timestamp, as most lines are: what
                    # the library makes of it (int, else float) is float's
                    # number, without its split and list per line.
                    value = float(bare)
                    timestamp = None
                else:
                    value, timestamp = valueLine(tail)
                if entry is not None:
                    metric, tags = entry
                else:
                    # A series another target's page taught: the library
                    # would give this line the same name and labels.
                    metric, labels = known  # type: ignore[misc]
                    tags = builder.series(metric, labels)
                    entry = (metric, tags)
            else:
                sample = sampleLine(line)
                metric = sample.name
                value = sample.value
                timestamp = sample.timestamp
                tags = builder.series(metric, sample.labels)
                if cache is not None and key is not None \
                        and _cacheable(key, sample, sampleLine):
                    entry = (metric, tags)
                    if shared is not None:
                        shared.add(key, metric, sample.labels)
        except PageError:
            raise
        except Exception as e:
            raise PageError(f"not a Prometheus text page: line {lineNumber}: "
                            f"{_brief(e)}") from None
        if entry is not None:
            new[key] = entry  # type: ignore[index]
        if tags is None:
            skipped += 1
            continue
        if value.__class__ is float:
            if not isfinite(value):
                skipped += 1
                continue
        else:
            value = _finite(value)
            if value is None:
                skipped += 1
                continue
        if timestamp is None:
            tsMs = defaultTs
        else:
            tsMs = timestampMs(timestamp, defaultTs)
            if tsMs is None:
                skipped += 1
                continue
        if len(points) >= maxSamples:
            raise builder.tooMany()
        append(Point(metric, tags, tsMs, value))
    builder.skip(skipped)
    if cache is not None:
        cache.series = new


def _readRepeated(text: str, builder: PageBuilder, cache: PageCache,
                  old: dict[str, tuple[str, Any]]) -> bool:
    """
    Read a page whose every sample line is plain and of a series in the
    cache, as L{readText} would, with less work a line; C{False}, with
    nothing read, for any other page, which L{readText} then reads line
    by line.

    A plain line is a cached series, one space and a value of neither a
    blank nor C{_} that C{float} reads: no timestamp, no blank at either
    end.  Its series is what L{_seriesKey} finds (a cached series starts
    with no blank; it ends with C{}}, and the value holds none, or it is
    a bare name, with no blank or brace in it), and its value is the bare
    token that L{readText} gives to C{float}.
    """
    defaultTs = builder.defaultTsMs
    isfinite = math.isfinite
    new: dict[str, tuple[str, Any]] = {}
    points: list[Point] = []
    append = points.append
    skipped = 0
    for line in text.split("\n"):
        if not line or line[0] == "#":
            continue
        key, _, raw = line.rpartition(" ")
        entry = old.get(key)
        # Every blank but the space is unprintable.
        if entry is None or "_" in raw or not raw.isprintable():
            return False
        try:
            value = float(raw)
        except ValueError:
            return False
        new[key] = entry
        metric, tags = entry
        if tags is None or not isfinite(value):
            skipped += 1
            continue
        append(Point(metric, tags, defaultTs, value))
    if len(points) > builder.limits.maxSamples:
        return False
    builder.points.extend(points)
    builder.skip(skipped)
    cache.series = new
    return True


def _cacheable(key: str, sample: Any, sampleLine: _SampleLine) -> bool:
    """
    Whether every line of C{key}'s series is split by the library where
    L{_seriesKey} splits it (see the module docstring).
    """
    if not key.endswith("}"):
        # The bare-name form: the library's name must be the key itself.
        return sample.name == key and not sample.labels
    try:
        probe = sampleLine(key + " 0")
    except Exception:
        return False
    return (probe.name == sample.name and probe.labels == sample.labels
            and probe.value == 0 and probe.timestamp is None)


def readOpenMetrics(text: str, builder: PageBuilder) -> None:
    """
    Read an OpenMetrics 1.0 page into C{builder}.

    @raise PageError: for a page the library refuses, or a limit.
    """
    _readFamilies(lambda: _openMetricsFamilies(text), builder,
                  "not an OpenMetrics page")


def _readFamilies(families: Callable[[], Iterable[Any]],
                  builder: PageBuilder, what: str) -> None:
    """
    Read the samples of the library's metric families into C{builder}.
    """
    defaultTs = builder.defaultTsMs
    try:
        for family in families():
            for sample in family.samples:
                tags = builder.series(sample.name, sample.labels)
                value = _finite(sample.value) if sample.value is not None \
                    else None
                tsMs = timestampMs(sample.timestamp, defaultTs)
                if tags is None or value is None or tsMs is None:
                    builder.skip()
                    continue
                builder.add(sample.name, tags, tsMs, value)
    except PageError:
        raise
    except Exception as e:
        raise PageError(f"{what}: {_brief(e)}") from None
