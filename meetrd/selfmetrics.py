"""
meetrd's own metrics, in the Prometheus text format, made with
C{prometheus_client} on a registry of this process's own (never the
library's global one).
"""

from __future__ import annotations

from typing import Any, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import generate_latest

ROUTES = ("/1.0/metrics", "/fetch", "/targets", "/health", "/ready",
          "/metrics", "/openapi.json", "/1.0/metric_names", "/")


def routeOf(path: bytes) -> str:
    """
    The route template a path falls under, so that labels stay few.
    """
    text = path.decode("latin-1")
    if text.startswith("/fetch/"):
        return "/fetch/{job}"
    if text.startswith("/console/"):
        return "/console/{asset}"
    return text if text in ROUTES else "other"


class _StoreCollector:
    """
    Reads the store's and the hunter's counters when scraped.
    """

    def __init__(self, store: Any, hunter: Any, rollup: Any = None) -> None:
        self._store = store
        self._hunter = hunter
        self._rollup = rollup

    def collect(self) -> Iterator[Any]:
        store = self._store
        inFlight = GaugeMetricFamily(
            "meetr_cassandra_requests_in_flight",
            "Requests to Cassandra in flight.")
        inFlight.add_metric([], store.inFlight)
        yield inFlight
        requests = CounterMetricFamily(
            "meetr_cassandra_requests", "Requests sent to Cassandra.")
        requests.add_metric([], store.requests)
        yield requests
        errors = CounterMetricFamily(
            "meetr_cassandra_errors", "Failed requests to Cassandra, by kind.",
            labels=["kind"])
        for kind, count in sorted(store.errors.items()):
            errors.add_metric([kind], count)
        yield errors
        ready = GaugeMetricFamily(
            "meetr_cassandra_ready",
            "1 when the Cassandra session is up and the schema in place.")
        ready.add_metric([], 1.0 if store.ready else 0.0)
        yield ready
        queue = getattr(store, "indexQueue", None)
        if queue is not None:
            queued = GaugeMetricFamily(
                "meetr_index_queue_rows",
                "Index rows of new scraped series waiting to be written "
                "behind their points.")
            queued.add_metric([], queue.queued)
            yield queued
            failed = CounterMetricFamily(
                "meetr_index_queue_failures",
                "Batches of queued index rows that failed and were queued "
                "again.")
            failed.add_metric([], queue.failures)
            yield failed
        if self._hunter is not None:
            targets = GaugeMetricFamily(
                "meetr_hunter_targets", "Targets hunted, by health.",
                labels=["health"])
            for state, count in self._hunter.healthCounts().items():
                targets.add_metric([state], count)
            yield targets
        rollup = self._rollup
        if rollup is not None:
            yield _single(GaugeMetricFamily, "meetr_rollup_lag_seconds",
                          "How long the oldest raw partition due for rollup "
                          "has waited (0 when none waits).", rollup.lag)
            yield _single(GaugeMetricFamily, "meetr_rollup_backlog",
                          "Raw partitions due for rollup and not yet rolled "
                          "up.", rollup.backlog)
            yield _single(CounterMetricFamily, "meetr_rollup_partitions",
                          "Raw partitions rolled up.", rollup.rolled)
            yield _single(CounterMetricFamily, "meetr_rollup_failures",
                          "Rollups and pack merges that failed (they are "
                          "tried again).", rollup.failures)
            yield _single(GaugeMetricFamily, "meetr_rollup_pack_backlog",
                          "Rollup packs due for merging and not yet merged.",
                          rollup.packBacklog)
            yield _single(CounterMetricFamily, "meetr_rollup_packs_merged",
                          "Rollup packs merged.", rollup.packsMerged)


def _single(family: Any, name: str, text: str, value: float) -> Any:
    """
    A metric family of one unlabelled sample.
    """
    metric = family(name, text)
    metric.add_metric([], value)
    return metric


class _LagCollector:
    """
    Reads the reactor lag probe's longest stalls when scraped.
    """

    def __init__(self, lag: Any) -> None:
        self._lag = lag

    def collect(self) -> Iterator[Any]:
        yield _single(GaugeMetricFamily, "meetr_reactor_lag_seconds",
                      "The longest time the reactor kept other work "
                      "waiting in the last 10 seconds.",
                      self._lag.recentLongest())
        yield _single(GaugeMetricFamily, "meetr_reactor_lag_longest_seconds",
                      "The longest time the reactor kept other work "
                      "waiting since the start.", self._lag.longest)


