"""
Who hunts what when several instances share a keyspace
(C{hunter.shard: auto}).

Every instance announces itself in Cassandra: a row of the C{members}
table written every C{hunter.heartbeat} with a TTL of
C{hunter.heartbeat_ttl}, and deleted when the instance stops.  After each
heartbeat it reads the rows of every instance; the live members are
those rows.  A target (or a rollup marker shard) belongs to the member
that rendezvous hashing gives it: the member with the highest hash of
C{member|key}.  Every instance computes the same owner from the same
members, so nothing is hunted twice once their views agree; when a
member joins or leaves, only the keys it gains or loses move.

An instance that dies without deleting its row is a member until the
row's TTL passes; its targets are then taken over at the next
heartbeat of the others, within C{heartbeat + heartbeat_ttl}.

A member that has just joined owns its share at once, but its row says
it is I{joining} until it has scraped every target of its share once
(L{Membership.markWarm}): a process that has just started writes the
index rows of every series it meets, and on a loaded machine its first
scrapes can run late.  The members whose targets it took scrape them on
while it is joining, and for C{heartbeat_ttl} after, so that no due
scrape falls between the two (see L{meetrd.hunter.service}).
"""

from __future__ import annotations

import os
import socket
from typing import Any, Callable, Sequence

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from meetrd.hunter.targets import stableHash
from meetrd.store import whenStoreConnected


def defaultInstanceName() -> str:
    """
    A name for this process among the members: its host and process id.
    """
    return f"{socket.gethostname()}-{os.getpid()}"


def rendezvousOwner(key: str, members: Sequence[str]) -> str | None:
    """
    The member that owns C{key}: the one with the highest hash of
    C{member|key} (C{None} without members).
    """
    best = None
    bestScore = -1
    for member in members:
        score = stableHash(member + "|" + key)
        if score > bestScore or (score == bestScore and best is not None
                                 and member < best):
            best, bestScore = member, score
    return best


class Membership(Service):
    """
    Keeps this instance's heartbeat row and the view of the live members.

    @ivar members: the live members (sorted) as of the last read; empty
        until the first read.
    @ivar joining: those of C{members} (not this instance) whose rows say
        they have not yet scraped their whole share once.
    @ivar ready: whether a read has succeeded.
    @ivar warm: whether this instance has scraped its whole share once
        (written in its row; see L{markWarm}).
    """

    log = Logger()

    def __init__(self, store: Any, instance: str, heartbeat: float,
                 ttl: float, clock: Any) -> None:
        """
        @param store: provides C{heartbeat(instance, ttlSeconds, warm)},
            C{members()} (pairs of a name and its warm flag, C{None}
            when its row has none) and C{leave(instance)}, each a
            Deferred.
        @param instance: this instance's name among the members.
        @param heartbeat: seconds between heartbeats.
        @param ttl: seconds a heartbeat row lives.
        @param clock: an C{IReactorTime}.
        """
        self.store = store
        self.instance = instance
        self.heartbeat = heartbeat
        self.ttl = ttl
        self.clock = clock
        self.members: tuple[str, ...] = ()
        self.joining: frozenset[str] = frozenset()
        self.ready = False
        self.warm = False
        self.listeners: list[Callable[[tuple[str, ...]], None]] = []
        self._loop: LoopingCall | None = None
        self._waiting: list[Deferred[None]] = []
        self._failing = False

    def owns(self, key: str) -> bool:
        """
        Whether this instance owns C{key} among the live members (nothing
        before the first read).
        """
        return self.ready and \
            rendezvousOwner(key, self.members) == self.instance

    def ownerOf(self, key: str) -> str | None:
        """
        The member that owns C{key}, as this instance sees them.
        """
        return rendezvousOwner(key, self.members)

    def isJoining(self, member: str | None) -> bool:
        """
        Whether C{member} has yet to scrape its whole share once, as its
        row said at the last read.
        """
        return member in self.joining

    def markWarm(self) -> None:
        """
        Say that this instance hunts its whole share on schedule: written
        at once (when beating), so that the members it took targets from
        stop hunting them sooner.
        """
        if self.warm:
            return
        self.warm = True
        if self._loop is not None and self._loop.running:
            self.beat()

    def whenReady(self) -> Deferred[None]:
        """
        Fire once the members have been read.
        """
        if self.ready:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiting.append(d)
        return d

    def startService(self) -> None:
        """
        Once the store has connected, beat at once and every C{heartbeat}
        seconds.
        """
        super().startService()
        whenStoreConnected(self.store).addCallback(self._startBeating)

    def _startBeating(self, _: object) -> None:
        if not self.running or self._loop is not None:
            return
        self._loop = LoopingCall(self.beat)
        self._loop.clock = self.clock
        self._loop.start(self.heartbeat, now=True)

    def stopService(self) -> Deferred[Any]:
        """
        Stop beating and delete this instance's row, so that the others
        take its share at their next heartbeat rather than after the TTL.
        """
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        d = self.store.leave(self.instance)
        d.addErrback(lambda f: self.log.warn(
            "Could not remove this instance from the members ({why}); the "
            "others take its share once its heartbeat expires",
            why=f.getErrorMessage()))
        d.addTimeout(min(self.ttl, 2.0), self.clock)
        return d.addErrback(lambda _: None)

    def beat(self) -> Deferred[None]:
        """
        Write this instance's heartbeat, then read the members; tell the
        listeners when they changed.  A failure (Cassandra unreachable)
        keeps the last view and is logged once until a beat succeeds.
        """
        d = self.store.heartbeat(self.instance, self.ttl, self.warm)
        d.addCallback(lambda _: self.store.members())
        d.addCallback(self._read)

        def failed(failure: Any) -> None:
            if not self._failing:
                self.log.warn("Heartbeat failed ({why}); keeping the last "
                              "view of the members",
                              why=failure.getErrorMessage())
            self._failing = True

        return d.addErrback(failed)

    def _read(self, found: Sequence[tuple[str, bool | None]]) -> None:
        if self._failing:
            self.log.info("Heartbeat works again")
        self._failing = False
        members = tuple(sorted({name for name, _ in found} | {self.instance}))
        # A row without the flag is of a version that knows no joining.
        joining = frozenset(name for name, warm in found
                            if warm is False and name != self.instance)
        changed = members != self.members or joining != self.joining \
            or not self.ready
        self.members = members
        self.joining = joining
        firstRead = not self.ready
        self.ready = True
        if changed:
            self.log.info("Hunt members: {members}{joining}",
                          members=", ".join(members),
                          joining=f" (joining: {', '.join(sorted(joining))})"
                          if joining else "")
            for listener in list(self.listeners):
                listener(members)
        if firstRead:
            waiting, self._waiting = self._waiting, []
            for d in waiting:
                d.callback(None)
