"""
Sharing the hunt by heartbeats in Cassandra (C{hunter.shard: auto}):
rendezvous hashing, the membership service with a Clock and a store in
memory, and the hunter and the rollup service following the members.
The same with real daemons on the real node is in
L{tests.test_membership_live}.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock, deferLater

from meetrd.hunter.service import HunterService
from meetrd.membership import Membership, rendezvousOwner
from meetrd.rollupservice import RollupService
from meetrd.schema import DIRTY_SHARDS
from meetrd.settings import RollupServiceSettings, settingsFromMapping
from meetrd.store import StoreUnavailable


class MemberRows:
    """
    The C{members} table in memory: rows with an expiry on a Clock.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.rows: dict[str, tuple[float, bool]] = {}
        self.down = False

    def heartbeat(self, instance: str, ttl: float,
                  warm: bool = True) -> Deferred[None]:
        if self.down:
            return fail(StoreUnavailable("down"))
        self.rows[instance] = (self.clock.seconds() + ttl, warm)
        return succeed(None)

    def members(self) -> Deferred[list[tuple[str, bool]]]:
        if self.down:
            return fail(StoreUnavailable("down"))
        now = self.clock.seconds()
        return succeed([(m, warm) for m, (end, warm) in self.rows.items()
                        if end > now])

    def leave(self, instance: str) -> Deferred[None]:
        self.rows.pop(instance, None)
        return succeed(None)


def _started(rows: MemberRows, name: str, clock: Clock) -> Membership:
    member = Membership(rows, name, 5.0, 15.0, clock)
    member.startService()
    return member


def test_rendezvousSpreadsEvenlyAndMovesLittle() -> None:
    """
    Over 3,000 keys, three members get about a third each; a fourth
    member takes about a quarter, all from the others, and no key moves
    between the three.
    """
    keys = [f"target|job/node{i}" for i in range(3000)]
    three = ["a", "b", "c"]
    before = {k: rendezvousOwner(k, three) for k in keys}
    counts = Counter(before.values())
    assert all(900 < counts[m] < 1100 for m in three), counts
    after = {k: rendezvousOwner(k, three + ["d"]) for k in keys}
    moved = [k for k in keys if before[k] != after[k]]
    assert all(after[k] == "d" for k in moved)
    assert 600 < len(moved) < 900
    assert rendezvousOwner("x", []) is None


def test_membersAgreeAndEachKeyHasOneOwner() -> None:
    """
    Three members beating against the same rows see the same members,
    and each key is owned by exactly one of them.
    """
    clock = Clock()
    rows = MemberRows(clock)
    members = [_started(rows, name, clock) for name in ("a", "b", "c")]
    clock.advance(5)
    assert all(m.members == ("a", "b", "c") for m in members)
    for i in range(500):
        assert sum(m.owns(f"target|{i}") for m in members) == 1


def test_deadMemberIsDroppedAfterItsTTL() -> None:
    """
    A member that stops beating (killed) owns its keys until its row
    expires; at the next heartbeat after that, the others own them.
    """
    clock = Clock()
    rows = MemberRows(clock)
    a, b = _started(rows, "a", clock), _started(rows, "b", clock)
    clock.advance(5)
    assert a.members == ("a", "b")
    changes: list[tuple[str, ...]] = []
    a.listeners.append(changes.append)
    b._loop.stop()  # killed: no more heartbeats, no leave
    clock.advance(5)
    clock.advance(5)
    assert a.members == ("a", "b") and changes == []
    clock.advance(5)
    clock.advance(5)
    assert a.members == ("a",) and changes == [("a",)]
    assert all(a.owns(f"target|{i}") for i in range(100))


def test_stoppingLeavesAtOnce() -> None:
    """
    A member that stops deletes its row: the others drop it at their
    next heartbeat, not after the TTL.
    """
    clock = Clock()
    rows = MemberRows(clock)
    a, b = _started(rows, "a", clock), _started(rows, "b", clock)
    clock.advance(5)
    b.stopService()
    clock.advance(5)
    assert a.members == ("a",)


def test_notReadyOwnsNothingAndFailuresKeepTheView() -> None:
    """
    Before the first read a member owns nothing (so that it cannot hunt
    what another already does); while Cassandra is unreachable it keeps
    its last view.
    """
    clock = Clock()
    rows = MemberRows(clock)
    rows.down = True
    a = _started(rows, "a", clock)
    ready: list[object] = []
    a.whenReady().addCallback(ready.append)
    assert not a.owns("target|x") and ready == []
    rows.down = False
    clock.advance(5)
    assert a.owns("target|x") and ready == [None]
    rows.down = True
    for _ in range(6):
        clock.advance(5)
    assert a.members == ("a",) and a.owns("target|x")


