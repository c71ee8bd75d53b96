"""
The hunter's schedule, driven by C{twisted.internet.task.Clock}: offsets,
no overlap, retries within the interval, independence of targets, sharding.
"""

from __future__ import annotations

from collections import Counter

from twisted.internet.defer import Deferred, DeferredSemaphore, fail, succeed
from twisted.internet.task import Clock

from meetrd.hunter.fetch import FetchError, Page
from meetrd.hunter.pages import PageLimits, ParsedPage
from meetrd.hunter.scrape import WRITES_BEHIND, ScrapeLoop, Scraper
from meetrd.hunter.targets import Target, expand, ownedBy, startOffset
from meetrd.points import Point
from meetrd.settings import Shard, TargetGroup


def target(node="127.0.0.1:9100", interval=10.0, timeout=2.0, job="web"):
    return Target(job, node, "/metrics", interval, timeout, "auto", ())


class RecordingStore:
    """
    Records what is written.
    """

    def __init__(self):
        self.writes = []

    def writePoints(self, points, indexBehind=False, memo=None):
        self.writes.append(list(points))
        return succeed(len(points))


class ScriptedScraper(Scraper):
    """
    The scrape pipeline with fetches the test answers by hand and a parser
    that makes one point a page.
    """

    def __init__(self, clock):
        super().__init__(None, RecordingStore(), PageLimits(),
                         DeferredSemaphore(1000), clock)
        self.clock = clock
        self.fetches = []

    def fetch(self, url, timeout, followRedirects=True):
        d = Deferred()
        self.fetches.append((self.clock.seconds(), url, d))
        return d

    def parse(self, page, format, tags, startMs, cache):
        return ParsedPage([Point("m", tuple(sorted(tags.items())), startMs,
                                 1.0)], 0, "json")


def page():
    return Page(b"{}", "application/json")


def test_offsetsAreStableAndSpread():
    """
    A target's offset is the same every time, within its interval, and
    many targets spread over the whole interval.
    """
    targets = [target(f"10.0.{i // 250}.{i % 250}:9100") for i in range(2000)]
    offsets = [startOffset(t) for t in targets]
    assert offsets == [startOffset(t) for t in targets]
    assert all(0 <= o < 10 for o in offsets)
    perSecond = Counter(int(o) for o in offsets)
    assert sorted(perSecond) == list(range(10))
    assert max(perSecond.values()) < 2000 / 10 * 1.3


def test_offsetsFallOnSlots():
    """
    With a slot, a target's offset is the start of one of its interval's
    slots (as near the slot's width as the interval divides), stable, and
    many targets fill every slot; a slot as wide as the interval or wider
    puts every target at 0.  Without one, offsets spread over the whole
    interval.
    """
    targets = [target(f"10.0.{i // 250}.{i % 250}:9100") for i in range(2000)]
    offsets = [startOffset(t, 0.1) for t in targets]
    assert offsets == [startOffset(t, 0.1) for t in targets]
    perSlot = Counter(round(o / 0.1) for o in offsets)
    assert all(abs(o - round(o / 0.1) * 0.1) < 1e-9 for o in offsets)
    assert sorted(perSlot) == list(range(100))
    assert max(perSlot.values()) < 2000 / 100 * 2
    uneven = {startOffset(t, 0.3) for t in targets}
    assert len(uneven) == 33
    assert all(abs(o / (10 / 33) - round(o / (10 / 33))) < 1e-9
               for o in uneven)
    assert {startOffset(t, 10.0) for t in targets} == {0.0}
    assert {startOffset(t, 60.0) for t in targets} == {0.0}
    assert len({startOffset(t) for t in targets}) > 1990


def test_targetsOfOneSlotStartTogether():
    """
    The targets of one slot are all scraped at the slot's start, in one
    turn of the clock, interval after interval.
    """
    clock = Clock()
    clock.advance(999.5)
    scraper = ScriptedScraper(clock)
    loops = [ScrapeLoop(target(f"10.0.0.{i}:9100"), scraper, clock,
                        slot=1.0) for i in range(60)]
    for loop in loops:
        loop.start()
    for _ in range(60):
        clock.advance(0.5)
        for _, _, d in scraper.fetches:
            if not d.called:
                d.callback(page())
    bySlot = Counter(loop.offset for loop in loops)
    assert len(bySlot) == 10 and max(bySlot.values()) > 1
    assert Counter(t for t, _, _ in scraper.fetches) == Counter({
        1000 + 10 * k + offset: count
        for offset, count in bySlot.items() for k in range(3)})


