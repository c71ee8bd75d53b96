"""
The hunter: a service that keeps one L{ScrapeLoop} per target of this
instance's share, re-reads target files when they change, and runs
on-demand fetches.
"""

from __future__ import annotations

import gc
from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, DeferredSemaphore
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from meetrd.hunter.fetch import Fetcher
from meetrd.hunter.ondemand import FetchJobs
from meetrd.hunter.pages import PageLimits
from meetrd.hunter.scrape import Scraper, ScrapeLoop, ScrapeResult
from meetrd.hunter.targets import (
    Target,
    configuredTargets,
    fileStamps,
    readTargetFile,
    targetFiles,
)
from meetrd.settings import HunterSettings, Settings, SettingsError, TargetGroup
from meetrd.store import whenStoreConnected
from meetrd.timestamps import formatTimestamp


class HunterService(Service):
    """
    Hunts the configured targets on schedule and nodes on demand.

    @ivar loops: the scrape loop of each target, by target key.
    @ivar hunting: whether the schedules run (from the store's first
        connection until the service stops).
    @ivar jobs: the on-demand fetch jobs.
    """

    log = Logger()

    def __init__(self, settings: Settings, store: Any, reactor: Any,
                 fetcher: Fetcher | None = None,
                 onResult: Any = None, membership: Any = None) -> None:
        """
        @param membership: with C{hunter.shard: auto}, the
            L{meetrd.membership.Membership} that says which targets are
            this instance's (and when that changes); without one, the
            fixed shard decides (every target with C{auto}).
        """
        hunter = settings.hunter
        self.settings = settings
        self.store = store
        self.reactor = reactor
        self.fetcher = fetcher or Fetcher(reactor, hunter.max_body_size,
                                          hunter.max_redirects)
        limits = PageLimits(maxSamples=hunter.sample_limit)
        self.scraper = Scraper(self.fetcher, store, limits,
                               DeferredSemaphore(hunter.max_in_flight),
                               reactor)
        self.jobs = FetchJobs(self.scraper, reactor, hunter.fetch_timeout,
                              hunter.fetch_jobs_kept, hunter.fetch_jobs_ttl)
        self.targetSettings = hunter
        self.loops: dict[str, ScrapeLoop] = {}
        self.onResult = onResult
        self._fileGroups: dict[str, tuple[TargetGroup, ...]] = {}
        self._stamps: dict[str, tuple[float, int]] = {}
        self._watcher: LoopingCall | None = None
        self.hunting = False
        self.membership = membership
        # Loops of targets another member has taken, still scraping until
        # it has surely started them, by target key: (loop, stop call, or
        # None while the new owner is joining).
        self._leaving: dict[str, tuple[ScrapeLoop, Any]] = {}
        # With C{auto}: the targets of this instance's share not scraped
        # yet since the hunt started (None once all were: it is warm).
        self._warming: set[str] | None = set()
        if membership is not None:
            membership.listeners.append(self._membersChanged)

    def startService(self) -> None:
        """
        Read the target files, and start every target's schedule once the
        store has connected: a scrape before that could only fail for
        want of somewhere to write.
        """
        super().startService()
        self.reloadTargetFiles()
        self._watchFiles()
        if self.membership is not None:
            # The members are read once the store has connected; the hunt
            # waits for them, so that a target is not hunted by two
            # instances for want of knowing of the other.
            self.membership.whenReady().addCallback(self._hunt)
            return
        whenStoreConnected(self.store).addCallback(self._hunt)

    def _hunt(self, _: object) -> None:
        """
        Start the schedules that are not running yet.
        """
        if not self.running or self.hunting:
            return
        self.hunting = True
        for loop in self.loops.values():
            loop.start()
        if self._warming is not None:
            self._warming = set(self.loops)
            self._checkWarm()

    def _checkWarm(self) -> None:
        """
        Tell the members once every target of this instance's share has
        been scraped once since the hunt started.
        """
        if self._warming is None or self._warming or not self.hunting:
            return
        self._warming = None
        if self.membership is not None:
            self.log.info("Every target of this instance's share has been "
                          "scraped once")
            self.membership.markWarm()

    def _watchFiles(self) -> None:
        """
        Look at the target files every C{target_files_check} while the
        current settings name some (they may come with a reload), and not
        otherwise.
        """
        watching = self._watcher is not None and self._watcher.running
        wanted = bool(self.targetSettings.target_files) and self.running
        if wanted and not watching:
            self._watcher = LoopingCall(self.reloadTargetFiles)
            self._watcher.clock = self.reactor
            self._watcher.start(self.targetSettings.target_files_check,
                                now=False)
        elif watching and not wanted:
            assert self._watcher is not None
            self._watcher.stop()

    def _membersChanged(self, members: tuple[str, ...]) -> None:
        """
        Take the targets the new members give this instance.  Targets
        given to another member are scraped on while that member is
        joining (it has not scraped its whole share once: a process that
        has just started can run its first scrapes late while it writes
        index rows), and for C{heartbeat_ttl} after: stopping them at
        once could leave a due scrape to nobody.  A few scrapes twice is
        the price.
        """
        self.reloadTargetFiles(force=True,
                               linger=self.settings.hunter.heartbeat_ttl)

    def _scheduleLeaving(self, linger: float) -> None:
        """
        Stop, C{linger} seconds from now, the loops given to a member that
        is no longer joining.
        """
        membership = self.membership
        for key, (loop, call) in list(self._leaving.items()):
            if call is not None:
                continue
            owner = None if membership is None else \
                membership.ownerOf("target|" + key)
            if membership is None or not membership.isJoining(owner):
                self._leaving[key] = (loop, self.reactor.callLater(
                    linger, self._left, key))

    def reloadTargetFiles(self, force: bool = False,
                          linger: float = 0.0) -> None:
        """
        Re-read target files that changed; a malformed file is reported and
        its last good groups kept.  Then start and stop loops to match.
        """
        paths = targetFiles(self.targetSettings.target_files)
        stamps = fileStamps(paths)
        if stamps == self._stamps and not force and self.loops:
            return
        changed = [p for p in paths if stamps.get(p) != self._stamps.get(p)]
        for path in changed:
            try:
                self._fileGroups[path] = readTargetFile(path)
                self.log.info("Read targets from {path}", path=path)
            except SettingsError as e:
                self.log.error("Keeping the last good targets of {path}: "
                               "{why}", path=path, why=str(e))
        for path in list(self._fileGroups):
            if path not in stamps:
                self.log.info("Target file {path} is gone", path=path)
                del self._fileGroups[path]
        self._stamps = stamps
        groups = [g for p in sorted(self._fileGroups)
                  for g in self._fileGroups[p]]
        self._apply(configuredTargets(self.targetSettings, groups,
                                      self._ownsTarget()), linger)
        # The targets and their loops live as long as the process: keep the
        # collector from scanning them again and again.
        gc.freeze()

    def _ownsTarget(self) -> Callable[[Target], bool] | None:
        """
        Which targets are this instance's with C{auto}: those the members
        give it (C{None}: the fixed shard decides).
        """
        membership = self.membership
        if membership is None:
            return None
        return lambda target: membership.owns("target|" + target.key)

    def applyTargets(self, hunter: HunterSettings) -> None:
        """
        Take the targets and target-file patterns of new hunter settings
        (a reload); the rest of them needs a restart.
        """
        self.targetSettings = self.targetSettings.model_copy(update={
            "targets": hunter.targets, "target_files": hunter.target_files})
        self.reloadTargetFiles(force=True)
        self._watchFiles()

    def _apply(self, targets: list[Target], linger: float = 0.0) -> None:
        wanted = {target.key: target for target in targets}
        for key in list(self.loops):
            if key not in wanted or wanted[key] != self.loops[key].target:
                loop = self.loops.pop(key)
                if self._warming is not None:
                    self._warming.discard(key)
                if linger > 0 and key not in wanted and self.hunting:
                    self._leaving[key] = (loop, None)
                else:
                    loop.stop()
        for key, target in wanted.items():
            leaving = self._leaving.get(key)
            if leaving is not None and leaving[0].target == target:
                # Given back before it left: it keeps its schedule.
                del self._leaving[key]
                if leaving[1] is not None:
                    leaving[1].cancel()
                self.loops[key] = leaving[0]
                continue
            if key not in self.loops:
                loop = ScrapeLoop(target, self.scraper, self.reactor,
                                  self._scraped, self.targetSettings.slot)
                self.loops[key] = loop
                if self.hunting:
                    loop.start()
                    if self._warming is not None:
                        self._warming.add(key)
        if linger > 0:
            self._scheduleLeaving(linger)
        self._checkWarm()

    def _left(self, key: str) -> None:
        loop, _ = self._leaving.pop(key)
        loop.stop()

    def _scraped(self, result: ScrapeResult) -> None:
        if self._warming:
            self._warming.discard(result.target.key)
            self._checkWarm()
        if self.onResult is not None:
            self.onResult(result)

    def stopService(self) -> Deferred[Any]:
        """
        Stop every schedule, let scrapes and fetches in flight finish, and
        close the connection pool.
        """
        super().stopService()
        self.hunting = False
        if self._watcher is not None and self._watcher.running:
            self._watcher.stop()
        for loop, call in self._leaving.values():
            if call is not None:
                call.cancel()
            self.loops.setdefault(loop.target.key, loop)
        self._leaving.clear()
        stopping = [loop.stop() for loop in self.loops.values()]
        stopping.append(self.jobs.drain())
        d = DeferredList(stopping, consumeErrors=True)
        return d.addCallback(lambda _: self.fetcher.close())

    def startFetch(self, nodes: list[str], path: str) -> Any:
        """
        Start an on-demand fetch of C{path} from C{nodes}: its job.
        """
        return self.jobs.start(nodes, path)

    def fetchJob(self, jobId: str) -> Any:
        """
        An on-demand fetch job by its id, or C{None} once forgotten.
        """
        return self.jobs.get(jobId)

    def healthCounts(self) -> dict[str, int]:
        """
        How many targets are up, down, and not scraped yet.
        """
        counts = {"up": 0, "down": 0, "unknown": 0}
        for loop in self.loops.values():
            counts[loop.health.health] += 1
        return counts

    def report(self) -> list[dict[str, Any]]:
        """
        Every target of this instance with its health, for C{/targets};
        with C{auto}, also those it hunts on while the member that took
        them starts (C{handover}: that member's name).
        """
        share = self.share()
        entries = []
        loops = {**{key: (loop, None) for key, (loop, _) in
                    self._leaving.items()},
                 **{key: (loop, True) for key, loop in self.loops.items()}}
        membership = self.membership
        for key in sorted(loops):
            loop, own = loops[key]
            target, health = loop.target, loop.health
            entries.append({
                "job": target.job,
                "node": target.node,
                "url": target.url,
                "interval": target.interval,
                "timeout": target.timeout,
                "labels": dict(target.labels),
                "health": health.health,
                "last_scrape": _time(health.lastScrapeMs),
                "last_duration": health.lastDuration,
                "samples_stored": health.samplesStored,
                "samples_skipped": health.samplesSkipped,
                "last_error": health.lastError,
                "next_scrape": _time(health.nextScrapeMs),
                "scrapes": health.scrapes,
                "failures": health.failures,
                "on_time": health.onTime,
                "retries": health.retries,
                "shard": share,
                "instance": self.instanceName(),
                "handover": None if own or membership is None
                else membership.ownerOf("target|" + key),
            })
        return entries

    def membersKnown(self) -> bool:
        """
        Whether this instance knows its share: always with a fixed shard,
        once the members have been read with C{auto}.
        """
        return self.membership is None or self.membership.ready

    def instanceName(self) -> str | None:
        """
        This instance's name among the members (C{None} with a fixed
        shard).
        """
        return None if self.membership is None else self.membership.instance

    def members(self) -> list[str]:
        """
        The live members sharing the hunt, as this instance sees them
        (none with a fixed shard).
        """
        return [] if self.membership is None else list(
            self.membership.members)

    def share(self) -> dict[str, int]:
        """
        This instance's share: its place among the members and their
        count (with C{auto}), or the fixed C{index} and C{count}.
        """
        if self.membership is not None:
            members = self.membership.members
            instance = self.membership.instance
            return {"index": members.index(instance)
                    if instance in members else 0,
                    "count": max(len(members), 1)}
        shard = self.settings.hunter.shard
        if isinstance(shard, str):
            return {"index": 0, "count": 1}
        return {"index": shard.index, "count": shard.count}


def _time(milliseconds: int | None) -> str | None:
    return None if milliseconds is None else formatTimestamp(milliseconds)