class _CollectorCollector:
    """
    Reads the garbage collector's timings when scraped.
    """

    def __init__(self, tuning: Any) -> None:
        self._tuning = tuning

    def collect(self) -> Iterator[Any]:
        seconds = CounterMetricFamily(
            "meetr_gc_seconds", "Time spent in Python's cyclic garbage "
            "collector, by generation.", labels=["generation"])
        runs = CounterMetricFamily(
            "meetr_gc_collections", "Collections by Python's cyclic "
            "garbage collector, by generation.", labels=["generation"])
        for generation in range(3):
            seconds.add_metric([str(generation)],
                               self._tuning.seconds[generation])
            runs.add_metric([str(generation)],
                            self._tuning.collections[generation])
        yield seconds
        yield runs
        yield _single(GaugeMetricFamily, "meetr_gc_longest_seconds",
                      "The longest collection since the start.",
                      self._tuning.longest)


class SelfMetrics:
    """
    The metrics meetrd keeps about itself.
    """

    def __init__(self, store: Any = None, hunter: Any = None,
                 rollup: Any = None, lag: Any = None,
                 collector: Any = None) -> None:
        """
        @param lag: a L{meetrd.reactorlag.ReactorLagProbe} to report, whose
            C{observe} this sets.
        @param collector: a L{meetrd.collector.CollectorTuning} to report.
        """
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            "meetr_http_requests", "HTTP requests answered.",
            ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram(
            "meetr_http_request_duration_seconds",
            "Time from a request's headers to its last byte.", ["route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                     1, 2.5, 5, 10))
        self.pointsWritten = Counter(
            "meetr_points_written", "Points acknowledged to clients.",
            registry=self.registry)
        self.pointsRejected = Counter(
            "meetr_points_rejected", "Points refused as invalid.",
            registry=self.registry)
        self.graphiteLinesBad = Counter(
            "meetr_graphite_lines_rejected",
            "Graphite plaintext lines refused as invalid (skipped; the "
            "connection is kept).", registry=self.registry)
        self.remoteSkipped = Counter(
            "meetr_remote_write_samples_skipped",
            "Remote write samples not stored: staleness markers (stale) and "
            "other NaN or infinite values (not_finite).", ["reason"],
            registry=self.registry)
        self.queryReads = Counter(
            "meetr_promql_selector_reads",
            "Selectors of PromQL queries read, by how: every sample "
            "(samples), windows summarized by Cassandra (raw summary), or "
            "the coarsest rollup level read.", ["read"],
            registry=self.registry)
        self.scrapes = Counter(
            "meetr_hunter_scrapes", "Scrapes by result.", ["result"],
            registry=self.registry)
        self.scrapeDuration = Histogram(
            "meetr_hunter_scrape_duration_seconds",
            "Time of a scrape, fetch to stored.", registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
                     30))
        self.scrapeLateness = Histogram(
            "meetr_hunter_scrape_lateness_seconds",
            "How long after its due time a scrape started.",
            registry=self.registry,
            buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
        if store is not None:
            self.registry.register(_StoreCollector(store, hunter, rollup))
        if lag is not None:
            probes = Histogram(
                "meetr_reactor_lag_probe_seconds",
                "How late each reactor probe (every 50 ms) ran: how long "
                "the reactor was busy past its due moment.",
                registry=self.registry,
                buckets=(0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1,
                         2.5, 5))
            lag.observe = probes.observe
            self.registry.register(_LagCollector(lag))
        if collector is not None:
            self.registry.register(_CollectorCollector(collector))

    def observeRequest(self, route: str, method: str, status: int,
                       seconds: float | None) -> None:
        """
        Count one answered request.
        """
        self.requests.labels(route, method, str(status)).inc()
        if seconds is not None:
            self.latency.labels(route).observe(seconds)

    def observeScrape(self, result: Any) -> None:
        """
        Count one scrape (a L{meetrd.hunter.scrape.ScrapeResult}).
        """
        self.scrapes.labels("ok" if result.ok else "failed").inc()
        self.scrapeDuration.observe(result.duration)
        self.scrapeLateness.observe(result.lateness)

    def render(self) -> bytes:
        """
        The text exposition of every metric.
        """
        return generate_latest(self.registry)