def test_hunterChoosesOffsetsFromItsSlotSetting():
    """
    C{hunter.slot} reaches every target's schedule: 250 ms slots, or
    spread offsets with C{0s}.
    """
    from meetrd.hunter.service import HunterService
    from meetrd.settings import settingsFromMapping

    def offsets(slot):
        settings = settingsFromMapping({"hunter": {"slot": slot, "targets": [
            {"job": "web", "nodes": [f"127.0.0.1:{9100 + i}"
                                     for i in range(200)],
             "path": "/metrics", "interval": "10s"}]}}, "test")
        hunter = HunterService(settings, RecordingStore(), Clock())
        hunter.reloadTargetFiles()
        return [loop.offset for loop in hunter.loops.values()]

    slotted = offsets("250ms")
    assert len(slotted) == 200 and len(set(slotted)) <= 40
    assert all(abs(o / 0.25 - round(o / 0.25)) < 1e-9 for o in slotted)
    assert len(set(offsets("0s"))) == 200


def test_firstScrapeAtOffset():
    """
    The first scrape falls at the target's offset on the interval grid,
    then one every interval.
    """
    clock = Clock()
    clock.advance(1000)
    scraper = ScriptedScraper(clock)
    loop = ScrapeLoop(target(), scraper, clock)
    loop.start()
    due = loop.nextDue(1000)
    assert due % 10 == loop.offset % 10 or abs(due % 10 - loop.offset) < 1e-6
    clock.advance(due - 1000 - 0.001)
    assert scraper.fetches == []
    clock.advance(0.001)
    assert len(scraper.fetches) == 1
    scraper.fetches[0][2].callback(page())
    clock.advance(10)
    assert len(scraper.fetches) == 2
    assert scraper.fetches[1][0] - scraper.fetches[0][0] == 10


def test_noOverlap():
    """
    While a scrape is in flight, the next tick does not start another; the
    loop resumes on the grid once it ends.
    """
    clock = Clock()
    scraper = ScriptedScraper(clock)
    loop = ScrapeLoop(target(timeout=10.0), scraper, clock)
    loop.start()
    clock.advance(loop.nextDue(0))
    assert len(scraper.fetches) == 1
    for _ in range(25):
        clock.advance(1)
    assert len(scraper.fetches) == 1
    scraper.fetches[0][2].callback(page())
    clock.pump([1] * 10)
    assert len(scraper.fetches) == 2
    phase = (scraper.fetches[1][0] - loop.offset) % 10
    assert min(phase, 10 - phase) < 1e-6
    assert scraper.fetches[1][0] - scraper.fetches[0][0] >= 30


class RefusingScraper(ScriptedScraper):
    """
    A scraper whose every fetch fails at once.
    """

    def fetch(self, url, timeout, followRedirects=True):
        self.fetches.append((self.clock.seconds(), url, None))
        return fail(FetchError("refused"))


def test_retryWithinInterval():
    """
    A failed fetch is retried with doubling backoff while the next tick is
    far enough away for another try, and never past it.
    """
    clock = Clock()
    scraper = RefusingScraper(clock)
    loop = ScrapeLoop(target(interval=10.0, timeout=2.0), scraper, clock)
    loop.start()
    start = loop.nextDue(0)
    clock.pump([start] + [0.25] * 40)
    tries = [round(t - start, 6) for t, _, _ in scraper.fetches
             if t < start + 10]
    assert tries == [0, 0.25, 0.75, 1.75, 3.75, 7.75]
    assert loop.health.health == "down"
    assert loop.health.lastError == "refused"
    assert loop.health.retries >= 5
    upPoints = [p for w in scraper.store.writes for p in w if p.metric == "up"]
    assert upPoints[0].value == 0.0
    assert [round(t - start, 6) for t, _, _ in scraper.fetches][6] == 10


