"""
The metric store: the only module that knows CQL.

One C{Cluster} and one C{Session} per process, connected through the
driver's Twisted reactor support.  Blocking driver calls (connect, schema,
prepare, shutdown) run in the reactor's thread pool; queries run with
C{execute_async} and come back as Deferreds, with the number of requests in
flight capped by a C{DeferredSemaphore}.

The tables (see L{meetrd.layout} for the partitioning):

  - C{series}: one partition per metric listing its series, their tags and
    the partition family (source and bucket width) of their points;
  - C{points}: partitions keyed by C{(source, bucket)}, clustered by
    C{(series_id, ts)}, so that one series' points in a partition are a
    contiguous slice Cassandra can aggregate by itself.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from twisted.internet.defer import (
    Deferred,
    DeferredList,
    DeferredSemaphore,
)
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from meetrd.aggregate import Partial
from meetrd.driverbridge import executeAsync
from meetrd.layout import Placement, bucketCount, bucketsBetween, placeSeries
from meetrd.points import Point, Tags
from meetrd.settings import CassandraSettings
from meetrd.twistedconnection import clientTLS, twistedConnectionClass

# Rows of one partition sent as one unlogged batch at most.
MAX_BATCH_ROWS = 1000
# Partitions of one row each sent together, when they share a replica: at
# Cassandra's default threshold for warning of unlogged batches across
# partitions (unlogged_batch_across_partitions_warn_threshold: 10).
MAX_LONE_PER_BATCH = 10
# Series named in one IN list at most.
MAX_IN_SERIES = 100
# Series (and buckets) whose index row this process knows to be written.
SERIES_CACHE_SIZE = 500_000
# A source whose searched range spans more buckets than this has the
# buckets that hold points looked up first, and only those read.
PRUNE_OVER = 4


class StoreUnavailable(Exception):
    """
    Cassandra cannot be used right now; the message says why.
    """


def _driverErrors() -> tuple[type[BaseException], ...]:
    """
    The driver's exceptions that mean "Cassandra is unavailable or slow"
    rather than "this request is wrong".
    """
    from cassandra import (
        OperationTimedOut,
        ReadFailure,
        ReadTimeout,
        Unavailable,
        WriteFailure,
        WriteTimeout,
    )
    from cassandra.cluster import NoHostAvailable
    from cassandra.connection import ConnectionException

    return (NoHostAvailable, OperationTimedOut, Unavailable, ReadTimeout,
            WriteTimeout, ReadFailure, WriteFailure, ConnectionException)


@dataclass(frozen=True, slots=True)
class SeriesRow:
    """
    One series of a metric as the index records it.
    """

    metric: str
    seriesId: bytes
    tags: Tags
    source: str
    bucketMs: int


@dataclass(frozen=True, slots=True)
class Summary:
    """
    What Cassandra computed for one series, in one partition, for one
    interval (C{intervalStart} is C{None} without intervals).
    """

    seriesId: bytes
    intervalStart: int | None
    partial: Partial


_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS {ks}.series (
        metric text,
        series_id blob,
        tags map<text, text>,
        source text,
        bucket_ms bigint,
        PRIMARY KEY ((metric), series_id)
    ) WITH comment = 'meetrd: the series of each metric'""",
    """CREATE TABLE IF NOT EXISTS {ks}.points (
        source text,
        bucket bigint,
        series_id blob,
        ts timestamp,
        value double,
        PRIMARY KEY ((source, bucket), series_id, ts)
    ) WITH CLUSTERING ORDER BY (series_id ASC, ts ASC)
      AND comment = 'meetrd: points by source and time bucket'
      AND compaction = {{'class': 'TimeWindowCompactionStrategy',
                         'compaction_window_unit': 'DAYS',
                         'compaction_window_size': 1}}""",
    """CREATE TABLE IF NOT EXISTS {ks}.buckets (
        source text,
        bucket bigint,
        PRIMARY KEY ((source), bucket)
    ) WITH comment = 'meetrd: the buckets of each source that hold points'""",
)