class SlowReads:
    """
    The member rows, read through a slow link: each read answers
    C{delay} seconds late.
    """

    def __init__(self, rows: MemberRows, clock: Clock, delay: float) -> None:
        self.rows = rows
        self.clock = clock
        self.delay = delay

    def heartbeat(self, instance: str, ttl: float,
                  warm: bool = True) -> Deferred[None]:
        return self.rows.heartbeat(instance, ttl, warm)

    def members(self) -> Deferred[list[tuple[str, bool]]]:
        return deferLater(self.clock, self.delay, lambda: None).addCallback(
            lambda _: self.rows.members())

    def leave(self, instance: str) -> Deferred[None]:
        return self.rows.leave(instance)


class ConnectedStore:
    """
    What the hunter needs of a store before any scrape.
    """

    def whenConnected(self) -> Deferred[None]:
        return succeed(None)


class Refused:
    """
    A fetcher whose fetches fail at once, as a node that is not listening
    would: scrapes run on schedule, and nothing leaves the process.
    """

    def __init__(self) -> None:
        self.fetched: list[str] = []

    def fetch(self, url: str, timeout: float, followRedirects: bool = True
              ) -> Deferred[Any]:
        self.fetched.append(url)
        return fail(ConnectionRefusedError(url))

    def close(self) -> Deferred[None]:
        return succeed(None)


def _hunter(name: str, rows: MemberRows, clock: Clock,
            nodes: int) -> tuple[HunterService, Membership]:
    settings = settingsFromMapping({"hunter": {"targets": [{
        "job": "j", "nodes": [f"127.0.0.1:{9000 + i}" for i in range(nodes)],
        "interval": "10s"}]}}, "x.yaml")
    member = Membership(rows, name, 5.0, 15.0, clock)
    hunter = HunterService(settings, ConnectedStore(), clock,
                           fetcher=Refused(), membership=member)
    member.startService()
    hunter.startService()
    return hunter, member


def test_huntersShareTargetsAndTakeOverADeadOnesShare() -> None:
    """
    Three hunters share 300 targets with none twice and none left out,
    start their schedules only once they know the members, and when one
    dies the other two take all 300 once its heartbeat expires.
    """
    clock = Clock()
    rows = MemberRows(clock)
    hunters = [_hunter(name, rows, clock, 300) for name in "abc"]
    clock.advance(5)
    owned = [set(h.loops) for h, _ in hunters]
    assert sum(map(len, owned)) == 300
    assert set.union(*owned) == set(hunters[0][0].loops) | owned[1] | owned[2]
    assert len(set.union(*owned)) == 300
    assert all(h.hunting for h, _ in hunters)
    assert all(60 < len(o) < 140 for o in owned), [len(o) for o in owned]
    dead, deadMember = hunters[2]
    deadMember._loop.stop()
    dead.stopService()
    for _ in range(5):
        clock.advance(5)
    left = [set(h.loops) for h, _ in hunters[:2]]
    assert len(left[0] | left[1]) == 300 and not left[0] & left[1]
    report = hunters[0][0].report()
    assert {e["instance"] for e in report} == {"a"}
    assert report[0]["shard"] == {"index": 0, "count": 2}
    # Taken-over targets start at their place in their interval: within
    # two intervals every one has been fetched.
    for _ in range(4):
        clock.advance(5)
    fetched = [set(h.fetcher.fetched) for h, _ in hunters[:2]]
    assert len(fetched[0] | fetched[1]) == 300


def test_rollupShardsFollowTheMembers() -> None:
    """
    The rollup marker shards are shared among the members like targets:
    each shard rolled by one of them, and all by the one left.
    """
    clock = Clock()
    rows = MemberRows(clock)
    services = []
    for name in "ab":
        member = Membership(rows, name, 5.0, 15.0, clock)
        services.append((RollupService(Any, RollupServiceSettings(), "auto",
                                       clock, member), member))
        member.startService()
    clock.advance(5)
    a, b = services[0][0], services[1][0]
    assert set(a.shards).isdisjoint(b.shards)
    assert set(a.shards) | set(b.shards) == set(range(DIRTY_SHARDS))
    services[1][1].stopService()
    clock.advance(5)
    assert a.shards == list(range(DIRTY_SHARDS))


