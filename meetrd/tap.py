"""
The twistd plugin's options and the service tree, built in one place.

  meetr (SequentialMultiService: children stop one after the other,
         last first)
    store   connects the one Cassandra session, closes it last
    membership  heartbeats of the instances sharing the hunt (only with
                hunter.shard: auto)
    rollup  rolls raw partitions up (only with rollup levels set)
    hunter  fetches metrics from nodes on schedule and on demand
    reactor-lag  measures how long the reactor keeps work waiting
    collector    sets Python's garbage collector for a long-lived process
                 (started last: what start-up made is frozen) and times it
    graphite-drain  writes what Graphite connections left waiting
    graphite        the Graphite plaintext listener (only when set)
    web     the HTTP API, stopped first so nothing new comes in
    signals SIGTERM and SIGHUP
"""

from __future__ import annotations

import sys
from functools import partial
from typing import Any, Callable

from twisted.application import strports
from twisted.application.service import (
    IServiceCollection,
    MultiService,
    Service,
)
from twisted.internet.defer import Deferred, maybeDeferred
from pydantic import ValidationError
from twisted.python import usage

from meetrd.settings import (
    DEFAULT_PATH,
    Settings,
    SettingsError,
    Shard,
    describeErrors,
    loadSettings,
)


class Options(usage.Options):
    """
    C{twistd meetr} options; the command line beats the settings file.
    """

    synopsis = "[-c CONFIG] [--listen ENDPOINT]"
    longdesc = ("Run meetrd: the metrics HTTP API and the hunter, on one "
                "Cassandra session.")
    optParameters = [
        ["config", "c", DEFAULT_PATH, "The YAML settings file."],
        ["listen", "l", None,
         "The endpoint to listen on (a Twisted endpoint string such as "
         "tcp:8888); overrides the settings' 'listen'."],
        ["shard-index", None, None,
         "This instance's index among --shard-count instances sharing "
         "the targets; overrides hunter.shard.index."],
        ["shard-count", None, None,
         "How many instances share the targets; overrides "
         "hunter.shard.count."],
        ["instance", None, None,
         "This instance's name among the members sharing the hunt "
         "(hunter.shard: auto); overrides hunter.instance."],
    ]

    settings: Settings

    def postOptions(self) -> None:
        """
        Load and check the settings; a bad file ends twistd with one line
        on standard error and exit status 1.
        """
        try:
            self.settings = self.load()
        except SettingsError as e:
            sys.stderr.write(f"meetr: {e}\n")
            sys.stderr.flush()
            raise SystemExit(1)
        parent = getattr(self, "parent", None)
        if self.settings.log.format == "json" and parent is not None \
                and not parent.get("logger"):
            _chooseJSONLog(parent)

    def load(self) -> Settings:
        """
        Read the settings file and apply the command line's overrides.

        @raise SettingsError: when they are not valid.
        """
        settings = loadSettings(self["config"])
        overrides: dict[str, Any] = {}
        if self["listen"]:
            overrides["listen"] = self["listen"]
        if self["shard-index"] is not None or \
                self["shard-count"] is not None:
            current = settings.hunter.shard
            shard = {"index": 0, "count": 1} if isinstance(current, str) \
                else current.model_dump()
            for option, key in (("shard-index", "index"),
                                ("shard-count", "count")):
                if self[option] is not None:
                    shard[key] = _integer(self[option], option)
            try:
                checked = Shard.model_validate(shard)
            except ValidationError as e:
                raise SettingsError(f"--shard-index/--shard-count: "
                                    f"{describeErrors(e)}") from None
            overrides["hunter"] = settings.hunter.model_copy(
                update={"shard": checked})
        if self["instance"] is not None:
            if not self["instance"].strip():
                raise SettingsError("--instance: a name is needed")
            overrides["hunter"] = overrides.get(
                "hunter", settings.hunter).model_copy(
                    update={"instance": self["instance"]})
        if overrides:
            settings = settings.withOverrides(**overrides)
        _checkEndpoint(settings.listen,
                       "--listen" if self["listen"] else self["config"])
        if settings.graphite.listen is not None:
            _checkEndpoint(settings.graphite.listen,
                           f"{self['config']}: graphite")
        return settings


def _chooseJSONLog(parent: Any) -> None:
    """
    Make twistd log JSON events to where it would have logged text.

    twistd takes a log observer factory only by name (C{--logger}), and
    resolves that name after the subcommand's options are parsed; so the
    factory, which needs twistd's own C{--logfile} and C{--nodaemon}, is
    set once twistd's options are done, by running after its
    C{postOptions}.
    """
    from meetrd.logs import jsonObserver

    twistdPostOptions = parent.postOptions

    def postOptions() -> None:
        twistdPostOptions()
        parent["logger"] = partial(jsonObserver, parent.get("logfile"),
                                   bool(parent.get("nodaemon")))

    parent.postOptions = postOptions


