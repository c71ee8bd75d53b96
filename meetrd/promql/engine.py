"""
Evaluating PromQL expressions over series already read: at one instant
(an instant query) or at every step of a range (a range query), with
Prometheus's semantics for lookback, windows, label matching and the
metric name.

Windows are open at their start, as in Prometheus 3: an instant selector
at C{t} takes the newest sample in C{(t - lookback, t]}, a range
selector C{[r]} the samples in C{(t - r, t]}.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from meetrd.promql.errors import BadData, ExecutionError
from meetrd.promql.functions import (
    OF_VALUE,
    OVER_TIME,
    bucketQuantile,
    extrapolatedRate,
    goDivide,
    goModulo,
    goPower,
    instantRate,
    mean,
    quantileOf,
    roundTo,
    total,
    variance,
)
from meetrd.promql.syntax import (
    ARITHMETIC,
    COMPARISONS,
    Aggregate,
    Binary,
    Call,
    Expr,
    Negation,
    Number,
    RangeSelector,
    Selector,
    String,
)

Labels = tuple[tuple[str, str], ...]
NAME = "__name__"
DEFAULT_LOOKBACK_MS = 5 * 60 * 1000


@dataclass
class Series:
    """
    The samples of one series, oldest first.
    """

    labels: Labels
    ts: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Scalar:
    """
    A scalar result: one float without labels, as a number literal,
    C{scalar()} or C{time()} give.
    """

    value: float


@dataclass(frozen=True)
class Text:
    """
    A string result (only a string literal gives one).
    """

    value: str


@dataclass(frozen=True)
class Sample:
    """
    One series' value at the evaluation instant, an element of a vector.
    """

    labels: Labels
    value: float


Vector = list[Sample]
Matrix = list[Series]
Value = Any  # Scalar, Text, Vector or Matrix


def withoutName(labels: Labels) -> Labels:
    """
    The labels without the metric name.
    """
    return tuple(pair for pair in labels if pair[0] != NAME)


def _unique(vector: Vector) -> Vector:
    seen = set()
    for sample in vector:
        if sample.labels in seen:
            raise ExecutionError("vector cannot contain metrics with the "
                                 "same labelset")
        seen.add(sample.labels)
    return vector


# The range functions answered from a summary of the window.
SUMMARY_FUNCTIONS: dict[str, Callable[[Any], float]] = {
    "sum_over_time": lambda p: p.total,
    "count_over_time": lambda p: float(p.count),
    "min_over_time": lambda p: p.minimum,
    "max_over_time": lambda p: p.maximum,
    "avg_over_time": lambda p: p.total / p.count,
}


def _binaryOp(op: str) -> Callable[[float, float], float]:
    return {
        "+": lambda a, b: a + b,
        "-": lambda a, b: a - b,
        "*": lambda a, b: a * b,
        "/": goDivide,
        "%": goModulo,
        "^": goPower,
        "==": lambda a, b: float(a == b),
        "!=": lambda a, b: float(a != b),
        ">": lambda a, b: float(a > b),
        "<": lambda a, b: float(a < b),
        ">=": lambda a, b: float(a >= b),
        "<=": lambda a, b: float(a <= b),
    }[op]


class Evaluator:
    """
    Evaluates expressions over the series read for their selectors.

    @param data: for each selector of the expression, its series (with
        at least the samples of every window the evaluation looks at).
    @param startMs: the query's start (C{@ start()}).
    @param endMs: the query's end (C{@ end()}).
    @param summaries: for range selectors that only C{sum_over_time} and
        its kin read, by evaluation instant (C{None} for every instant),
        each series' summary of its window (a
        L{meetrd.aggregate.Partial}, from Cassandra) instead of its
        samples.
    """

    def __init__(self, data: dict[Selector, Matrix], startMs: int,
                 endMs: int, lookbackMs: int = DEFAULT_LOOKBACK_MS,
                 summaries: dict[RangeSelector, dict[Any, dict[Labels, Any]]]
                 | None = None) -> None:
        self.data = data
        self.summaries = summaries or {}
        self.startMs = startMs
        self.endMs = endMs
        self.lookbackMs = lookbackMs

    # Queries

    def instant(self, expr: Expr, t: int) -> Value:
        """
        The value of an expression at C{t}: a L{Scalar}, a L{Text}, a
        vector or (for a range selector) a matrix of raw samples.
        """
        if isinstance(expr, RangeSelector):
            return self._window(expr, t)
        return self._eval(expr, t)

    def range(self, expr: Expr, startMs: int, endMs: int, stepMs: int
              ) -> Matrix:
        """
        The series of an expression's values at every step from
        C{startMs} to C{endMs}, one per label set.
        """
        if isinstance(expr, RangeSelector) or isinstance(expr, String):
            kind = "range vector" if isinstance(expr, RangeSelector) \
                else "string"
            raise BadData(f"invalid expression type \"{kind}\" for range "
                          f"query, must be Scalar or instant Vector")
        out: dict[Labels, Series] = {}
        t = startMs
        while t <= endMs:
            value = self._eval(expr, t)
            if isinstance(value, Scalar):
                value = [Sample((), value.value)]
            for sample in value:
                series = out.get(sample.labels)
                if series is None:
                    series = out[sample.labels] = Series(sample.labels)
                series.ts.append(t)
                series.values.append(sample.value)
            t += stepMs
        return list(out.values())

    # Expressions

    def _eval(self, expr: Expr, t: int) -> Value:
        if isinstance(expr, Number):
            return Scalar(expr.value)
        if isinstance(expr, String):
            return Text(expr.value)
        if isinstance(expr, Selector):
            return self._select(expr, t)
        if isinstance(expr, Negation):
            value = self._eval(expr.expr, t)
            if isinstance(value, Scalar):
                return Scalar(-value.value)
            return _unique([Sample(withoutName(s.labels), -s.value)
                            for s in value])
        if isinstance(expr, Call):
            return self._call(expr, t)
        if isinstance(expr, Aggregate):
            return self._aggregate(expr, t)
        if isinstance(expr, Binary):
            return self._binary(expr, t)
        raise BadData(f"cannot evaluate {type(expr).__name__}")

    def _at(self, selector: Selector, t: int) -> int:
        at = selector.at
        if at == "start":
            t = self.startMs
        elif at == "end":
            t = self.endMs
        elif at is not None:
            t = int(at)
        return t - selector.offsetMs

    def _select(self, selector: Selector, t: int) -> Vector:
        at = self._at(selector, t)
        oldest = at - self.lookbackMs
        out = []
        for series in self.data.get(selector, ()):
            i = bisect_right(series.ts, at) - 1
            if i >= 0 and series.ts[i] > oldest:
                out.append(Sample(series.labels, series.values[i]))
        return out

    def _windows(self, expr: RangeSelector, t: int
                 ) -> Iterable[tuple[Labels, list[int], list[float], int]]:
        at = self._at(expr.selector, t)
        oldest = at - expr.rangeMs
        for series in self.data.get(expr.selector, ()):
            low = bisect_right(series.ts, oldest)
            high = bisect_right(series.ts, at)
            if high > low:
                yield (series.labels, series.ts[low:high],
                       series.values[low:high], at)

    def _window(self, expr: RangeSelector, t: int) -> Matrix:
        return [Series(labels, ts, values)
                for labels, ts, values, _ in self._windows(expr, t)]

    def _scalarArg(self, expr: Expr, t: int, what: str) -> float:
        value = self._eval(expr, t)
        if not isinstance(value, Scalar):
            raise BadData(f"{what} must be a scalar")
        return value.value

    def _vectorArg(self, expr: Expr, t: int, what: str) -> Vector:
        value = self._eval(expr, t)
        if not isinstance(value, list):
            raise BadData(f"{what} must be an instant vector")
        return value

    # Functions

    def _call(self, call: Call, t: int) -> Value:
        name = call.function
        args = call.args
        if name in ("rate", "increase", "delta", "irate", "idelta") or \
                name in OVER_TIME or name == "quantile_over_time":
            return self._rangeFunction(call, t)
        if name in OF_VALUE:
            function = OF_VALUE[name]
            vector = self._vectorArg(args[0], t, f"{name}()'s argument")
            return _unique([Sample(withoutName(s.labels), function(s.value))
                            for s in vector])
        if name == "round":
            vector = self._vectorArg(args[0], t, "round()'s argument")
            nearest = 1.0 if len(args) < 2 else \
                self._scalarArg(args[1], t, "round()'s to_nearest")
            return _unique([Sample(withoutName(s.labels),
                                   roundTo(s.value, nearest))
                            for s in vector])
        if name in ("clamp", "clamp_min", "clamp_max"):
            return self._clamp(call, t)
        if name == "time":
            return Scalar(t / 1000)
        if name == "scalar":
            vector = self._vectorArg(args[0], t, "scalar()'s argument")
            return Scalar(vector[0].value if len(vector) == 1 else math.nan)
        if name == "vector":
            return [Sample((), self._scalarArg(args[0], t,
                                               "vector()'s argument"))]
        if name in ("sort", "sort_desc"):
            vector = self._vectorArg(args[0], t, f"{name}()'s argument")
            return sorted(vector, key=_sortKey(name == "sort_desc"))
        if name == "histogram_quantile":
            return self._histogramQuantile(call, t)
        if name == "label_replace":
            return self._labelReplace(call, t)
        raise BadData(f"function {name}() is not supported")

    def _rangeFunction(self, call: Call, t: int) -> Vector:
        name = call.function
        selector = call.args[-1]
        assert isinstance(selector, RangeSelector)
        keepName = name == "last_over_time"
        q = 0.0
        if name == "quantile_over_time":
            q = self._scalarArg(call.args[0], t, "quantile_over_time()'s "
                                                 "quantile")
        if name in SUMMARY_FUNCTIONS and selector in self.summaries:
            byInstant = self.summaries[selector]
            windows = byInstant.get(None, byInstant.get(t, {}))
            return [Sample(withoutName(labels),
                           SUMMARY_FUNCTIONS[name](partial))
                    for labels, partial in windows.items()]
        out = []
        for labels, ts, values, at in self._windows(selector, t):
            if name in ("rate", "increase", "delta"):
                value = extrapolatedRate(
                    ts, values, at - selector.rangeMs, at, selector.rangeMs,
                    isCounter=name != "delta", isRate=name == "rate")
            elif name in ("irate", "idelta"):
                value = instantRate(ts, values, isRate=name == "irate")
            elif name == "quantile_over_time":
                value = quantileOf(q, values)
            else:
                value = OVER_TIME[name](values)
            if value is not None:
                out.append(Sample(labels if keepName else withoutName(labels),
                                  value))
        return _unique(out)

    def _clamp(self, call: Call, t: int) -> Vector:
        name = call.function
        vector = self._vectorArg(call.args[0], t, f"{name}()'s argument")
        low, high = -math.inf, math.inf
        if name == "clamp":
            low = self._scalarArg(call.args[1], t, "clamp()'s min")
            high = self._scalarArg(call.args[2], t, "clamp()'s max")
            if high < low:
                return []
        elif name == "clamp_min":
            low = self._scalarArg(call.args[1], t, "clamp_min()'s min")
        else:
            high = self._scalarArg(call.args[1], t, "clamp_max()'s max")
        out = []
        for s in vector:
            value = s.value
            if math.isnan(low) or math.isnan(high):
                value = math.nan
            elif not math.isnan(value):
                value = max(low, min(high, value))
            out.append(Sample(withoutName(s.labels), value))
        return _unique(out)

    def _histogramQuantile(self, call: Call, t: int) -> Vector:
        q = self._scalarArg(call.args[0], t, "histogram_quantile()'s "
                                             "quantile")
        vector = self._vectorArg(call.args[1], t, "histogram_quantile()'s "
                                                  "buckets")
        groups: dict[Labels, list[tuple[float, float]]] = {}
        for s in vector:
            le = None
            rest = []
            for pair in s.labels:
                if pair[0] == "le":
                    le = pair[1]
                elif pair[0] != NAME:
                    rest.append(pair)
            if le is None:
                continue
            try:
                bound = float(le)
            except ValueError:
                continue
            groups.setdefault(tuple(rest), []).append((bound, s.value))
        return [Sample(labels, bucketQuantile(q, buckets))
                for labels, buckets in groups.items()]

    def _labelReplace(self, call: Call, t: int) -> Vector:
        vector = self._vectorArg(call.args[0], t, "label_replace()'s "
                                                  "argument")
        texts = []
        for arg in call.args[1:]:
            if not isinstance(arg, String):
                raise BadData("label_replace() takes string arguments "
                              "after the vector")
            texts.append(arg.value)
        if len(texts) != 4:
            raise BadData("label_replace() takes 5 arguments")
        destination, replacement, source, pattern = texts
        if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", destination):
            raise BadData(f"invalid destination label name in "
                          f"label_replace(): {destination!r}")
        try:
            regex = re.compile(pattern, re.DOTALL)
        except re.error as e:
            raise BadData(f"invalid regular expression in label_replace(): "
                          f"{e}") from None
        out = []
        for s in vector:
            labels = dict(s.labels)
            found = regex.fullmatch(labels.get(source, ""))
            if found is not None:
                value = _expand(found, replacement)
                if value:
                    labels[destination] = value
                else:
                    labels.pop(destination, None)
            out.append(Sample(tuple(sorted(labels.items())), s.value))
        return _unique(out)

    # Aggregations

    def _aggregate(self, agg: Aggregate, t: int) -> Vector:
        vector = self._vectorArg(agg.expr, t, f"{agg.op}()'s argument")
        param = None
        if agg.op in ("topk", "bottomk", "quantile"):
            assert agg.param is not None
            param = self._scalarArg(agg.param, t, f"{agg.op}()'s parameter")
        groups: dict[Labels, list[Sample]] = {}
        for s in vector:
            groups.setdefault(self._groupLabels(agg, s.labels), []).append(s)
        if agg.op in ("topk", "bottomk"):
            assert param is not None
            return self._topk(agg.op, param, groups)
        out = []
        for labels, members in groups.items():
            values = [s.value for s in members]
            out.append(Sample(labels, _aggregateValues(agg.op, values,
                                                       param)))
        return out

    def _groupLabels(self, agg: Aggregate, labels: Labels) -> Labels:
        if agg.grouping is None:
            return ()
        if agg.without:
            dropped = set(agg.grouping) | {NAME}
            return tuple(p for p in labels if p[0] not in dropped)
        kept = set(agg.grouping)
        return tuple(p for p in labels if p[0] in kept)

    def _topk(self, op: str, k: float, groups: dict[Labels, list[Sample]]
              ) -> Vector:
        if math.isnan(k):
            raise ExecutionError(f"Parameter value is NaN for {op}")
        count = int(k) if k < 2 ** 62 else 2 ** 62
        if count < 1:
            return []
        out: Vector = []
        for members in groups.values():
            def rank(s: Sample) -> tuple[bool, float]:
                # NaN ranks last either way.
                value = s.value
                if math.isnan(value):
                    return (True, 0.0)
                return (False, -value if op == "topk" else value)
            out.extend(sorted(members, key=rank)[:count])
        return out

    # Binary operators

    def _binary(self, expr: Binary, t: int) -> Value:
        lhs = self._eval(expr.lhs, t)
        rhs = self._eval(expr.rhs, t)
        op = expr.op
        if isinstance(lhs, Text) or isinstance(rhs, Text):
            raise BadData(f"binary operator {op!r} does not take strings")
        if isinstance(lhs, Scalar) and isinstance(rhs, Scalar):
            return Scalar(_binaryOp(op)(lhs.value, rhs.value))
        if isinstance(lhs, Scalar) or isinstance(rhs, Scalar):
            return self._withScalar(expr, lhs, rhs)
        if op in ("and", "or", "unless"):
            return self._setOperation(expr, lhs, rhs)
        return self._vectorsMatched(expr, lhs, rhs)

    def _withScalar(self, expr: Binary, lhs: Value, rhs: Value) -> Vector:
        op = expr.op
        apply = _binaryOp(op)
        vectorLeft = isinstance(rhs, Scalar)
        vector = lhs if vectorLeft else rhs
        scalar = rhs.value if vectorLeft else lhs.value
        comparison = op in COMPARISONS
        out = []
        for s in vector:
            a, b = (s.value, scalar) if vectorLeft else (scalar, s.value)
            value = apply(a, b)
            if comparison and not expr.returnBool:
                if value:
                    out.append(Sample(s.labels, s.value))
                continue
            out.append(Sample(withoutName(s.labels), value))
        return _unique(out) if not comparison or expr.returnBool else out

    def _signature(self, expr: Binary) -> Callable[[Labels], Labels]:
        names = set(expr.matching or ())
        if expr.on:
            return lambda labels: tuple(p for p in labels if p[0] in names)
        names.add(NAME)
        return lambda labels: tuple(p for p in labels if p[0] not in names)

    def _setOperation(self, expr: Binary, lhs: Vector, rhs: Vector
                      ) -> Vector:
        signature = self._signature(expr)
        if expr.op == "or":
            left = {signature(s.labels) for s in lhs}
            return lhs + [s for s in rhs if signature(s.labels) not in left]
        right = {signature(s.labels) for s in rhs}
        if expr.op == "and":
            return [s for s in lhs if signature(s.labels) in right]
        return [s for s in lhs if signature(s.labels) not in right]

    def _vectorsMatched(self, expr: Binary, lhs: Vector, rhs: Vector
                        ) -> Vector:
        op = expr.op
        apply = _binaryOp(op)
        signature = self._signature(expr)
        swapped = expr.cardinality == "one-to-many"
        if swapped:
            lhs, rhs = rhs, lhs
        one: dict[Labels, Sample] = {}
        for s in rhs:
            key = signature(s.labels)
            if key in one:
                side = "left" if swapped else "right"
                raise ExecutionError(
                    f"found duplicate series for the match group "
                    f"{_show(key)} on the {side} hand-side of the operation: "
                    f"[{_show(one[key].labels)}, {_show(s.labels)}];many-to-"
                    f"many matching not allowed: matching labels must be "
                    f"unique on one side")
            one[key] = s
        comparison = op in COMPARISONS
        dropName = op in ARITHMETIC or expr.returnBool
        matchedOne: set[Labels] = set()
        out: dict[Labels, Sample] = {}
        for s in lhs:
            key = signature(s.labels)
            other = one.get(key)
            if other is None:
                continue
            if expr.cardinality == "one-to-one":
                if key in matchedOne:
                    raise ExecutionError(
                        "multiple matches for labels: many-to-one matching "
                        "must be explicit (group_left/group_right)")
                matchedOne.add(key)
            a, b = (other.value, s.value) if swapped else (s.value,
                                                           other.value)
            value = apply(a, b)
            if comparison and not expr.returnBool:
                if not value:
                    continue
                value = a
            labels = self._resultLabels(expr, s.labels, other.labels,
                                        dropName)
            if labels in out:
                raise ExecutionError("multiple matches for labels: grouping "
                                     "labels must ensure unique matches")
            out[labels] = Sample(labels, value)
        return list(out.values())

    def _resultLabels(self, expr: Binary, labels: Labels, other: Labels,
                      dropName: bool) -> Labels:
        result = dict(labels)
        if dropName:
            result.pop(NAME, None)
        if expr.cardinality == "one-to-one":
            names = set(expr.matching or ())
            if expr.on:
                result = {k: v for k, v in result.items() if k in names}
            else:
                for name in names:
                    result.pop(name, None)
        if expr.include:
            otherLabels = dict(other)
            for name in expr.include:
                value = otherLabels.get(name, "")
                if value:
                    result[name] = value
                else:
                    result.pop(name, None)
        return tuple(sorted(result.items()))


def _aggregateValues(op: str, values: Sequence[float],
                     param: float | None) -> float:
    if op == "sum":
        return total(values)
    if op == "avg":
        return mean(values)
    if op == "count":
        return float(len(values))
    if op == "group":
        return 1.0
    if op == "min":
        low = values[0]
        for value in values[1:]:
            if value < low or math.isnan(low):
                low = value
        return low
    if op == "max":
        high = values[0]
        for value in values[1:]:
            if value > high or math.isnan(high):
                high = value
        return high
    if op == "stddev":
        return math.sqrt(variance(values))
    if op == "stdvar":
        return variance(values)
    if op == "quantile":
        assert param is not None
        return quantileOf(param, values)
    raise BadData(f"aggregation {op}() is not supported")


def _sortKey(descending: bool) -> Callable[[Sample], tuple[bool, float]]:
    def key(s: Sample) -> tuple[bool, float]:
        # NaN sorts last either way, as Prometheus's sort does.
        if math.isnan(s.value):
            return (True, 0.0)
        return (False, -s.value if descending else s.value)
    return key


def _show(labels: Labels) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in labels) + "}"


def _expand(found: re.Match[str], template: str) -> str:
    """
    A C{label_replace} replacement with C{$1}, C{${1}}, C{$name} and
    C{${name}} filled from a match, as Go's C{Regexp.Expand} does (a
    group that does not exist is empty; C{$$} is a dollar).
    """
    def group(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(2)
        try:
            value = found.group(int(name) if name.isdigit() else name)
        except (IndexError, re.error):
            return ""
        return value or ""
    return re.sub(r"\$\$|\$\{(\w+)\}|\$(\w+)", group, template)
