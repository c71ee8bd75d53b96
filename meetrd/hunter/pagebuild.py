"""
What the readers of every syntax share: L{PageBuilder}, which collects the
samples of one page into points, the L{PageLimits} it applies, the
L{PageError} that refuses a page, the L{ParsedPage} it gives and a
target's L{PageCache}.

The readers (L{meetrd.hunter.jsonpage}, L{meetrd.hunter.prompage}) build
on this module; L{meetrd.hunter.pages} chooses the reader for a page.

Rules shared by every syntax:

  - B{Tags.}  Every point carries the target's C{baseTags} (its C{node},
    C{job} and configured labels) plus the labels the node sent.  The base
    tags win: a scraped label whose key is a base tag is kept as
    C{exported_<key>} (again prefixed while that key is taken, as Prometheus
    does with C{honor_labels: false}).  A scraped label with an empty value
    is dropped, since Prometheus treats it as absent.

  - B{Names.}  Metric names and tag keys follow the rules of meetrd's API
    (L{meetrd.names}) so that whatever is hunted can be asked for: a metric
    name matches C{[A-Za-z0-9_][A-Za-z0-9_.:/-]*} and a tag key
    C{[A-Za-z_][A-Za-z0-9_.-]*}; a tag value holds no control character.
    A sample or leaf that breaks these rules (an empty JSON key, a key with
    a space, a Prometheus name starting with C{:}, a label value with a
    newline...) is not stored and is counted in L{ParsedPage.skipped}, like
    a value that is not a finite number.  One odd series does not cost the
    rest of the page.

  - B{Limits} (L{PageLimits}).  Unlike the rules above, breaking a limit
    fails the whole page with a L{PageError} and returns nothing, as a
    Prometheus C{sample_limit} does: a page that big or that odd is a
    misconfigured node, and storing part of it would hide that.  Lengths
    are counted in characters and apply to what the node sent (the metric
    name, the scraped labels), not to the base tags, which are
    configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from meetrd.names import CONTROL_CHARACTER, METRIC_PATTERN, TAG_KEY_PATTERN
from meetrd.points import Point, Tags, freezeTags


class PageError(Exception):
    """
    A page cannot be used at all; nothing of it is stored.

    @ivar reason: a short human reason on one line, for logs and for the
        C{/targets} report, such as C{"sample limit 5000 exceeded"}.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


@dataclass(frozen=True, slots=True)
class PageLimits:
    """
    What one page may hold before it is refused whole.

    @ivar maxSamples: most points one page may give.
    @ivar maxNameLength: longest metric name, in characters.
    @ivar maxLabelNameLength: longest scraped label name.
    @ivar maxLabelValueLength: longest scraped label value.
    @ivar maxLabels: most labels the node may send on one sample (the base
        tags are not counted).
    """

    maxSamples: int = 50000
    maxNameLength: int = 200
    maxLabelNameLength: int = 100
    maxLabelValueLength: int = 1024
    maxLabels: int = 32

    def __post_init__(self) -> None:
        for field in ("maxSamples", "maxNameLength", "maxLabelNameLength",
                      "maxLabelValueLength", "maxLabels"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) \
                    or value < 0:
                raise ValueError(f"PageLimits.{field} must be an integer "
                                 f">= 0, not {value!r}")


DEFAULT_LIMITS = PageLimits()


@dataclass(frozen=True, slots=True)
class ParsedPage:
    """
    What a page gave.

    @ivar points: the points, in page order.
    @ivar skipped: samples or leaves not stored because their value was not
        a finite number (NaN, +/-Inf, null, a string that is not a number,
        a nested list...) or their name, tags or timestamp were unusable.
    @ivar syntax: which reader was used: C{"json"}, C{"prometheus-text"} or
        C{"openmetrics"}.
    """

    points: list[Point]
    skipped: int
    syntax: str


# Series parts kept at most by L{SeriesLines} (a few tens of MB).
SHARED_LINES_AT_MOST = 100_000


class SeriesLines:
    """
    The series parts of Prometheus text lines (see
    L{meetrd.hunter.prompage}) that prometheus_client was shown to split
    where meetrd does, each with the name and labels the library gave it:
    shared by the L{PageCache}s of every target of one hunter, so that the
    first page of a new target whose lines other targets' pages already
    had (a fleet of nodes running the same exporter) is not parsed line by
    line again.  Bounded: when full, it starts afresh.
    """

    __slots__ = ("_parts", "limit")

    def __init__(self, limit: int = SHARED_LINES_AT_MOST) -> None:
        self.limit = limit
        self._parts: dict[str, tuple[str, dict[str, str]]] = {}

    def __len__(self) -> int:
        return len(self._parts)

    def get(self, key: str) -> tuple[str, dict[str, str]] | None:
        """
        The name and labels of a series part, or C{None}.
        """
        return self._parts.get(key)

    def add(self, key: str, name: str, labels: Mapping[str, str]) -> None:
        """
        Remember what the library made of a series part (its labels are
        copied, and never changed afterwards).
        """
        if len(self._parts) >= self.limit:
            self._parts = {}
        self._parts[key] = (name, dict(labels))