def test_slowTargetDoesNotDelayAnother():
    """
    A target whose fetch never ends does not hold back another's scrapes.
    """
    clock = Clock()
    scraper = ScriptedScraper(clock)
    slow = ScrapeLoop(target("10.0.0.1:1", interval=1.0, timeout=1.0),
                      scraper, clock)
    fast = ScrapeLoop(target("10.0.0.2:1", interval=1.0, timeout=1.0),
                      scraper, clock)
    slow.start()
    fast.start()
    for _ in range(100):
        clock.advance(0.1)
        for _, url, d in scraper.fetches:
            if "10.0.0.2" in url and not d.called:
                d.callback(page())
    fastFetches = [f for f in scraper.fetches if "10.0.0.2" in f[1]]
    slowFetches = [f for f in scraper.fetches if "10.0.0.1" in f[1]]
    assert len(fastFetches) >= 9
    assert len(slowFetches) == 1
    assert fast.health.health == "up"
    assert fast.health.scrapes == len(fastFetches)


def test_healthSamplesStored():
    """
    Each scrape stores up, scrape_duration_seconds and
    scrape_samples_scraped with the target's tags.
    """
    clock = Clock()
    scraper = ScriptedScraper(clock)
    loop = ScrapeLoop(Target("web", "h:1", "/m", 5.0, 1.0, "auto",
                             (("env", "prod"),)), scraper, clock)
    loop.start()
    clock.advance(loop.nextDue(0))
    clock.advance(0.3)
    scraper.fetches[0][2].callback(page())
    written = {p.metric: p for p in scraper.store.writes[0]}
    assert written["up"].value == 1.0
    assert written["scrape_samples_scraped"].value == 1.0
    assert abs(written["scrape_duration_seconds"].value - 0.3) < 1e-9
    assert dict(written["up"].tags) == {"env": "prod", "job": "web",
                                        "node": "h:1"}
    assert loop.health.samplesStored == 1


def test_stopWaitsForScrapeInFlight():
    """
    Stopping a loop fires only once the scrape in flight has ended.
    """
    clock = Clock()
    scraper = ScriptedScraper(clock)
    loop = ScrapeLoop(target(), scraper, clock)
    loop.start()
    clock.advance(loop.nextDue(0))
    stopped = loop.stop()
    assert not stopped.called
    scraper.fetches[0][2].callback(page())
    assert stopped.called
    clock.advance(100)
    assert len(scraper.fetches) == 1


def test_shardsSplitTargetsExactlyOnce():
    """
    With N instances, every target is owned by exactly one of them, and
    the shares are even.
    """
    targets = expand([TargetGroup(job="j", nodes=[f"10.0.0.{i}:9100"
                                                  for i in range(1, 250)])])
    owners = [[i for i in range(4) if ownedBy(t, Shard(index=i, count=4))]
              for t in targets]
    assert all(len(o) == 1 for o in owners)
    shares = Counter(o[0] for o in owners)
    assert min(shares.values()) > 249 / 4 * 0.6


def test_expandKeepsTimeoutAndLabels():
    """
    A group becomes one target per distinct node with its labels.
    """
    group = TargetGroup(job="j", nodes=["a:1", "b:1", "a:1"], interval="5s",
                        labels={"env": "dev"})
    targets = expand([group])
    assert [t.node for t in targets] == ["a:1", "b:1"]
    assert targets[0].timeout == 5.0
    assert targets[0].tags == {"env": "dev", "job": "j", "node": "a:1"}


def test_serviceTreeStopsInTurn():
    """
    The service tree stops its children one at a time, last added first,
    each only after the one before it has finished.
    """
    from twisted.application.service import Service

    from meetrd.tap import SequentialMultiService

    events = []

    class Held(Service):
        def __init__(self, name):
            self.name = name
            self.done = Deferred()

        def stopService(self):
            events.append(f"stop {self.name}")
            return self.done.addCallback(
                lambda _: events.append(f"stopped {self.name}"))

    root = SequentialMultiService()
    first, second = Held("store"), Held("web")
    first.setServiceParent(root)
    second.setServiceParent(root)
    root.startService()
    stopped = root.stopService()
    assert events == ["stop web"]
    second.done.callback(None)
    assert events == ["stop web", "stopped web", "stop store"]
    assert not stopped.called
    first.done.callback(None)
    assert stopped.called