_INSERT_POINT = (
    "INSERT INTO {ks}.points (source, bucket, series_id, ts, value) "
    "VALUES (?, ?, ?, ?, ?)"
)
# With a retention, the TTL is bound too (a sixth value per row; without
# one the statement binds five).
_WITH_TTL = " USING TTL ?"
_INSERT_SERIES = (
    "INSERT INTO {ks}.series (metric, series_id, tags, source, bucket_ms) "
    "VALUES (?, ?, ?, ?, ?) USING TTL ?"
)
_INSERT_BUCKET = (
    "INSERT INTO {ks}.buckets (source, bucket) VALUES (?, ?) USING TTL ?"
)
_SELECT_BUCKETS = (
    "SELECT bucket FROM {ks}.buckets WHERE source = ? AND bucket >= ? "
    "AND bucket <= ?"
)
_SELECT_SERIES = (
    "SELECT series_id, tags, source, bucket_ms FROM {ks}.series "
    "WHERE metric = ?"
)
_AGGREGATES = "count(value), sum(value), min(value), max(value)"
_SUMMARY = (
    "SELECT series_id, toUnixTimestamp(ts), value, " + _AGGREGATES +
    " FROM {ks}.points WHERE source = ? AND bucket = ? AND series_id IN ? "
    "AND ts >= ? AND ts <= ? GROUP BY series_id"
)
# The interval and its start are bound twice, by position: in the selected
# floor and in the grouping one (the caller binds the same to both).  The
# start is an epoch-aligned instant at or before the range: Cassandra's
# floor() refuses instants before its start, which is the epoch unless
# given.
_SUMMARY_BY_INTERVAL = (
    "SELECT series_id, toUnixTimestamp(floor(ts, ?, ?)), "
    "toUnixTimestamp(ts), value, " + _AGGREGATES +
    " FROM {ks}.points WHERE source = ? AND bucket = ? AND series_id IN ? "
    "AND ts >= ? AND ts <= ? GROUP BY series_id, floor(ts, ?, ?)"
)
_NEWEST_FIRST = " ORDER BY series_id DESC, ts DESC"


@dataclass(frozen=True)
class _Statements:
    """
    The prepared statements of one session.
    """

    insertPoint: Any
    insertSeries: Any
    insertBucket: Any
    selectBuckets: Any
    selectSeries: Any
    summary: Any
    summaryLast: Any
    byInterval: Any
    byIntervalLast: Any