class PageCache:
    """
    What one target's previous page taught, to read its next page faster.

    Hunting the same target again gives mostly the same series with new
    values.  Give L{parsePage} the same C{PageCache} on every hunt of one
    target (one cache per target, never shared) and a Prometheus text
    line whose series was on the previous page is not parsed again: only
    its value and timestamp are, by prometheus_client's own value parser.
    The result is the same as without the cache (see
    L{meetrd.hunter.prompage}).  The cache holds the series of the last
    good page only, so it is bounded by the page limits and forgets series
    that went away; it starts afresh when the base tags or limits change.
    """

    __slots__ = ("context", "series", "shared")

    def __init__(self, shared: SeriesLines | None = None) -> None:
        """
        @param shared: the hunter's L{SeriesLines}, which every target's
            cache shares, or C{None}.
        """
        self.context: object = None
        self.series: dict[str, tuple[str, Tags | None]] = {}
        self.shared = shared

    def __len__(self) -> int:
        return len(self.series)

    def clear(self) -> None:
        """
        Forget everything.
        """
        self.context = None
        self.series = {}


def showName(name: str, length: int = 80) -> str:
    """
    A name quoted for a reason, cut to about C{length} characters.
    """
    if len(name) > length:
        return repr(name[:length]) + "..."
    return repr(name)


class PageBuilder:
    """
    Collects the points of one page, applying the base tags, the naming
    rules and the limits described in this module's docstring.

    Used by the readers in L{meetrd.hunter.jsonpage} and
    L{meetrd.hunter.prompage}; callers use
    L{meetrd.hunter.pages.parsePage}.

    @ivar points: the points so far.
    @ivar skipped: how many samples or leaves were not stored so far.
    @ivar baseTags: the base tags, frozen (see L{freezeTags}).
    """

    __slots__ = ("limits", "defaultTsMs", "points", "skipped", "_base",
                 "baseTags")

    def __init__(self, baseTags: Mapping[str, str], defaultTsMs: int,
                 limits: PageLimits) -> None:
        self.limits = limits
        self.defaultTsMs = defaultTsMs
        self.points: list[Point] = []
        self.skipped = 0
        self._base = dict(baseTags)
        self.baseTags = freezeTags(self._base)

    def series(self, metric: str, labels: Mapping[str, str] | None
               ) -> Tags | None:
        """
        The tags of a series, or C{None} when the series breaks the naming
        rules and must be skipped.

        @param metric: the metric name as the page gives it.
        @param labels: the labels the node sent, or C{None}.
        @raise PageError: when a limit is exceeded.
        """
        limits = self.limits
        if len(metric) > limits.maxNameLength:
            raise PageError(f"metric name longer than {limits.maxNameLength}"
                            f" characters: {showName(metric)}")
        if labels:
            if len(labels) > limits.maxLabels:
                raise PageError(f"more than {limits.maxLabels} labels on "
                                f"metric {showName(metric)}")
            for key, value in labels.items():
                if len(key) > limits.maxLabelNameLength:
                    raise PageError(
                        f"label name longer than {limits.maxLabelNameLength}"
                        f" characters on metric {showName(metric)}")
                if len(value) > limits.maxLabelValueLength:
                    raise PageError(
                        f"label value longer than "
                        f"{limits.maxLabelValueLength} characters on metric "
                        f"{showName(metric)}")
        if not METRIC_PATTERN.fullmatch(metric):
            return None
        if not labels:
            return self.baseTags
        base = self._base
        merged = dict(base)
        clashes = []
        for key, value in labels.items():
            if not value:
                continue
            if not TAG_KEY_PATTERN.fullmatch(key) or \
                    CONTROL_CHARACTER.search(value):
                return None
            if key in base:
                clashes.append((key, value))
            else:
                merged[key] = value
        for key, value in sorted(clashes):
            key = "exported_" + key
            while key in merged:
                key = "exported_" + key
            merged[key] = value
        return freezeTags(merged)

    def tooMany(self) -> PageError:
        """
        The error for a page with more than C{maxSamples} points.
        """
        return PageError(f"sample limit {self.limits.maxSamples} exceeded")

    def add(self, metric: str, tags: Tags, tsMs: int, value: float) -> None:
        """
        Add one point.

        @raise PageError: when the page would exceed C{maxSamples}.
        """
        if len(self.points) >= self.limits.maxSamples:
            raise self.tooMany()
        self.points.append(Point(metric, tags, tsMs, value))

    def skip(self, count: int = 1) -> None:
        """
        Count samples or leaves that are not stored.
        """
        self.skipped += count

    def finish(self, syntax: str) -> ParsedPage:
        """
        The page read so far.
        """
        return ParsedPage(self.points, self.skipped, syntax)