def test_lateStartDoesNotShiftTheGrid():
    """
    When the first scrape starts late (a busy reactor), later scrapes are
    still on the target's grid.
    """
    clock = Clock()
    scraper = ScriptedScraper(clock)
    loop = ScrapeLoop(target(), scraper, clock)
    loop.start()
    due = loop.nextDue(0)
    clock.advance(due + 3)
    assert len(scraper.fetches) == 1
    scraper.fetches[0][2].callback(page())
    clock.pump([1] * 12)
    assert len(scraper.fetches) == 2
    assert abs(scraper.fetches[1][0] - (due + 10)) < 1e-6


def test_huntWaitsForTheStore():
    """
    The hunter's schedules start only once the store has connected: until
    then no scrape is due, none is fetched, none fails; once connected,
    every target is scraped at its offset.
    """
    from meetrd.hunter.service import HunterService
    from meetrd.settings import settingsFromMapping

    clock = Clock()
    clock.advance(1_800_000_000)
    connected = Deferred()

    class WaitingStore(RecordingStore):
        ready = False

        def whenConnected(self):
            return connected

    settings = settingsFromMapping({"hunter": {"targets": [
        {"job": "web", "nodes": [f"127.0.0.1:{9100 + i}" for i in range(50)],
         "path": "/metrics", "interval": "10s"}]}}, "test")
    hunter = HunterService(settings, WaitingStore(), clock)
    scraped = []
    hunter.scraper.fetch = lambda url, *args, **kwargs: scraped.append(url) \
        or Deferred()
    hunter.startService()
    try:
        assert len(hunter.loops) == 50
        assert not hunter.hunting
        clock.advance(60)
        assert clock.getDelayedCalls() == [] and scraped == []
        connected.callback(None)
        assert hunter.hunting
        clock.advance(10)
        assert len(scraped) == 50
        assert all(loop.health.failures == 0 for loop in hunter.loops.values())
    finally:
        hunter.stopService()


class SlowStore:
    """
    A store whose writes end only when the test says (a Cassandra busy
    for a moment).
    """

    def __init__(self):
        self.pending = []
        self.stored = []

    def writePoints(self, points, indexBehind=False, memo=None):
        d = Deferred()
        self.pending.append((list(points), d))
        return d

    def finishOldest(self):
        points, d = self.pending.pop(0)
        self.stored.append(points)
        d.callback(len(points))


class InstantScraper(ScriptedScraper):
    """
    A scraper whose fetches answer at once.
    """

    def fetch(self, url, timeout, followRedirects=True):
        self.fetches.append((self.clock.seconds(), url, None))
        return succeed(page())


def test_slowWritesDoNotSkipScrapes():
    """
    While the store is slow, the next scrapes go ahead on the grid with
    up to WRITES_BEHIND writes of the target in flight; past that the
    schedule waits for the store (ticks are skipped, memory stays
    bounded).  Stopping waits until every write has ended, and every
    scrape's points reach the store.
    """
    clock = Clock()
    scraper = InstantScraper(clock)
    store = scraper.store = SlowStore()
    loop = ScrapeLoop(target(), scraper, clock)
    loop.start()
    clock.advance(loop.nextDue(0))
    assert len(scraper.fetches) == 1 and len(store.pending) == 1
    clock.advance(10)
    # The first write is still in flight: the second scrape went ahead.
    assert len(scraper.fetches) == 2 and len(store.pending) == 2
    assert WRITES_BEHIND == 2
    clock.advance(10)
    # A third write would be one too many behind: it is sent, but the
    # schedule waits for it.
    assert len(scraper.fetches) == 3 and len(store.pending) == 3
    clock.advance(10)
    clock.advance(10)
    assert len(scraper.fetches) == 3
    for _ in range(3):
        store.finishOldest()
    clock.advance(10)
    assert len(scraper.fetches) == 4
    times = [t for t, _, _ in scraper.fetches]
    assert [b - a for a, b in zip(times, times[1:])][:2] == [10, 10]
    assert loop.health.scrapes == 3
    stopped = loop.stop()
    assert not stopped.called
    store.finishOldest()
    assert stopped.called
    assert len(store.stored) == 4 and loop.health.scrapes == 4
    assert [points[0].ts_ms for points in store.stored] == \
        [int(t * 1000) for t in times]
