"""
On-demand fetches, as Artemis did them: C{POST /fetch} names nodes and a
path; each node is fetched, parsed and stored in the background, and the
job can be asked for its progress until it is forgotten (after a time, or
when too many newer jobs push it out).
"""

from __future__ import annotations

import re
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Sequence

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from meetrd.hunter.scrape import ScrapeOrder, Scraper

_PATH = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=:@%/?\-]*")


class BadPath(ValueError):
    """
    The C{url} of a fetch is not a path on the node.
    """


def normalizePath(url: str) -> str:
    """
    The path to fetch on each node: Artemis took C{url} with or without a
    leading slash; anything that is not a plain path (a scheme, a host,
    spaces, a fragment) is refused.
    """
    path = "/" + url.lstrip("/")
    if path.startswith("//") or "://" in url or not _PATH.fullmatch(path) \
            or len(path) > 2048:
        raise BadPath("must be a path on the node, such as /metrics")
    return path


@dataclass
class NodeFetch:
    """
    One node of a job.
    """

    state: str = "pending"
    samples: int = 0
    error: str | None = None

    def asJSON(self) -> dict[str, Any]:
        """
        The node's report.
        """
        body: dict[str, Any] = {"state": self.state}
        if self.state == "ok":
            body["samples"] = self.samples
        if self.error is not None:
            body["error"] = self.error
        return body


@dataclass
class FetchJob:
    """
    One on-demand fetch of several nodes.
    """

    id: str
    path: str
    createdMs: int
    nodes: dict[str, NodeFetch] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        """
        Whether every node is done.
        """
        return all(n.state != "pending" for n in self.nodes.values())

    def asJSON(self) -> dict[str, Any]:
        """
        The job's report.
        """
        return {
            "job": self.id,
            "url": self.path,
            "state": "done" if self.finished else "running",
            "nodes": {node: fetch.asJSON()
                      for node, fetch in self.nodes.items()},
        }


class FetchJobs:
    """
    The jobs started by C{POST /fetch}, kept for a bounded time and number.
    """

    log = Logger()

    def __init__(self, scraper: Scraper, reactor: Any, timeout: float,
                 kept: int, ttl: float) -> None:
        self._scraper = scraper
        self._reactor = reactor
        self._timeout = timeout
        self._kept = kept
        self._ttl = ttl
        self._jobs: OrderedDict[str, FetchJob] = OrderedDict()
        self._running: set[Deferred[None]] = set()

    def start(self, nodes: Sequence[str], path: str) -> FetchJob:
        """
        Start fetching C{path} from each node; return the job at once.
        """
        self._prune()
        now = self._reactor.seconds()
        job = FetchJob(uuid.uuid4().hex, path, int(now * 1000))
        for node in nodes:
            job.nodes.setdefault(node, NodeFetch())
        self._jobs[job.id] = job
        for node in job.nodes:
            d = Deferred.fromCoroutine(self._fetchNode(job, node))
            self._running.add(d)
            d.addBoth(lambda _, d=d: self._running.discard(d))
        return job

    def get(self, jobId: str) -> FetchJob | None:
        """
        A job still kept, or C{None}.
        """
        self._prune()
        return self._jobs.get(jobId)

    def _prune(self) -> None:
        oldest = (self._reactor.seconds() - self._ttl) * 1000
        for jobId in [j for j, job in self._jobs.items()
                      if job.createdMs < oldest]:
            del self._jobs[jobId]
        while len(self._jobs) >= self._kept:
            self._jobs.popitem(last=False)

    async def _fetchNode(self, job: FetchJob, node: str) -> None:
        report = job.nodes[node]
        outcome = await self._scraper.scrape(ScrapeOrder(
            f"http://{node}{job.path}", self._timeout, "auto",
            {"node": node, "job": job.id},
            int(self._reactor.seconds() * 1000), followRedirects=False))
        if outcome.error is None:
            report.state, report.samples = "ok", outcome.samples
        else:
            report.state, report.error = "failed", outcome.error

    def drain(self) -> Deferred[Any]:
        """
        Fire when every fetch in flight is done.
        """
        from twisted.internet.defer import DeferredList

        return DeferredList(list(self._running), consumeErrors=True)
