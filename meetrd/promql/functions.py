"""
PromQL's functions over the samples of one series in a window, over one
value, and over histogram buckets, with Prometheus's semantics (counter
resets, extrapolation to the window's edges, the envelope of
non-monotonic buckets).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

# Relative differences between bucket counts below this are float noise
# (as Prometheus's histogram_quantile treats them).
SMALL_DELTA = 1e-12


def extrapolatedRate(ts: Sequence[int], values: Sequence[float],
                     rangeStartMs: int, rangeEndMs: int, rangeMs: int,
                     isCounter: bool, isRate: bool) -> float | None:
    """
    C{rate}, C{increase} and C{delta} over the samples of a window
    C{(rangeStartMs, rangeEndMs]}: the change between the first and the
    last sample (for a counter, adding back the value before each reset),
    extrapolated towards the window's edges when the samples come close
    to them (within 1.1 average gaps; half a gap otherwise, and never
    before a counter's zero).  C{None} with fewer than two samples.
    """
    if len(ts) < 2:
        return None
    result = values[-1] - values[0]
    if isCounter:
        previous = values[0]
        for value in values[1:]:
            if value < previous:
                result += previous
            previous = value
    firstT, lastT = ts[0], ts[-1]
    toStart = (firstT - rangeStartMs) / 1000
    toEnd = (rangeEndMs - lastT) / 1000
    sampled = (lastT - firstT) / 1000
    averageGap = sampled / (len(ts) - 1)
    threshold = averageGap * 1.1
    if toStart >= threshold:
        toStart = averageGap / 2
    if isCounter:
        toZero = toStart
        if result > 0 and values[0] >= 0:
            toZero = sampled * (values[0] / result)
        if toZero < toStart:
            toStart = toZero
    if toEnd >= threshold:
        toEnd = averageGap / 2
    factor = 1.0
    if sampled != 0:
        factor = (sampled + toStart + toEnd) / sampled
    if isRate:
        factor /= rangeMs / 1000
    return result * factor


def instantRate(ts: Sequence[int], values: Sequence[float],
                isRate: bool) -> float | None:
    """
    C{irate} and C{idelta}: from the last two samples of the window (for
    C{irate}, a drop is a counter reset: the increase is the last value).
    """
    if len(ts) < 2:
        return None
    previous, last = values[-2], values[-1]
    if isRate and last < previous:
        change = last
    else:
        change = last - previous
    if not isRate:
        return change
    gap = ts[-1] - ts[-2]
    if gap == 0:
        return None
    return change / (gap / 1000)


def quantileOf(q: float, values: Sequence[float]) -> float:
    """
    The C{q}-quantile of some values, interpolating between the two
    nearest ranks (as C{quantile} and C{quantile_over_time}).
    """
    if not values or math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    ordered = sorted(values)
    n = len(ordered)
    rank = q * (n - 1)
    lower = max(0, math.floor(rank))
    upper = min(n - 1, lower + 1)
    weight = rank - math.floor(rank)
    return ordered[lower] * (1 - weight) + ordered[upper] * weight


def variance(values: Sequence[float]) -> float:
    """
    The population variance of some values (Welford's running mean, so
    values far from zero lose no digits).
    """
    count = 0
    mean = 0.0
    m2 = 0.0
    for value in values:
        count += 1
        delta = value - mean
        mean += delta / count
        m2 += delta * (value - mean)
    return m2 / count


def total(values: Sequence[float]) -> float:
    """
    The sum of some values, exactly rounded (Prometheus compensates its
    sums too); infinities of both signs give C{NaN}.
    """
    try:
        return math.fsum(values)
    except (ValueError, OverflowError):
        return sum(values)


def mean(values: Sequence[float]) -> float:
    """
    The mean of some values, summed with compensation (as Prometheus's
    C{avg_over_time}), and falling back to a running mean when the sum
    overflows.
    """
    added = total(values)
    if math.isinf(added) and not any(map(math.isinf, values)):
        running = 0.0
        for count, value in enumerate(values, 1):
            running += value / count - running / count
        return running
    return added / len(values)


def _changes(values: Sequence[float]) -> float:
    count = 0
    previous = values[0]
    for value in values[1:]:
        if value != previous and not (math.isnan(value)
                                      and math.isnan(previous)):
            count += 1
        previous = value
    return float(count)


def _resets(values: Sequence[float]) -> float:
    count = 0
    previous = values[0]
    for value in values[1:]:
        if value < previous:
            count += 1
        previous = value
    return float(count)


def _min(values: Sequence[float]) -> float:
    low = values[0]
    for value in values[1:]:
        if value < low or math.isnan(low):
            low = value
    return low


def _max(values: Sequence[float]) -> float:
    high = values[0]
    for value in values[1:]:
        if value > high or math.isnan(high):
            high = value
    return high


# The *_over_time functions (and changes and resets): of the values of a
# non-empty window.
OVER_TIME: dict[str, Callable[[Sequence[float]], float]] = {
    "avg_over_time": mean,
    "min_over_time": _min,
    "max_over_time": _max,
    "sum_over_time": total,
    "count_over_time": lambda values: float(len(values)),
    "last_over_time": lambda values: values[-1],
    "present_over_time": lambda values: 1.0,
    "stddev_over_time": lambda values: math.sqrt(variance(values)),
    "stdvar_over_time": variance,
    "changes": _changes,
    "resets": _resets,
}


def bucketQuantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """
    The C{q}-quantile of a classic histogram from its cumulative
    C{(upperBound, count)} buckets, interpolated linearly inside the
    bucket it falls in; C{NaN} without a C{+Inf} bucket or observations.
    Buckets of the same bound are added up, counts that differ by float
    noise are made equal and decreasing counts are raised to the count
    before them, as Prometheus does.
    """
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    if not buckets:
        return math.nan
    buckets = sorted(buckets, key=lambda b: b[0])
    if not math.isinf(buckets[-1][0]) or buckets[-1][0] < 0:
        return math.nan
    merged: list[list[float]] = []
    for bound, count in buckets:
        if merged and merged[-1][0] == bound:
            merged[-1][1] += count
        else:
            merged.append([bound, count])
    previous = merged[0][1]
    for bucket in merged[1:]:
        current = bucket[1]
        if current == previous:
            continue
        if _almostEqual(previous, current, SMALL_DELTA) or current < previous:
            bucket[1] = previous
            continue
        previous = current
    if len(merged) < 2:
        return math.nan
    observations = merged[-1][1]
    if observations == 0:
        return math.nan
    rank = q * observations
    b = 0
    while b < len(merged) - 1 and merged[b][1] < rank:
        b += 1
    if b == len(merged) - 1:
        return merged[-2][0]
    if b == 0 and merged[0][0] <= 0:
        return merged[0][0]
    start = 0.0
    end, count = merged[b]
    if b > 0:
        start = merged[b - 1][0]
        count -= merged[b - 1][1]
        rank -= merged[b - 1][1]
    return start + (end - start) * (rank / count)


def _almostEqual(a: float, b: float, epsilon: float) -> bool:
    if a == b:
        return True
    if math.isnan(a) or math.isnan(b):
        return False
    minNormal = 2.2250738585072014e-308
    absSum = abs(a) + abs(b)
    diff = abs(a - b)
    if a == 0 or b == 0 or absSum < minNormal:
        return diff < epsilon * minNormal
    return diff / min(absSum, 1.7976931348623157e308) < epsilon


def goDivide(a: float, b: float) -> float:
    """
    C{a / b} as IEEE 754 (and Go) define it: a division by zero is an
    infinity or C{NaN}, not an error.
    """
    try:
        return a / b
    except ZeroDivisionError:
        if a == 0 or math.isnan(a):
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)


def goModulo(a: float, b: float) -> float:
    """
    Go's C{math.Mod}: the remainder with the sign of C{a}; C{NaN} for a
    zero divisor or an infinite dividend.
    """
    try:
        return math.fmod(a, b)
    except ValueError:
        return math.nan


def goPower(a: float, b: float) -> float:
    """
    Go's C{math.Pow}: overflow gives an infinity, zero to a negative power
    an infinity, a negative base to a fractional power C{NaN}.
    """
    try:
        return math.pow(a, b)
    except OverflowError:
        if a < 0 and b == math.floor(b) and b % 2 == 1:
            return -math.inf
        return math.inf
    except ValueError:
        if a == 0 and b < 0:
            if b == math.floor(b) and b % 2 == 1:
                return math.copysign(math.inf, a)
            return math.inf
        return math.nan


def goLog(function: Callable[[float], float]) -> Callable[[float], float]:
    """
    A logarithm as Go's: C{-Inf} at zero, C{NaN} below.
    """
    def log(value: float) -> float:
        if value == 0:
            return -math.inf
        if value < 0 or math.isnan(value):
            return math.nan
        return function(value)
    return log


def _sqrt(value: float) -> float:
    return math.nan if value < 0 else math.sqrt(value)


def _exp(value: float) -> float:
    try:
        return math.exp(value)
    except OverflowError:
        return math.inf


def _sign(value: float) -> float:
    if value > 0:
        return 1.0
    if value < 0:
        return -1.0
    return value


def _ceil(value: float) -> float:
    return value if math.isinf(value) or math.isnan(value) \
        else float(math.ceil(value))


def _floor(value: float) -> float:
    return value if math.isinf(value) or math.isnan(value) \
        else float(math.floor(value))


# Functions of one value.
OF_VALUE: dict[str, Callable[[float], float]] = {
    "abs": abs,
    "ceil": _ceil,
    "floor": _floor,
    "sqrt": _sqrt,
    "exp": _exp,
    "ln": goLog(math.log),
    "log2": goLog(math.log2),
    "log10": goLog(math.log10),
    "sgn": _sign,
}


def roundTo(value: float, nearest: float) -> float:
    """
    C{round(v, to_nearest)}: half up, to a multiple of C{nearest}.
    """
    inverse = goDivide(1.0, nearest)
    return goDivide(_floor(value * inverse + 0.5), inverse)
