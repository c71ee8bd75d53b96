"""
The Prometheus HTTP query API over meetrd's store: parameters read as
Prometheus reads them, answers and errors in its format (C{status},
C{data}, C{errorType}, C{error}).
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Callable

import promql_parser
from twisted.internet.defer import CancelledError, Deferred, maybeDeferred
from twisted.python.failure import Failure

from meetrd import __version__
from meetrd.promql.engine import (
    DEFAULT_LOOKBACK_MS,
    Evaluator,
    Matrix,
    Scalar,
    Text,
)
from meetrd.promql.errors import BadData, ExecutionError, PromError
from meetrd.promql.selectors import (
    Window,
    findMatching,
    labelsOf,
    readSelected,
    selectorWindows,
    summarizedSelectors,
    summarizeSelected,
)
from meetrd.promql.syntax import RangeSelector, Selector, parseQuery
from meetrd.readplan import SearchTooWide
from meetrd.settings import Limits
from meetrd.store import ReadProgress, StoreUnavailable

# Prometheus refuses range queries of more steps than this.
MAX_STEPS = 11000
# The range series and label lookups read when the request gives none.
DEFAULT_LOOKUP_MS = 60 * 60 * 1000
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

Args = dict[bytes, list[bytes]]


class Unavailable(PromError):
    code = 503
    errorType = "unavailable"


class TimedOut(PromError):
    code = 503
    errorType = "timeout"


def formatValue(value: float) -> str:
    """
    A sample value as Prometheus writes it: the shortest decimal that
    reads back the same float, never in exponent form; C{+Inf}, C{-Inf},
    C{NaN}.
    """
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def formatTime(ms: int) -> float | int:
    """
    A timestamp in seconds, as Prometheus writes it (milliseconds as
    decimals).
    """
    return ms // 1000 if ms % 1000 == 0 else ms / 1000


def parseTime(text: str | None, name: str, default: int | None = None
              ) -> int:
    """
    A timestamp parameter in milliseconds: Unix seconds (with decimals)
    or RFC 3339.
    """
    if text is None or text == "":
        if default is None:
            raise BadData(f"invalid parameter \"{name}\": required")
        return default
    text = text.strip()
    try:
        if _NUMBER.fullmatch(text):
            seconds = float(text)
            if not -1e13 < seconds < 1e13:
                raise ValueError(text)
            return round(seconds * 1000)
        parsed = datetime.fromisoformat(text.replace("z", "Z"))
        if parsed.tzinfo is None:
            raise ValueError(text)
        return round(parsed.astimezone(timezone.utc).timestamp() * 1000)
    except (ValueError, OverflowError):
        raise BadData(f"invalid parameter \"{name}\": cannot parse "
                      f"{text[:60]!r} to a valid timestamp") from None


def parseStep(text: str | None, name: str) -> int:
    """
    A duration parameter in milliseconds: seconds (with decimals) or a
    Prometheus duration (C{1m30s}).
    """
    if text is None or text == "":
        raise BadData(f"invalid parameter \"{name}\": required")
    text = text.strip()
    try:
        if _NUMBER.fullmatch(text):
            seconds = float(text)
            if not math.isfinite(seconds) or abs(seconds) > 1e12:
                raise ValueError(text)
            return round(seconds * 1000)
        return round(promql_parser.parse_duration(text).total_seconds()
                     * 1000)
    except (ValueError, OverflowError):
        raise BadData(f"invalid parameter \"{name}\": cannot parse "
                      f"{text[:60]!r} to a valid duration") from None


def _arg(args: Args, name: str) -> str | None:
    values = args.get(name.encode("ascii"))
    if not values:
        return None
    try:
        return values[0].decode("utf-8")
    except UnicodeDecodeError:
        raise BadData(f"invalid parameter \"{name}\": not UTF-8") from None


def _all(args: Args, name: str) -> list[str]:
    try:
        return [v.decode("utf-8") for v in args.get(name.encode("ascii"), [])]
    except UnicodeDecodeError:
        raise BadData(f"invalid parameter \"{name}\": not UTF-8") from None


def success(data: Any) -> tuple[int, dict[str, Any]]:
    return 200, {"status": "success", "data": data}


def failure(error: PromError) -> tuple[int, dict[str, Any]]:
    return error.code, {"status": "error", "errorType": error.errorType,
                        "error": error.message}


def _matrixJSON(matrix: Matrix) -> list[dict[str, Any]]:
    return [{"metric": dict(series.labels),
             "values": [[formatTime(t), formatValue(v)]
                        for t, v in zip(series.ts, series.values)]}
            for series in sorted(matrix, key=lambda s: s.labels)]


class QueryAPI:
    """
    The Prometheus query API over a store.

    @param store: a L{meetrd.store.MetricStore} (or one like it).
    @param limits: the search limits, which hold for queries too.
    @param clock: provides C{seconds()} and C{callLater} (the deadline).
    @param observeRead: told, for each selector a query reads, how it was
        read: C{"samples"}, C{"raw summary"} (Cassandra summarized the
        windows), or the rollup level read (C{"1h"}).
    """

    def __init__(self, store: Any, limits: Limits, clock: Any,
                 observeRead: Callable[[str], None] | None = None) -> None:
        self.store = store
        self.limits = limits
        self.clock = clock
        self.observeRead = observeRead or (lambda read: None)

    def _nowMs(self) -> int:
        return int(self.clock.seconds() * 1000)

    def answer(self, run: Callable[[], Any]
               ) -> Deferred[tuple[int, dict[str, Any]]]:
        """
        Run C{run} (which may return a Deferred) within the search
        deadline; fire with the HTTP code and body, an error in
        Prometheus's format included.
        """
        progress = ReadProgress()
        d = maybeDeferred(run, progress)
        seconds = self.limits.search_timeout

        def timedOut(result: Any, timeout: float) -> Any:
            if isinstance(result, Failure) and result.check(CancelledError):
                return Failure(TimedOut(
                    f"query timed out after {seconds:g}s while "
                    f"{progress.describe()} (limits.search_timeout)"))
            return result

        d.addTimeout(seconds, self.clock, onTimeoutCancel=timedOut)
        d.addCallback(success)
        d.addErrback(self._failed)
        return d

    def _failed(self, reason: Failure) -> tuple[int, dict[str, Any]]:
        error = reason.value
        if isinstance(error, PromError):
            return failure(error)
        if isinstance(error, SearchTooWide):
            return failure(ExecutionError(error.problem))
        if isinstance(error, StoreUnavailable):
            return failure(Unavailable(f"Cassandra is unavailable: {error}"))
        return reason  # type: ignore[return-value]

    # Queries

    def query(self, args: Args) -> Deferred[tuple[int, dict[str, Any]]]:
        """
        C{/api/v1/query}: an expression at one instant.
        """
        def run(progress: ReadProgress) -> Any:
            expr = parseQuery(_arg(args, "query") or "")
            at = parseTime(_arg(args, "time"), "time", self._nowMs())
            lookback = self._lookback(args)
            return Deferred.fromCoroutine(
                self._instant(expr, at, lookback, progress))
        return self.answer(run)

    async def _instant(self, expr: Any, at: int, lookback: int,
                       progress: ReadProgress) -> dict[str, Any]:
        summarized = summarizedSelectors(expr)
        data = await readSelected(
            self.store, selectorWindows(expr, at, at, lookback, summarized),
            self.limits, progress, self.observeRead)
        summaries = await summarizeSelected(self.store, summarized, at, at,
                                            None, self.limits,
                                            self._nowMs(), progress,
                                            self.observeRead)
        value = Evaluator(data, at, at, lookback, summaries).instant(expr, at)
        if isinstance(value, Scalar):
            return {"resultType": "scalar",
                    "result": [formatTime(at), formatValue(value.value)]}
        if isinstance(value, Text):
            return {"resultType": "string",
                    "result": [formatTime(at), value.value]}
        if isinstance(expr, RangeSelector):
            return {"resultType": "matrix", "result": _matrixJSON(value)}
        return {"resultType": "vector",
                "result": [{"metric": dict(s.labels),
                            "value": [formatTime(at), formatValue(s.value)]}
                           for s in value]}

    def queryRange(self, args: Args
                   ) -> Deferred[tuple[int, dict[str, Any]]]:
        """
        C{/api/v1/query_range}: an expression at every step of a range.
        """
        def run(progress: ReadProgress) -> Any:
            expr = parseQuery(_arg(args, "query") or "")
            start = parseTime(_arg(args, "start"), "start")
            end = parseTime(_arg(args, "end"), "end")
            step = parseStep(_arg(args, "step"), "step")
            if end < start:
                raise BadData("invalid parameter \"end\": end timestamp must "
                              "not be before start time")
            if step <= 0:
                raise BadData("invalid parameter \"step\": zero or negative "
                              "query resolution step widths are not "
                              "accepted. Try a positive integer")
            if (end - start) // step > MAX_STEPS:
                raise BadData("exceeded maximum resolution of 11,000 points "
                              "per timeseries. Try decreasing the query "
                              "resolution (?step=XX)")
            lookback = self._lookback(args)
            return Deferred.fromCoroutine(
                self._range(expr, start, end, step, lookback, progress))
        return self.answer(run)

    async def _range(self, expr: Any, start: int, end: int, step: int,
                     lookback: int, progress: ReadProgress
                     ) -> dict[str, Any]:
        last = start + (end - start) // step * step
        summarized = summarizedSelectors(expr, step)
        data = await readSelected(
            self.store, selectorWindows(expr, start, last, lookback,
                                        summarized),
            self.limits, progress, self.observeRead)
        summaries = await summarizeSelected(self.store, summarized, start,
                                            end, step, self.limits,
                                            self._nowMs(), progress,
                                            self.observeRead)
        matrix = Evaluator(data, start, end, lookback, summaries).range(
            expr, start, end, step)
        values = sum(len(series.ts) for series in matrix)
        if values > self.limits.max_search_points:
            raise ExecutionError(
                f"the answer would hold {values} values, more than "
                f"{self.limits.max_search_points} "
                f"(limits.max_search_points): widen step or narrow the "
                f"range or the selectors")
        return {"resultType": "matrix", "result": _matrixJSON(matrix)}

    def _lookback(self, args: Args) -> int:
        text = _arg(args, "lookback_delta")
        if text is None:
            return DEFAULT_LOOKBACK_MS
        lookback = parseStep(text, "lookback_delta")
        if lookback <= 0:
            raise BadData("invalid parameter \"lookback_delta\": must be "
                          "positive")
        return lookback

    # Metadata

    def _lookupWindow(self, args: Args) -> Window:
        end = parseTime(_arg(args, "end"), "end", self._nowMs())
        start = parseTime(_arg(args, "start"), "start",
                          end - DEFAULT_LOOKUP_MS)
        if end < start:
            raise BadData("invalid parameter \"end\": end timestamp must "
                          "not be before start time")
        return Window(start, end)

    def _selectors(self, args: Args, required: bool) -> list[Selector]:
        texts = _all(args, "match[]")
        if not texts and required:
            raise BadData("no match[] parameter provided")
        selectors = []
        for text in texts:
            expr = parseQuery(text)
            if not isinstance(expr, Selector):
                raise BadData(f"invalid parameter \"match[]\": {text[:80]!r}"
                              f" is not a series selector")
            selectors.append(expr)
        return selectors

    async def _matchingLabels(self, selectors: list[Selector],
                              window: Window, progress: ReadProgress
                              ) -> set[tuple[tuple[str, str], ...]]:
        found: set[tuple[tuple[str, str], ...]] = set()
        for selector in selectors:
            rows = await findMatching(self.store, selector.matchers, window,
                                      self.limits,
                                      self.limits.max_search_series, progress)
            found.update(labelsOf(row) for row in rows)
        return found

    def series(self, args: Args) -> Deferred[tuple[int, dict[str, Any]]]:
        """
        C{/api/v1/series}: the label sets of the series that match.
        """
        def run(progress: ReadProgress) -> Any:
            selectors = self._selectors(args, required=True)
            window = self._lookupWindow(args)

            async def found() -> list[dict[str, str]]:
                labels = await self._matchingLabels(selectors, window,
                                                    progress)
                return [dict(pairs) for pairs in sorted(labels)]
            return Deferred.fromCoroutine(found())
        return self.answer(run)

    def labels(self, args: Args) -> Deferred[tuple[int, dict[str, Any]]]:
        """
        C{/api/v1/labels}: the label names of the series that match (of
        every series in the range without C{match[]}).
        """
        def run(progress: ReadProgress) -> Any:
            selectors = self._selectors(args, required=False) or \
                [parseQuery('{__name__=~".+"}')]
            window = self._lookupWindow(args)

            async def found() -> list[str]:
                labels = await self._matchingLabels(selectors, window,
                                                    progress)
                return sorted({name for pairs in labels for name, _ in pairs})
            return Deferred.fromCoroutine(found())
        return self.answer(run)

    def labelValues(self, name: str, args: Args
                    ) -> Deferred[tuple[int, dict[str, Any]]]:
        """
        C{/api/v1/label/<name>/values}: the values of a label among the
        series that match; the metric names come from the store's list
        of metrics when no C{match[]} narrows them.
        """
        def run(progress: ReadProgress) -> Any:
            if not _LABEL_NAME.fullmatch(name):
                raise BadData(f"invalid label name: {name[:80]!r}")
            selectors = self._selectors(args, required=False)
            if name == "__name__" and not selectors:
                return self.store.metricNames(progress)
            selectors = selectors or [parseQuery('{__name__=~".+"}')]
            window = self._lookupWindow(args)

            async def found() -> list[str]:
                labels = await self._matchingLabels(selectors, window,
                                                    progress)
                return sorted({value for pairs in labels
                               for key, value in pairs if key == name})
            return Deferred.fromCoroutine(found())
        return self.answer(run)

    def buildInfo(self) -> tuple[int, dict[str, Any]]:
        """
        C{/api/v1/status/buildinfo}: the Prometheus API version meetrd
        answers like (its query semantics are Prometheus 3's).
        """
        return success({
            "version": "3.0.0",
            "revision": f"meetrd-{__version__}",
            "branch": "meetrd",
            "buildUser": "meetrd",
            "buildDate": "unknown",
            "goVersion": "none (meetrd, Python)",
            "application": "meetrd",
            "meetrdVersion": __version__,
        })