def test_newcomerTakesItsShareWithNoGap() -> None:
    """
    When a member joins, the targets it takes are scraped on by their
    old owner for one heartbeat, so that no due scrape falls between the
    two: across the join, every target is fetched at least once every
    interval.
    """
    clock = Clock()
    rows = MemberRows(clock)
    times: dict[str, list[float]] = {}

    def hunter(name: str, store: Any = rows
               ) -> tuple[HunterService, Membership]:
        made = _hunter(name, store, clock, 200)
        fetcher = made[0].fetcher
        original = fetcher.fetch

        def fetch(url: str, *args: Any, **kwargs: Any) -> Deferred[Any]:
            times.setdefault(url, []).append(clock.seconds())
            return original(url, *args, **kwargs)

        fetcher.fetch = fetch  # type: ignore[method-assign]
        return made

    first = [hunter("a"), hunter("b")]
    for _ in range(6):
        clock.advance(1)
    # The newcomer's first read of the members is slow (4 s): the others
    # see it, and give up its share, before it starts hunting.
    clock.advance(0.5)
    third = hunter("c", SlowReads(rows, clock, 4.0))
    for _ in range(60):
        clock.advance(0.5)
    assert len(third[0].loops) > 40
    assert all(len(h.loops) < 200 for h, _ in first)
    for url, fetched in times.items():
        fetched = sorted(fetched)
        gaps = [b - a for a, b in zip(fetched, fetched[1:])]
        assert gaps and max(gaps) <= 10.0 + 1e-6, (url, fetched)



class SlowFirstWrites(ConnectedStore):
    """
    The store of a process that has just started: the first write of a
    target's points also writes the index rows of its series, and on a
    loaded cluster takes C{delay} seconds; later writes are quick.
    """

    def __init__(self, clock: Clock, delay: float) -> None:
        self.clock = clock
        self.delay = delay
        self.seen: set[object] = set()

    def writePoints(self, points: list[Any], indexBehind: bool = False,
                    memo: Any = None) -> Deferred[None]:
        tags = points[0].tags
        if tags in self.seen:
            return succeed(None)
        self.seen.add(tags)
        return deferLater(self.clock, self.delay, lambda: None)


def test_joiningNewcomerRunningLateLeavesNoGap() -> None:
    """
    A newcomer whose first writes are slow (a new process writes the
    index rows of every series it meets) finishes its first scrapes late,
    and its schedules skip the ticks that fall meanwhile.  The members it
    took targets from scrape them on until its row says it has scraped
    its whole share once, and for the heartbeat TTL after: across the
    join no target goes an interval and a half without a scrape, and
    afterwards each target has one hunter.
    """
    clock = Clock()
    rows = MemberRows(clock)
    times: dict[str, list[float]] = {}
    settings = settingsFromMapping({"hunter": {
        "heartbeat": "1s", "heartbeat_ttl": "3s", "targets": [{
            "job": "j", "interval": "2s",
            "nodes": [f"127.0.0.1:{9000 + i}" for i in range(150)]}]}},
        "x.yaml")

    def hunter(name: str, store: Any) -> HunterService:
        member = Membership(rows, name, settings.hunter.heartbeat,
                            settings.hunter.heartbeat_ttl, clock)
        fetcher = Refused()
        made = HunterService(settings, store, clock, fetcher=fetcher,
                             membership=member)

        def fetch(url: str, *args: Any, **kwargs: Any) -> Deferred[Any]:
            times.setdefault(url, []).append(clock.seconds())
            return Refused.fetch(fetcher, url, *args, **kwargs)

        fetcher.fetch = fetch  # type: ignore[method-assign]
        member.startService()
        made.startService()
        return made

    old = [hunter("a", SlowFirstWrites(clock, 0)),
           hunter("b", SlowFirstWrites(clock, 0))]
    for _ in range(40):
        clock.advance(0.25)
    joinedAt = clock.seconds()
    new = hunter("c", SlowFirstWrites(clock, 8.0))
    handedOver = set()
    for _ in range(160):
        clock.advance(0.25)
        handedOver |= {e["url"] for h in old for e in h.report()
                       if e["handover"] == "c"}
    assert len(times) == 150
    # While it was joining, the old members said which targets they were
    # handing over, and to whom.
    assert handedOver == {loop.target.url for loop in new.loops.values()}
    for url, fetched in times.items():
        fetched = sorted(t for t in fetched if t >= joinedAt - 2)
        gaps = [b - a for a, b in zip(fetched, fetched[1:])]
        assert gaps and max(gaps) < 3.0, (url, fetched)
    assert 20 < len(new.loops) < 80
    assert sum(len(h.loops) for h in [*old, new]) == 150
    assert not any(h._leaving for h in old)
    assert new.membership.warm and all(h.membership.warm for h in old)