class MetricStore:
    """
    Points in, summaries out, all through one Cassandra session.

    @ivar inFlight: requests to Cassandra in flight now.
    @ivar requests: requests sent so far.
    @ivar errors: failed requests so far, by the driver's exception name.
    """

    log = Logger()

    def __init__(self, settings: CassandraSettings, retentionSeconds: int,
                 reactor: Any, connectionClass: type | None = None) -> None:
        """
        @param settings: the C{cassandra} settings.
        @param retentionSeconds: the TTL of every write; 0 keeps forever.
        @param reactor: the reactor, for threads and C{callFromThread}.
        @param connectionClass: the driver's connection class; defaults to
            its Twisted one.
        """
        self._settings = settings
        self._ttl = retentionSeconds
        self._reactor = reactor
        self._connectionClass = connectionClass
        self._semaphore = DeferredSemaphore(settings.max_in_flight)
        self._cluster: Any = None
        self._session: Any = None
        self._statements: _Statements | None = None
        self._knownSeries: OrderedDict[tuple[str, Tags], tuple[Placement, float]] = OrderedDict()
        self._knownBuckets: OrderedDict[tuple[str, int], float] = OrderedDict()
        self._unavailable: tuple[type[BaseException], ...] = ()
        self._connected = False
        self._lastError = f"connecting to Cassandra at {self.contactPoints}"
        self.inFlight = 0
        self.requests = 0
        self.errors: dict[str, int] = {}

    @property
    def ready(self) -> bool:
        """
        Whether the session is connected, the schema in place and at least
        one Cassandra node up.
        """
        if not self._connected or self._cluster is None:
            return False
        return any(host.is_up for host in self._cluster.metadata.all_hosts())

    @property
    def lastError(self) -> str:
        """
        Why the store is not ready, or C{""} when it is.
        """
        if self._connected and not self.ready:
            return f"no Cassandra node is up (contact points " \
                   f"{self.contactPoints})"
        return self._lastError

    @property
    def contactPoints(self) -> str:
        """
        The contact points as C{host:port}, for messages.
        """
        return ", ".join(f"{host}:{self._settings.port}"
                         for host in self._settings.contact_points)

    # Connecting and closing

    def connect(self) -> Deferred[None]:
        """
        Connect, create the keyspace and tables when missing, and prepare
        the statements.  Fails with L{StoreUnavailable} naming the contact
        points when Cassandra cannot be reached.
        """
        self._unavailable = _driverErrors()
        d = deferToThreadPool(self._reactor, self._reactor.getThreadPool(),
                              self._connectBlocking)

        def connected(result: tuple[Any, Any, _Statements]) -> None:
            self._cluster, self._session, self._statements = result
            self._connected = True
            self._lastError = ""

        def failed(failure: Any) -> Any:
            self._lastError = (f"cannot reach Cassandra at "
                               f"{self.contactPoints}: "
                               f"{_describe(failure.value)}")
            raise StoreUnavailable(self._lastError)

        return d.addCallbacks(connected, failed)

    def _connectBlocking(self) -> tuple[Any, Any, _Statements]:
        """
        Everything of L{connect} that blocks; runs in a thread.
        """
        from cassandra import ConsistencyLevel
        from cassandra.auth import PlainTextAuthProvider
        from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
        from cassandra.policies import (
            DCAwareRoundRobinPolicy,
            ExponentialReconnectionPolicy,
            TokenAwarePolicy,
        )

        settings = self._settings
        profile = ExecutionProfile(
            load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
            consistency_level=getattr(ConsistencyLevel, settings.consistency.read),
            request_timeout=settings.request_timeout,
        )
        auth = None
        if settings.username is not None:
            password = ""
            if settings.password_file:
                with open(settings.password_file) as f:
                    password = f.read().strip()
            auth = PlainTextAuthProvider(settings.username, password)
        tls = None
        if settings.tls.enabled:
            tls = clientTLS(settings.tls.ca_file,  # type: ignore[arg-type]
                            settings.tls.cert_file, settings.tls.key_file,
                            settings.tls.server_name,
                            settings.tls.check_hostname)
        cluster = Cluster(
            contact_points=list(settings.contact_points),
            ssl_context=tls,
            port=settings.port,
            connection_class=self._connectionClass or twistedConnectionClass(),
            connect_timeout=settings.connect_timeout,
            control_connection_timeout=settings.connect_timeout,
            reconnection_policy=ExponentialReconnectionPolicy(
                0.5, settings.reconnect_max_delay),
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
            auth_provider=auth,
        )
        try:
            session = cluster.connect()
            ks = settings.keyspace
            session.execute(
                f"CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = "
                f"{settings.replicationCQL()}",
                timeout=max(settings.request_timeout, 30.0))
            for ddl in _SCHEMA:
                session.execute(ddl.format(ks=ks),
                                timeout=max(settings.request_timeout, 30.0))
            writeLevel = getattr(ConsistencyLevel, settings.consistency.write)
            insertPoint = session.prepare(
                _INSERT_POINT.format(ks=ks) + (_WITH_TTL if self._ttl else ""))
            insertPoint.consistency_level = writeLevel
            insertSeries = session.prepare(_INSERT_SERIES.format(ks=ks))
            insertSeries.consistency_level = writeLevel
            insertBucket = session.prepare(_INSERT_BUCKET.format(ks=ks))
            insertBucket.consistency_level = writeLevel
            statements = _Statements(
                insertPoint=insertPoint,
                insertSeries=insertSeries,
                insertBucket=insertBucket,
                selectBuckets=session.prepare(_SELECT_BUCKETS.format(ks=ks)),
                selectSeries=session.prepare(_SELECT_SERIES.format(ks=ks)),
                summary=_unpaged(session.prepare(_SUMMARY.format(ks=ks))),
                summaryLast=_unpaged(session.prepare(
                    _SUMMARY.format(ks=ks) + _NEWEST_FIRST)),
                byInterval=session.prepare(_SUMMARY_BY_INTERVAL.format(ks=ks)),
                byIntervalLast=session.prepare(
                    _SUMMARY_BY_INTERVAL.format(ks=ks) + _NEWEST_FIRST),
            )
        except BaseException:
            cluster.shutdown()
            raise
        return cluster, session, statements

    def close(self) -> Deferred[None]:
        """
        Shut the cluster down; the store is unusable afterwards.
        """
        cluster, self._cluster, self._session = self._cluster, None, None
        self._connected = False
        self._lastError = "closed"
        if cluster is None:
            return Deferred.fromCoroutine(_nothing())
        return deferToThreadPool(self._reactor, self._reactor.getThreadPool(),
                                 cluster.shutdown)

    # Running statements

    def _run(self, statement: Any, parameters: Sequence[Any] | None
             ) -> Deferred[list[Any]]:
        """
        Run one statement within the cap on requests in flight; driver
        errors that mean Cassandra is unavailable become L{StoreUnavailable}.
        """
        return self._semaphore.run(self._runNow, statement, parameters)

    def _runNow(self, statement: Any, parameters: Sequence[Any] | None
                ) -> Deferred[list[Any]]:
        session = self._session
        if session is None:
            raise StoreUnavailable(self.lastError or "not connected")
        self.inFlight += 1
        self.requests += 1
        d = executeAsync(self._reactor, session, statement, parameters,
                         self._settings.request_timeout)

        def done(result: Any) -> Any:
            self.inFlight -= 1
            return result

        def translate(failure: Any) -> Any:
            kind = type(failure.value).__name__
            self.errors[kind] = self.errors.get(kind, 0) + 1
            if failure.check(*self._unavailable):
                raise StoreUnavailable(_describe(failure.value))
            return failure

        return d.addBoth(done).addErrback(translate)

    def _replicaOf(self, bound: Any) -> Any:
        """
        The first replica of a bound statement's partition (C{None} when
        unknown), so that lone rows bound for the same node can share a
        request that node coordinates itself.
        """
        try:
            replicas = self._cluster.metadata.get_replicas(
                self._settings.keyspace, bound.routing_key)
        except Exception:
            return None
        return replicas[0].endpoint if replicas else None

    def _require(self) -> _Statements:
        if self._statements is None or self._session is None:
            raise StoreUnavailable(self.lastError or "not connected")
        return self._statements

    # Writing

    def writePoints(self, points: Iterable[Point]) -> Deferred[int]:
        """
        Write points and their series' index rows; fire with the number of
        points once Cassandra has acknowledged every write, or fail.

        Points of one partition go as unlogged batches of at most
        L{MAX_BATCH_ROWS} rows; each partition is a request of its own.
        """
        try:
            statements = self._require()
        except StoreUnavailable as e:
            return _failed(e)
        from cassandra.query import BatchStatement, BatchType

        now = self._reactor.seconds()
        known = self._knownSeries
        refreshAfter = self._ttl / 4 if self._ttl else None
        partitions: defaultdict[tuple[str, int], list[tuple[bytes, int, float]]] = defaultdict(list)
        fresh: dict[tuple[str, Tags], Placement] = {}
        bucketWidths: dict[str, int] = {}
        count = 0
        for point in points:
            key = (point.metric, point.tags)
            entry = known.get(key)
            if entry is None or (refreshAfter is not None
                                 and now - entry[1] > refreshAfter):
                placement = fresh.get(key) or placeSeries(*key)
                fresh[key] = placement
            else:
                placement = entry[0]
            partitions[(placement.source, point.ts_ms // placement.bucketMs)
                       ].append((placement.seriesId, point.ts_ms, point.value))
            bucketWidths[placement.source] = placement.bucketMs
            count += 1

        ttl = self._ttl
        requests = []
        for (metric, tags), placement in fresh.items():
            requests.append(self._run(statements.insertSeries, (
                metric, placement.seriesId, dict(tags), placement.source,
                placement.bucketMs, ttl)))
        knownBuckets = self._knownBuckets
        freshBuckets = [key for key in partitions if key not in knownBuckets]
        for source, bucket in freshBuckets:
            width = bucketWidths[source]
            requests.append(self._run(statements.insertBucket, (
                source, bucket, ttl + width // 1000 + 1 if ttl else 0)))
        insert = statements.insertPoint
        ttlValue = (ttl,) if ttl else ()
        writeLevel = insert.consistency_level
        lone: defaultdict[Any, list[Any]] = defaultdict(list)
        for (source, bucket), rows in partitions.items():
            if len(rows) == 1:
                bound = insert.bind((source, bucket, *rows[0], *ttlValue))
                lone[self._replicaOf(bound)].append(bound)
                continue
            for start in range(0, len(rows), MAX_BATCH_ROWS):
                chunk = rows[start:start + MAX_BATCH_ROWS]
                batch = BatchStatement(BatchType.UNLOGGED,
                                       consistency_level=writeLevel)
                for row in chunk:
                    batch.add(insert, (source, bucket, *row, *ttlValue))
                requests.append(self._run(batch, None))
        for bounds in lone.values():
            for start in range(0, len(bounds), MAX_LONE_PER_BATCH):
                chunk = bounds[start:start + MAX_LONE_PER_BATCH]
                if len(chunk) == 1:
                    requests.append(self._run(chunk[0], None))
                    continue
                batch = BatchStatement(BatchType.UNLOGGED,
                                       consistency_level=writeLevel)
                for bound in chunk:
                    batch.add(bound)
                requests.append(self._run(batch, None))

        def settled(results: list[tuple[bool, Any]]) -> int:
            for ok, result in results:
                if not ok:
                    result.raiseException()
            for key, placement in fresh.items():
                known[key] = (placement, now)
                known.move_to_end(key)
            while len(known) > SERIES_CACHE_SIZE:
                known.popitem(last=False)
            for bucketKey in freshBuckets:
                knownBuckets[bucketKey] = now
            while len(knownBuckets) > SERIES_CACHE_SIZE:
                knownBuckets.popitem(last=False)
            return count

        return DeferredList(requests, consumeErrors=True).addCallback(settled)

    # Reading

    def seriesOf(self, metric: str) -> Deferred[list[SeriesRow]]:
        """
        Every series of a metric, from the index.
        """
        try:
            statements = self._require()
        except StoreUnavailable as e:
            return _failed(e)

        def rows(found: list[Any]) -> list[SeriesRow]:
            return [
                SeriesRow(metric, row[0], tuple(sorted((row[1] or {}).items())),
                          row[2], row[3])
                for row in found
            ]

        return self._run(statements.selectSeries, (metric,)).addCallback(rows)

    def partitionReads(self, series: Sequence[SeriesRow], fromMs: int,
                       toMs: int, present: dict[str, set[int]] | None = None
                       ) -> list[tuple[str, int, list[bytes]]]:
        """
        The partition reads a summary of C{series} over C{[fromMs, toMs]}
        needs: C{(source, bucket, seriesIds)}, at most L{MAX_IN_SERIES}
        series each.

        @param present: for some sources, the buckets known to hold points;
            the other buckets of those sources are not read.
        """
        bySource: defaultdict[tuple[str, int], list[bytes]] = defaultdict(list)
        for row in series:
            bySource[(row.source, row.bucketMs)].append(row.seriesId)
        reads = []
        for (source, bucketMs), ids in bySource.items():
            buckets: Iterable[int] = bucketsBetween(fromMs, toMs, bucketMs)
            if present is not None and source in present:
                buckets = sorted(present[source])
            for bucket in buckets:
                for start in range(0, len(ids), MAX_IN_SERIES):
                    reads.append((source, bucket,
                                  ids[start:start + MAX_IN_SERIES]))
        return reads

    def presentBuckets(self, series: Sequence[SeriesRow], fromMs: int,
                       toMs: int) -> Deferred[dict[str, set[int]]]:
        """
        For each source whose range spans more than L{PRUNE_OVER} buckets,
        the buckets in range that hold points (one read of the bucket
        index per such source); sources of fewer buckets are left out and
        read whole.
        """
        statements = self._require()
        wide = {(row.source, row.bucketMs) for row in series
                if bucketCount(fromMs, toMs, row.bucketMs) > PRUNE_OVER}
        sources = sorted(wide)
        reads = [self._run(statements.selectBuckets,
                           (source, fromMs // width, toMs // width))
                 for source, width in sources]

        def collect(results: list[tuple[bool, Any]]) -> dict[str, set[int]]:
            present = {}
            for (source, _), (ok, rows) in zip(sources, results):
                if not ok:
                    rows.raiseException()
                present[source] = {row[0] for row in rows}
            return present

        return DeferredList(reads, consumeErrors=True).addCallback(collect)

    def summarize(self, series: Sequence[SeriesRow], fromMs: int, toMs: int,
                  intervalMs: int | None = None, newestFirst: bool = False
                  ) -> Deferred[list[Summary]]:
        """
        Have Cassandra summarize the points of C{series} in the inclusive
        range, per series and partition (and per interval when
        C{intervalMs} is given).

        With C{newestFirst} the summaries know each group's last point,
        otherwise its first.
        """
        try:
            statements = self._require()
        except StoreUnavailable as e:
            return _failed(e)
        if intervalMs is None:
            statement = (statements.summaryLast if newestFirst
                         else statements.summary)

            def parameters(source: str, bucket: int, ids: list[bytes]
                           ) -> tuple[Any, ...]:
                return (source, bucket, ids, fromMs, toMs)
        else:
            from cassandra.util import Duration

            width = Duration(0, 0, intervalMs * 1_000_000)
            origin = fromMs - fromMs % intervalMs
            statement = (statements.byIntervalLast if newestFirst
                         else statements.byInterval)

            def parameters(source: str, bucket: int, ids: list[bytes]
                           ) -> tuple[Any, ...]:
                return (width, origin, source, bucket, ids, fromMs, toMs,
                        width, origin)

        def readAll(present: dict[str, set[int]]
                    ) -> Deferred[list[tuple[bool, Any]]]:
            plan = self.partitionReads(series, fromMs, toMs, present)
            return DeferredList([
                self._run(statement, parameters(source, bucket, ids))
                for source, bucket, ids in plan], consumeErrors=True)

        def collect(results: list[tuple[bool, Any]]) -> list[Summary]:
            summaries = []
            for ok, rows in results:
                if not ok:
                    rows.raiseException()
                for row in rows:
                    summaries.append(_summaryFromRow(row, intervalMs is not None,
                                                     newestFirst))
            return summaries

        return self.presentBuckets(series, fromMs, toMs).addCallback(
            readAll).addCallback(collect)


def _unpaged(statement: Any) -> Any:
    """
    A summary statement read without paging: it answers one row per series
    (at most L{MAX_IN_SERIES}), and an aggregate read in pages costs
    Cassandra a fresh aggregation state per page.
    """
    statement.fetch_size = None
    return statement


def _summaryFromRow(row: Sequence[Any], byInterval: bool,
                    newestFirst: bool) -> Summary:
    """
    A L{Summary} from one row of a summary query.
    """
    if byInterval:
        seriesId, intervalStart, ts, value, count, total, low, high = row
    else:
        seriesId, ts, value, count, total, low, high = row
        intervalStart = None
    partial = Partial(count=count, total=total, minimum=low, maximum=high)
    if newestFirst:
        partial.lastTs, partial.lastValue = ts, value
    else:
        partial.firstTs, partial.firstValue = ts, value
    return Summary(seriesId, intervalStart, partial)


def _describe(error: BaseException) -> str:
    """
    A driver error in one line.
    """
    text = str(error) or type(error).__name__
    return " ".join(text.split())[:500]


def _failed(error: BaseException) -> Deferred[Any]:
    d: Deferred[Any] = Deferred()
    d.errback(error)
    return d


async def _nothing() -> None:
    return None
