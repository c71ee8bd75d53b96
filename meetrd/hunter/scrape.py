"""
Scraping: the pipeline of one page, and one target's schedule.

L{Scraper.scrape} fetches, parses and writes one page as a
L{ScrapeOrder} says; a scheduled scrape and an on-demand fetch
(L{meetrd.hunter.ondemand}) both go through it.

A L{ScrapeLoop} drives one target with a C{LoopingCall}: the first scrape
falls at the target's stable offset within its interval, then one every
interval.  A C{LoopingCall} waits for the Deferred a call returns, so two
fetches of one target never overlap; a scrape that overruns skips the
ticks it missed.  A failed fetch is retried with backoff while the next
tick is still far enough away.

Storing a scrape's points is not part of that wait while few writes of
the target are behind (L{WRITES_BEHIND}): a slow moment of Cassandra (a
node busy compacting or collecting garbage) delays the points, not the
next scrape.  Past that, the schedule waits for the store, and skips
ticks, rather than keep more points of one target in memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from twisted.internet.defer import Deferred, DeferredList, DeferredSemaphore
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger

from meetrd.hunter.fetch import FetchError, Fetcher
from meetrd.hunter.pagebuild import SeriesLines
from meetrd.hunter.pages import PageCache, PageError, PageLimits, parsePage
from meetrd.hunter.targets import Target, startOffset
from meetrd.points import Point, Tags, freezeTags
from meetrd.store import StoreUnavailable
from meetrd.writeplan import ShapeMemo

FIRST_BACKOFF = 0.25
ON_TIME_SHARE = 0.1
# How many writes of one target's scrapes may be in flight while its next
# scrape goes ahead.
WRITES_BEHIND = 2


@dataclass
class TargetHealth:
    """
    What the last scrapes of one target showed, for C{/targets}.
    """

    health: str = "unknown"
    lastScrapeMs: int | None = None
    lastDuration: float | None = None
    samplesStored: int = 0
    samplesSkipped: int = 0
    lastError: str | None = None
    nextScrapeMs: int | None = None
    scrapes: int = 0
    failures: int = 0
    onTime: int = 0
    retries: int = 0


@dataclass(frozen=True)
class ScrapeResult:
    """
    The outcome of one scrape.
    """

    target: Target
    ok: bool
    duration: float
    samples: int
    error: str | None
    lateness: float


@dataclass(frozen=True)
class ScrapeOrder:
    """
    What one scrape fetches and how, scheduled or on demand.

    @ivar retryBefore: with a reactor time, a failed fetch is tried again
        (with a doubling backoff) while the next try can end before it;
        C{None} tries once.
    @ivar health: whether the scrape's C{up}, C{scrape_duration_seconds}
        and C{scrape_samples_scraped} points are written with its samples.
    @ivar memo: the shape of the target's writes, which plans the next
        one (see L{meetrd.writeplan.WriteShape}).
    @ivar healthTags: C{tags} frozen once for the target, so that its
        health points keep one tag tuple from scrape to scrape.
    """

    url: str
    timeout: float
    format: str
    tags: dict[str, str]
    startMs: int
    cache: PageCache | None = None
    followRedirects: bool = True
    retryBefore: float | None = None
    health: bool = False
    memo: ShapeMemo | None = None
    healthTags: Tags | None = None


@dataclass
class ScrapeOutcome:
    """
    What one scrape did.

    @ivar duration: seconds from the start to the parsed page (or the
        error), before the write.
    """

    parsed: bool = False
    samples: int = 0
    skipped: int = 0
    error: str | None = None
    retries: int = 0
    duration: float = 0.0


@dataclass(eq=False)
class Scraper:
    """
    The scrape pipeline, fetch, parse and write, that a scheduled scrape
    and an on-demand fetch share (L{scrape}).

    @ivar semaphore: caps the fetches in flight.
    @ivar lines: the series parts of page lines every target's
        L{PageCache} shares (see L{SeriesLines}).
    """

    fetcher: Fetcher
    store: Any
    limits: PageLimits
    semaphore: DeferredSemaphore
    reactor: Any
    lines: SeriesLines = field(default_factory=SeriesLines)

    log = Logger()

    def fetch(self, url: str, timeout: float, followRedirects: bool = True
              ) -> Deferred[Any]:
        """
        Fetch within the cap on fetches in flight.
        """
        return self.semaphore.run(self.fetcher.fetch, url, timeout,
                                  followRedirects)

    def parse(self, page: Any, format: str, tags: dict[str, str],
              startMs: int, cache: PageCache | None) -> Any:
        """
        Parse a page; a page that cannot be used raises L{PageError}.
        """
        return parsePage(page.body, page.contentType, format, baseTags=tags,
                         defaultTsMs=startMs, limits=self.limits, cache=cache)

    def scrape(self, order: ScrapeOrder,
               beforeWrite: Callable[[], None] | None = None
               ) -> Deferred[ScrapeOutcome]:
        """
        Fetch (with retries if the order allows), parse and write one
        page; never fails: what went wrong is the outcome's C{error}.
        C{beforeWrite} is called once the points are ready to write.
        """
        return Deferred.fromCoroutine(self._scrape(order, beforeWrite))

    async def _scrape(self, order: ScrapeOrder,
                      beforeWrite: Callable[[], None] | None
                      ) -> ScrapeOutcome:
        start = self.reactor.seconds()
        outcome = ScrapeOutcome()
        points: list[Point] = []
        try:
            page = await self._fetchWithRetries(order, outcome)
            parsed = self.parse(page, order.format, order.tags,
                                order.startMs, order.cache)
            points = parsed.points
            outcome.parsed = True
            outcome.samples = len(points)
            outcome.skipped = parsed.skipped
        except (FetchError, PageError) as e:
            outcome.error = str(e)
        except Exception as e:
            self.log.failure("Scraping {url} failed unexpectedly",
                             url=order.url)
            outcome.error = f"internal error: {type(e).__name__}"
        outcome.duration = self.reactor.seconds() - start
        if order.health:
            frozen = order.healthTags if order.healthTags is not None \
                else freezeTags(order.tags)
            points.extend(healthPoints(frozen, order.startMs,
                                       outcome.error is None,
                                       outcome.duration, outcome.samples))
        if beforeWrite is not None:
            beforeWrite()
        if not points:
            return outcome
        try:
            # New series' index rows are written behind the points
            # (meetrd.indexqueue): a thousand new nodes do not hold their
            # first scrapes back.
            await self.store.writePoints(points, indexBehind=True,
                                         memo=order.memo)
        except StoreUnavailable as e:
            outcome.error = outcome.error or f"store: {e}"
        except Exception as e:
            self.log.failure("Storing the scrape of {url} failed",
                             url=order.url)
            outcome.error = outcome.error or f"store: {type(e).__name__}: {e}"
        return outcome

    async def _fetchWithRetries(self, order: ScrapeOrder,
                                outcome: ScrapeOutcome) -> Any:
        backoff = FIRST_BACKOFF
        while True:
            try:
                return await self.fetch(order.url, order.timeout,
                                        order.followRedirects)
            except FetchError:
                now = self.reactor.seconds()
                if order.retryBefore is None or \
                        now + backoff + order.timeout >= order.retryBefore:
                    raise
                outcome.retries += 1
                await deferLater(self.reactor, backoff)
                backoff *= 2


def healthPoints(frozen: Tags, startMs: int, ok: bool,
                 duration: float, samples: int) -> list[Point]:
    """
    The points a scrape writes about itself, as Prometheus does, with the
    target's tags C{frozen}.
    """
    return [
        Point("up", frozen, startMs, 1.0 if ok else 0.0),
        Point("scrape_duration_seconds", frozen, startMs, duration),
        Point("scrape_samples_scraped", frozen, startMs, float(samples)),
    ]


class ScrapeLoop:
    """
    One target's schedule and health.
    """

    log = Logger()

    def __init__(self, target: Target, scraper: Scraper, reactor: Any,
                 onResult: Callable[[ScrapeResult], None] | None = None,
                 slot: float = 0.0) -> None:
        """
        @param slot: the width of the slots the target's offset is chosen
            from (see L{startOffset}); C{0} spreads offsets over the
            whole interval.
        """
        self.target = target
        self.scraper = scraper
        self.reactor = reactor
        self.health = TargetHealth()
        self.onResult = onResult
        self._cache = PageCache(scraper.lines)
        self._memo = ShapeMemo()
        self._healthTags = freezeTags(target.tags)
        self._start: Any = None
        self._loop: LoopingCall | None = None
        # Scrapes not finished yet (their points may still be on their
        # way to the store), and how many of them are writing.
        self._inFlight: set[Deferred[None]] = set()
        self._writing = 0
        self.offset = startOffset(target, slot)

    def nextDue(self, now: float) -> float:
        """
        The first scrape time at or after C{now} on this target's grid.
        """
        interval = self.target.interval
        return self.offset + math.ceil((now - self.offset) / interval) \
            * interval

    def start(self) -> None:
        """
        Schedule the first scrape at the target's offset.
        """
        now = self.reactor.seconds()
        first = self.nextDue(now)
        self.health.nextScrapeMs = int(first * 1000)
        self._start = self.reactor.callLater(first - now, self._begin, first)

    def _begin(self, due: float) -> None:
        self._start = None
        self._loop = LoopingCall(self.scrapeOnce)
        self._loop.clock = self.reactor
        self._loop.start(self.target.interval, now=True)
        # A first call that ran late must not keep the whole schedule late:
        # the loop counts its ticks from the due time, not from the moment
        # it happened to start.
        self._loop.starttime = due

    def stop(self) -> Deferred[None]:
        """
        Stop the schedule; fire when the scrapes in flight, if any, are
        done, their points stored.
        """
        if self._start is not None and self._start.active():
            self._start.cancel()
        self._start = None
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        done: Deferred[None] = Deferred()
        if not self._inFlight:
            done.callback(None)
        else:
            DeferredList(list(self._inFlight)).addBoth(
                lambda _: done.callback(None))
        return done

    def scrapeOnce(self) -> Deferred[None]:
        """
        One scrape: fetch (with retries), parse, store; never fails.
        The Deferred fires once the points are on their way to the store
        (or, with L{WRITES_BEHIND} writes of this target in flight, once
        they are stored): the schedule waits for that.
        """
        now = self.reactor.seconds()
        interval = self.target.interval
        due = self.offset + math.floor((now - self.offset) / interval + 1e-9) \
            * interval
        lateness = max(0.0, now - due)
        nextTick = due + interval
        self.health.nextScrapeMs = int(nextTick * 1000)
        proceed: Deferred[None] = Deferred()
        d = Deferred.fromCoroutine(self._scrape(now, lateness, nextTick,
                                                proceed))
        self._inFlight.add(d)

        def finished(_: Any) -> None:
            self._inFlight.discard(d)
            if not proceed.called:
                proceed.callback(None)

        d.addBoth(finished)
        return proceed

    async def _scrape(self, start: float, lateness: float, nextTick: float,
                      proceed: Deferred[None]) -> None:
        target = self.target
        startMs = int(start * 1000)
        order = ScrapeOrder(target.url, target.timeout, target.format,
                            target.tags, startMs, self._cache,
                            retryBefore=nextTick, health=True,
                            memo=self._memo, healthTags=self._healthTags)

        writing = False

        def beforeWrite() -> None:
            nonlocal writing
            writing = True
            self._writing += 1
            if self._writing <= WRITES_BEHIND and not proceed.called:
                proceed.callback(None)

        try:
            outcome = await self.scraper.scrape(order, beforeWrite)
        finally:
            if writing:
                self._writing -= 1
        self.health.retries += outcome.retries
        if outcome.parsed:
            self.health.samplesSkipped = outcome.skipped
        self._record(startMs, self.reactor.seconds() - start,
                     outcome.samples, outcome.error, lateness)

    def _record(self, startMs: int, duration: float, samples: int,
                error: str | None, lateness: float) -> None:
        health = self.health
        health.scrapes += 1
        if lateness <= ON_TIME_SHARE * self.target.interval:
            health.onTime += 1
        if error is not None:
            health.failures += 1
            self.log.warn("Scrape of {url} failed: {error}",
                          url=self.target.url, error=error)
        # A scrape whose points were stored after a later one's says
        # nothing of the target's last state.
        if health.lastScrapeMs is None or startMs >= health.lastScrapeMs:
            health.lastScrapeMs = startMs
            health.lastDuration = duration
            if error is None:
                health.health = "up"
                health.samplesStored = samples
                health.lastError = None
            else:
                health.health = "down"
                health.samplesStored = 0
                health.lastError = error
        if self.onResult is not None:
            self.onResult(ScrapeResult(self.target, error is None, duration,
                                       samples, error, lateness))
