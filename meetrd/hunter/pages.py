"""
Hunted pages turned into points.

A node answers a hunt with a page in one of three syntaxes: Prometheus text
(exposition format 0.0.4), OpenMetrics 1.0, or JSON.  L{parsePage} reads
any of them into L{meetrd.points.Point}s; it is a pure function (no I/O,
no Twisted).

The rules every syntax shares (tags, names, limits) are those of
L{meetrd.hunter.pagebuild}, whose L{PageBuilder} each reader fills;
L{PageCache}, L{PageError}, L{PageLimits} and L{ParsedPage} are defined
there and may be imported from here as well.

Choosing the syntax (L{chooseSyntax}): C{format} C{"json"} forces JSON;
C{"prometheus"} reads OpenMetrics when the Content-Type says
C{application/openmetrics-text} and Prometheus text otherwise; C{"auto"}
goes by the Content-Type (C{application/json} or C{*/*+json}: JSON;
C{text/plain}: Prometheus text; C{application/openmetrics-text}:
OpenMetrics) and, for any other or no Content-Type, sniffs the body: JSON
when its first non-blank byte is C{{} or C{[}, Prometheus text otherwise.
"""

from __future__ import annotations

import re
from typing import Mapping

from meetrd.hunter import jsonpage, prompage
from meetrd.hunter.pagebuild import (
    DEFAULT_LIMITS,
    PageBuilder,
    PageCache,
    PageError,
    PageLimits,
    ParsedPage,
)

__all__ = [
    "DEFAULT_LIMITS", "FORMATS", "PageCache", "PageError", "PageLimits",
    "ParsedPage", "SYNTAX_JSON", "SYNTAX_OPENMETRICS", "SYNTAX_PROMETHEUS",
    "chooseSyntax", "parsePage",
]

FORMATS = ("auto", "json", "prometheus")
"""The values of a target's C{format} setting."""

SYNTAX_JSON = "json"
SYNTAX_PROMETHEUS = "prometheus-text"
SYNTAX_OPENMETRICS = "openmetrics"

_LEADING_BLANKS = re.compile(rb"(?:\xef\xbb\xbf)?[ \t\r\n]*")


def _mediaType(contentType: str | None) -> str:
    if not contentType:
        return ""
    return contentType.split(";", 1)[0].strip().lower()


def chooseSyntax(body: bytes, contentType: str | None, format: str) -> str:
    """
    Which reader a page needs (see this module's docstring).

    @param body: the page's body.
    @param contentType: the response's Content-Type header, or C{None}.
    @param format: the target's format, one of L{FORMATS}.
    @return: L{SYNTAX_JSON}, L{SYNTAX_PROMETHEUS} or L{SYNTAX_OPENMETRICS}.
    @raise ValueError: for an unknown C{format} (a configuration error, not
        a problem of the page).
    """
    media = _mediaType(contentType)
    if format == "json":
        return SYNTAX_JSON
    if format == "prometheus":
        if media == "application/openmetrics-text":
            return SYNTAX_OPENMETRICS
        return SYNTAX_PROMETHEUS
    if format != "auto":
        raise ValueError(f"unknown page format {format!r}: expected one of "
                         f"{', '.join(FORMATS)}")
    if media == "application/json" or media.endswith("+json"):
        return SYNTAX_JSON
    if media == "text/plain":
        return SYNTAX_PROMETHEUS
    if media == "application/openmetrics-text":
        return SYNTAX_OPENMETRICS
    start = _LEADING_BLANKS.match(body).end()  # type: ignore[union-attr]
    if body[start:start + 1] in (b"{", b"["):
        return SYNTAX_JSON
    return SYNTAX_PROMETHEUS


def parsePage(body: bytes, contentType: str | None, format: str = "auto", *,
              baseTags: Mapping[str, str], defaultTsMs: int,
              limits: PageLimits = DEFAULT_LIMITS,
              cache: PageCache | None = None) -> ParsedPage:
    """
    Read a hunted page into points.

    @param body: the response body, as received.
    @param contentType: the response's Content-Type header, or C{None}.
    @param format: the target's format: C{"auto"}, C{"json"} or
        C{"prometheus"} (see L{chooseSyntax}).
    @param baseTags: the target's tags (C{node}, C{job}, configured
        labels); they win over scraped labels of the same key.
    @param defaultTsMs: the timestamp, in ms since the epoch, of points
        whose page gives none (normally the time of the hunt).
    @param limits: what the page may hold.
    @param cache: this target's L{PageCache}, to read Prometheus text pages
        faster on repeated hunts; C{None} reads without one.
    @return: the points and the count of skipped samples.
    @raise PageError: when the page cannot be used at all (syntax errors,
        limits); no point of it is returned.
    @raise ValueError: for an unknown C{format}.
    """
    syntax = chooseSyntax(body, contentType, format)
    builder = PageBuilder(baseTags, defaultTsMs, limits)
    if syntax == SYNTAX_JSON:
        jsonpage.readJSON(body, builder)
    else:
        text = prompage.decodeText(body)
        if syntax == SYNTAX_OPENMETRICS:
            prompage.readOpenMetrics(text, builder)
        else:
            prompage.readText(text, builder, cache)
    return builder.finish(syntax)
