"""
The daemon's lifecycle driven by C{twisted.internet.task.Clock}, without
Cassandra: the store service (connect, lose, reconnect with backoff, stop
while connecting or with requests in flight), the store's idle Deferred,
the signal service, reload and its changed keys, and the target-file
watcher.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from twisted.application.internet import backoffPolicy
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import capturedLogs

from meetrd.settings import SettingsError, settingsFromMapping
from meetrd.store import StoreUnavailable
from meetrd.storeservice import StoreService
from meetrd.tap import changedKeys, reload


class FakeReactor(Clock):
    """
    A Clock that also runs what waits for the reactor to run, and hands
    calls from other threads to the next turn, as a reactor does.
    """

    def __init__(self) -> None:
        super().__init__()
        self.running = False
        self.stopped = 0
        self._waiting: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    def callWhenRunning(self, f: Callable[..., Any], *args: Any) -> None:
        if self.running:
            f(*args)
        else:
            self._waiting.append((f, args))

    def run(self) -> None:
        self.running = True
        waiting, self._waiting = self._waiting, []
        for f, args in waiting:
            f(*args)

    def callFromThread(self, f: Callable[..., Any], *args: Any) -> None:
        self.callLater(0, f, *args)

    def stop(self) -> None:
        self.stopped += 1


class FakeStore:
    """
    A store whose connection attempts and requests the test ends by hand.

    @ivar attempts: the Deferred of each connection attempt.
    """

    contactPoints = "127.0.0.1:9042"

    def __init__(self) -> None:
        self.attempts: list[Deferred[None]] = []
        self.inFlight = 0
        self.idleWaiters: list[Deferred[None]] = []
        self.closed = 0

    def connect(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self.attempts.append(d)
        return d

    def whenIdle(self) -> Deferred[None]:
        if self.inFlight == 0:
            return succeed(None)
        d: Deferred[None] = Deferred(self.idleWaiters.remove)
        self.idleWaiters.append(d)
        return d

    def finish(self, n: int = 1) -> None:
        """
        End C{n} requests in flight.
        """
        self.inFlight -= n
        if self.inFlight == 0:
            waiting, self.idleWaiters = self.idleWaiters, []
            for d in waiting:
                d.callback(None)

    def close(self) -> Deferred[None]:
        self.closed += 1
        return succeed(None)


def unavailable() -> StoreUnavailable:
    return StoreUnavailable("cannot reach Cassandra at 127.0.0.1:9042")


def attemptTimes(reactor: FakeReactor, store: FakeStore, failures: int
                 ) -> list[float]:
    """
    Fail C{failures} connection attempts in turn, each as soon as it is
    made, and give the clock's time of every attempt.
    """
    times = [reactor.seconds()]
    for _ in range(failures):
        store.attempts[-1].errback(unavailable())
        made = len(store.attempts)
        while len(store.attempts) == made:
            reactor.advance(reactor.getDelayedCalls()[0].getTime()
                            - reactor.seconds())
        times.append(reactor.seconds())
    return times


def started(policy: Callable[[int], float] | None = None, grace: float = 30.0,
            maxDelay: float = 5.0) -> tuple[FakeReactor, FakeStore,
                                            StoreService]:
    reactor, store = FakeReactor(), FakeStore()
    service = StoreService(store, reactor, maxDelay=maxDelay, grace=grace,
                           retryPolicy=policy)
    service.startService()
    reactor.run()
    return reactor, store, service


def test_connectsOnceTheReactorRuns():
    """
    The store service makes no connection attempt before the reactor runs,
    and one as soon as it does.
    """
    reactor, store = FakeReactor(), FakeStore()
    service = StoreService(store, reactor)
    service.startService()
    assert store.attempts == []
    reactor.run()
    assert len(store.attempts) == 1 and service.attempts == 1


def test_reconnectsAsThePolicySays():
    """
    After each failed attempt the next one is made exactly when the retry
    policy says, asked with the number of failures so far.
    """
    asked = []

    def policy(failures: int) -> float:
        asked.append(failures)
        return 3.0 + failures

    reactor, store, service = started(policy)
    store.attempts[0].errback(unavailable())
    assert asked == [0] and len(store.attempts) == 1
    reactor.advance(2.999)
    assert len(store.attempts) == 1
    reactor.advance(0.001)
    assert len(store.attempts) == 2
    store.attempts[1].errback(unavailable())
    reactor.advance(3.999)
    assert len(store.attempts) == 2
    reactor.advance(0.001)
    assert len(store.attempts) == 3 and asked == [0, 1]


def test_defaultBackoffGrowsToTheMaximumWithJitter():
    """
    By default the waits double from half a second up to C{maxDelay}, each
    with up to a second of jitter on top, and not all without it.
    """
    reactor, store, service = started(maxDelay=5.0)
    times = attemptTimes(reactor, store, 12)
    waits = [b - a for a, b in zip(times, times[1:])]
    bases = [min(0.5 * 2 ** n, 5.0) for n in range(12)]
    assert all(base <= wait < base + 1 for wait, base in zip(waits, bases)), \
        list(zip(waits, bases))
    assert any(wait > base + 1e-9 for wait, base in zip(waits, bases))


def test_lostThenReconnectedStartsBackoffAgain():
    """
    Cassandra lost for a few attempts, then back: the service connects,
    schedules nothing more, and counts its failures from zero again.
    """
    policy = backoffPolicy(initialDelay=1.0, maxDelay=60.0, factor=2.0,
                           jitter=lambda: 0.0)
    reactor, store, service = started(policy)
    times = attemptTimes(reactor, store, 3)
    assert [b - a for a, b in zip(times, times[1:])] == [1.0, 2.0, 4.0]
    assert service.failures == 3
    store.attempts[-1].callback(None)
    assert service.failures == 0
    assert reactor.getDelayedCalls() == []
    assert len(store.attempts) == 4


def test_stopCancelsThePendingRetry():
    """
    Stopped while it waits to retry, the service makes no more attempts
    and closes the store at once.
    """
    reactor, store, service = started()
    store.attempts[0].errback(unavailable())
    assert len(reactor.getDelayedCalls()) == 1
    stopped = service.stopService()
    assert stopped.called and store.closed == 1
    assert reactor.getDelayedCalls() == []
    reactor.advance(60)
    assert len(store.attempts) == 1


@pytest.mark.parametrize("outcome", ["connects", "fails"])
def test_stopWhileConnecting(outcome):
    """
    Stopped during a connection attempt, the service lets the attempt end,
    then closes the store, whatever the attempt's outcome, and schedules no
    retry.
    """
    reactor, store, service = started()
    stopped = service.stopService()
    reactor.advance(60)
    assert not stopped.called and store.closed == 0
    if outcome == "connects":
        store.attempts[0].callback(None)
    else:
        store.attempts[0].errback(unavailable())
    assert stopped.called and store.closed == 1
    assert reactor.getDelayedCalls() == []
    assert len(store.attempts) == 1


def test_stopWaitsForTheStoreToBeIdle():
    """
    Requests in flight at stop keep the store open; the last one to end
    closes it in the same turn, without waiting for the clock.
    """
    reactor, store, service = started()
    store.attempts[0].callback(None)
    store.inFlight = 2
    stopped = service.stopService()
    store.finish()
    assert not stopped.called and store.closed == 0
    store.finish()
    assert stopped.called and store.closed == 1


def test_stopClosesAfterTheGrace():
    """
    Requests still in flight when the grace period ends are left: the store
    closes then, says how many were in flight, and stops waiting for idle.
    """
    reactor, store, service = started(grace=10.0)
    store.attempts[0].callback(None)
    store.inFlight = 3
    with capturedLogs() as events:
        stopped = service.stopService()
        reactor.advance(9.9)
        assert not stopped.called and store.closed == 0
        reactor.advance(0.1)
    assert stopped.called and store.closed == 1
    assert store.idleWaiters == []
    assert [e["n"] for e in events if "n" in e] == [3]


# The store's idle Deferred, with the driver's requests replaced.

def idleStore(monkeypatch) -> tuple[Any, list[Deferred[list[Any]]]]:
    """
    A L{MetricStore} whose requests to Cassandra are Deferreds the test
    fires: the store and those Deferreds.
    """
    from meetrd import store as storeModule

    sent: list[Deferred[list[Any]]] = []

    def executeAsync(*args: Any) -> Deferred[list[Any]]:
        d: Deferred[list[Any]] = Deferred()
        sent.append(d)
        return d

    monkeypatch.setattr(storeModule, "executeAsync", executeAsync)
    settings = settingsFromMapping({"cassandra": {"max_in_flight": 2}},
                                   "test").cassandra
    store = storeModule.MetricStore(settings, 0, Clock())
    store._session = object()
    return store, sent


def test_storeIdleAtOnceWithNothingInFlight(monkeypatch):
    """
    With no request in flight, C{whenIdle} has already fired.
    """
    store, sent = idleStore(monkeypatch)
    assert store.whenIdle().called


def test_storeIdleWhenTheLastRequestEnds(monkeypatch):
    """
    C{whenIdle} fires when the last request ends, including those that
    waited for a place among the requests in flight, and not before; a
    failed request counts as ended.
    """
    store, sent = idleStore(monkeypatch)
    for _ in range(3):
        store._run("statement", ()).addErrback(lambda _: None)
    assert store.inFlight == 2 and len(sent) == 2
    idle = store.whenIdle()
    sent[0].callback([])
    assert not idle.called and store.inFlight == 2 and len(sent) == 3
    sent[1].errback(RuntimeError("timed out"))
    assert not idle.called and store.inFlight == 1
    sent[2].callback([])
    assert idle.called and store.inFlight == 0


def test_storeIdleCancelled(monkeypatch):
    """
    A cancelled C{whenIdle} is forgotten: the end of the last request
    fires only the waits still wanted.
    """
    store, sent = idleStore(monkeypatch)
    store._run("statement", ())
    cancelled, kept = store.whenIdle(), store.whenIdle()
    cancelled.cancel()
    cancelled.addErrback(lambda _: None)
    sent[0].callback([])
    assert kept.called


# The signal service.

@pytest.fixture
def handlers():
    """
    Put back the process's SIGHUP, SIGTERM and SIGUSR1 handlers after a
    test.
    """
    numbers = (signal.SIGHUP, signal.SIGTERM, signal.SIGUSR1)
    before = {n: signal.getsignal(n) for n in numbers}
    yield
    for number, handler in before.items():
        signal.signal(number, handler)


def test_sigHupReloadsInTheReactorThread(handlers):
    """
    SIGHUP's handler is installed at start and hands the reload to the
    reactor: nothing is reloaded in the handler itself, once on the next
    turn.
    """
    from meetrd.signals import SignalService

    reactor = FakeReactor()
    reloads = []
    service = SignalService(reactor, lambda: reloads.append(1))
    service.startService()
    signal.getsignal(signal.SIGHUP)(signal.SIGHUP, None)
    assert reloads == []
    reactor.advance(0)
    assert reloads == [1]


def test_failedReloadIsLogged(handlers):
    """
    A reload that raises is logged and leaves the service running.
    """
    from meetrd.signals import SignalService

    def broken() -> None:
        raise ValueError("bad file")

    reactor = FakeReactor()
    service = SignalService(reactor, broken)
    service.startService()
    with capturedLogs() as events:
        signal.getsignal(signal.SIGHUP)(signal.SIGHUP, None)
        reactor.advance(0)
    failures = [e for e in events if "log_failure" in e]
    assert len(failures) == 1
    assert failures[0]["log_failure"].check(ValueError)
    assert service.running


def test_sigTermStopsTheReactorOnceRunning(handlers):
    """
    meetrd's SIGTERM handler replaces the one before it only once the
    reactor runs, and stops the reactor from the reactor thread.
    """
    from meetrd.signals import SignalService

    reactor = FakeReactor()
    previous = signal.getsignal(signal.SIGTERM)
    service = SignalService(reactor, lambda: None)
    service.startService()
    assert signal.getsignal(signal.SIGTERM) == previous
    reactor.run()
    signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
    assert reactor.stopped == 0
    reactor.advance(0)
    assert reactor.stopped == 1


def test_stopPutsThePreviousHandlersBack(handlers):
    """
    Stopping the service puts back the handlers it replaced, SIGUSR1's too
    when it kept it.
    """
    from meetrd.signals import SignalService

    def mine(number: int, frame: Any) -> None:
        pass

    for number in (signal.SIGHUP, signal.SIGTERM, signal.SIGUSR1):
        signal.signal(number, mine)
    reactor = FakeReactor()
    service = SignalService(reactor, lambda: None, keepUSR1=True)
    service.startService()
    reactor.run()
    for number in (signal.SIGHUP, signal.SIGTERM, signal.SIGUSR1):
        assert signal.getsignal(number) != mine
    service.stopService()
    for number in (signal.SIGHUP, signal.SIGTERM, signal.SIGUSR1):
        assert signal.getsignal(number) == mine


# Reload and its changed keys.

class RecordingHunter:
    """
    Records what a reload asks of the hunter.
    """

    def __init__(self) -> None:
        self.applied: list[Any] = []
        self.fileReloads: list[bool] = []

    def applyTargets(self, hunter: Any) -> None:
        self.applied.append(hunter)

    def reloadTargetFiles(self, force: bool = False) -> None:
        self.fileReloads.append(force)


BASE = {"listen": "tcp:8888",
        "hunter": {"targets": [{"job": "a", "nodes": ["127.0.0.1:9100"]}]}}


def settingsWith(**changes: Any) -> Any:
    data = yaml.safe_load(yaml.safe_dump(BASE))
    for dotted, value in changes.items():
        where = data
        *parents, last = dotted.split("__")
        for key in parents:
            where = where.setdefault(key, {})
        where[last] = value
    return settingsFromMapping(data, "test")


def test_changedKeysAreDotted():
    """
    C{changedKeys} names each changed leaf by its dotted path, the target
    list as one key, and nothing for equal settings.
    """
    old = settingsWith()
    new = settingsWith(listen="tcp:9999", cassandra__port=9043,
                       hunter__targets=[{"job": "b",
                                         "nodes": ["127.0.0.1:9101"]}])
    assert changedKeys(old, old) == []
    assert changedKeys(old, new) == ["cassandra.port", "hunter.targets",
                                     "listen"]


def test_reloadAppliesTargetsAndNamesTheRest():
    """
    A reload gives the hunter the new targets, re-reads the target files
    and logs which keys were applied and which need a restart.
    """
    hunter = RecordingHunter()
    fresh = settingsWith(listen="tcp:9999",
                         hunter__target_files=["/nonexistent/*.yaml"])
    with capturedLogs() as events:
        reload(settingsWith(), hunter, lambda: fresh)
    assert hunter.applied == [fresh.hunter]
    assert hunter.fileReloads == [True]
    said = [e for e in events if "live" in e]
    assert [(e["live"], e["later"]) for e in said] == [
        ("hunter.target_files", "listen")]


def test_reloadKeepsSettingsThatFailToLoad():
    """
    Settings that fail to load change nothing but the target files'
    re-reading, and the reason is logged.
    """
    hunter = RecordingHunter()

    def broken() -> Any:
        raise SettingsError("meetr.yaml: listen: not a string")

    with capturedLogs() as events:
        reload(settingsWith(), hunter, broken)
    assert hunter.applied == []
    assert hunter.fileReloads == [True]
    assert [e["why"] for e in events if "why" in e] == [
        "meetr.yaml: listen: not a string"]


# The target-file watcher.

def writeTargets(path: Path, *nodes: str) -> None:
    path.write_text(yaml.safe_dump([{"job": "files", "nodes": list(nodes)}]))


@pytest.fixture
def watched(tmp_path):
    """
    A started hunter watching C{tmp_path/*.yaml} every 5 s on a Clock, its
    fetches never answered: the hunter, the clock and the folder.
    """
    from meetrd.hunter.service import HunterService

    clock = Clock()
    settings = settingsFromMapping({"hunter": {
        "target_files": [str(tmp_path / "*.yaml")],
        "target_files_check": "5s"}}, "test")
    writeTargets(tmp_path / "a.yaml", "127.0.0.1:9100")
    hunter = HunterService(settings, object(), clock)
    hunter.scraper.fetch = lambda *args, **kwargs: Deferred()
    hunter.startService()
    yield hunter, clock, tmp_path
    hunter.stopService()


def nodesOf(hunter: Any) -> list[str]:
    return sorted(loop.target.node for loop in hunter.loops.values())


def test_watcherReadsChangedFilesOnItsInterval(watched):
    """
    A changed target file is read again at the next check, not before; a
    new file is read, a removed one's targets go.
    """
    hunter, clock, folder = watched
    assert nodesOf(hunter) == ["127.0.0.1:9100"]
    writeTargets(folder / "a.yaml", "127.0.0.1:9100", "127.0.0.1:9101")
    writeTargets(folder / "b.yaml", "127.0.0.1:9200")
    clock.advance(4.9)
    assert nodesOf(hunter) == ["127.0.0.1:9100"]
    clock.advance(0.1)
    assert nodesOf(hunter) == ["127.0.0.1:9100", "127.0.0.1:9101",
                               "127.0.0.1:9200"]
    (folder / "a.yaml").unlink()
    clock.advance(5)
    assert nodesOf(hunter) == ["127.0.0.1:9200"]


def test_watcherKeepsTheLastGoodTargets(watched):
    """
    A target file broken by an edit keeps its last good targets, and the
    error is logged; mended, it is read again.
    """
    hunter, clock, folder = watched
    (folder / "a.yaml").write_text("- job: files\n  nodes: [oops\n")
    with capturedLogs() as events:
        clock.advance(5)
    assert nodesOf(hunter) == ["127.0.0.1:9100"]
    assert any("invalid YAML" in e.get("why", "") for e in events)
    writeTargets(folder / "a.yaml", "127.0.0.1:9300")
    clock.advance(5)
    assert nodesOf(hunter) == ["127.0.0.1:9300"]


def test_watcherStopsWithTheServiceAndWithoutFiles(watched):
    """
    The watcher stops when a reload leaves no target files to watch, starts
    again when one names some, and stops with the hunter.
    """
    hunter, clock, folder = watched

    def watching() -> bool:
        return hunter._watcher is not None and hunter._watcher.running

    assert watching()
    hunter.applyTargets(hunter.targetSettings.model_copy(
        update={"target_files": ()}))
    assert not watching() and nodesOf(hunter) == []
    hunter.applyTargets(hunter.targetSettings.model_copy(
        update={"target_files": (str(folder / "*.yaml"),)}))
    assert watching() and nodesOf(hunter) == ["127.0.0.1:9100"]
    hunter.stopService()
    assert not watching()
    writeTargets(folder / "a.yaml", "127.0.0.1:9100", "127.0.0.1:9101")
    clock.advance(60)
    assert nodesOf(hunter) == ["127.0.0.1:9100"]
