"""
Scraping one target on its schedule.

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
from dataclasses import dataclass
from typing import Any, Callable

from twisted.internet.defer import Deferred, DeferredList, DeferredSemaphore
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger

from meetrd.hunter.fetch import FetchError, Fetcher
from meetrd.hunter.pages import PageCache, PageError, PageLimits, parsePage
from meetrd.hunter.targets import Target, startOffset
from meetrd.points import Point, freezeTags
from meetrd.store import StoreUnavailable

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


@dataclass(eq=False)
class Scraper:
    """
    Fetch, parse and store one page: what a scheduled scrape and an
    on-demand fetch share.

    @ivar semaphore: caps the fetches in flight.
    """

    fetcher: Fetcher
    store: Any
    limits: PageLimits
    semaphore: DeferredSemaphore
    reactor: Any

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


class ScrapeLoop:
    """
    One target's schedule and health.
    """

    log = Logger()

    def __init__(self, target: Target, scraper: Scraper, reactor: Any,
                 onResult: Callable[[ScrapeResult], None] | None = None
                 ) -> None:
        self.target = target
        self.scraper = scraper
        self.reactor = reactor
        self.health = TargetHealth()
        self.onResult = onResult
        self._cache = PageCache()
        self._start: Any = None
        self._loop: LoopingCall | None = None
        # Scrapes not finished yet (their points may still be on their
        # way to the store), and how many of them are writing.
        self._inFlight: set[Deferred[None]] = set()
        self._writing = 0
        self.offset = startOffset(target)

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
        tags = target.tags
        startMs = int(start * 1000)
        samples = 0
        error = None
        points: list[Point] = []
        try:
            page = await self._fetchWithRetries(nextTick)
            parsed = self.scraper.parse(page, target.format, tags, startMs,
                                        self._cache)
            points = parsed.points
            samples = len(points)
            self.health.samplesSkipped = parsed.skipped
        except (FetchError, PageError) as e:
            error = str(e)
        except Exception as e:
            self.log.failure("Scraping {url} failed unexpectedly",
                             url=target.url)
            error = f"internal error: {type(e).__name__}"
        duration = self.reactor.seconds() - start
        points.extend(self._healthPoints(tags, startMs, error is None,
                                         duration, samples))
        self._writing += 1
        if self._writing <= WRITES_BEHIND and not proceed.called:
            proceed.callback(None)
        try:
            await self.scraper.store.writePoints(points)
        except StoreUnavailable as e:
            error = error or f"store: {e}"
        except Exception as e:
            self.log.failure("Storing the scrape of {url} failed",
                             url=target.url)
            error = error or f"store: {type(e).__name__}: {e}"
        finally:
            self._writing -= 1
        duration = self.reactor.seconds() - start
        self._record(startMs, duration, samples, error, lateness)

    async def _fetchWithRetries(self, nextTick: float) -> Any:
        target = self.target
        backoff = FIRST_BACKOFF
        while True:
            try:
                return await self.scraper.fetch(target.url, target.timeout)
            except FetchError:
                now = self.reactor.seconds()
                if now + backoff + target.timeout >= nextTick:
                    raise
                self.health.retries += 1
                await deferLater(self.reactor, backoff)
                backoff *= 2

    def _healthPoints(self, tags: dict[str, str], startMs: int, ok: bool,
                      duration: float, samples: int) -> list[Point]:
        frozen = freezeTags(tags)
        return [
            Point("up", frozen, startMs, 1.0 if ok else 0.0),
            Point("scrape_duration_seconds", frozen, startMs, duration),
            Point("scrape_samples_scraped", frozen, startMs, float(samples)),
        ]

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
