"""
The twistd plugin's options and the service tree, built in one place.

  meetr (MultiService)
    store   connects the one Cassandra session, closes it last
    hunter  fetches metrics from nodes on schedule and on demand
    web     the HTTP API, stopped first so nothing new comes in
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.application import strports
from twisted.application.service import IServiceCollection, MultiService
from twisted.python import usage

from meetrd.settings import DEFAULT_PATH, Settings, SettingsError, loadSettings


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
    ]

    settings: Settings

    def postOptions(self) -> None:
        """
        Load and check the settings; a bad file ends twistd with one line
        on standard error and exit status 1.
        """
        try:
            settings = loadSettings(self["config"])
            overrides: dict[str, Any] = {}
            if self["listen"]:
                overrides["listen"] = self["listen"]
            if self["shard-index"] is not None or \
                    self["shard-count"] is not None:
                shard = settings.hunter.shard.model_dump()
                for option, key in (("shard-index", "index"),
                                    ("shard-count", "count")):
                    if self[option] is not None:
                        shard[key] = _integer(self[option], option)
                hunter = settings.hunter.model_dump()
                hunter["shard"] = shard
                data = settings.model_dump()
                data["hunter"] = hunter
                from meetrd.settings import settingsFromMapping
                settings = settingsFromMapping(data, "command line")
            if overrides:
                settings = settings.withOverrides(**overrides)
            _checkEndpoint(settings.listen)
        except SettingsError as e:
            sys.stderr.write(f"meetr: {e}\n")
            sys.stderr.flush()
            raise SystemExit(1)
        self.settings = settings


def _integer(text: str, option: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise SettingsError(f"--{option}: not a whole number: {text!r}") \
            from None


def _checkEndpoint(description: str) -> None:
    """
    Refuse an endpoint string that cannot be parsed, before twistd starts.
    """
    from twisted.internet import endpoints, reactor

    try:
        endpoints.serverFromString(reactor, description)
    except Exception as e:
        raise SettingsError(f"listen: not a Twisted endpoint string "
                            f"{description!r}: {e}") from None


def buildService(settings: Settings, reactor: Any) -> MultiService:
    """
    The whole service tree of one meetrd process.
    """
    from meetrd.api import MetricsAPI
    from meetrd.hunter.service import HunterService
    from meetrd.store import MetricStore
    from meetrd.storeservice import StoreService
    from meetrd.web import MeetrSite

    root = MultiService()
    root.setName("meetr")
    store = MetricStore(settings.cassandra, settings.retentionSeconds, reactor)
    storeService = StoreService(store, reactor,
                                maxDelay=settings.cassandra.reconnect_max_delay,
                                grace=settings.shutdown_grace)
    storeService.setName("store")
    storeService.setServiceParent(root)
    hunter = HunterService(settings, store, reactor)
    hunter.setName("hunter")
    hunter.setServiceParent(root)
    api = MetricsAPI(store, settings, reactor, hunter=hunter)
    site = MeetrSite(api.resource(), settings.http.max_body_size,
                     settings.http.access_log, reactor=reactor)
    web = strports.service(settings.listen, site, reactor=reactor)
    web.setName("web")
    web.setServiceParent(root)
    return root


def makeService(options: Options) -> IServiceCollection:
    """
    twistd's entry point.
    """
    from twisted.internet import reactor

    return buildService(options.settings, reactor)
