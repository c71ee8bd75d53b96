"""
The PromQL meetrd evaluates: a query parsed by C{promql-parser} turned
into small immutable expressions, with everything meetrd does not
support refused by name (L{BadData}) before anything is read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Union

import promql_parser

from meetrd.promql.errors import BadData

# Functions over a range vector: name to the number of scalar arguments
# before the range vector.
RANGE_FUNCTIONS = {
    "rate": 0, "irate": 0, "increase": 0, "delta": 0, "idelta": 0,
    "resets": 0, "changes": 0,
    "avg_over_time": 0, "min_over_time": 0, "max_over_time": 0,
    "sum_over_time": 0, "count_over_time": 0, "last_over_time": 0,
    "stddev_over_time": 0, "stdvar_over_time": 0, "present_over_time": 0,
    "quantile_over_time": 1,
}
# Functions of an instant vector, value by value: name to the number of
# scalar arguments after the vector (and how many of them may be left
# out).
VALUE_FUNCTIONS = {
    "abs": (0, 0), "ceil": (0, 0), "floor": (0, 0), "sqrt": (0, 0),
    "exp": (0, 0), "ln": (0, 0), "log2": (0, 0), "log10": (0, 0),
    "round": (1, 1), "clamp": (2, 0), "clamp_min": (1, 0),
    "clamp_max": (1, 0), "sgn": (0, 0),
}
OTHER_FUNCTIONS = {"histogram_quantile", "scalar", "vector", "time",
                   "sort", "sort_desc", "label_replace", "timestamp"}
AGGREGATIONS = {"sum", "avg", "min", "max", "count", "group", "stddev",
                "stdvar", "topk", "bottomk", "quantile"}
ARITHMETIC = {"+", "-", "*", "/", "%", "^"}
COMPARISONS = {"==", "!=", ">", "<", ">=", "<="}
SET_OPERATORS = {"and", "or", "unless"}

MATCH_OPS = (
    (promql_parser.MatchOp.Equal, "="),
    (promql_parser.MatchOp.NotEqual, "!="),
    (promql_parser.MatchOp.Re, "=~"),
    (promql_parser.MatchOp.NotRe, "!~"),
)


@dataclass(frozen=True)
class Matcher:
    """
    One label matcher of a selector; C{regex} is compiled for C{=~} and
    C{!~} (anchored at both ends, as Prometheus's are).
    """

    name: str
    op: str
    value: str
    regex: re.Pattern[str] | None = None

    def matches(self, value: str) -> bool:
        """
        Whether a label value (C{""} for a missing label) passes.
        """
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        assert self.regex is not None
        found = self.regex.fullmatch(value) is not None
        return found if self.op == "=~" else not found


@dataclass(frozen=True)
class Selector:
    """
    An instant vector selector.

    @ivar offsetMs: the C{offset} (negative for a negative offset).
    @ivar at: the C{@} modifier: C{None}, milliseconds, C{"start"} or
        C{"end"}.
    """

    matchers: tuple[Matcher, ...]
    offsetMs: int = 0
    at: int | str | None = None

    @property
    def metricName(self) -> str | None:
        """
        The metric name when the selector names one with C{=}.
        """
        for m in self.matchers:
            if m.name == "__name__" and m.op == "=":
                return m.value
        return None


@dataclass(frozen=True)
class RangeSelector:
    """
    A range vector selector: C{selector[rangeMs]}.
    """

    selector: Selector
    rangeMs: int


@dataclass(frozen=True)
class Number:
    """
    A number literal.
    """

    value: float


@dataclass(frozen=True)
class String:
    """
    A string literal.
    """

    value: str


@dataclass(frozen=True)
class Call:
    """
    A function call: C{function(args...)}.
    """

    function: str
    args: tuple["Expr", ...]


@dataclass(frozen=True)
class Aggregate:
    """
    An aggregation; C{grouping} is the labels of C{by} or C{without}
    (C{without} says which), C{None} for neither.
    """

    op: str
    expr: "Expr"
    param: "Expr | None"
    grouping: tuple[str, ...] | None
    without: bool


@dataclass(frozen=True)
class Binary:
    """
    A binary operation.  C{matching} is C{None} without C{on} or
    C{ignoring}; C{on} says which; C{cardinality} is C{"one-to-one"},
    C{"many-to-one"} (C{group_left}), C{"one-to-many"} (C{group_right})
    or C{"many-to-many"} (set operators), C{include} the labels of
    C{group_left}/C{group_right}.
    """

    op: str
    lhs: "Expr"
    rhs: "Expr"
    returnBool: bool = False
    matching: tuple[str, ...] | None = None
    on: bool = False
    cardinality: str = "one-to-one"
    include: tuple[str, ...] = ()


@dataclass(frozen=True)
class Negation:
    expr: "Expr"


Expr = Union[Number, String, Selector, RangeSelector, Call, Aggregate,
             Binary, Negation]


def parseQuery(text: str) -> Expr:
    """
    Parse a PromQL query into meetrd's expressions.

    @raise BadData: for a syntax error, or a construct meetrd does not
        evaluate (named in the message).
    """
    if not text.strip():
        raise BadData("query: required")
    try:
        parsed = promql_parser.parse(text)
    except (ValueError, RuntimeError) as e:
        raise BadData(f"invalid parameter \"query\": {e}") from None
    return _convert(parsed)


def _convert(node: object) -> Expr:
    if isinstance(node, promql_parser.ParenExpr):
        return _convert(node.expr)
    if isinstance(node, promql_parser.NumberLiteral):
        return Number(float(node.val))
    if isinstance(node, promql_parser.StringLiteral):
        return String(node.val)
    if isinstance(node, promql_parser.VectorSelector):
        return _selector(node)
    if isinstance(node, promql_parser.MatrixSelector):
        return RangeSelector(_selector(node.vector_selector),
                             _ms(node.range))
    if isinstance(node, promql_parser.UnaryExpr):
        return Negation(_convert(node.expr))
    if isinstance(node, promql_parser.SubqueryExpr):
        raise BadData("subqueries (expr[range:step]) are not supported")
    if isinstance(node, promql_parser.Call):
        return _call(node)
    if isinstance(node, promql_parser.AggregateExpr):
        return _aggregate(node)
    if isinstance(node, promql_parser.BinaryExpr):
        return _binary(node)
    raise BadData(f"unsupported expression {type(node).__name__}")


def _ms(duration: timedelta) -> int:
    return round(duration.total_seconds() * 1000)


def _selector(node: promql_parser.VectorSelector) -> Selector:
    if node.matchers.or_matchers:
        raise BadData("'or' inside a selector's braces is not supported")
    matchers = []
    if node.name:
        matchers.append(Matcher("__name__", "=", node.name))
    for m in node.matchers.matchers:
        op = next((text for kind, text in MATCH_OPS if m.op == kind), None)
        if op is None:
            raise BadData(f"unsupported matcher operator {m.op}")
        regex = None
        if op in ("=~", "!~"):
            try:
                regex = re.compile(m.value, re.DOTALL)
            except re.error as e:
                raise BadData(f"invalid regular expression {m.value!r} for "
                              f"label {m.name!r}: {e}") from None
        matchers.append(Matcher(m.name, op, m.value, regex))
    at: int | str | None = None
    if node.at is not None:
        kind = node.at.type
        if kind == promql_parser.AtModifierType.Start:
            at = "start"
        elif kind == promql_parser.AtModifierType.End:
            at = "end"
        else:
            at = round(node.at.at.timestamp() * 1000)
    offset = 0 if node.offset is None else _ms(node.offset)
    if not any(not m.matches("") for m in matchers):
        raise BadData("vector selector must contain at least one "
                      "non-empty matcher")
    return Selector(tuple(matchers), offset, at)


def _call(node: promql_parser.Call) -> Expr:
    name = node.func.name
    args = tuple(_convert(a) for a in node.args)
    if name in RANGE_FUNCTIONS:
        scalars = RANGE_FUNCTIONS[name]
        if len(args) != scalars + 1 or \
                not isinstance(args[scalars], RangeSelector):
            raise BadData(f"{name}() takes a range vector selector "
                          f"(metric[5m]); subqueries are not supported")
    elif name in VALUE_FUNCTIONS:
        extra, optional = VALUE_FUNCTIONS[name]
        if not extra - optional <= len(args) - 1 <= extra:
            raise BadData(f"{name}() takes {extra + 1} argument(s)")
    elif name not in OTHER_FUNCTIONS:
        raise BadData(f"function {name}() is not supported")
    for arg in args:
        if isinstance(arg, RangeSelector) and name not in RANGE_FUNCTIONS:
            raise BadData(f"{name}() takes an instant vector, not a range "
                          f"vector")
    return Call(name, args)


def _aggregate(node: promql_parser.AggregateExpr) -> Aggregate:
    op = str(node.op)
    if op not in AGGREGATIONS:
        raise BadData(f"aggregation {op}() is not supported")
    grouping = None
    without = False
    if node.modifier is not None:
        grouping = tuple(node.modifier.labels)
        without = node.modifier.type == promql_parser.AggModifierType.Without
    param = None if node.param is None else _convert(node.param)
    expr = _convert(node.expr)
    if isinstance(expr, RangeSelector):
        raise BadData(f"{op}() takes an instant vector, not a range vector")
    return Aggregate(op, expr, param, grouping, without)


CARDINALITY = (
    (promql_parser.VectorMatchCardinality.OneToOne, "one-to-one"),
    (promql_parser.VectorMatchCardinality.ManyToOne, "many-to-one"),
    (promql_parser.VectorMatchCardinality.OneToMany, "one-to-many"),
    (promql_parser.VectorMatchCardinality.ManyToMany, "many-to-many"),
)


def _binary(node: promql_parser.BinaryExpr) -> Binary:
    op = str(node.op)
    if op not in ARITHMETIC | COMPARISONS | SET_OPERATORS:
        raise BadData(f"binary operator {op!r} is not supported")
    lhs, rhs = _convert(node.lhs), _convert(node.rhs)
    for side in (lhs, rhs):
        if isinstance(side, RangeSelector):
            raise BadData(f"binary operator {op!r} takes instant vectors "
                          f"or scalars, not a range vector")
    modifier = node.modifier
    if modifier is None:
        cardinality = "many-to-many" if op in SET_OPERATORS else "one-to-one"
        return Binary(op, lhs, rhs, cardinality=cardinality)
    matching = None
    on = False
    if modifier.matching is not None:
        matching = tuple(modifier.matching.labels)
        on = modifier.matching.type == promql_parser.LabelModifierType.Include
    cardinality = next(text for kind, text in CARDINALITY
                       if modifier.card == kind)
    if op in SET_OPERATORS:
        cardinality = "many-to-many"
    fill = getattr(modifier, "fill_values", None)
    if fill is not None and (fill.lhs is not None or fill.rhs is not None):
        raise BadData("fill() modifiers are not supported")
    return Binary(op, lhs, rhs, bool(modifier.return_bool), matching, on,
                  cardinality, tuple(modifier.group_labels or ()))
