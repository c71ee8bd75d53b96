"""
Tests for L{meetrd.hunter.pages}: hunted pages (Prometheus text,
OpenMetrics, JSON) turned into points.
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings, strategies as st
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.openmetrics.exposition import (
    generate_latest as generate_openmetrics,
)

from meetrd.hunter import jsonpage, prompage
from meetrd.hunter.pages import (
    SYNTAX_JSON,
    SYNTAX_OPENMETRICS,
    SYNTAX_PROMETHEUS,
    PageCache,
    PageError,
    PageLimits,
    ParsedPage,
    chooseSyntax,
    parsePage,
)
from meetrd.hunter.pagebuild import SeriesLines
from meetrd.points import Point

BASE = {"node": "artemis", "job": "nodes"}
BASE_TAGS = (("job", "nodes"), ("node", "artemis"))
NOW = 1_700_000_000_000
TEXT = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def parse(body: bytes | str, contentType: str | None = None,
          format: str = "auto", *, base: dict | None = None,
          limits: PageLimits | None = None,
          cache: PageCache | None = None) -> ParsedPage:
    if isinstance(body, str):
        body = body.encode()
    return parsePage(body, contentType, format,
                     baseTags=BASE if base is None else base,
                     defaultTsMs=NOW, limits=limits or PageLimits(),
                     cache=cache)


def values(page: ParsedPage) -> dict[str, float]:
    return {p.metric: p.value for p in page.points}


def byName(page: ParsedPage) -> dict[tuple, Point]:
    return {(p.metric, p.tags): p for p in page.points}


def tags(**extra: str) -> tuple:
    return tuple(sorted({**BASE, **extra}.items()))


def textPage(*lines: str) -> str:
    return "\n".join(lines) + "\n"


def registryPage(openMetrics: bool = False) -> bytes:
    registry = CollectorRegistry()
    requests = Counter("requests", "Requests.", ["method", "code"],
                       registry=registry)
    requests.labels("GET", "200").inc(3)
    requests.labels("POST", "500").inc()
    temperature = Gauge("temperature_celsius", "Temperature.", ["room"],
                        registry=registry)
    temperature.labels('hall "A" \\ 1').set(21.5)
    latency = Histogram("latency_seconds", "Latency.", ["path"],
                        buckets=(0.1, 1.0), registry=registry)
    latency.labels("/x").observe(0.5)
    latency.labels("/x").observe(2)
    if openMetrics:
        return generate_openmetrics(registry)
    return generate_latest(registry)


# Content-Type and format selection


def test_jsonContentTypeChoosesJSON() -> None:
    """application/json (any parameters, any case) is read as JSON."""
    assert chooseSyntax(b"# x", "Application/JSON; charset=utf-8",
                        "auto") == SYNTAX_JSON
    assert chooseSyntax(b"x 1", "application/vnd.node+json",
                        "auto") == SYNTAX_JSON


def test_textPlainChoosesPrometheusText() -> None:
    """text/plain (version 0.0.4) is read as Prometheus text."""
    assert chooseSyntax(b"{}", TEXT, "auto") == SYNTAX_PROMETHEUS
    assert chooseSyntax(b"x 1", "text/plain", "auto") == SYNTAX_PROMETHEUS


def test_openMetricsContentTypeChoosesOpenMetrics() -> None:
    """application/openmetrics-text is read as OpenMetrics."""
    assert chooseSyntax(b"x 1", OPENMETRICS, "auto") == SYNTAX_OPENMETRICS


@pytest.mark.parametrize("body, expected", [
    (b'{"a": 1}', SYNTAX_JSON),
    (b"  \r\n\t[1]", SYNTAX_JSON),
    (b'\xef\xbb\xbf {"a": 1}', SYNTAX_JSON),
    (b"# HELP x\nx 1\n", SYNTAX_PROMETHEUS),
    (b"", SYNTAX_PROMETHEUS),
    (b"<html>", SYNTAX_PROMETHEUS),
])
def test_otherContentTypesSniffTheBody(body: bytes, expected: str) -> None:
    """Without a known Content-Type, a body starting with { or [ is JSON."""
    assert chooseSyntax(body, None, "auto") == expected
    assert chooseSyntax(body, "application/octet-stream", "auto") == expected


def test_formatJSONOverridesContentType() -> None:
    """format json reads JSON whatever the Content-Type says."""
    page = parse('{"a": 1}', TEXT, "json")
    assert page.syntax == SYNTAX_JSON
    assert values(page) == {"a": 1.0}


def test_formatPrometheusPicksTextOrOpenMetrics() -> None:
    """format prometheus reads OpenMetrics only if the Content-Type says so."""
    assert chooseSyntax(b"{}", "application/json",
                        "prometheus") == SYNTAX_PROMETHEUS
    assert chooseSyntax(b"x 1", None, "prometheus") == SYNTAX_PROMETHEUS
    assert chooseSyntax(b"x 1", OPENMETRICS,
                        "prometheus") == SYNTAX_OPENMETRICS


def test_unknownFormatIsAConfigurationError() -> None:
    """An unknown format raises ValueError, not PageError."""
    with pytest.raises(ValueError, match="unknown page format 'xml'"):
        parse("x 1", None, "xml")


def test_pageErrorCarriesItsReason() -> None:
    """PageError has the reason as .reason and as its text."""
    error = PageError("sample limit 5 exceeded")
    assert error.reason == "sample limit 5 exceeded"
    assert str(error) == "sample limit 5 exceeded"


# JSON objects


def test_artemisNodeBody() -> None:
    """The Artemis sample node body gives percent and SI-suffixed values."""
    page = parse(b'{"cpu":{"core1":"80%","core2":"33%"},'
                 b'"mem":{"used":"1234M","free":"6666M"}}',
                 "application/json")
    assert page.points == [
        Point("cpu.core1", BASE_TAGS, NOW, 80.0),
        Point("cpu.core2", BASE_TAGS, NOW, 33.0),
        Point("mem.used", BASE_TAGS, NOW, 1.234e9),
        Point("mem.free", BASE_TAGS, NOW, 6.666e9),
    ]
    assert page.skipped == 0
    assert page.syntax == SYNTAX_JSON


@pytest.mark.parametrize("leaf, expected", [
    (42, 42.0),
    (-1.5, -1.5),
    (True, 1.0),
    (False, 0.0),
    ("17", 17.0),
    (" -2.5e3 ", -2500.0),
    ("80%", 80.0),
    ("12.5 %", 12.5),
    ("1K", 1e3),
    ("1.1K", 1100.0),
    ("3M", 3e6),
    ("2G", 2e9),
    ("1.5T", 1.5e12),
    ("2Ki", 2048.0),
    ("3Mi", 3 * 1024.0 ** 2),
    ("1Gi", 1024.0 ** 3),
    ("1 Ti", 1024.0 ** 4),
])
def test_jsonLeavesThatAreNumbers(leaf: object, expected: float) -> None:
    """Numbers, booleans and numeric strings with a unit become values."""
    page = parse(json.dumps({"x": leaf}))
    assert page.points == [Point("x", BASE_TAGS, NOW, expected)]
    assert page.skipped == 0


@pytest.mark.parametrize("leaf", [
    None, "n/a", "", "12 MB", "1k", "5ms", "nan", "inf", "1e400",
    "1e400K", [1, 2], [], 10 ** 400,
])
def test_jsonLeavesThatAreNotNumbersAreSkipped(leaf: object) -> None:
    """null, other strings, lists and out-of-range numbers are counted."""
    page = parse(json.dumps({"x": leaf, "y": 1}))
    assert page.points == [Point("y", BASE_TAGS, NOW, 1.0)]
    assert page.skipped == 1


def test_jsonNaNAndInfinityAreSkipped() -> None:
    """The NaN and Infinity tokens Python's JSON accepts are skipped."""
    page = parse(b'{"a": NaN, "b": Infinity, "c": -Infinity, "d": 2}')
    assert values(page) == {"d": 2.0}
    assert page.skipped == 3


def test_jsonNestedObjectsAreFlattenedInOrder() -> None:
    """Nested objects join keys with dots, keeping document order."""
    page = parse('{"a": {"b": {"c": 1}, "d": 2}, "e": {}, "f": 3}')
    assert [(p.metric, p.value) for p in page.points] == [
        ("a.b.c", 1.0), ("a.d", 2.0), ("f", 3.0)]
    assert page.skipped == 0


def test_jsonDeepButDecodableDocument() -> None:
    """A document as deep as the decoder allows is flattened."""
    depth = 500
    body = '{"k": ' * depth + "1" + "}" * depth
    page = parse(body, limits=PageLimits(maxNameLength=2 * depth))
    assert page.points == [
        Point(".".join(["k"] * depth), BASE_TAGS, NOW, 1.0)]


def test_jsonTooDeepFailsThePage() -> None:
    """A document nested beyond the decoder fails the page."""
    with pytest.raises(PageError, match="nested too deeply"):
        parse("[" * 100000 + "]" * 100000)


@pytest.mark.parametrize("body", [
    '{"": 1}', '{"a b": 1}', '{"a": {"": 1}}', '{".a": 1}',
    '{"-x": 1}', '{"a\\nb": 1}', '{"caf\\u00e9": 1}', '{"": {"a": 1}}',
])
def test_jsonInvalidNamesAreSkipped(body: str) -> None:
    """A leaf whose flattened name breaks the naming rules is counted."""
    page = parse(body)
    assert page.points == []
    assert page.skipped == 1


def test_jsonNamesMayHoldDotsColonsSlashesDashes() -> None:
    """Names of letters, digits and _ . : / - are kept as they are."""
    page = parse('{"disk": {"/dev/sda-1": {"used:bytes": 5}}, "1m": 2}')
    assert values(page) == {"disk./dev/sda-1.used:bytes": 5.0, "1m": 2.0}


@pytest.mark.parametrize("body, reason", [
    (b"", "invalid JSON at line 1 column 1: Expecting value"),
    (b'{"a": 1,}', "invalid JSON at line 1 column 9"),
    (b'{"a":\n  tru}', "invalid JSON at line 2 column 3"),
    (b'{"a": 1} x', "invalid JSON at line 1 column 10: Extra data"),
    (b'{"a": "\xff"}', "not UTF-8"),
    (b"42", "must be an object or a list, not a number"),
    (b'"text"', "not a string"),
    (b"null", "not null"),
    (b"true", "not a boolean"),
])
def test_jsonGarbageFailsThePage(body: bytes, reason: str) -> None:
    """A body that is not a JSON object or list fails with a short reason."""
    with pytest.raises(PageError) as caught:
        parse(body, "application/json")
    assert reason in caught.value.reason
    assert "\n" not in caught.value.reason


def test_jsonWithByteOrderMark() -> None:
    """A UTF-8 byte order mark before JSON is accepted."""
    assert values(parse(b'\xef\xbb\xbf{"a": 1}')) == {"a": 1.0}


# JSON lists of Meetr points


def test_jsonPointsList() -> None:
    """A list of Meetr points keeps metric, ts, value and tags."""
    page = parse(json.dumps([
        {"metric_id": "temp", "ts": "2003-12-18 12:18:18+0530",
         "value": 21.5, "tags": {"room": "hall"}},
        {"metric_id": "hum", "value": "40%"},
    ]))
    assert page.points == [
        Point("temp", tags(room="hall"), 1071730098000, 21.5),
        Point("hum", BASE_TAGS, NOW, 40.0),
    ]
    assert page.skipped == 0


@pytest.mark.parametrize("ts, expected", [
    ("2003-12-18T06:48:18Z", 1071730098000),
    ("2003-12-18T06:48:18.123456", 1071730098123),
    ("2003-12-18 06:48:18", 1071730098000),
    ("2003-12-18T12:18:18+05:30", 1071730098000),
    ("2003-12-18", 1071705600000),
    (1071730098, 1071730098000),
    (1071730098.5, 1071730098500),
    (1071730098123, 1071730098123),
    ("1071730098", 1071730098000),
    ("1071730098123", 1071730098123),
    (None, NOW),
])
def test_jsonPointTimestamps(ts: object, expected: int) -> None:
    """ts may be ISO 8601 (naive is UTC), epoch s or ms, or absent."""
    item: dict = {"metric_id": "m", "value": 1}
    if ts is not None:
        item["ts"] = ts
    page = parse(json.dumps([item]))
    assert [p.ts_ms for p in page.points] == [expected]


@pytest.mark.parametrize("item", [
    42, "m", None, [1], {},
    {"value": 1},
    {"metric_id": 7, "value": 1},
    {"metric_id": "", "value": 1},
    {"metric_id": "a b", "value": 1},
    {"metric_id": "m"},
    {"metric_id": "m", "value": None},
    {"metric_id": "m", "value": "high"},
    {"metric_id": "m", "value": 1, "ts": "yesterday"},
    {"metric_id": "m", "value": 1, "ts": True},
    {"metric_id": "m", "value": 1, "ts": "99999-01-01"},
    {"metric_id": "m", "value": 1, "ts": 1e300},
    {"metric_id": "m", "value": 1, "ts": [1]},
    {"metric_id": "m", "value": 1, "tags": ["a"]},
    {"metric_id": "m", "value": 1, "tags": {"a": 1}},
    {"metric_id": "m", "value": 1, "tags": {"a b": "x"}},
    {"metric_id": "m", "value": 1, "tags": {"a": "x\ny"}},
])
def test_jsonPointsThatCannotBeUsedAreSkipped(item: object) -> None:
    """Items without a usable metric, value, ts or tags are counted."""
    page = parse(json.dumps([item, {"metric_id": "ok", "value": 1}]))
    assert [p.metric for p in page.points] == ["ok"]
    assert page.skipped == 1


def test_jsonPointTagsMeetBaseTags() -> None:
    """A point's tags collide with base tags like scraped labels do."""
    page = parse(json.dumps([{"metric_id": "m", "value": 1,
                              "tags": {"node": "other", "dc": "par"}}]))
    assert page.points[0].tags == tags(exported_node="other", dc="par")


# Prometheus text


def test_registryPage() -> None:
    """A page of generate_latest gives every sample under its own name."""
    page = parse(registryPage(), TEXT)
    assert page.syntax == SYNTAX_PROMETHEUS
    assert page.skipped == 0
    points = byName(page)
    get = lambda metric, **labels: points[(metric, tags(**labels))].value
    assert get("requests_total", method="GET", code="200") == 3.0
    assert get("requests_total", method="POST", code="500") == 1.0
    assert get("temperature_celsius", room='hall "A" \\ 1') == 21.5
    assert get("latency_seconds_bucket", path="/x", le="0.1") == 0.0
    assert get("latency_seconds_bucket", path="/x", le="1.0") == 1.0
    assert get("latency_seconds_bucket", path="/x", le="+Inf") == 2.0
    assert get("latency_seconds_count", path="/x") == 2.0
    assert get("latency_seconds_sum", path="/x") == 2.5
    assert get("requests_created", method="GET", code="200") > 1e9
    assert get("latency_seconds_created", path="/x") > 1e9
    assert len(page.points) == 11
    assert {p.ts_ms for p in page.points} == {NOW}


def test_textTimestampsAreMilliseconds() -> None:
    """A text page's timestamps (ms) are kept exactly."""
    page = parse(textPage("a 1 1700000000123", 'b{x="y"} 2 -5',
                          "c 3"), TEXT)
    assert [(p.metric, p.ts_ms) for p in page.points] == [
        ("a", 1700000000123), ("b", -5), ("c", NOW)]


@pytest.mark.parametrize("value", ["NaN", "+Inf", "-Inf"])
def test_textNonFiniteValuesAreSkipped(value: str) -> None:
    """NaN and +/-Inf samples are counted in skipped, not stored."""
    page = parse(textPage(f'a{{x="1"}} {value}', "b 1"), TEXT)
    assert values(page) == {"b": 1.0}
    assert page.skipped == 1


def test_textCounterKeepsTheNameItIsGiven() -> None:
    """A counter written without _total keeps its name."""
    page = parse(textPage("# TYPE jobs counter", "jobs 4",
                          "# TYPE done_total counter", "done_total 5"), TEXT)
    assert values(page) == {"jobs": 4.0, "done_total": 5.0}


def test_textLabelEscapes() -> None:
    """Escaped quotes and backslashes in label values are unescaped."""
    page = parse(textPage(r'a{x="q\"b\\s}"} 1'), TEXT)
    assert page.points[0].tags == tags(x='q"b\\s}')


def test_textLabelValueWithNewlineIsSkipped() -> None:
    """A label value holding a newline (a control character) is counted."""
    page = parse(textPage(r'a{x="two\nlines"} 1', "b 2"), TEXT)
    assert values(page) == {"b": 2.0}
    assert page.skipped == 1


def test_textNameStartingWithColonIsSkipped() -> None:
    """A Prometheus name meetrd cannot store (leading colon) is counted."""
    page = parse(textPage(":recorded 1", "b 2"), TEXT)
    assert values(page) == {"b": 2.0}
    assert page.skipped == 1


def test_textBlankLinesCommentsTabsAndCRLF() -> None:
    """Blank lines, comments, tabs and CRLF line ends are all accepted."""
    page = parse("# just a comment\r\n\r\na\t1\r\n  b{x=\"1\"}  2  \r\n",
                 TEXT)
    assert values(page) == {"a": 1.0, "b": 2.0}


def test_emptyTextPage() -> None:
    """An empty Prometheus page gives no points and no error."""
    page = parse(b"", TEXT)
    assert page.points == [] and page.skipped == 0


@pytest.mark.parametrize("body, where", [
    (b"<html><body>Not Found</body></html>\n", "line 1"),
    (b"a 1\nb{x=\"1\" 2\n", "line 2"),
    (b"a 1\n\nc{x=1} 3\n", "line 3"),
    (b"a one\n", "line 1"),
    (b'{"cpu": 1}\n', "line 1"),
    (b"a\n", "line 1"),
])
def test_textGarbageFailsThePage(body: bytes, where: str) -> None:
    """A line the library refuses fails the page, naming the line."""
    with pytest.raises(PageError) as caught:
        parse(body, TEXT)
    reason = caught.value.reason
    assert reason.startswith(f"not a Prometheus text page: {where}: ")
    assert "\n" not in reason and len(reason) < 260


def test_textNotUTF8FailsThePage() -> None:
    """A Prometheus body that is not UTF-8 fails the page."""
    with pytest.raises(PageError, match="not UTF-8 text: byte 2"):
        parse(b"a \xff\xfe 1\n", TEXT)


def test_publicParserFallbackGivesTheSamePoints(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the library's line parser, its public parser gives the same."""
    body = registryPage()
    expected = parse(body, TEXT)
    monkeypatch.setattr(prompage, "_LIBRARY_SAMPLE_LINE", None)
    fallback = parse(body, TEXT)
    assert fallback == expected
    with pytest.raises(PageError, match="not a Prometheus text page"):
        parse(b"<html>\n", TEXT)


# OpenMetrics


def test_openMetricsRegistryPage() -> None:
    """An OpenMetrics page of a registry gives the same series as text."""
    text = parse(registryPage(), TEXT)
    om = parse(registryPage(openMetrics=True), OPENMETRICS)
    assert om.syntax == SYNTAX_OPENMETRICS
    assert set(byName(om)) == set(byName(text))
    strip = lambda page: {k: p.value for k, p in byName(page).items()
                          if not k[0].endswith("_created")}
    assert strip(om) == strip(text)


def test_openMetricsTimestampsAreSeconds() -> None:
    """OpenMetrics timestamps (seconds, maybe fractional) become ms."""
    page = parse(textPage(
        "# TYPE a gauge", "a 1 1700000000",
        "# TYPE b gauge", 'b{x="1"} 2 1700000000.123456789',
        "# TYPE c counter", 'c_total 3 1700000000.5 # {trace="t1"} 1.0',
        "# TYPE d gauge", "d 4 1.7e9",
        "# TYPE e gauge", "e 5",
        "# EOF"), OPENMETRICS)
    assert [(p.metric, p.ts_ms, p.value) for p in page.points] == [
        ("a", 1700000000000, 1.0),
        ("b", 1700000000123, 2.0),
        ("c_total", 1700000000500, 3.0),
        ("d", 1700000000000, 4.0),
        ("e", NOW, 5.0),
    ]


def test_openMetricsNaNIsSkipped() -> None:
    """An OpenMetrics gauge of NaN is counted, not stored."""
    page = parse(textPage("# TYPE a gauge", "a NaN", "# TYPE b gauge",
                          "b +Inf", "# TYPE c gauge", "c 1", "# EOF"),
                 OPENMETRICS)
    assert values(page) == {"c": 1.0}
    assert page.skipped == 2


@pytest.mark.parametrize("body, words", [
    ("# TYPE a gauge\na 1\n", "Missing # EOF"),
    ("# TYPE a gauge\n\na 1\n# EOF\n", "blank line"),
    ("a{x=1} 1\n# EOF\n", ""),
    ("# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_count 1\nh_sum 1\n# EOF\n",
     "+Inf bucket missing"),
])
def test_openMetricsGarbageFailsThePage(body: str, words: str) -> None:
    """A page the OpenMetrics parser refuses fails with its reason."""
    with pytest.raises(PageError) as caught:
        parse(body, OPENMETRICS)
    assert caught.value.reason.startswith("not an OpenMetrics page: ")
    assert words in caught.value.reason


# Tags


def test_scrapedLabelCollidingWithBaseTagIsExported() -> None:
    """Base tags win; the node's label of that key becomes exported_<key>."""
    page = parse(textPage('up{node="self",job="x",zone="a"} 1'), TEXT)
    assert page.points[0].tags == tags(exported_node="self",
                                       exported_job="x", zone="a")


def test_exportedKeyThatIsTakenIsPrefixedAgain() -> None:
    """An exported_ key already taken is prefixed again, as Prometheus does."""
    page = parse(textPage('up{node="self",exported_node="proxy"} 1'), TEXT)
    assert page.points[0].tags == tags(exported_node="proxy",
                                       exported_exported_node="self")


def test_emptyLabelValuesAreDropped() -> None:
    """A label with an empty value is absent, as in Prometheus."""
    page = parse(textPage('up{a="",b="1",node=""} 1'), TEXT)
    assert page.points[0].tags == tags(b="1")


def test_noBaseTags() -> None:
    """Without base tags, points carry the scraped labels only."""
    page = parse(textPage('up{b="2",a="1"} 1', "x 2"), TEXT, base={})
    assert [p.tags for p in page.points] == [(("a", "1"), ("b", "2")), ()]


# Limits


def samplesPage(count: int, syntax: str) -> tuple[bytes, str]:
    if syntax == SYNTAX_JSON:
        return (json.dumps({f"m{i}": i for i in range(count)}).encode(),
                "application/json")
    if syntax == SYNTAX_OPENMETRICS:
        body = "".join(f"# TYPE m{i} gauge\nm{i} {i}\n" for i in range(count))
        return (body + "# EOF\n").encode(), OPENMETRICS
    return "".join(f'm{{i="{i}"}} {i}\n' for i in range(count)).encode(), TEXT


@pytest.mark.parametrize("syntax", [SYNTAX_PROMETHEUS, SYNTAX_OPENMETRICS,
                                    SYNTAX_JSON])
def test_sampleLimit(syntax: str) -> None:
    """maxSamples points pass; one more fails the whole page."""
    limits = PageLimits(maxSamples=5)
    body, contentType = samplesPage(5, syntax)
    assert len(parse(body, contentType, limits=limits).points) == 5
    body, contentType = samplesPage(6, syntax)
    with pytest.raises(PageError) as caught:
        parse(body, contentType, limits=limits)
    assert caught.value.reason == "sample limit 5 exceeded"


def test_skippedSamplesDoNotCountTowardTheSampleLimit() -> None:
    """Only stored points count toward maxSamples."""
    page = parse(textPage("a 1", "b NaN", "c NaN", "d 2"), TEXT,
                 limits=PageLimits(maxSamples=2))
    assert values(page) == {"a": 1.0, "d": 2.0}
    assert page.skipped == 2


@pytest.mark.parametrize("makeBody, contentType", [
    (lambda name: f"{name} 1\n", TEXT),
    (lambda name: f"# TYPE {name} gauge\n{name} 1\n# EOF\n", OPENMETRICS),
    (lambda name: json.dumps({name: 1}), "application/json"),
    (lambda name: json.dumps([{"metric_id": name, "value": 1}]),
     "application/json"),
])
def test_nameLengthLimit(makeBody, contentType: str) -> None:
    """A name of maxNameLength passes; one character more fails the page."""
    limits = PageLimits(maxNameLength=120)
    name = "n" * 120
    assert values(parse(makeBody(name), contentType,
                        limits=limits)) == {name: 1.0}
    with pytest.raises(PageError) as caught:
        parse(makeBody(name + "x"), contentType, limits=limits)
    reason = caught.value.reason
    assert reason.startswith("metric name longer than 120 characters: 'nnn")
    assert reason.endswith("...")
    assert len(reason) < 140


def test_nameLengthLimitDefault() -> None:
    """The default name limit is 200 characters."""
    assert len(parse(f"{'a' * 200} 1\n", TEXT).points) == 1
    with pytest.raises(PageError, match="longer than 200"):
        parse(f"{'a' * 201} 1\n", TEXT)


def labelled(metric: str, labels: dict[str, str]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{metric}{{{inner}}} 1\n"


def test_labelNameLengthLimit() -> None:
    """A label name of maxLabelNameLength passes; longer fails the page."""
    limits = PageLimits(maxLabelNameLength=10)
    page = parse(labelled("m", {"k" * 10: "v"}), TEXT, limits=limits)
    assert page.points[0].tags == tags(kkkkkkkkkk="v")
    with pytest.raises(PageError) as caught:
        parse(labelled("m", {"k" * 11: "v"}), TEXT, limits=limits)
    assert caught.value.reason == (
        "label name longer than 10 characters on metric 'm'")


def test_labelValueLengthLimit() -> None:
    """A label value of maxLabelValueLength passes; longer fails the page."""
    limits = PageLimits(maxLabelValueLength=16)
    assert parse(labelled("m", {"k": "v" * 16}), TEXT, limits=limits).points
    with pytest.raises(PageError) as caught:
        parse(labelled("m", {"k": "v" * 17}), TEXT, limits=limits)
    assert caught.value.reason == (
        "label value longer than 16 characters on metric 'm'")


def test_labelValueLengthLimitDefault() -> None:
    """The default label value limit is 1024 characters."""
    assert parse(labelled("m", {"k": "v" * 1024}), TEXT).points
    with pytest.raises(PageError, match="longer than 1024"):
        parse(labelled("m", {"k": "v" * 1025}), TEXT)


def test_labelCountLimit() -> None:
    """maxLabels scraped labels pass (base tags aside); one more fails."""
    limits = PageLimits(maxLabels=3)
    three = {"a": "1", "b": "2", "c": "3"}
    page = parse(labelled("m", three), TEXT, limits=limits)
    assert page.points[0].tags == tags(**three)
    with pytest.raises(PageError) as caught:
        parse(labelled("m", {**three, "d": "4"}), TEXT, limits=limits)
    assert caught.value.reason == "more than 3 labels on metric 'm'"


def test_labelCountLimitDefault() -> None:
    """The default is 32 labels on a sample."""
    labels = {f"l{i}": "v" for i in range(32)}
    assert parse(labelled("m", labels), TEXT).points
    with pytest.raises(PageError, match="more than 32 labels"):
        parse(labelled("m", {**labels, "extra": "v"}), TEXT)


def test_labelLimitsApplyToJSONPointTags() -> None:
    """The label limits apply to the tags of JSON points too."""
    limits = PageLimits(maxLabels=1, maxLabelValueLength=3)
    ok = [{"metric_id": "m", "value": 1, "tags": {"a": "xyz"}}]
    assert parse(json.dumps(ok), limits=limits).points
    for tagsOfItem in ({"a": "x", "b": "y"}, {"a": "wxyz"}):
        bad = [{"metric_id": "m", "value": 1, "tags": tagsOfItem}]
        with pytest.raises(PageError):
            parse(json.dumps(bad), limits=limits)


def test_longMetricNameIsCutInTheReason() -> None:
    """The offending metric is cut to about 80 characters in reasons."""
    name = "m" * 500
    with pytest.raises(PageError) as caught:
        parse(labelled(name, {"k": "v" * 2000}), TEXT)
    assert f"'{'m' * 80}'..." in caught.value.reason
    assert len(caught.value.reason) < 150


def test_pageLimitsDefaultsAndChecks() -> None:
    """PageLimits has the documented defaults and refuses negative ones."""
    assert PageLimits() == PageLimits(50000, 200, 100, 1024, 32)
    with pytest.raises(ValueError, match="maxSamples"):
        PageLimits(maxSamples=-1)
    with pytest.raises(ValueError, match="maxLabels"):
        PageLimits(maxLabels=True)


# The per-target cache


def hunts() -> list[str]:
    """Successive pages of one target: values move, series come and go."""
    return [
        textPage("# TYPE a counter", 'a_total{x="1"} 1', 'a_total{x="2"} 2',
                 "up 1", 'b{x="q\\"}"} 3 1700000000001',
                 'c{x="1"} 5 } 5 7', "t\t9"),
        textPage("# TYPE a counter", 'a_total{x="1"} 11', 'a_total{x="2"} NaN',
                 "up 0", 'b{x="q\\"}"} 4 1700000000002',
                 'c{x="1"} 5 } 9 7', "t\t10", 'new{y="1"} 1.5'),
        textPage('a_total{x="1"} 12', "up 1   ", 'new{y="1"} 2.5e3',
                 "gone_soon 1"),
    ]


def test_cachedReadsEqualUncachedReads() -> None:
    """A page read with a warm cache gives exactly what it gives without."""
    cache = PageCache()
    for body in hunts() * 2:
        assert parse(body, TEXT, cache=cache) == parse(body, TEXT)


VALUE_TEXTS = st.one_of(
    st.integers(-10**30, 10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["NaN", "+Inf", "-Inf", "inf", "1e3", "+5", "-0",
                     "1_000", "0x10", "", "1.5.2", "\u0661\u0662",
                     "12 1700000000001", "7\t8", "9  "]),
    st.text(alphabet="0123456789+-.eE_xInfa \t", max_size=8))


@settings(max_examples=300, deadline=None)
@given(VALUE_TEXTS)
def test_cachedValuesReadAsTheLibraryReadsThem(value: str) -> None:
    """
    Whatever text follows a cached series, the cached read gives what the
    library's own read gives: the same points, or a failed page.
    """
    def read(cache):
        try:
            return parse(textPage(f'm{{x="1"}} {value}'), TEXT, cache=cache)
        except PageError:
            return "failed"

    cache = PageCache()
    parse(textPage('m{x="1"} 1'), TEXT, cache=cache)
    assert len(cache) == 1
    assert read(cache) == read(None)


SERIES = ['a{x="1"}', 'a{x="2"}', "up", 'b{x="q\\"}"}', 'c{x="1"} 5 }',
          "t\t", ":bad", 'd{x="}"}', "e}f", 'g{x="1",y="a b"}', "h{}", "#",
          "", 'i{x="\u00e9"}']
SERIES_TEXTS = st.sampled_from(SERIES)
# Lines, plain ones (no blank around, one space, no timestamp) most often.
LINE_TEXTS = st.tuples(
    st.sampled_from(["", "", "", " ", "\t", "\u00a0"]), SERIES_TEXTS,
    st.sampled_from([" ", " ", " ", "  ", "\t"]), VALUE_TEXTS,
    st.sampled_from(["", "", "", " ", "\r", " 1700000000001"])
).map("".join)


def readOrFail(body: str, cache: PageCache | None,
               limits: PageLimits | None = None) -> object:
    """A page's points, or the reason it failed."""
    try:
        return parse(body, TEXT, cache=cache, limits=limits)
    except PageError as e:
        return e.reason


def assertReadAsCold(body: str, cache: PageCache,
                     limits: PageLimits) -> None:
    """
    Reading C{body} with C{cache} gives what a read without a cache gives,
    and leaves C{cache} as a first read with a cache of its own would.
    """
    read = readOrFail(body, cache, limits)
    assert read == readOrFail(body, None, limits)
    if not isinstance(read, str):
        alone = PageCache()
        readOrFail(body, alone, limits)
        assert cache.series == alone.series


@settings(max_examples=400, deadline=None)
@given(st.lists(LINE_TEXTS, max_size=12), st.lists(LINE_TEXTS, max_size=12),
       st.one_of(st.integers(10, 14), st.just(50000)))
def test_warmReadsOfWholePagesEqualColdReads(
        first: list[str], lines: list[str], maxSamples: int) -> None:
    """
    Any page read with the cache its previous pages left (a page of plain
    lines of cached series goes through the shorter read) gives the
    same points, skipped count or failure as without a cache, and leaves
    the cache a cold read of it would.
    """
    limits = PageLimits(maxSamples=maxSamples)
    body = textPage(*lines)
    cache = PageCache()
    # Every series whose line is a sample: nine of them cached (a line
    # split elsewhere by the library, or with a tab, is never cached).
    readOrFail(textPage(*(f"{series} 1" for series in SERIES
                          if series not in ("e}f", ""))), cache, limits)
    assert len(cache) == 9
    readOrFail(textPage(*first), cache, limits)
    assertReadAsCold(body, cache, limits)


@settings(max_examples=300, deadline=None)
@given(st.lists(LINE_TEXTS, max_size=12), st.lists(LINE_TEXTS, max_size=12),
       st.one_of(st.integers(10, 14), st.just(50000)))
def test_firstReadsThroughSharedLinesEqualColdReads(
        first: list[str], lines: list[str], maxSamples: int) -> None:
    """
    A new target's first page, read with a cache that shares the series
    parts other targets' pages taught (with other base tags), gives the
    same points, skipped count or failure as without a cache, and leaves
    its cache as a cold read with a cache of its own would.
    """
    limits = PageLimits(maxSamples=maxSamples)
    shared = SeriesLines()
    other = PageCache(shared)
    parse(textPage(*(f"{series} 1" for series in SERIES
                     if series not in ("e}f", ""))), TEXT,
          base={"node": "other", "job": "nodes"}, limits=limits, cache=other)
    readOrFail(textPage(*first), other, limits)
    assert len(shared) >= 9
    body = textPage(*lines)
    assertReadAsCold(body, PageCache(shared), limits)


def test_sharedLinesSpareTheLibrarysLineParser(monkeypatch) -> None:
    """
    The first page of a second target whose lines a first target's page
    had is read without the library's line parser; its tags are its own.
    """
    lines = [f'm{{slot="{i}",mode="idle"}} {i}' for i in range(500)]
    shared = SeriesLines()
    parse(textPage(*lines), TEXT, cache=PageCache(shared))
    assert len(shared) == 500
    calls = []
    library = prompage._LIBRARY_SAMPLE_LINE
    monkeypatch.setattr(prompage, "_LIBRARY_SAMPLE_LINE",
                        lambda line: calls.append(line) or library(line))
    page = parse(textPage(*lines, "new 1"), TEXT, base={"node": "b"},
                 cache=PageCache(shared))
    assert calls == ["new 1"]
    assert page.points[7] == Point(
        "m", (("mode", "idle"), ("node", "b"), ("slot", "7")), NOW, 7.0)
    assert len(page.points) == 501


def test_sharedLinesAreBounded() -> None:
    """Series lines start afresh once the limit is reached."""
    shared = SeriesLines(limit=3)
    parse(textPage(*(f'm{{x="{i}"}} 1' for i in range(3))), TEXT,
          cache=PageCache(shared))
    assert len(shared) == 3
    parse(textPage('m{x="9"} 1'), TEXT, cache=PageCache(shared))
    assert len(shared) == 1


@pytest.mark.parametrize("line", [
    'c{x="1"} 5 } 3', 'new{y="1"} 2', 'e}f 1', " 1", 'a{x="1"} 1\r',
    ' a{x="1"} 1', 'a{x="1"} 1 ', 'a{x="1"}  1', 'a{x="1"}\t1', "up\t1",
    'a{x="1"} 1_0', 'a{x="1"} 0x10', 'a{x="1"} NaN', "up +Inf", ":bad 2",
    ":bad x", 'b{x="q\\"}"} 4', 'd{x="}"} 5', 'a{x="1"} 1 }', "h{} 3",
    'a{x="1"} 1 1700000000001', "\u00a0up 1"])
def test_warmReadOfAnOddLineEqualsColdRead(line: str) -> None:
    """
    A line that is not plain, or whose series is not cached, beside
    cached plain lines, is read as without a cache.
    """
    cached = ['a{x="1"} 1', "up 1", ":bad 1", 'b{x="q\\"}"} 1',
              'd{x="}"} 1', "h{} 1", 'c{x="1"} 5 } 1']
    cache = PageCache()
    parse(textPage(*cached), TEXT, cache=cache)
    assert len(cache) == 6
    body = textPage(*cached, line)
    assert readOrFail(body, cache) == readOrFail(body, None)
    assert readOrFail(body, cache) == readOrFail(body, None)


def test_plainWarmPageIsReadWithoutSplittingLines(monkeypatch) -> None:
    """
    A page whose every sample line is plain and cached is read without
    splitting its lines as the library would; one line with a timestamp
    sends the whole page back to the line-by-line reader.
    """
    lines = [f'm{{slot="{i}"}} {i}.5' for i in range(1000)]
    cache = PageCache()
    parse(textPage("# TYPE m gauge", *lines), TEXT, cache=cache)
    monkeypatch.setattr(prompage, "_seriesKey", None)
    page = parse(textPage("# TYPE m gauge", "", *lines), TEXT, cache=cache)
    assert len(page.points) == 1000
    assert page.points[999] == Point(
        "m", (("job", "nodes"), ("node", "artemis"), ("slot", "999")),
        NOW, 999.5)
    with pytest.raises(TypeError):
        parse(textPage(*lines[:-1], lines[-1] + " 1700000000001"), TEXT,
              cache=cache)


def test_plainWarmPageKeepsTheSampleLimit() -> None:
    """
    A warm plain page of one sample too many (a cached series twice)
    fails as a cold one does; one at the limit is read.
    """
    limits = PageLimits(maxSamples=6)
    lines = [f'm{{slot="{i}"}} 1' for i in range(6)]
    cache = PageCache()
    parse(textPage(*lines), TEXT, cache=cache, limits=limits)
    assert len(parse(textPage(*lines), TEXT, cache=cache,
                     limits=limits).points) == 6
    with pytest.raises(PageError, match="sample limit 6 exceeded"):
        parse(textPage(*lines, lines[0]), TEXT, cache=cache, limits=limits)


def test_longLinesOfBracesReadAsCold() -> None:
    """
    Lines of a hundred thousand braces and spaces beside a cached series
    are refused or read as without a cache.
    """
    cache = PageCache()
    parse(textPage('a{x="1"} 1'), TEXT, cache=cache)
    for line in ("} " * 100_000, 'a{x="1"}' + " }" * 100_000,
                 "a" + "} a" * 100_000 + " 1"):
        body = textPage('a{x="1"} 2', line)
        assert readOrFail(body, cache) == readOrFail(body, None)


def test_cacheHoldsTheLastPageOnly() -> None:
    """The cache keeps the last page's series and forgets the rest."""
    cache = PageCache()
    for body in hunts():
        parse(body, TEXT, cache=cache)
    assert sorted(cache.series) == [
        'a_total{x="1"}', "gone_soon", 'new{y="1"}', "up"]


def test_cacheDoesNotServeAMisleadingSplit() -> None:
    """A line whose series part the library splits elsewhere is not cached."""
    cache = PageCache()
    parse(textPage('c{x="1"} 5 } 5 7'), TEXT, cache=cache)
    assert len(cache) == 0
    body = textPage('c{x="1"} 5 } 9 7')
    page = parse(body, TEXT, cache=cache)
    assert page == parse(body, TEXT)
    assert [(p.value, p.ts_ms) for p in page.points] == [(5.0, 7)]


def test_cacheStartsAfreshWhenLimitsChange() -> None:
    """A series cached under loose limits is checked again under new ones."""
    cache = PageCache()
    body = labelled("m", {"a": "1", "b": "2"})
    parse(body, TEXT, cache=cache)
    with pytest.raises(PageError, match="more than 1 labels"):
        parse(body, TEXT, limits=PageLimits(maxLabels=1), cache=cache)


def test_cacheStartsAfreshWhenBaseTagsChange() -> None:
    """Changing a target's base tags changes the tags of cached series."""
    cache = PageCache()
    body = labelled("m", {"a": "1"})
    parse(body, TEXT, cache=cache)
    page = parse(body, TEXT, base={"node": "b"}, cache=cache)
    assert page.points[0].tags == (("a", "1"), ("node", "b"))


def test_cacheServesSkippedSeriesAndStillChecksValues() -> None:
    """A cached unusable series is skipped; a bad value still fails."""
    cache = PageCache()
    parse(textPage(":bad 1"), TEXT, cache=cache)
    page = parse(textPage(":bad 2"), TEXT, cache=cache)
    assert page.points == [] and page.skipped == 1
    with pytest.raises(PageError, match="line 1"):
        parse(textPage(":bad two"), TEXT, cache=cache)


def test_failedPageKeepsTheCache() -> None:
    """A page that fails leaves the cache of the last good page."""
    cache = PageCache()
    parse(textPage('a{x="1"} 1'), TEXT, cache=cache)
    with pytest.raises(PageError):
        parse(textPage('a{x="1"} 1', "<html>"), TEXT, cache=cache)
    assert list(cache.series) == ['a{x="1"}']


def test_cacheIsIgnoredForOtherSyntaxes() -> None:
    """JSON and OpenMetrics pages read the same with or without a cache."""
    cache = PageCache()
    assert values(parse('{"a": 1}', cache=cache)) == {"a": 1.0}
    om = parse(registryPage(openMetrics=True), OPENMETRICS, cache=cache)
    assert len(om.points) == 11
    assert len(cache) == 0


# Helpers


def test_timestampHelperOfJSONPages() -> None:
    """The JSON pages' ts parser reads ISO 8601 and epoch s/ms."""
    parseTs = jsonpage._parseTimestamp
    assert parseTs("2003-12-18 12:18:18+0530") == 1071730098000
    assert parseTs("1970-01-01T00:00:00.0015Z") == 1
    assert parseTs(-1.5) == -1500
    assert parseTs(1e11) == 100000000000
    for bad in (True, "soon", math.nan, math.inf, {}):
        with pytest.raises(ValueError):
            parseTs(bad)