def _integer(text: str, option: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise SettingsError(f"--{option}: not a whole number: {text!r}") \
            from None


def _checkEndpoint(description: str, source: str) -> None:
    """
    Refuse an endpoint string that cannot be parsed, before twistd starts.
    """
    from twisted.internet import endpoints, reactor

    try:
        endpoints.serverFromString(reactor, description)
    except Exception as e:
        raise SettingsError(f"{source}: listen: not a Twisted endpoint string "
                            f"{description!r}: {e}") from None


class SequentialMultiService(MultiService):
    """
    A C{MultiService} that stops its children one at a time, last added
    first, each once the one before it has finished stopping: the web
    server stops accepting, then the hunter finishes its scrapes, then the
    store lets the writes in flight end and closes the session.
    """

    async def _stopInTurn(self) -> None:
        for child in reversed(list(self)):
            await maybeDeferred(child.stopService)

    def stopService(self) -> Deferred[None]:
        """
        Stop the children in turn.
        """
        Service.stopService(self)
        return Deferred.fromCoroutine(self._stopInTurn())


def buildService(settings: Settings, reactor: Any,
                 reloadSettings: Callable[[], Settings] | None = None
                 ) -> MultiService:
    """
    The whole service tree of one meetrd process.

    @param reloadSettings: reads the settings again, for SIGHUP; without
        it, SIGHUP re-reads the target files only.
    """
    from meetrd.api import MetricsAPI
    from meetrd.signals import SignalService
    from meetrd.hunter.service import HunterService
    from meetrd.store import MetricStore
    from meetrd.storeservice import StoreService
    from meetrd.web import MeetrSite

    from meetrd.collector import CollectorTuning
    from meetrd.logs import bridgeDriverLogs
    from meetrd.reactorlag import ReactorLagProbe
    from meetrd.selfmetrics import SelfMetrics

    bridgeDriverLogs()
    root = SequentialMultiService()
    root.setName("meetr")
    store = MetricStore(settings.cassandra, settings.retentionSeconds, reactor,
                        rollups=settings.rollups)
    storeService = StoreService(store, reactor,
                                maxDelay=settings.cassandra.reconnect_max_delay,
                                grace=settings.shutdown_grace)
    storeService.setName("store")
    storeService.setServiceParent(root)
    membership = None
    if settings.hunter.shard == "auto":
        from meetrd.membership import Membership, defaultInstanceName

        membership = Membership(
            store, settings.hunter.instance or defaultInstanceName(),
            settings.hunter.heartbeat, settings.hunter.heartbeat_ttl,
            reactor)
        membership.setName("membership")
        membership.setServiceParent(root)
    rollup = None
    if settings.rollups:
        from meetrd.rollupservice import RollupService

        rollup = RollupService(store, settings.rollup, settings.hunter.shard,
                               reactor, membership)
        rollup.setName("rollup")
        rollup.setServiceParent(root)
    hunter = HunterService(settings, store, reactor, membership=membership)
    hunter.setName("hunter")
    hunter.setServiceParent(root)
    lag = ReactorLagProbe(reactor)
    lag.setName("reactor-lag")
    lag.setServiceParent(root)
    collector = CollectorTuning()
    collector.setName("collector")
    selfMetrics = SelfMetrics(store, hunter, rollup, lag, collector)
    hunter.onResult = selfMetrics.observeScrape
    api = MetricsAPI(store, settings, reactor, hunter=hunter,
                     selfMetrics=selfMetrics)
    site = MeetrSite(api.resource(), settings.http.max_body_size,
                     settings.http.access_log, reactor=reactor,
                     selfMetrics=selfMetrics)
    if settings.graphite.listen is not None:
        from meetrd.graphite import GraphiteDrain, GraphiteFactory, GraphiteIntake

        intake = GraphiteIntake(store, settings.limits, reactor, selfMetrics)
        drain = GraphiteDrain(intake, settings.shutdown_grace)
        drain.setName("graphite-drain")
        drain.setServiceParent(root)
        graphite = strports.service(settings.graphite.listen,
                                    GraphiteFactory(intake), reactor=reactor)
        graphite.setName("graphite")
        graphite.setServiceParent(root)
    web = strports.service(settings.listen, site, reactor=reactor)
    web.setName("web")
    web.setServiceParent(root)
    signals = SignalService(reactor, partial(reload, settings, hunter,
                                             reloadSettings),
                            keepUSR1=settings.log.format == "json")
    signals.setName("signals")
    signals.setServiceParent(root)
    collector.setServiceParent(root)
    return root


def reload(current: Settings, hunter: Any,
           reloadSettings: Callable[[], Settings] | None) -> None:
    """
    SIGHUP: re-read the settings and the target files; apply the targets,
    and log which other keys changed and need a restart.
    """
    from twisted.logger import Logger

    log = Logger(namespace="meetrd.reload")
    if reloadSettings is not None:
        try:
            fresh = reloadSettings()
        except SettingsError as e:
            log.error("Reload: keeping the current settings: {why}",
                      why=str(e))
            fresh = None
        if fresh is not None:
            changed = changedKeys(current, fresh)
            live = [k for k in changed if k.startswith(_LIVE_KEYS)]
            later = [k for k in changed if not k.startswith(_LIVE_KEYS)]
            hunter.applyTargets(fresh.hunter)
            log.info("Reload: applied {live}; needs a restart: {later}",
                     live=", ".join(live) or "nothing",
                     later=", ".join(later) or "nothing")
    hunter.reloadTargetFiles(force=True)


_LIVE_KEYS = ("hunter.targets", "hunter.target_files")


def changedKeys(old: Settings, new: Settings) -> list[str]:
    """
    The dotted keys whose values differ between two settings.
    """
    def flatten(value: Any, prefix: str) -> dict[str, Any]:
        if isinstance(value, dict) and value and prefix not in (
                "cassandra.replication.", "hunter.targets."):
            flat: dict[str, Any] = {}
            for key, item in value.items():
                flat.update(flatten(item, f"{prefix}{key}."))
            return flat
        return {prefix.rstrip("."): value}

    before = flatten(old.model_dump(), "")
    after = flatten(new.model_dump(), "")
    return sorted(k for k in before.keys() | after.keys()
                  if before.get(k) != after.get(k))


def makeService(options: Options) -> IServiceCollection:
    """
    twistd's entry point.
    """
    from twisted.internet import reactor

    return buildService(options.settings, reactor, options.load)
