"""
The metric store: the only module that knows CQL.

One C{Cluster} and one C{Session} per process, connected through the
driver's Twisted reactor support.  Blocking driver calls (connect, schema,
prepare, shutdown) run in the reactor's thread pool; queries run with
C{execute_async} and come back as Deferreds, with the number of requests in
flight capped by a C{DeferredSemaphore}.

The tables and statements are in L{meetrd.schema}; what a write sends is
decided by L{meetrd.writeplan} and what a search reads by
L{meetrd.readplan}; this module sends and receives.  Reads have a cap on
requests in flight of their own, so that a wide search cannot starve
writes.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

from twisted.internet.defer import (
    Deferred,
    DeferredList,
    DeferredSemaphore,
    FirstError,
    gatherResults,
    succeed,
)
from twisted.internet.task import Cooperator
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

from meetrd import schema
from meetrd.aggregate import Partial, summarizeValues
from meetrd.driverbridge import executeAsync
from meetrd.indexqueue import IndexQueue
from meetrd.logs import briefReason
from meetrd.points import Point
from meetrd.binding import indexBatch, pointBatch
from meetrd.readplan import (
    PRUNE_OVER,
    IndexPlan,
    SearchTooWide,
    SourceBatch,
    SeriesRow,
    TagFilters,
    aggregatedRollupSourcesPerRead,
    aggregatedSourcesPerRead,
    batchSources,
    checkSeries,
    mergeIndexRows,
    partitionReads,
    planIndex,
    seriesCount,
    sourcesToPrune,
)
from meetrd.packs import (
    encodePack,
    mergeRows,
    packMarks,
    packOf,
    packsClosed,
    packsUnder,
    packPart,
    packStart,
    packed,
)
from meetrd.rollup import RollupRow, rollUp
from meetrd.sketch import decodeSketch
from meetrd.settings import CassandraSettings, RollupLevel
from meetrd.twistedconnection import clientTLS, twistedConnectionClass
from meetrd.writeplan import (
    IndexRow,
    ShapeMemo,
    WriteCache,
    WritePlan,
    countSeriesPerNode,
    endedBy,
    indexRetention,
    learnShape,
    planWrite,
)

# Rows of one partition sent as one unlogged batch at most.
MAX_BATCH_ROWS = 1000
# Points planned and bound in one reactor turn: about 10 ms of work (a
# slice of 2,500 held the reactor for 30 ms and more).
WRITE_SLICE = 1_000
# Partitions of one row each sent together, when they share a replica: at
# Cassandra's default threshold for warning of unlogged batches across
# partitions (unlogged_batch_across_partitions_warn_threshold: 10).
MAX_LONE_PER_BATCH = 10
# Pack rows (2.3 kB each) of one rollup partition in one batch at most.
MAX_PACKS_PER_BATCH = 20
# Index rows sent together as one unlogged batch, when they share a
# replica (the rows of one metric and slice are one partition).
MAX_INDEX_PER_BATCH = 100
# A rollup level answers for points from this long after it was first
# configured: a point written before that with a timestamp after it (up to
# limits.max_future ahead) would have no rollup.
ROLLUP_SINCE_MARGIN_MS = 3_600_000
# Rollup rows of one rollup partition sent as one unlogged batch at most.
MAX_ROLLUP_PER_BATCH = 200
# Raw rows read at once to roll several small partitions up together;
# partitions of one bucket that hold more are rolled one by one.
ROLL_TOGETHER_ROWS = 20_000
# Small rollup partitions written in one batch at most: Cassandra warns
# past 10 partitions in one unlogged batch
# (unlogged_batch_across_partitions_warn_threshold).
ROLLUP_PARTITIONS_PER_BATCH = 10
# A batch over several partitions is warned of past 5 KiB
# (batch_size_warn_threshold) and fails past 50 KiB: packed batches of
# rollup rows stay under this many bytes, a row counted as its sketch and
# ROLLUP_ROW_BYTES for the rest.
PACKED_BATCH_BYTES = 4 * 1024
ROLLUP_ROW_BYTES = 120
# Sources whose rollup markers one read asks for at most.
MARKER_SOURCES_PER_READ = 100
# A search whose intervals span at most this many rows of its level reads
# the rows rather than have Cassandra group them (see rollupSummaries).
ROWS_A_CELL_READ_WHOLE = 4
# Index batches in flight at once.  A burst of new series (a fleet of new
# targets, a client with churning tags) writes mostly into the one index
# partition of its metric and slice; more requests at once only contend
# there, and time out under a loaded node.
INDEX_WRITES_IN_FLIGHT = 4


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
class Summary:
    """
    What Cassandra computed for one series, in one partition, for one
    interval (C{intervalStart} is C{None} without intervals).
    """

    seriesId: bytes
    intervalStart: int | None
    partial: Partial


class ReadProgress:
    """
    How far a search's reads have come, for the message of a search that
    runs out of time.
    """

    def __init__(self) -> None:
        self.stage = "starting"
        self.done = 0
        self.total = 0

    def begin(self, stage: str, total: int) -> None:
        self.stage, self.done, self.total = stage, 0, total

    def describe(self) -> str:
        return f"{self.stage}: {self.done} of {self.total} reads done"


def whenStoreConnected(store: Any) -> Deferred[None]:
    """
    Fire once C{store} has connected: its C{whenConnected()}, or at once
    for a store that is always connected (one without that method).
    """
    wait = getattr(store, "whenConnected", None)
    return succeed(None) if wait is None else wait()


class MetricStore:
    """
    Points in, summaries out, all through one Cassandra session.

    @ivar inFlight: requests to Cassandra in flight now.
    @ivar requests: requests sent so far.
    @ivar errors: failed requests so far, by the driver's exception name.
    """

    log = Logger()

    def __init__(self, settings: CassandraSettings, retentionSeconds: int,
                 reactor: Any, connectionClass: type | None = None,
                 rollups: Sequence[RollupLevel] = ()) -> None:
        """
        @param settings: the C{cassandra} settings.
        @param retentionSeconds: the TTL of every write; 0 keeps forever.
        @param reactor: the reactor, for threads and C{callFromThread}.
        @param connectionClass: the driver's connection class; defaults to
            its Twisted one.
        @param rollups: the rollup levels; with some, written partitions
            are marked for the rollup service.
        """
        self._settings = settings
        self.rollups = tuple(rollups)
        self.rollupSince: dict[int, int] = {}
        # From when each packed level's packs are merged (meetrd.packs).
        self.packsSince: dict[int, int] = {}
        # The open packs this process has marked (see L{packMarks}).
        self._packsMarked: OrderedDict[tuple[int, str, int], None] = \
            OrderedDict()
        self._startedAt: dict[str, int] = {}
        self._ttl = retentionSeconds
        self._reactor = reactor
        self._connectionClass = connectionClass
        self._semaphore = DeferredSemaphore(settings.max_in_flight)
        self._readSemaphore = DeferredSemaphore(settings.max_reads_in_flight)
        self._indexSemaphore = DeferredSemaphore(INDEX_WRITES_IN_FLIGHT)
        # The hunter's new index rows, written behind their points.
        self.indexQueue = IndexQueue(self._sendIndexRows, reactor,
                                     INDEX_WRITES_IN_FLIGHT,
                                     MAX_INDEX_PER_BATCH)
        # Large writes are planned and bound a slice a reactor turn.
        self._cooperator = Cooperator(
            scheduler=lambda step: reactor.callLater(0, step))
        self._cluster: Any = None
        self._session: Any = None
        self._statements: schema.Statements | None = None
        self._cache: WriteCache | None = None
        self.sliceMs = int(settings.index_slice * 1000)
        self.maxPartitionRows = settings.max_partition_rows
        self.legacy = False
        self._unavailable: tuple[type[BaseException], ...] = ()
        self._connected = False
        self._lastError = f"connecting to Cassandra at {self.contactPoints}"
        self.inFlight = 0
        self.requests = 0
        self.readsInFlight = 0
        self.indexRowsRead = 0
        self.rollupRowsWritten = 0
        self.packRowsRead = 0
        self.errors: dict[str, int] = {}
        self._readyWaiters: list[Deferred[None]] = []
        self._idleWaiters: list[Deferred[None]] = []

    @property
    def ready(self) -> bool:
        """
        Whether the session is connected, the schema in place and at least
        one Cassandra node up.
        """
        if not self._connected or self._cluster is None:
            return False
        return any(host.is_up for host in self._cluster.metadata.all_hosts())

    def whenConnected(self) -> Deferred[None]:
        """
        Fire once the store has connected (at once when it has); never
        fails: the store service retries until it connects or stops.
        """
        if self._connected:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._readyWaiters.append(waiter)
        return waiter

    def whenIdle(self) -> Deferred[None]:
        """
        Fire once no request to Cassandra is in flight or waiting for a
        place among those in flight (at once when none is).  Cancelling
        the Deferred stops the wait.
        """
        if self.indexQueue.queued:
            return self.indexQueue.whenEmpty().addCallback(
                lambda _: self.whenIdle())
        if self._idle():
            return succeed(None)
        waiter: Deferred[None] = Deferred(self._idleWaiters.remove)
        self._idleWaiters.append(waiter)
        return waiter

    def _idle(self) -> bool:
        return self.inFlight == 0 and not self._semaphore.waiting and \
            not self._readSemaphore.waiting

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

        def connected(result: tuple[Any, Any, schema.Statements]) -> None:
            self._cluster, self._session, self._statements = result
            if self._cache is None or self._cache.sliceMs != self.sliceMs:
                self._cache = WriteCache(
                    indexRetention(self._ttl, [
                        int(level.retention) for level in self.rollups]),
                    self.sliceMs, rollups=bool(self.rollups),
                    maxPartitionRows=self.maxPartitionRows)
            self._connected = True
            self._lastError = ""
            waiting, self._readyWaiters = self._readyWaiters, []
            for waiter in waiting:
                waiter.callback(None)

        def failed(failure: Any) -> Any:
            self._lastError = (f"cannot reach Cassandra at "
                               f"{self.contactPoints}: "
                               f"{briefReason(failure.value, 500)}")
            raise StoreUnavailable(self._lastError)

        return d.addCallbacks(connected, failed)

    def _connectBlocking(self) -> tuple[Any, Any, schema.Statements]:
        """
        Everything of L{connect} that blocks; runs in a thread.
        """
        from cassandra import ConsistencyLevel
        from cassandra.auth import PlainTextAuthProvider
        from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
        from cassandra.query import tuple_factory
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
            # Rows as plain tuples: the default factory builds a namedtuple
            # class for every result, about 0.5 ms each, which a search of
            # a thousand partitions paid a thousand times.
            row_factory=tuple_factory,
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
            # Every pool opened (or failed) before the first statement:
            # the driver otherwise returns once one node's pool is open,
            # and the schema changes below go to one chosen node (see
            # schema.schemaRunner), which fails at once while that node's
            # pool is still being opened.
            session = cluster.connect(wait_for_all_pools=True)
            ks = settings.keyspace
            timeout = max(settings.request_timeout, 30.0)
            schema.createTables(session, settings, timeout)
            self.sliceMs = schema.fixedSliceMs(session, ks, self.sliceMs,
                                               timeout)
            self.legacy = schema.hasLegacyIndex(cluster, ks)
            sinceMs = int(self._reactor.seconds() * 1000) + ROLLUP_SINCE_MARGIN_MS
            self.rollupSince = {
                resolution: schema.rollupSinceMs(session, ks, resolution,
                                                 sinceMs, timeout)
                for resolution, _ in self._levels()}
            self.packsSince = {
                resolution: schema.rollupSinceMs(session, ks, resolution,
                                                 sinceMs, timeout, "packs")
                for resolution, _ in self._levels() if packed(resolution)}
            statements = schema.prepare(
                session, ks, bool(self._ttl),
                getattr(ConsistencyLevel, settings.consistency.write),
                self.legacy)
        except BaseException:
            cluster.shutdown()
            raise
        return cluster, session, statements

    def close(self) -> Deferred[None]:
        """
        Shut the cluster down; the store is unusable afterwards.
        """
        cluster, self._cluster, self._session = self._cluster, None, None
        self.indexQueue.stop()
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
        Run one write within the cap on requests in flight; driver errors
        that mean Cassandra is unavailable become L{StoreUnavailable}.
        """
        return self._semaphore.run(self._runNow, statement, parameters)

    def _read(self, statement: Any, parameters: Sequence[Any] | None,
              progress: ReadProgress | None = None) -> Deferred[list[Any]]:
        """
        Run one read within the cap on reads in flight, which is apart from
        the writes' so that reads cannot starve them.
        """
        def read() -> Deferred[list[Any]]:
            self.readsInFlight += 1
            d = self._runNow(statement, parameters)

            def done(result: Any) -> Any:
                self.readsInFlight -= 1
                if progress is not None:
                    progress.done += 1
                return result

            return d.addBoth(done)

        return self._readSemaphore.run(read)

    def _readSources(self, one: Any, many: Any, batch: SourceBatch,
                     parameters: Sequence[Any],
                     progress: ReadProgress | None = None
                     ) -> Deferred[list[Any]]:
        """
        Read a batch of sources: with C{one}, the statement of one source,
        when it holds one, else with C{many}, whose rows are led by their
        source; fire with the rows, each led by its source, only of the
        series asked of each source.
        """
        if len(batch.sources) == 1:
            return self._read(one, parameters, progress).addCallback(
                _ledBy, batch.sources[0])
        asked = batch.asked
        return self._read(many, parameters, progress).addCallback(
            lambda rows: [row for row in rows if (row[0], row[1]) in asked])

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
            if self._idleWaiters and self._idle():
                waiting, self._idleWaiters = self._idleWaiters, []
                for waiter in waiting:
                    waiter.callback(None)
            return result

        def translate(failure: Any) -> Any:
            kind = type(failure.value).__name__
            self.errors[kind] = self.errors.get(kind, 0) + 1
            if failure.check(*self._unavailable):
                raise StoreUnavailable(briefReason(failure.value, 500))
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

    def _require(self) -> schema.Statements:
        if self._statements is None or self._session is None:
            raise StoreUnavailable(self.lastError or "not connected")
        return self._statements

    # Writing

    def writePoints(self, points: Iterable[Point], indexBehind: bool = False,
                    memo: ShapeMemo | None = None) -> Deferred[int]:
        """
        Write points and the index rows that lead to them; fire with the
        number of points once Cassandra has acknowledged every write, or
        fail.  With C{indexBehind}, new index rows are handed to
        L{indexQueue} and the Deferred fires once the points (and every
        other row) are written, before the index rows (see
        L{meetrd.indexqueue}).

        Points of one partition go as unlogged batches of at most
        L{MAX_BATCH_ROWS} rows; each partition is a request of its own.
        More than L{WRITE_SLICE} points are planned and sent a slice a
        reactor turn (the slices' requests in flight together), so that a
        batch of 50,000 points does not hold the reactor for all of them.

        C{memo} holds the shape of a target's writes (see
        L{meetrd.writeplan.WriteShape}): a write of at most L{WRITE_SLICE}
        points is planned from it when it fits, and teaches it once
        acknowledged.
        """
        points = points if isinstance(points, list) else list(points)
        if len(points) <= WRITE_SLICE:
            return self._writeSlice(points, None, indexBehind, memo)
        started: list[Deferred[int]] = []

        def steps() -> Iterator[None]:
            # The slices place their series as the whole write would.
            nodeSeries = None
            if self._cache is not None:
                nodeSeries = {}
                yield from countSeriesPerNode(points, self._cache,
                                              nodeSeries)
                yield None
            for start in range(0, len(points), WRITE_SLICE):
                started.append(self._writeSlice(
                    points[start:start + WRITE_SLICE], nodeSeries,
                    indexBehind))
                yield None

        def allWritten(_: object) -> Deferred[int]:
            return gatherResults(started, consumeErrors=True).addCallbacks(
                sum, _firstError)

        return self._cooperator.cooperate(steps()).whenDone().addCallback(
            allWritten)

    def _writeSlice(self, points: list[Point],
                    nodeSeries: dict[str, int] | None = None,
                    indexBehind: bool = False,
                    memo: ShapeMemo | None = None) -> Deferred[int]:
        """
        Write some points (see L{writePoints}) in one go; C{nodeSeries}
        places them as the whole write they are a slice of.
        """
        try:
            statements = self._require()
        except StoreUnavailable as e:
            return _failed(e)
        cache = self._cache
        assert cache is not None
        now = self._reactor.seconds()
        plan = planWrite(points, cache, now, nodeSeries, memo)
        written = self._writePlanned(statements, plan, cache, now,
                                     indexBehind)
        if memo is None or plan.shaped:
            return written

        def learn(count: int) -> int:
            memo.shape = learnShape(points, plan, cache)
            return count

        return written.addCallback(learn)

    def _writePlanned(self, statements: schema.Statements, plan: WritePlan,
                      cache: WriteCache, now: float, indexBehind: bool
                      ) -> Deferred[int]:
        """
        Write a planned slice: its rollup markers first when rollups are
        on, then its rows.
        """
        if not cache.rollups:
            return self._writePlan(statements, plan, cache, now, indexBehind)

        packs = packsUnder(((source, bucket, plan.widths[source])
                            for source, bucket in plan.partitions),
                           [resolution for resolution, _ in self._levels()])
        marked = self._packsMarked

        def markEnded(count: int) -> Deferred[int]:
            # Partitions a rollup may have read before these points landed
            # are marked again, at a write time after them, and so are
            # the packs a merge may have read.
            nowMs = self._reactor.seconds() * 1000
            return self._mark(statements, endedBy(plan, nowMs),
                              packsClosed(packs, nowMs)
                              ).addCallback(lambda _: count)

        def remember(count: int) -> int:
            for key in packs:
                marked[key] = None
                marked.move_to_end(key)
            while len(marked) > cache.size:
                marked.popitem(last=False)
            return count

        # The rollup markers go first: a point is never in Cassandra
        # without the marker that gets it rolled up, nor without the mark
        # of the packs it falls in, which keeps searches off those packs
        # until they are merged again (see meetrd.packs).
        return self._mark(
            statements, plan.dirtyRows, packMarks(packs, now * 1000, marked)
        ).addCallback(
            lambda _: self._writePlan(statements, plan, cache, now,
                                      indexBehind)
        ).addCallback(markEnded).addCallback(remember)

    def _mark(self, statements: schema.Statements,
              partitions: Sequence[tuple[str, int, int]],
              packs: Sequence[tuple[int, str, int]] = ()) -> Deferred[None]:
        """
        Write the rollup markers of C{(source, bucket, bucketMs)}
        partitions and the markers of C{(resolutionMs, source, pack)}
        packs, batched by marker shard.
        """
        marks = self._writeMarkers(statements.insertDirty, (
            (source, (source, bucket, width))
            for source, bucket, width in partitions))
        if packs:
            marks.extend(self._markPacks(statements, packs))

        def marked(results: list[tuple[bool, Any]]) -> None:
            for ok, result in results:
                if not ok:
                    result.raiseException()

        return DeferredList(marks, consumeErrors=True).addCallback(marked)

    def _writePlan(self, statements: schema.Statements, plan: Any,
                   cache: WriteCache, now: float, indexBehind: bool = False
                   ) -> Deferred[int]:
        """
        Send the index rows and points of a planned write; with
        C{indexBehind} the index rows go to L{indexQueue} instead (and
        count as written for the cache, the queue owning them), while it
        has room for them.
        """
        indexTTL = cache.ttl
        writeLevel = statements.insertPoint.consistency_level
        requests = []
        byReplica: dict[Any, list[Any]] = {}
        indexBehind = indexBehind and self.indexQueue.hasRoom(
            len(plan.indexRows))
        if indexBehind and plan.indexRows:
            self.indexQueue.add(plan.indexRows)
        for _, row in ([] if indexBehind else plan.indexRows):
            bound = statements.insertIndex.bind((
                row.metric, row.slice, row.seriesId, row.source, row.bucketMs,
                dict(row.tags), indexTTL))
            byReplica.setdefault(self._replicaOf(bound), []).append(bound)
        for bounds in byReplica.values():
            for start in range(0, len(bounds), MAX_INDEX_PER_BATCH):
                requests.append(self._indexSemaphore.run(
                    self._run, _batchOf(bounds[start:start + MAX_INDEX_PER_BATCH],
                                        writeLevel), None))
        small: dict[Any, list[Any]] = {}
        for metric, number in plan.sliceRows:
            small.setdefault(("slice", metric), []).append(
                statements.insertSlice.bind((metric, number, indexTTL)))
        for source, bucket in plan.bucketRows:
            small.setdefault(("bucket", source), []).append(
                statements.insertBucket.bind((source, bucket, indexTTL)))
        requests.extend(self._run(batch, None) for batch in
                        self._smallRowBatches(small, writeLevel))
        insert = statements.insertPoint
        ttlValue = (self._ttl,) if self._ttl else ()
        lone: dict[Any, list[Any]] = {}
        for (source, bucket), rows in plan.partitions.items():
            if len(rows) == 1:
                bound = insert.bind((source, bucket, *rows[0], *ttlValue))
                lone.setdefault(self._replicaOf(bound), []).append(bound)
                continue
            for start in range(0, len(rows), MAX_BATCH_ROWS):
                requests.append(self._run(pointBatch(
                    insert, source, bucket, rows[start:start + MAX_BATCH_ROWS],
                    self._ttl, writeLevel), None))
        for bounds in lone.values():
            for start in range(0, len(bounds), MAX_LONE_PER_BATCH):
                requests.append(self._run(
                    _batchOf(bounds[start:start + MAX_LONE_PER_BATCH],
                             writeLevel), None))

        def settled(results: list[tuple[bool, Any]]) -> int:
            for ok, result in results:
                if not ok:
                    result.raiseException()
            cache.remember(plan, now)
            return plan.count

        return DeferredList(requests, consumeErrors=True).addCallback(settled)

    def _sendIndexRows(self, rows: list[IndexRow]) -> Deferred[Any]:
        """
        Write some index rows of one index partition, as the queue asks.
        """
        try:
            statements = self._require()
        except StoreUnavailable as e:
            return _failed(e)
        assert self._cache is not None
        insert = statements.insertIndex
        return self._indexSemaphore.run(
            self._run, indexBatch(insert, rows, self._cache.ttl,
                                  insert.consistency_level), None)

    def _smallRowBatches(self, byPartition: dict[Any, list[Any]],
                         level: Any) -> list[Any]:
        """
        The requests that write small bound rows, given by partition: the
        rows of one partition in batches of up to L{MAX_INDEX_PER_BATCH}, a
        partition's lone row with others of the same replica, up to
        L{MAX_LONE_PER_BATCH} a batch.
        """
        batches = []
        lone: dict[Any, list[Any]] = {}
        for bounds in byPartition.values():
            if len(bounds) == 1:
                lone.setdefault(self._replicaOf(bounds[0]), []).append(
                    bounds[0])
                continue
            batches.extend(_batchOf(bounds[start:start + MAX_INDEX_PER_BATCH],
                                    level)
                           for start in range(0, len(bounds),
                                              MAX_INDEX_PER_BATCH))
        for bounds in lone.values():
            batches.extend(_batchOf(bounds[start:start + MAX_LONE_PER_BATCH],
                                    level)
                           for start in range(0, len(bounds),
                                              MAX_LONE_PER_BATCH))
        return batches

    # Rolling up

    def dirtyPartitions(self, shard: int
                        ) -> Deferred[list[tuple[str, int, int, int]]]:
        """
        The raw partitions marked for rollup in one shard of the markers:
        C{(source, bucket, bucketMs, markedAt)}, C{markedAt} being the
        marker's write time in microseconds.
        """
        return self._shardMarkers("selectDirty", shard)

    def _shardMarkers(self, statement: str, shard: int
                      ) -> Deferred[list[tuple[Any, ...]]]:
        """
        The rows of one shard of a marker table, read with the named
        statement, as tuples.
        """
        try:
            statements = self._require()
        except StoreUnavailable as e:
            return _failed(e)
        return self._read(getattr(statements, statement), (shard,)
                          ).addCallback(lambda rows: [tuple(row)
                                                      for row in rows])

    def rollPartition(self, source: str, bucket: int) -> Deferred[int]:
        """
        Read one raw partition, compute its rollup rows at every level (in
        a thread) and write them; fire with the number of rows written.
        """
        try:
            statements = self._require()
        except StoreUnavailable as e:
            return _failed(e)
        return self._read(statements.selectRaw, (source, bucket)).addCallback(
            lambda rows: self._rollRows(
                bucket, {source: [(row[0], row[1], row[2]) for row in rows]}))

    def rollPartitions(self, bucket: int, sources: Sequence[str]
                       ) -> Deferred[list[str]]:
        """
        Roll up several small raw partitions of one bucket number at once:
        one read for all of them (of at most L{ROLL_TOGETHER_ROWS} rows)
        and their rollup rows written in shared batches.  Fire with the
        sources rolled up: all of them, or none when they hold more rows
        than that (roll them one by one with L{rollPartition}).
        """
        try:
            statements = self._require()
        except StoreUnavailable as e:
            return _failed(e)

        def roll(rows: list[Any]) -> Deferred[list[str]] | list[str]:
            if len(rows) > ROLL_TOGETHER_ROWS:
                return []
            bySource: dict[str, list[tuple[bytes, int, float]]] = {
                source: [] for source in sources}
            for row in rows:
                bySource[row[0]].append((row[1], row[2], row[3]))
            return self._rollRows(bucket, bySource).addCallback(
                lambda _: list(sources))

        return self._read(statements.selectRawMany, (
            list(sources), bucket, ROLL_TOGETHER_ROWS + 1)).addCallback(roll)

    def _rollRows(self, bucket: int,
                  bySource: dict[str, list[tuple[bytes, int, float]]]
                  ) -> Deferred[int]:
        """
        Compute the rollup rows of the raw points of some partitions of one
        bucket number, by source, in a thread, and write them: the rows of
        one rollup partition as one batch (in slices of
        L{MAX_ROLLUP_PER_BATCH}), small ones packed together up to
        L{ROLLUP_PARTITIONS_PER_BATCH} partitions; fire with the number of
        rows written.
        """
        statements = self._require()
        levels = self._levels()
        ttls = dict(levels)
        resolutions = [resolution for resolution, _ in levels]

        def compute() -> dict[str, list[RollupRow]]:
            return {source: rollUp(rows, resolutions)
                    for source, rows in bySource.items()}

        def write(rolled: dict[str, list[RollupRow]]) -> Deferred[int]:
            insert = statements.insertRollup
            byPart: dict[tuple[int, str, int], list[Any]] = {}
            sizes: dict[tuple[int, str, int], int] = {}
            for source, rollups in rolled.items():
                for row in rollups:
                    key = (row.resolutionMs, source, row.part)
                    sizes[key] = sizes.get(key, 0) + len(row.sketch) + \
                        ROLLUP_ROW_BYTES
                    byPart.setdefault(key, []).append(
                        insert.bind((
                            row.resolutionMs, source, row.part, row.seriesId,
                            row.ts, bucket, row.count, row.total, row.minimum,
                            row.maximum, row.firstTs, row.firstValue,
                            row.lastTs, row.lastValue, row.sketch, row.m2,
                            ttls[row.resolutionMs])))
            requests = [self._run(_batchOf(batch, insert.consistency_level),
                                  None)
                        for batch in packRollupBatches(
                            (rows, sizes[key]) for key, rows in byPart.items())]
            # The packs these rows fall in are merged again (see
            # meetrd.packs); the raw partitions' markers stay until this
            # is written, so no search uses those packs meanwhile.
            requests.extend(self._markPacks(statements, {
                (row.resolutionMs, source, packOf(row.ts, row.resolutionMs))
                for source, rollups in rolled.items() for row in rollups
                if packed(row.resolutionMs)}))
            written = sum(map(len, rolled.values()))

            def done(results: list[tuple[bool, Any]]) -> int:
                for ok, result in results:
                    if not ok:
                        result.raiseException()
                self.rollupRowsWritten += written
                return written

            return DeferredList(requests, consumeErrors=True).addCallback(done)

        return deferToThreadPool(self._reactor, self._reactor.getThreadPool(),
                                 compute).addCallback(write)

    def _levels(self) -> list[tuple[int, int]]:
        """
        The rollup levels as C{(resolutionMs, retentionSeconds)}.
        """
        return [(int(level.resolution * 1000), int(level.retention))
                for level in self.rollups]

    def rollupLevels(self) -> list[tuple[int, int, int]]:
        """
        The rollup levels a search may read: C{(resolutionMs,
        retentionSeconds, sinceMs)}.
        """
        return [(resolution, retention, self.rollupSince[resolution])
                for resolution, retention in self._levels()
                if resolution in self.rollupSince]

    def pendingPartitions(self,
                          ranges: dict[str, Sequence[tuple[int, int]]],
                          progress: ReadProgress | None = None
                          ) -> Deferred[dict[str, set[int]]]:
        """
        For each source, its raw buckets marked for rollup (still open,
        not yet rolled up, or written again since) among the inclusive
        ranges of bucket numbers C{ranges} gives for it: one read per
        range and L{MARKER_SOURCES_PER_READ} sources of the same ranges,
        ordered by their marker shard so that a read spans few shards.
        """
        bySpans: dict[tuple[tuple[int, int], ...], list[str]] = {}
        for source, spans in ranges.items():
            bySpans.setdefault(tuple(spans), []).append(source)
        return self._markersOfSources("selectSourceDirty", [
            (sources, (), span) for spans, sources in bySpans.items()
            for span in spans], progress)

    def _markersOfSources(self, statement: str,
                          groups: Sequence[tuple[Iterable[str],
                                                 tuple[Any, ...],
                                                 tuple[Any, ...]]],
                          progress: ReadProgress | None
                          ) -> Deferred[dict[str, set[int]]]:
        """
        The markers of some sources, by source: read with the named
        statement, for each C{(sources, before, after)} of C{groups} bound
        to the shards, C{before}, the sources and C{after}, whose rows are
        C{(source, number)}; one read per L{MARKER_SOURCES_PER_READ}
        sources of a group, ordered by their marker shard so that a read
        spans few shards.
        """
        try:
            statements = self._require()
        except StoreUnavailable as e:
            return _failed(e)
        reads = []
        for sources, before, after in groups:
            ordered = sorted((schema.dirtyShard(source), source)
                             for source in set(sources))
            for start in range(0, len(ordered), MARKER_SOURCES_PER_READ):
                chunk = ordered[start:start + MARKER_SOURCES_PER_READ]
                reads.append((sorted({shard for shard, _ in chunk}), *before,
                              [source for _, source in chunk], *after))
        if progress is not None:
            progress.begin("reading the rollup markers", len(reads))
        requests = [self._read(getattr(statements, statement), read,
                               progress) for read in reads]

        def collect(results: list[tuple[bool, Any]]) -> dict[str, set[int]]:
            found: dict[str, set[int]] = {}
            for ok, rows in results:
                if not ok:
                    rows.raiseException()
                for source, number in rows:
                    found.setdefault(source, set()).add(number)
            return found

        return DeferredList(requests, consumeErrors=True).addCallback(collect)

    def rollupSummaries(self, resolutionMs: int,
                        reads: Sequence[tuple[str, int, list[bytes]]],
                        fromMs: int, toMs: int, pending: dict[str, set[int]],
                        intervalMs: int | None = None,
                        progress: ReadProgress | None = None,
                        sketches: bool = False, newestFirst: bool = False,
                        spread: bool = False) -> Deferred[list[Summary]]:
        """
        The rollup rows of one level in C{[fromMs, toMs]} (whole level
        buckets) as summaries, per series (and per interval when
        C{intervalMs} is given), leaving out the rows of raw partitions
        still C{pending}.

        Where no raw partition of a source is pending, Cassandra sums the
        rows up itself (knowing each group's first point, or with
        C{newestFirst} its last); otherwise, or with C{sketches} (each
        summary then carries its quantile sketch), the rows are read and
        merged here; so are they with C{spread} (each summary then carries
        its sum of squared deviations, for C{stddev}).
        """
        try:
            statements = self._require()
        except StoreUnavailable as e:
            return _failed(e)
        from cassandra.util import Duration

        origin = None if intervalMs is None else fromMs - fromMs % intervalMs

        # With intervals no wider than a few rows of the level, Cassandra's
        # grouping saves little and costs a request a source: rows are read
        # then, many sources a request.
        fewRowsACell = intervalMs is not None and \
            intervalMs <= ROWS_A_CELL_READ_WHOLE * resolutionMs

        def aggregated(source: str) -> bool:
            return not (sketches or spread or fewRowsACell
                        or pending.get(source))

        # Rows of one part are read for several sources at once.  Reads
        # that Cassandra aggregates take as many sources as keep a request
        # to a few thousand rows (it aggregates the partitions of an IN one
        # after the other, and reads of many sources' long ranges timed out
        # under a search of a thousand nodes), and one source newest first
        # (Cassandra orders rows across partitions only without paging).
        perRead = 1 if newestFirst else aggregatedRollupSourcesPerRead(
            fromMs, toMs, resolutionMs)
        single = batchSources((read for read in reads
                               if aggregated(read[0])), perRead)
        batches = [(False, batch) for batch in batchSources(
            read for read in reads if not aggregated(read[0]))]
        if progress is not None:
            progress.begin("reading rollups", len(batches) + len(single))

        def window(sources: list[str], part: int, ids: list[bytes]
                   ) -> tuple[Any, ...]:
            return (resolutionMs, sources[0] if len(sources) == 1
                    else sources, part, ids, fromMs, toMs)

        def byInterval(parameters: tuple[Any, ...]) -> tuple[Any, ...]:
            width = Duration(0, 0, intervalMs * 1_000_000)
            return (width, origin, *parameters, width, origin)

        requests = []
        for _, batch in batches:
            one, many = ((statements.selectRollupSketches,
                          statements.selectRollupSketchesMany)
                         if sketches or spread else
                         (statements.selectRollups,
                          statements.selectRollupsMany))
            requests.append(self._readSources(
                one, many, batch, window(batch.sources, batch.key, batch.ids),
                progress))
        for batch in single:
            parameters = window(batch.sources, batch.key, batch.ids)
            if intervalMs is None:
                one, many = ((statements.rollupSummaryLast, None)
                             if newestFirst else
                             (statements.rollupSummary,
                              statements.rollupSummaryMany))
            else:
                one, many = ((statements.rollupByIntervalLast, None)
                             if newestFirst else
                             (statements.rollupByInterval,
                              statements.rollupByIntervalMany))
                parameters = byInterval(parameters)
            requests.append(self._readSources(one, many, batch, parameters,
                                              progress))

        def collect(results: list[tuple[bool, Any]]) -> list[Summary]:
            summaries = []
            kinds = [whole for whole, _ in batches] + [True] * len(single)
            for whole, (ok, rows) in zip(kinds, results):
                if not ok:
                    rows.raiseException()
                if whole:
                    summaries.extend(_rollupSummaryFromRow(
                        row[1:], intervalMs is not None, newestFirst)
                        for row in rows)
                    continue
                for row in rows:
                    (source, identifier, ts, rawBucket, count, total, low,
                     high, firstTs, firstValue, lastTs, lastValue) = row[:12]
                    if rawBucket in pending.get(source, ()):
                        continue
                    summaries.append(Summary(
                        identifier,
                        None if intervalMs is None else ts - ts % intervalMs,
                        Partial(count, total, low, high, firstTs, firstValue,
                                lastTs, lastValue,
                                decodeSketch(row[12]) if sketches else None,
                                row[13] if spread else None)))
            return summaries

        return DeferredList(requests, consumeErrors=True).addCallback(collect)

    def valueSummaries(self, plan: dict[tuple[str, int], dict[int, list[bytes]]],
                       fromMs: int, toMs: int, intervalMs: int | None = None,
                       progress: ReadProgress | None = None,
                       sketches: bool = True) -> Deferred[list[Summary]]:
        """
        Summaries of the raw points of a read plan in the inclusive range,
        per series (and interval), with their sums of squared deviations
        and, with C{sketches}, quantile sketches: every point is read, for
        percentiles and standard deviations.
        """
        def collect(results: list[tuple[bool, Any]]) -> list[Summary]:
            groups: dict[tuple[bytes, int | None], list[tuple[int, float]]] = {}
            for ok, rows in results:
                if not ok:
                    rows.raiseException()
                for identifier, ts, value in rows:
                    start = None if intervalMs is None else ts - ts % intervalMs
                    groups.setdefault((identifier, start), []).append(
                        (ts, value))
            return [Summary(identifier, start,
                            summarizeValues(points, sketches))
                    for (identifier, start), points in groups.items()]

        return self._readValues(plan, fromMs, toMs, "reading points",
                                progress).addCallback(collect)

    def _readValues(self, plan: dict[tuple[str, int], dict[int, list[bytes]]],
                    fromMs: int, toMs: int, stage: str,
                    progress: ReadProgress | None
                    ) -> Deferred[list[tuple[bool, Any]]]:
        """
        Read the raw C{(seriesId, ts, value)} rows of a read plan in the
        inclusive range, a partition a request; fire with every request's
        outcome.
        """
        try:
            statements = self._require()
        except StoreUnavailable as e:
            return _failed(e)
        reads = partitionReads(plan)
        if progress is not None:
            progress.begin(stage, len(reads))
        return DeferredList(
            [self._read(statements.selectValues,
                        (source, bucket, ids, fromMs, toMs), progress)
             for source, bucket, ids in reads], consumeErrors=True)

    def readSamples(self, plan: dict[tuple[str, int], dict[int, list[bytes]]],
                    fromMs: int, toMs: int, maxSamples: int,
                    progress: ReadProgress | None = None
                    ) -> Deferred[dict[bytes, tuple[list[int], list[float]]]]:
        """
        The raw samples of a read plan in the inclusive range: for each
        series, its timestamps and values, oldest first.

        Fails with L{meetrd.readplan.SearchTooWide} when the reads bring
        more than C{maxSamples} samples.
        """
        def collect(results: list[tuple[bool, Any]]
                    ) -> dict[bytes, tuple[list[int], list[float]]]:
            found: dict[bytes, tuple[list[int], list[float]]] = {}
            count = 0
            for ok, rows in results:
                if not ok:
                    rows.raiseException()
                count += len(rows)
                if count > maxSamples:
                    raise SearchTooWide(
                        "query", f"the query reads more than {maxSamples} "
                        f"samples (limits.max_query_samples): narrow the "
                        f"range or the selectors")
                for identifier, ts, value in rows:
                    series = found.get(identifier)
                    if series is None:
                        series = found[identifier] = ([], [])
                    series[0].append(ts)
                    series[1].append(value)
            for identifier, (ts, values) in found.items():
                if any(a >= b for a, b in zip(ts, ts[1:])):
                    ordered = sorted(dict(zip(ts, values)).items())
                    found[identifier] = ([t for t, _ in ordered],
                                         [v for _, v in ordered])
            return found

        return self._readValues(plan, fromMs, toMs, "reading samples",
                                progress).addCallback(collect)

    # Members of the hunt

    def heartbeat(self, instance: str, ttlSeconds: float,
                  warm: bool = True) -> Deferred[Any]:
        """
        Write this instance's row among the hunt's members, alive for
        C{ttlSeconds}; C{warm}: whether it has scraped its whole share
        once (see L{meetrd.membership}).
        """
        try:
            statements = self._require()
        except StoreUnavailable as e:
            return _failed(e)
        since = self._startedAt.setdefault(
            instance, int(self._reactor.seconds() * 1000))
        # Past the cap on writes in flight, as are members() and leave():
        # behind a backlog of points (a slow cluster holds each write up
        # to the request timeout) the row would expire while it waited,
        # and the others would take this instance's share while it still
        # hunts it.  One beat at a time (Membership's LoopingCall).
        return self._runNow(statements.insertMember,
                            (instance, since, warm, max(1, round(ttlSeconds))))

    def members(self) -> Deferred[list[tuple[str, bool | None]]]:
        """
        The instances whose heartbeat rows are alive, each with its warm
        flag (C{None} when its row has none).
        """
        try:
            statements = self._require()
        except StoreUnavailable as e:
            return _failed(e)
        return self._runNow(statements.selectMembers, None).addCallback(
            lambda rows: [(row[0], row[1]) for row in rows])

    def leave(self, instance: str) -> Deferred[Any]:
        """
        Delete an instance's heartbeat row.
        """
        try:
            statements = self._require()
        except StoreUnavailable as e:
            return _failed(e)
        return self._runNow(statements.deleteMember, (instance,))

    def metricNames(self, progress: ReadProgress | None = None
                    ) -> Deferred[list[str]]:
        """
        The names of the metrics that have series in the index, sorted.
        """
        try:
            statements = self._require()
        except StoreUnavailable as e:
            return _failed(e)
        d = self._read(statements.selectMetrics, None, progress)
        return d.addCallback(lambda rows: sorted(row[0] for row in rows))

    # Rollup packs

    def _markPacks(self, statements: schema.Statements,
                   marks: Iterable[tuple[int, str, int]]
                   ) -> list[Deferred[Any]]:
        """
        Write the markers of some packs C{(resolutionMs, source, pack)},
        batched by marker shard.
        """
        return self._writeMarkers(statements.insertPackDirty, (
            (source, (resolution, source, pack))
            for resolution, source, pack in marks))

    def _writeMarkers(self, insert: Any,
                      marks: Iterable[tuple[str, tuple[Any, ...]]]
                      ) -> list[Deferred[Any]]:
        """
        Write marker rows with C{insert}, whose first value is the marker
        shard of the source each C{(source, values)} names and the others
        C{values}; batched by shard.
        """
        byShard: dict[Any, list[Any]] = {}
        for source, values in marks:
            shard = schema.dirtyShard(source)
            byShard.setdefault(shard, []).append(insert.bind((shard, *values)))
        return [self._run(batch, None) for batch in self._smallRowBatches(
            byShard, insert.consistency_level)]

    def packMarkers(self, shard: int
                    ) -> Deferred[list[tuple[int, str, int, int]]]:
        """
        The packs marked for merging in one shard of the markers:
        C{(resolutionMs, source, pack, markedAt)}, C{markedAt} being the
        marker's write time in microseconds.
        """
        return self._shardMarkers("selectPackDirty", shard)

    def mergePack(self, resolutionMs: int, source: str, pack: int
                  ) -> Deferred[int]:
        """
        Merge the rollup rows of one source's pack into one pack row per
        series and write them; fire with the number of pack rows.
        """
        try:
            statements = self._require()
        except StoreUnavailable as e:
            return _failed(e)
        start = packStart(pack, resolutionMs)
        end = packStart(pack + 1, resolutionMs) - 1
        part = packPart(pack, resolutionMs)
        ttl = dict(self._levels()).get(resolutionMs, 0)

        def compute(rows: list[Any]) -> list[tuple[bytes, tuple[bytes, ...]]]:
            packs = mergeRows(
                (row[0], (row[1] - start) // resolutionMs, *row[2:])
                for row in rows)
            return [(identifier, encodePack(cells))
                    for identifier, cells in packs.items()]

        def write(encoded: list[tuple[bytes, tuple[bytes, ...]]]
                  ) -> Deferred[int]:
            insert = statements.insertPack
            bounds = [insert.bind((resolutionMs, source, part, identifier,
                                   pack, *blobs, ttl))
                      for identifier, blobs in encoded]
            requests = [self._run(_batchOf(bounds[i:i + MAX_PACKS_PER_BATCH],
                                           insert.consistency_level), None)
                        for i in range(0, len(bounds), MAX_PACKS_PER_BATCH)]
            return gatherResults(requests, consumeErrors=True).addCallbacks(
                lambda _: len(bounds), _firstError)

        # A node of thousands of series has hundreds of thousands of rows
        # in a pack: they are merged in a thread, not on the reactor.
        return self._read(statements.selectPackRows, (
            resolutionMs, source, part, start, end)).addCallback(
            lambda rows: deferToThreadPool(
                self._reactor, self._reactor.getThreadPool(), compute, rows)
        ).addCallback(write)

    def clearPackMarkers(self, shard: int,
                         marks: Sequence[tuple[int, str, int, int]]
                         ) -> Deferred[Any]:
        """
        Remove the pack markers C{(resolutionMs, source, pack, markedAt)}
        of one shard, each unless written again after its C{markedAt}.
        """
        try:
            statements = self._require()
        except StoreUnavailable as e:
            return _failed(e)
        delete = statements.deletePackDirty
        return self._run(_batchOf(
            [delete.bind((markedAt, shard, resolution, source, pack))
             for resolution, source, pack, markedAt in marks],
            delete.consistency_level), None)

    def markedPacks(self, sources: Iterable[str], resolutionMs: int,
                    firstPack: int, lastPack: int,
                    progress: ReadProgress | None = None
                    ) -> Deferred[dict[str, set[int]]]:
        """
        For each source, its packs C{firstPack} to C{lastPack} of one level
        marked for merging (one read per L{MARKER_SOURCES_PER_READ}
        sources).
        """
        return self._markersOfSources("selectSourcePackDirty", [
            (sources, (resolutionMs,), (firstPack, lastPack))], progress)

    def readPacks(self, resolutionMs: int,
                  reads: Sequence[tuple[str, int, list[bytes]]],
                  firstPack: int, lastPack: int, column: str,
                  progress: ReadProgress | None = None
                  ) -> Deferred[list[tuple[bytes, int, bytes, bytes]]]:
        """
        The pack rows C{(seriesId, pack, counts, values)} of packs
        C{firstPack} to C{lastPack} for the C{(source, part, seriesIds)}
        reads, several sources a request; C{values} is the blob of
        C{column} (C{totals}, C{minimums} or C{maximums}).
        """
        try:
            statements = self._require()
        except StoreUnavailable as e:
            return _failed(e)
        batches = batchSources(reads)
        requests = [self._readSources(
            statements.selectPacks[column], statements.selectPacksMany[column],
            batch,
            (resolutionMs, batch.sources[0] if len(batch.sources) == 1
             else batch.sources, batch.key, batch.ids, firstPack, lastPack),
            progress) for batch in batches]

        def collect(results: list[Any]
                    ) -> list[tuple[bytes, int, bytes, bytes]]:
            found = [row[1:] for rows in results for row in rows]
            self.packRowsRead += len(found)
            return found

        return gatherResults(requests, consumeErrors=True).addCallbacks(
            collect, _firstError)

    def clearDirty(self, shard: int,
                   marks: Sequence[tuple[str, int, int]]) -> Deferred[Any]:
        """
        Remove the rollup markers C{(source, bucket, markedAt)} of one
        shard, each unless it was written again after its C{markedAt}
        (microseconds); one batch, since they share the shard's partition.
        """
        try:
            statements = self._require()
        except StoreUnavailable as e:
            return _failed(e)
        delete = statements.deleteDirty
        return self._run(_batchOf(
            [delete.bind((markedAt, shard, source, bucket))
             for source, bucket, markedAt in marks],
            delete.consistency_level), None)

    # Reading

    def findSeries(self, metric: str, fromMs: int, toMs: int,
                   filters: TagFilters, maxSeries: int,
                   progress: ReadProgress | None = None
                   ) -> Deferred[list[SeriesRow]]:
        """
        The placements of the series of a metric that have points in the
        range and pass the tag filters, from the index slices of the
        range (and the legacy index, when the keyspace has one).

        Fails with L{meetrd.readplan.SearchTooWide} when more than
        C{maxSeries} series match; each index read stops a row past that
        (a CQL C{LIMIT}), so a search that matches far too many series
        costs no more than one that matches a few too many.
        """
        try:
            statements = self._require()
        except StoreUnavailable as e:
            return _failed(e)
        plan = planIndex(fromMs, toMs, self.sliceMs, filters, maxSeries)
        if progress is not None:
            progress.begin(f"reading the slices of {metric!r}", 1)
        wanted = {read.slice for read in plan.reads}
        if len(wanted) > PRUNE_OVER:
            d = self._read(statements.selectSlices,
                           (metric, min(wanted), max(wanted)), progress)
            d.addCallback(lambda rows: {row[0] for row in rows})
        else:
            d = succeed(wanted)
        return d.addCallback(self._readIndex, metric, plan, maxSeries,
                             progress)

    def _readIndex(self, present: set[int], metric: str, plan: IndexPlan,
                   maxSeries: int, progress: ReadProgress | None
                   ) -> Deferred[list[SeriesRow]]:
        """
        Read the index of the slices of C{plan} that hold series.
        """
        statements = self._require()
        chosen = [read for read in plan.reads if read.slice in present]
        # Slices read without a tag filter go several a request, their rows
        # led by their slice; filtered ones one a request.
        plain = [read.slice for read in chosen if not read.filters]
        reads = [
            self._read(statements.selectIndexSlices, (
                metric, plain[start:start + schema.INDEX_SLICES_PER_READ],
                plan.limit), progress)
            for start in range(0, len(plain), schema.INDEX_SLICES_PER_READ)]
        slices: list[int | None] = [-1] * len(reads)
        filtered = [read for read in chosen if read.filters]
        reads.extend(
            self._read(statements.selectIndex[len(read.filters)],
                       (metric, read.slice,
                        *(part for pair in read.filters for part in pair),
                        plan.limit), progress)
            for read in filtered)
        slices.extend(read.slice for read in filtered)
        if statements.selectLegacy is not None:
            reads.append(self._read(statements.selectLegacy,
                                    (metric, plan.limit), progress))
            slices.append(None)
        if progress is not None:
            progress.begin(f"reading the series index of {metric!r}",
                           len(reads))

        # A series has the same tags in every slice: they are made into
        # sorted pairs once (a month of a thousand series is 30,000 rows).
        tagsOf: dict[bytes, Any] = {}

        def tagsFor(identifier: bytes, found: Any) -> Any:
            tags = tagsOf.get(identifier)
            if tags is None:
                tags = tagsOf[identifier] = _tags(found)
            return tags

        def collect(results: list[tuple[bool, Any]]) -> list[SeriesRow]:
            rows = []
            for number, (ok, found) in zip(slices, results):
                if not ok:
                    found.raiseException()
                self.indexRowsRead += len(found)
                if number == -1:  # several slices, each row led by its own
                    perSlice = Counter(row[0] for row in found)
                    if perSlice and max(perSlice.values()) >= plan.limit:
                        checkSeries(plan.limit, maxSeries)
                    rows.extend((row[0], row[1], row[2], row[3],
                                 tagsFor(row[1], row[4])) for row in found)
                    continue
                if len(found) >= plan.limit:
                    checkSeries(plan.limit, maxSeries)
                if number is None:
                    rows.extend((None, row[0], row[2], row[3], _tags(row[1]))
                                for row in found)
                else:
                    rows.extend((number, row[0], row[1], row[2],
                                 tagsFor(row[0], row[3])) for row in found)
            series = mergeIndexRows(metric, rows, plan.residual)
            checkSeries(seriesCount(series), maxSeries)
            return series

        return DeferredList(reads, consumeErrors=True).addCallback(collect)

    def presentBuckets(self, plan: dict[tuple[str, int], dict[int, list[bytes]]],
                       progress: ReadProgress | None = None
                       ) -> Deferred[dict[str, set[int]]]:
        """
        For each source with more than L{meetrd.readplan.PRUNE_OVER}
        candidate buckets, those that hold points (one read of the bucket
        index per such source).
        """
        statements = self._require()
        sources = sourcesToPrune(plan)
        reads = [self._read(statements.selectBuckets, (source, first, last),
                            progress)
                 for source, first, last in sources]
        if progress is not None:
            progress.begin("reading the bucket index", len(reads))

        def collect(results: list[tuple[bool, Any]]) -> dict[str, set[int]]:
            present = {}
            for (source, _, _), (ok, rows) in zip(sources, results):
                if not ok:
                    rows.raiseException()
                present[source] = {row[0] for row in rows}
            return present

        return DeferredList(reads, consumeErrors=True).addCallback(collect)

    def summarize(self, plan: dict[tuple[str, int], dict[int, list[bytes]]],
                  fromMs: int, toMs: int, intervalMs: int | None = None,
                  newestFirst: bool = False,
                  progress: ReadProgress | None = None,
                  originMs: int | None = None) -> Deferred[list[Summary]]:
        """
        Have Cassandra summarize the points of the series of a read plan
        (from L{meetrd.readplan.bucketsBySource}) in the inclusive range,
        per series and partition (and per interval when C{intervalMs} is
        given: intervals start at multiples of it from the epoch, or from
        C{originMs}, at or before C{fromMs}).

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
            origin = fromMs - fromMs % intervalMs if originMs is None \
                else originMs
            statement = (statements.byIntervalLast if newestFirst
                         else statements.byInterval)

            def parameters(source: str, bucket: int, ids: list[bytes]
                           ) -> tuple[Any, ...]:
                return (width, origin, source, bucket, ids, fromMs, toMs,
                        width, origin)

        byInterval = intervalMs is not None
        # Cassandra aggregates the partitions of several sources one after
        # the other: short ranges (the edges of a rollup search) are read
        # many sources a request, long ones one source a request.  A read
        # newest first is one source a request: Cassandra orders rows across
        # partitions only without paging.
        perRead = 1 if newestFirst else aggregatedSourcesPerRead(fromMs, toMs)
        many = statements.summaryMany if intervalMs is None \
            else statements.byIntervalMany

        def readAll(present: dict[str, set[int]]
                    ) -> Deferred[list[tuple[bool, Any]]]:
            batches = batchSources(partitionReads(plan, present), perRead)
            if progress is not None:
                progress.begin("reading points", len(batches))
            return DeferredList([
                self._readSources(statement, many, batch, parameters(
                    batch.sources[0] if len(batch.sources) == 1
                    else batch.sources, batch.key, batch.ids), progress)
                for batch in batches], consumeErrors=True)

        def collect(results: list[tuple[bool, Any]]) -> list[Summary]:
            summaries = []
            for ok, rows in results:
                if not ok:
                    rows.raiseException()
                for row in rows:
                    summaries.append(_summaryFromRow(row[1:], byInterval,
                                                     newestFirst))
            return summaries

        return self.presentBuckets(plan, progress).addCallback(
            readAll).addCallback(collect)


def packRollupBatches(partitions: Iterable[tuple[list[Any], int]]
                      ) -> list[list[Any]]:
    """
    The batches that write the bound rows of some rollup partitions, given
    as C{(rows, bytes)}: a partition of more than L{MAX_ROLLUP_PER_BATCH}
    rows or L{PACKED_BATCH_BYTES} in batches of its own (a batch of one
    partition has no size limit in Cassandra); smaller ones packed
    together, at most L{ROLLUP_PARTITIONS_PER_BATCH} partitions,
    L{MAX_ROLLUP_PER_BATCH} rows and L{PACKED_BATCH_BYTES} a batch.
    """
    batches: list[list[Any]] = []
    packed: list[Any] = []
    inPacked = packedBytes = 0
    for rows, size in partitions:
        if len(rows) > MAX_ROLLUP_PER_BATCH or size > PACKED_BATCH_BYTES:
            batches.extend(rows[start:start + MAX_ROLLUP_PER_BATCH]
                           for start in range(0, len(rows),
                                              MAX_ROLLUP_PER_BATCH))
            continue
        if packed and (inPacked == ROLLUP_PARTITIONS_PER_BATCH
                       or len(packed) + len(rows) > MAX_ROLLUP_PER_BATCH
                       or packedBytes + size > PACKED_BATCH_BYTES):
            batches.append(packed)
            packed, inPacked, packedBytes = [], 0, 0
        packed.extend(rows)
        inPacked += 1
        packedBytes += size
    if packed:
        batches.append(packed)
    return batches


def _firstError(failure: Failure) -> Failure:
    """
    The failure of the first of several requests that failed, as itself.
    """
    if failure.check(FirstError):
        return failure.value.subFailure
    return failure


def _batchOf(bounds: list[Any], level: Any) -> Any:
    """
    One bound statement as it is, or several as one unlogged batch.
    """
    if len(bounds) == 1:
        return bounds[0]
    from cassandra.query import BatchStatement, BatchType

    batch = BatchStatement(BatchType.UNLOGGED, consistency_level=level)
    for bound in bounds:
        batch.add(bound)
    return batch


def _tags(found: Any) -> tuple[tuple[str, str], ...]:
    """
    A tags map as Cassandra returns it, as sorted pairs.
    """
    return tuple(sorted((found or {}).items()))


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
    return Summary(seriesId, intervalStart, _partial(
        count, total, low, high, (ts, value), newestFirst))


def _partial(count: int, total: float, low: float, high: float,
             edge: tuple[int, float], newestFirst: bool) -> Partial:
    """
    A summary that knows its first point, or with C{newestFirst} its
    last one (C{edge}).
    """
    partial = Partial(count=count, total=total, minimum=low, maximum=high)
    if newestFirst:
        partial.lastTs, partial.lastValue = edge
    else:
        partial.firstTs, partial.firstValue = edge
    return partial


def _rollupSummaryFromRow(row: Sequence[Any], byInterval: bool,
                          newestFirst: bool) -> Summary:
    """
    A L{Summary} from one row of a rollup summary query: the first row of
    its group gave the first point, or, read newest first, the last one.
    """
    if byInterval:
        seriesId, intervalStart, *rest = row
    else:
        seriesId, *rest = row
        intervalStart = None
    count, total, low, high, firstTs, firstValue, lastTs, lastValue = rest
    edge = (lastTs, lastValue) if newestFirst else (firstTs, firstValue)
    return Summary(seriesId, intervalStart, _partial(
        count, total, low, high, edge, newestFirst))


def _ledBy(rows: list[Any], source: str) -> list[tuple[Any, ...]]:
    """
    The rows of one source's read, each led by that source, as a read of
    several sources gives them.
    """
    return [(source, *row) for row in rows]


def _failed(error: BaseException) -> Deferred[Any]:
    d: Deferred[Any] = Deferred()
    d.errback(error)
    return d


async def _nothing() -> None:
    return None
