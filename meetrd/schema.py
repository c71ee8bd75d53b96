"""
meetrd's tables in Cassandra: their DDL, the statements run against them,
and preparing those statements on a session.

The tables (L{meetrd.layout} says how points are partitioned):

  - C{meta}: settings fixed when the keyspace was made (the index slice);
  - C{series_index}: per metric and per index slice, the series that have
    points in that slice, their tags and where their points live; a
    Storage-Attached Index on the entries of the tags map answers tag
    filters inside one slice's partition;
  - C{slices}: per metric, the index slices that hold series, so that a
    search over a long range reads the index of those slices only;
  - C{points}: partitions keyed by C{(source, bucket)}, clustered by
    C{(series_id, ts)};
  - C{buckets}: per source, the buckets that hold points;
  - C{rollups}: per level, source and span of level buckets, the summary
    of each series' points per level bucket and raw partition (see
    L{meetrd.rollup});
  - C{rollup_dirty}: the raw partitions written to since they were last
    rolled up, spread over L{DIRTY_SHARDS} partitions that the instances
    share out;
  - C{series}: the series index of keyspaces made before the time-scoped
    one; never created any more, only read when it exists.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

from meetrd.settings import CassandraSettings

LEGACY_SERIES_TABLE = "series"

TABLES = (
    """CREATE TABLE IF NOT EXISTS {ks}.meta (
        key text PRIMARY KEY,
        value text
    ) WITH comment = 'meetrd: settings fixed when the keyspace was made'""",
    """CREATE TABLE IF NOT EXISTS {ks}.series_index (
        metric text,
        slice bigint,
        series_id blob,
        source text,
        bucket_ms bigint,
        tags map<text, text>,
        PRIMARY KEY ((metric, slice), series_id, source)
    ) WITH comment = 'meetrd: the series of each metric per index slice'""",
    """CREATE TABLE IF NOT EXISTS {ks}.slices (
        metric text,
        slice bigint,
        PRIMARY KEY ((metric), slice)
    ) WITH comment = 'meetrd: the index slices of each metric that hold series'""",
    """CREATE INDEX IF NOT EXISTS series_index_tags ON {ks}.series_index
        (ENTRIES(tags)) USING 'sai'""",
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
    """CREATE TABLE IF NOT EXISTS {ks}.rollups (
        resolution bigint,
        source text,
        part bigint,
        series_id blob,
        ts timestamp,
        raw_bucket bigint,
        count bigint,
        sum double,
        min double,
        max double,
        first_ts timestamp,
        first_value double,
        last_ts timestamp,
        last_value double,
        sketch blob,
        m2 double,
        PRIMARY KEY ((resolution, source, part), series_id, ts, raw_bucket)
    ) WITH comment = 'meetrd: rollups per level, source and span of buckets'""",
    """CREATE TABLE IF NOT EXISTS {ks}.rollup_dirty (
        shard int,
        source text,
        bucket bigint,
        bucket_ms bigint,
        PRIMARY KEY ((shard), source, bucket)
    ) WITH comment = 'meetrd: raw partitions to roll up'
      AND gc_grace_seconds = {markerGrace}""",
    """CREATE TABLE IF NOT EXISTS {ks}.rollup_packs (
        resolution bigint,
        source text,
        part bigint,
        series_id blob,
        pack bigint,
        counts blob,
        totals blob,
        minimums blob,
        maximums blob,
        edges blob,
        PRIMARY KEY ((resolution, source, part), series_id, pack)
    ) WITH comment = 'meetrd: rollup rows merged per series and pack'""",
    """CREATE TABLE IF NOT EXISTS {ks}.pack_dirty (
        shard int,
        resolution bigint,
        source text,
        pack bigint,
        marked boolean,
        PRIMARY KEY ((shard), resolution, source, pack)
    ) WITH comment = 'meetrd: rollup packs to merge again'
      AND gc_grace_seconds = {markerGrace}""",
    """CREATE TABLE IF NOT EXISTS {ks}.members (
        grp text,
        instance text,
        since timestamp,
        hunting boolean,
        PRIMARY KEY ((grp), instance)
    ) WITH comment = 'meetrd: live instances sharing the hunt (rows with a TTL)'""",
    """CREATE TABLE IF NOT EXISTS {ks}.buckets (
        source text,
        bucket bigint,
        PRIMARY KEY ((source), bucket)
    ) WITH comment = 'meetrd: the buckets of each source that hold points'""",
)

# Tag filters answered by Cassandra in one index read at most; further
# filters are checked on the rows it returns.
MAX_INDEX_FILTERS = 4

INSERT_POINT = (
    "INSERT INTO {ks}.points (source, bucket, series_id, ts, value) "
    "VALUES (?, ?, ?, ?, ?)"
)
# With a retention, the TTL is bound too (a sixth value per row; without
# one the statement binds five).
WITH_TTL = " USING TTL ?"
INSERT_INDEX = (
    "INSERT INTO {ks}.series_index (metric, slice, series_id, source, "
    "bucket_ms, tags) VALUES (?, ?, ?, ?, ?, ?) USING TTL ?"
)
INSERT_SLICE = (
    "INSERT INTO {ks}.slices (metric, slice) VALUES (?, ?) USING TTL ?"
)
SELECT_SLICES = (
    "SELECT slice FROM {ks}.slices WHERE metric = ? AND slice >= ? "
    "AND slice <= ?"
)
INSERT_BUCKET = (
    "INSERT INTO {ks}.buckets (source, bucket) VALUES (?, ?) USING TTL ?"
)
SELECT_BUCKETS = (
    "SELECT bucket FROM {ks}.buckets WHERE source = ? AND bucket >= ? "
    "AND bucket <= ?"
)
# The index of one slice, with 0 to MAX_INDEX_FILTERS tag filters; the
# LIMIT stops a search that matches too many series early.
SELECT_INDEX = (
    "SELECT series_id, source, bucket_ms, tags FROM {ks}.series_index "
    "WHERE metric = ? AND slice = ?{filters} LIMIT ?"
)
INDEX_FILTER = " AND tags[?] = ?"
# The index of several slices at once, when no tag filter is pushed down
# (Cassandra refuses an IN on the key beside an indexed column): a year of
# daily slices is eight requests, not 365.  The limit is per slice, as
# SELECT_INDEX's.
SELECT_INDEX_SLICES = (
    "SELECT slice, series_id, source, bucket_ms, tags FROM {ks}.series_index "
    "WHERE metric = ? AND slice IN ? PER PARTITION LIMIT ?"
)
# Slices whose index one SELECT_INDEX_SLICES reads at most.
INDEX_SLICES_PER_READ = 50
SELECT_LEGACY_SERIES = (
    "SELECT series_id, tags, source, bucket_ms FROM {ks}.series "
    "WHERE metric = ? LIMIT ?"
)
INSERT_ROLLUP = (
    "INSERT INTO {ks}.rollups (resolution, source, part, series_id, ts, "
    "raw_bucket, count, sum, min, max, first_ts, first_value, last_ts, "
    "last_value, sketch, m2) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
    "?, ?) "
    "USING TTL ?"
)
INSERT_DIRTY = (
    "INSERT INTO {ks}.rollup_dirty (shard, source, bucket, bucket_ms) "
    "VALUES (?, ?, ?, ?)"
)
SELECT_DIRTY = (
    "SELECT source, bucket, bucket_ms, writetime(bucket_ms) "
    "FROM {ks}.rollup_dirty WHERE shard = ?"
)
# Deleted at the write time the marker was read with: a marker written
# again since (a point that arrived during the rollup) survives.
DELETE_DIRTY = (
    "DELETE FROM {ks}.rollup_dirty USING TIMESTAMP ? WHERE shard = ? "
    "AND source = ? AND bucket = ?"
)
SELECT_ROLLUPS = (
    "SELECT series_id, toUnixTimestamp(ts), raw_bucket, count, sum, min, "
    "max, toUnixTimestamp(first_ts), first_value, toUnixTimestamp(last_ts), "
    "last_value FROM {ks}.rollups WHERE resolution = ? AND source = ? AND "
    "part = ? AND series_id IN ? AND ts >= ? AND ts <= ?"
)
# Rollup rows summed up by Cassandra, per series (and per interval), for
# sources with no raw partition waiting for its rollup: the first row of a
# group gives its first point, or, read newest first, its last one.
ROLLUP_AGGREGATES = ("sum(count), sum(sum), min(min), max(max), "
                     "toUnixTimestamp(first_ts), first_value, "
                     "toUnixTimestamp(last_ts), last_value")
ROLLUP_SUMMARY = (
    "SELECT series_id, " + ROLLUP_AGGREGATES + " FROM {ks}.rollups WHERE "
    "resolution = ? AND source = ? AND part = ? AND series_id IN ? AND "
    "ts >= ? AND ts <= ? GROUP BY series_id"
)
ROLLUP_BY_INTERVAL = (
    "SELECT series_id, toUnixTimestamp(floor(ts, ?, ?)), " +
    ROLLUP_AGGREGATES + " FROM {ks}.rollups WHERE resolution = ? AND "
    "source = ? AND part = ? AND series_id IN ? AND ts >= ? AND ts <= ? "
    "GROUP BY series_id, floor(ts, ?, ?)"
)
ROLLUP_NEWEST_FIRST = " ORDER BY series_id DESC, ts DESC, raw_bucket DESC"


def manySources(statement: str) -> str:
    """
    A statement of one source's partition made to read several sources'
    at once, each row led by its source: one request for many small
    partitions.  Cassandra aggregates over several partitions one after
    the other (and warns each time), so aggregates are read this way only
    over short ranges; it cannot page an ORDER BY over them.
    """
    return statement.replace("SELECT series_id", "SELECT source, series_id"
                             ).replace("source = ?", "source IN ?").replace(
        "GROUP BY series_id", "GROUP BY source, series_id")


SELECT_ROLLUPS_MANY = manySources(SELECT_ROLLUPS)
# The same with each row's sketch and sum of squared deviations, for
# percentiles and standard deviations.
SELECT_ROLLUP_SKETCHES = SELECT_ROLLUPS.replace(
    "last_value FROM", "last_value, sketch, m2 FROM")
SELECT_ROLLUP_SKETCHES_MANY = SELECT_ROLLUPS_MANY.replace(
    "last_value FROM", "last_value, sketch, m2 FROM")
# Raw values, for percentiles over raw points.
SELECT_VALUES = (
    "SELECT series_id, toUnixTimestamp(ts), value FROM {ks}.points WHERE "
    "source = ? AND bucket = ? AND series_id IN ? AND ts >= ? AND ts <= ?"
)
# The members sharing the hunt (see meetrd.membership): one partition.
# C{hunting}: whether the member has scraped its whole share once.
INSERT_MEMBER = ("INSERT INTO {ks}.members (grp, instance, since, hunting) "
                 "VALUES ('hunt', ?, ?, ?) USING TTL ?")
SELECT_MEMBERS = ("SELECT instance, hunting FROM {ks}.members "
                  "WHERE grp = 'hunt'")
DELETE_MEMBER = "DELETE FROM {ks}.members WHERE grp = 'hunt' AND instance = ?"
# Every metric with an index slice (slices expire with the index), for
# the metric names of the Prometheus query API.
SELECT_METRICS = "SELECT DISTINCT metric FROM {ks}.slices"
# The markers of some sources' raw buckets in one range of bucket numbers:
# a search reads only the buckets that may change its answer, not the
# tombstones of every marker those sources ever had.
SELECT_SOURCE_DIRTY = (
    "SELECT source, bucket FROM {ks}.rollup_dirty WHERE shard IN ? "
    "AND source IN ? AND bucket >= ? AND bucket <= ?"
)
SELECT_RAW = (
    "SELECT series_id, toUnixTimestamp(ts), value FROM {ks}.points "
    "WHERE source = ? AND bucket = ?"
)
# Several raw partitions of one bucket number, read together for their
# rollups, up to a number of rows (a LIMIT bound at run time).
SELECT_RAW_MANY = (
    "SELECT source, series_id, toUnixTimestamp(ts), value FROM {ks}.points "
    "WHERE source IN ? AND bucket = ? LIMIT ?"
)
# Raw partitions marked for rollup are spread over this many partitions.
DIRTY_SHARDS = 64

SET_META = "INSERT INTO {ks}.meta (key, value) VALUES (?, ?) IF NOT EXISTS"
GET_META = "SELECT value FROM {ks}.meta WHERE key = ?"

AGGREGATES = "count(value), sum(value), min(value), max(value)"
SUMMARY = (
    "SELECT series_id, toUnixTimestamp(ts), value, " + AGGREGATES +
    " FROM {ks}.points WHERE source = ? AND bucket = ? AND series_id IN ? "
    "AND ts >= ? AND ts <= ? GROUP BY series_id"
)
# The interval and its start are bound twice, by position: in the selected
# floor and in the grouping one (the caller binds the same to both).  The
# start is an epoch-aligned instant at or before the range: Cassandra's
# floor() refuses instants before its start, which is the epoch unless
# given.
SUMMARY_BY_INTERVAL = (
    "SELECT series_id, toUnixTimestamp(floor(ts, ?, ?)), "
    "toUnixTimestamp(ts), value, " + AGGREGATES +
    " FROM {ks}.points WHERE source = ? AND bucket = ? AND series_id IN ? "
    "AND ts >= ? AND ts <= ? GROUP BY series_id, floor(ts, ?, ?)"
)
NEWEST_FIRST = " ORDER BY series_id DESC, ts DESC"


# Rollup packs (see meetrd.packs) and their markers, which share the
# shards of the raw partitions' markers.
INSERT_PACK = (
    "INSERT INTO {ks}.rollup_packs (resolution, source, part, series_id, "
    "pack, counts, totals, minimums, maximums, edges) VALUES (?, ?, ?, ?, "
    "?, ?, ?, ?, ?, ?) USING TTL ?"
)
# The counts and one value column ({column}: totals, minimums, maximums).
SELECT_PACKS = (
    "SELECT series_id, pack, counts, {column} FROM {ks}.rollup_packs WHERE "
    "resolution = ? AND source = ? AND part = ? AND series_id IN ? AND "
    "pack >= ? AND pack <= ?"
)
PACK_VALUE_COLUMNS = ("totals", "minimums", "maximums")
# The rollup rows of one source and pack, to merge into packs.
SELECT_PACK_ROWS = (
    "SELECT series_id, toUnixTimestamp(ts), count, sum, min, max, "
    "toUnixTimestamp(first_ts), first_value, toUnixTimestamp(last_ts), "
    "last_value, m2 FROM {ks}.rollups WHERE resolution = ? AND source = ? "
    "AND part = ? AND ts >= ? AND ts <= ? ALLOW FILTERING"
)
INSERT_PACK_DIRTY = (
    "INSERT INTO {ks}.pack_dirty (shard, resolution, source, pack, marked) "
    "VALUES (?, ?, ?, ?, true)"
)
SELECT_PACK_DIRTY = (
    "SELECT resolution, source, pack, writetime(marked) FROM {ks}.pack_dirty "
    "WHERE shard = ?"
)
SELECT_SOURCE_PACK_DIRTY = (
    "SELECT source, pack FROM {ks}.pack_dirty WHERE shard IN ? AND "
    "resolution = ? AND source IN ? AND pack >= ? AND pack <= ?"
)
DELETE_PACK_DIRTY = (
    "DELETE FROM {ks}.pack_dirty USING TIMESTAMP ? WHERE shard = ? AND "
    "resolution = ? AND source = ? AND pack = ?"
)


def dirtyShard(source: str) -> int:
    """
    The partition of C{rollup_dirty} that marks C{source}'s partitions.
    """
    return zlib.crc32(source.encode("utf-8")) % DIRTY_SHARDS


def replicationCQL(settings: CassandraSettings) -> str:
    """
    The replication map as a CQL map literal; every part of it was
    validated by the settings, so it can stand in DDL (which cannot be
    bound).
    """
    replication = settings.replication
    parts = [f"'class': '{replication['class']}'"]
    for key, factor in replication.items():
        if key != "class":
            parts.append(f"'{key}': '{int(factor)}'")
    return "{" + ", ".join(parts) + "}"


def keyspaceDDL(settings: CassandraSettings) -> str:
    """
    The statement that creates meetrd's keyspace when it is missing.
    """
    return (f"CREATE KEYSPACE IF NOT EXISTS {settings.keyspace} WITH "
            f"replication = {replicationCQL(settings)}")


@dataclass
class Statements:
    """
    The prepared statements of one session.

    @ivar selectIndex: by the number of tag filters Cassandra applies.
    @ivar selectLegacy: C{None} when the keyspace has no legacy index.
    """

    insertPoint: Any
    insertIndex: Any
    insertBucket: Any
    insertSlice: Any
    selectBuckets: Any
    selectSlices: Any
    summary: Any
    summaryLast: Any
    byInterval: Any
    byIntervalLast: Any
    summaryMany: Any
    byIntervalMany: Any
    insertRollup: Any
    insertDirty: Any
    selectDirty: Any
    deleteDirty: Any
    selectRaw: Any
    selectRawMany: Any
    selectIndexSlices: Any
    selectRollups: Any
    selectRollupSketches: Any
    selectRollupsMany: Any
    selectRollupSketchesMany: Any
    rollupSummaryMany: Any
    rollupByIntervalMany: Any
    rollupSummary: Any
    rollupSummaryLast: Any
    rollupByInterval: Any
    rollupByIntervalLast: Any
    selectValues: Any
    selectSourceDirty: Any
    insertPack: Any
    selectPacks: dict[str, Any]
    selectPacksMany: dict[str, Any]
    selectPackRows: Any
    insertPackDirty: Any
    selectPackDirty: Any
    selectSourcePackDirty: Any
    deletePackDirty: Any
    selectMetrics: Any
    insertMember: Any
    selectMembers: Any
    deleteMember: Any
    selectIndex: dict[int, Any] = field(default_factory=dict)
    selectLegacy: Any = None


def createTables(session: Any, settings: CassandraSettings,
                 timeout: float) -> None:
    """
    Create the keyspace and the tables that are missing (blocking).

    Every schema change goes to one node, the same for every instance
    (the live node of the lowest address), and waits for the cluster to
    agree: instances starting together against a fresh keyspace then
    make each table once.  Sent to different nodes at once, two
    C{CREATE TABLE IF NOT EXISTS} can both succeed with different table
    ids, and the nodes disagree on the schema.
    """
    run = schemaRunner(session, timeout)
    run(keyspaceDDL(settings))
    for ddl in TABLES:
        run(ddl.format(ks=settings.keyspace, markerGrace=MARKER_GC_GRACE))
    addMissingColumns(session, settings.keyspace, timeout, run)
    shortenMarkerGrace(session, settings.keyspace, run)


def schemaRunner(session: Any, timeout: float) -> Any:
    """
    A function that runs a schema change on the cluster's schema node
    (the live node of the lowest address) and waits for schema
    agreement.
    """
    cluster = session.cluster
    hosts = sorted((h for h in cluster.metadata.all_hosts() if h.is_up),
                   key=lambda h: (str(h.endpoint.address), h.endpoint.port))
    chosen = hosts[0] if hosts else None

    def run(ddl: str) -> None:
        session.execute(ddl, timeout=timeout, host=chosen)
        cluster.control_connection.wait_for_schema_agreement(
            wait_time=timeout)

    return run


# Columns added to tables after they were first made: (table, column,
# type).  A keyspace made before gets them at start; its rows written
# before lack them (see docs/storage.md, "Rollups").
ADDED_COLUMNS = (("rollups", "m2", "double"),
                 ("members", "hunting", "boolean"))


# Marker tables churn: every rollup deletes the marker it read, and a
# search reads the markers of every source over its whole range, through
# their tombstones (a month of a thousand hourly nodes leaves 720,000,
# which took two thirds of a second of such a search).  A deleted marker
# that comes back only costs a rollup done again, so their tombstones may
# be purged early: after 3 hours, Cassandra's default hint window, so
# that a marker written while a replica was down still reaches it.
MARKER_TABLES = ("rollup_dirty", "pack_dirty")
MARKER_GC_GRACE = 3 * 3600


def shortenMarkerGrace(session: Any, keyspace: str, run: Any) -> None:
    """
    Give the marker tables of a keyspace made before their short
    C{gc_grace_seconds} (blocking).
    """
    tables = session.cluster.metadata.keyspaces[keyspace].tables
    for table in MARKER_TABLES:
        found = tables.get(table)
        if found is not None and found.options.get(
                "gc_grace_seconds") != MARKER_GC_GRACE:
            run(f"ALTER TABLE {keyspace}.{table} WITH gc_grace_seconds = "
                f"{MARKER_GC_GRACE}")


def addMissingColumns(session: Any, keyspace: str, timeout: float,
                      run: Any = None) -> None:
    """
    Add the L{ADDED_COLUMNS} a keyspace's tables lack (blocking), through
    C{run} (see L{schemaRunner}) when given.
    """
    if run is None:
        def run(ddl: str) -> None:
            session.execute(ddl, timeout=timeout)
    cluster = session.cluster
    for table, column, kind in ADDED_COLUMNS:
        cluster.refresh_table_metadata(keyspace, table)
        if column not in cluster.metadata.keyspaces[keyspace].tables[
                table].columns:
            run(f"ALTER TABLE {keyspace}.{table} ADD IF NOT EXISTS "
                f"{column} {kind}")


# Whether a keyspace holds any point (of the current or the legacy layout
# alike: both write the points table).
ANY_POINT = "SELECT bucket FROM {ks}.points LIMIT 1"


def fixedMeta(session: Any, keyspace: str, key: str, wanted: str,
              timeout: float) -> str:
    """
    A setting fixed in the keyspace: the value recorded first, or
    C{wanted}, recorded now, when none is (blocking).  Recording is a
    lightweight transaction, so instances starting together agree.
    """
    from cassandra import ConsistencyLevel

    record = session.prepare(SET_META.format(ks=keyspace))
    session.execute(record, (key, wanted), timeout=timeout)
    read = session.prepare(GET_META.format(ks=keyspace))
    read.consistency_level = ConsistencyLevel.SERIAL
    return list(session.execute(read, (key,), timeout=timeout))[0][0]


def fixedSliceMs(session: Any, keyspace: str, wantedMs: int,
                 timeout: float) -> int:
    """
    The index slice of the keyspace: the one recorded when it was made,
    or C{wantedMs} (blocking).
    """
    return int(fixedMeta(session, keyspace, "index_slice_ms", str(wantedMs),
                         timeout))


def rollupSinceMs(session: Any, keyspace: str, resolutionMs: int,
                  sinceMs: int, timeout: float, what: str = "rollup") -> int:
    """
    From when a rollup level holds every point: the instant recorded when
    the level was first configured, or, when it is first configured now,
    C{sinceMs}, or 0 if the keyspace holds no point yet (every point is
    then written with its marker, whatever its timestamp, so a history
    imported into a new keyspace is rolled up too).  Blocking.

    With C{what="packs"}, the same for the level's packs
    (L{meetrd.packs}): a keyspace rolled up before packs existed has
    rollup rows but no packs before that instant.
    """
    key = f"{what}_since_{resolutionMs}"
    read = session.prepare(GET_META.format(ks=keyspace))
    found = list(session.execute(read, (key,), timeout=timeout))
    if found:
        return int(found[0][0])
    if not list(session.execute(ANY_POINT.format(ks=keyspace),
                                timeout=timeout)):
        sinceMs = 0
    return int(fixedMeta(session, keyspace, key, str(sinceMs), timeout))


def prepare(session: Any, keyspace: str, withTTL: bool, writeLevel: Any,
            legacy: bool) -> Statements:
    """
    Prepare every statement (blocking).

    @param withTTL: whether points are written with a TTL.
    @param writeLevel: the consistency level of writes.
    @param legacy: whether the keyspace still has the legacy index.
    """
    ks = keyspace

    def written(text: str) -> Any:
        statement = session.prepare(text)
        statement.consistency_level = writeLevel
        return statement

    def summaries(prefix: str, whole: str, byInterval: str,
                  newestFirst: str) -> dict[str, Any]:
        """
        The summary statements of a table: whole range or by interval,
        oldest or newest first, and both of several sources at once.
        """
        def named(name: str) -> str:
            return prefix + name[0].upper() + name[1:] if prefix else name

        return {
            named("summary"): _unpaged(session.prepare(whole.format(ks=ks))),
            named("summaryLast"): _unpaged(session.prepare(
                whole.format(ks=ks) + newestFirst)),
            named("byInterval"): session.prepare(byInterval.format(ks=ks)),
            named("byIntervalLast"): session.prepare(
                byInterval.format(ks=ks) + newestFirst),
            named("summaryMany"): _unpaged(session.prepare(
                manySources(whole).format(ks=ks))),
            named("byIntervalMany"): session.prepare(
                manySources(byInterval).format(ks=ks)),
        }

    statements = Statements(
        insertPoint=written(INSERT_POINT.format(ks=ks) +
                            (WITH_TTL if withTTL else "")),
        insertIndex=written(INSERT_INDEX.format(ks=ks)),
        insertBucket=written(INSERT_BUCKET.format(ks=ks)),
        insertSlice=written(INSERT_SLICE.format(ks=ks)),
        selectBuckets=session.prepare(SELECT_BUCKETS.format(ks=ks)),
        selectSlices=session.prepare(SELECT_SLICES.format(ks=ks)),
        **summaries("", SUMMARY, SUMMARY_BY_INTERVAL, NEWEST_FIRST),
        insertRollup=written(INSERT_ROLLUP.format(ks=ks)),
        insertDirty=written(INSERT_DIRTY.format(ks=ks)),
        selectDirty=session.prepare(SELECT_DIRTY.format(ks=ks)),
        deleteDirty=written(DELETE_DIRTY.format(ks=ks)),
        selectRaw=session.prepare(SELECT_RAW.format(ks=ks)),
        selectRawMany=session.prepare(SELECT_RAW_MANY.format(ks=ks)),
        selectIndexSlices=session.prepare(SELECT_INDEX_SLICES.format(ks=ks)),
        selectRollups=session.prepare(SELECT_ROLLUPS.format(ks=ks)),
        selectRollupsMany=session.prepare(SELECT_ROLLUPS_MANY.format(ks=ks)),
        selectRollupSketchesMany=session.prepare(
            SELECT_ROLLUP_SKETCHES_MANY.format(ks=ks)),
        selectRollupSketches=session.prepare(
            SELECT_ROLLUP_SKETCHES.format(ks=ks)),
        **summaries("rollup", ROLLUP_SUMMARY, ROLLUP_BY_INTERVAL,
                    ROLLUP_NEWEST_FIRST),
        selectValues=session.prepare(SELECT_VALUES.format(ks=ks)),
        selectSourceDirty=session.prepare(SELECT_SOURCE_DIRTY.format(ks=ks)),
        insertPack=written(INSERT_PACK.format(ks=ks)),
        selectPacks={column: session.prepare(SELECT_PACKS.format(
            ks=ks, column=column)) for column in PACK_VALUE_COLUMNS},
        selectPacksMany={column: session.prepare(manySources(
            SELECT_PACKS).format(ks=ks, column=column))
            for column in PACK_VALUE_COLUMNS},
        selectPackRows=session.prepare(SELECT_PACK_ROWS.format(ks=ks)),
        insertPackDirty=written(INSERT_PACK_DIRTY.format(ks=ks)),
        selectPackDirty=session.prepare(SELECT_PACK_DIRTY.format(ks=ks)),
        selectSourcePackDirty=session.prepare(
            SELECT_SOURCE_PACK_DIRTY.format(ks=ks)),
        deletePackDirty=written(DELETE_PACK_DIRTY.format(ks=ks)),
        selectMetrics=session.prepare(SELECT_METRICS.format(ks=ks)),
        insertMember=written(INSERT_MEMBER.format(ks=ks)),
        selectMembers=session.prepare(SELECT_MEMBERS.format(ks=ks)),
        deleteMember=written(DELETE_MEMBER.format(ks=ks)),
    )
    for count in range(MAX_INDEX_FILTERS + 1):
        statements.selectIndex[count] = session.prepare(SELECT_INDEX.format(
            ks=ks, filters=INDEX_FILTER * count))
    if legacy:
        statements.selectLegacy = session.prepare(
            SELECT_LEGACY_SERIES.format(ks=ks))
    return statements


def hasLegacyIndex(cluster: Any, keyspace: str) -> bool:
    """
    Whether the keyspace has the series index of earlier versions.
    """
    meta = cluster.metadata.keyspaces.get(keyspace)
    return meta is not None and LEGACY_SERIES_TABLE in meta.tables


def _unpaged(statement: Any) -> Any:
    """
    A summary statement read without paging: it answers one row per series
    (at most L{meetrd.readplan.MAX_IN_SERIES}), and an aggregate read in
    pages costs Cassandra a fresh aggregation state per page.
    """
    statement.fetch_size = None
    return statement
