"""
The one scrape pipeline (fetch, parse, write) that the schedule and
C{POST /fetch} share, driven by C{twisted.internet.task.Clock}.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, DeferredSemaphore, fail, succeed
from twisted.internet.task import Clock

from meetrd.hunter.fetch import FetchError, Page
from meetrd.hunter.ondemand import FetchJobs
from meetrd.hunter.pages import PageLimits
from meetrd.hunter.scrape import ScrapeLoop, ScrapeOrder, ScrapeOutcome, Scraper
from meetrd.hunter.targets import Target
from meetrd.store import StoreUnavailable

PAGE = b'{"load": 1.5, "disk": {"free": 7}}'


class Fetcher:
    """
    Answers every fetch with C{PAGE}, or with a failure when told.
    """

    def __init__(self, failing: bool = False):
        self.failing = failing
        self.urls: list[tuple[str, bool]] = []

    def fetch(self, url, timeout, followRedirects=True):
        self.urls.append((url, followRedirects))
        if self.failing:
            return fail(FetchError("connection refused"))
        return succeed(Page(PAGE, "application/json"))


class Store:
    """
    Records the points written, or refuses them as a store that lost
    Cassandra does.
    """

    def __init__(self, down: bool = False):
        self.down = down
        self.written: list[list] = []

    def writePoints(self, points, indexBehind=False, memo=None):
        if self.down:
            return fail(StoreUnavailable("cannot reach Cassandra"))
        self.written.append(list(points))
        return succeed(len(points))


class RecordingScraper(Scraper):
    """
    The pipeline, recording each order it is given.
    """

    def __init__(self, fetcher, store, clock):
        super().__init__(fetcher, store, PageLimits(), DeferredSemaphore(10),
                         clock)
        self.orders: list[ScrapeOrder] = []

    def scrape(self, order, beforeWrite=None):
        self.orders.append(order)
        return super().scrape(order, beforeWrite)


def target() -> Target:
    return Target("web", "127.0.0.1:9100", "/metrics", 10.0, 2.0, "auto", ())


def test_scheduleAndFetchJobsShareThePipeline():
    """
    A scheduled scrape and an on-demand fetch both go through
    L{Scraper.scrape}: the first retries within its interval and writes
    its health points, the second tries once, follows no redirect and
    writes the page's samples only.
    """
    clock = Clock()
    store = Store()
    scraper = RecordingScraper(Fetcher(), store, clock)
    loop = ScrapeLoop(target(), scraper, clock)
    loop.start()
    clock.advance(loop.nextDue(0))
    jobs = FetchJobs(scraper, clock, 5.0, 10, 600)
    job = jobs.start(["127.0.0.1:9200"], "/stats")
    scheduled, onDemand = scraper.orders
    assert scheduled.url == "http://127.0.0.1:9100/metrics"
    assert scheduled.health and scheduled.retryBefore is not None
    assert onDemand.url == "http://127.0.0.1:9200/stats"
    assert not onDemand.health and onDemand.retryBefore is None
    assert not onDemand.followRedirects
    assert job.nodes["127.0.0.1:9200"].asJSON()["state"] == "ok"
    assert job.nodes["127.0.0.1:9200"].samples == 2
    scheduledMetrics = sorted(p.metric for p in store.written[0])
    assert scheduledMetrics == ["disk.free", "load", "scrape_duration_seconds",
                                "scrape_samples_scraped", "up"]
    assert sorted(p.metric for p in store.written[1]) == ["disk.free", "load"]
    assert loop.health.health == "up" and loop.health.samplesStored == 2


def test_storeFailureReadsTheSameOnBothPaths():
    """
    A store that cannot reach Cassandra fails a scheduled scrape and an
    on-demand fetch with the same message.
    """
    clock = Clock()
    scraper = RecordingScraper(Fetcher(), Store(down=True), clock)
    loop = ScrapeLoop(target(), scraper, clock)
    loop.start()
    clock.advance(loop.nextDue(0))
    job = FetchJobs(scraper, clock, 5.0, 10, 600).start(
        ["127.0.0.1:9200"], "/stats")
    report = job.nodes["127.0.0.1:9200"]
    assert report.state == "failed"
    assert report.error == "store: cannot reach Cassandra"
    assert loop.health.lastError == report.error


def test_onDemandFetchIsNotRetried():
    """
    An on-demand fetch that fails is tried once and reported; a scheduled
    one is tried again within its interval.
    """
    clock = Clock()
    fetcher = Fetcher(failing=True)
    scraper = RecordingScraper(fetcher, Store(), clock)
    job = FetchJobs(scraper, clock, 5.0, 10, 600).start(
        ["127.0.0.1:9200"], "/stats")
    clock.pump([0.25] * 40)
    assert fetcher.urls == [("http://127.0.0.1:9200/stats", False)]
    assert job.nodes["127.0.0.1:9200"].error == "connection refused"
    outcome: Deferred[ScrapeOutcome] = scraper.scrape(ScrapeOrder(
        "http://127.0.0.1:9300/m", 2.0, "auto", {}, 0,
        retryBefore=clock.seconds() + 10))
    clock.pump([0.25] * 40)
    result = outcome.result
    # Tries at 0, 0.25, 0.75, 1.75, 3.75 and 7.75 s: the next would end
    # past the deadline.
    assert result.error == "connection refused" and result.retries == 5
    assert len(fetcher.urls) == 1 + 6
