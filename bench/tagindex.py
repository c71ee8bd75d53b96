"""
Tag index: meetrd's Storage-Attached Index (SAI) on the entries of
C{series_index.tags} against a hand-made inverted index, built side by
side in one run, in the keyspace C{bench_tagindex} (dropped at the start
and at the end)::

    .venv/bin/python bench/tagindex.py
    .venv/bin/python bench/tagindex.py --series 20000 --repeat 50

The data has the shape of L{bench.scale}: one metric, one index slice,
C{--series} series (at 100,000: C{node} n0..n999 x C{cpu} 0..99), all
with C{mode=user}.  SAI: meetrd's own table, index and query, a request a
search.  Inverted: a C{postings} table (a partition per tag key and value,
listing series ids) beside the same table without the index; a search
reads the posting list of each filter (at once), intersects them, then
reads the rows of those series.

Writes: three loads, each timed alone up to the end of the flush of its
table (forced by a change of the table's comment), so that writing the
index to disk counts too: the table without index, which the inverted
design needs as well; the postings; the table with its index.  Unlogged
batches of 100 rows of a partition, as many in flight as meetrd allows
its index writes (C{INDEX_WRITES_IN_FLIGHT}): many more, into the one
partition of an SAI-indexed table, time out and can fill a small node's
heap.  Reads, on flushed tables: one series, one node (100 series), one
cpu (1,000 series), a random node and cpu each time.  Cassandra's CPU is
read from /proc; the requests of other clients meanwhile are counted,
their work being in it.  Exits with 1 when a design does not find the
series that the data says.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import cassandraPid, cpuSeconds, median, now  # noqa: E402
from meetrd.schema import INDEX_FILTER, SELECT_INDEX, TABLES  # noqa: E402
from meetrd.store import INDEX_WRITES_IN_FLIGHT  # noqa: E402

KEYSPACE = "bench_tagindex"
METRIC = "bench.cpu"
SLICE = 0
BUCKET_MS = 3600000
ROWS_PER_BATCH = 100
WARMUP = 20
WARMUP_SERIES = 5000
_TABLE = next(t for t in TABLES if "{ks}.series_index (" in t)
DDL = [_TABLE, next(t for t in TABLES if "ON {ks}.series_index" in t),
       _TABLE.replace("{ks}.series_index", "{ks}.series_plain"),
       """CREATE TABLE {ks}.postings (metric text, slice bigint,
           tag_key text, tag_value text, series_id blob,
           PRIMARY KEY ((metric, slice, tag_key, tag_value), series_id))"""]
TABLE_OF = {"plain": "series_plain", "postings": "postings",
            "sai": "series_index"}
SEARCHES = (("one series", lambda node, cpu: [("node", node), ("cpu", cpu)]),
            ("one node", lambda node, cpu: [("node", node)]),
            ("one cpu", lambda node, cpu: [("cpu", cpu)]))


# The node and what it spends

def nodeOf(text: str) -> tuple[str, int]:
    """C{host:port} as a pair; exits when the host is not on loopback."""
    host, _, port = text.rpartition(":")
    if host not in ("127.0.0.1", "localhost", "::1", "[::1]"):
        raise SystemExit(f"tagindex: refusing to run against {text}: this "
                         f"benchmark only talks to a node on loopback")
    return host, int(port)


def listenerPid(port: int) -> int | None:
    """
    The pid of the java process listening on C{port} (C{ss -ltnp}), else
    the one CassandraDaemon that L{bench.common.cassandraPid} finds.
    """
    try:
        out = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"],
                             capture_output=True, text=True).stdout
    except OSError:
        out = ""
    for line in out.splitlines():
        if '"java"' in line:
            return int(line.split("pid=", 1)[1].split(",", 1)[0])
    return cassandraPid()


class Meter:
    """
    Since L{start}: CPU seconds of Cassandra and of this process; requests
    that Cassandra served and memtables that it flushed, from the tasks
    that its thread pools completed (C{system_views.thread_pools}).
    """

    POOLS = {"Native-Transport-Requests": "requests",
             "MemtableFlushWriter": "flushes"}

    def __init__(self, session: Any, pid: int) -> None:
        self.session, self.pid, self.own = session, pid, 0

    def _query(self, cql: str) -> Any:
        """Run C{cql}, counting it among this meter's own requests."""
        self.own += 1
        return self.session.execute(cql)

    def _tasks(self) -> dict[str, int]:
        """The tasks completed so far by the pools of L{POOLS}."""
        return {self.POOLS[r.name]: r.completed_tasks for r in self._query(
            "SELECT name, completed_tasks FROM system_views.thread_pools")
            if r.name in self.POOLS}

    def start(self) -> None:
        """Start measuring."""
        self.own = 0
        self.tasks, self.at = self._tasks(), now()
        self.cpu = cpuSeconds(self.pid), sum(os.times()[:2])

    def flush(self, table: str) -> None:
        """
        Have Cassandra flush C{table} to disk (a change of its options
        does) and wait until its flush writers are idle.
        """
        self._query(f"ALTER TABLE {KEYSPACE}.{table} WITH comment = "
                    f"'bench: flushed'")
        while any(r.active_tasks or r.pending_tasks for r in self._query(
                "SELECT name, active_tasks, pending_tasks FROM "
                "system_views.thread_pools") if "Flush" in r.name):
            time.sleep(0.1)

    def stop(self, sent: int) -> dict[str, float]:
        """
        Wall, Cassandra and client CPU seconds, memtables flushed and the
        requests of other clients: not the C{sent} of this process, nor
        this meter's own.
        """
        wall, own, tasks = now() - self.at, self.own, self._tasks()
        return {"wall": wall,
                "cassandraCpu": cpuSeconds(self.pid) - self.cpu[0],
                "clientCpu": sum(os.times()[:2]) - self.cpu[1],
                "flushes": tasks["flushes"] - self.tasks["flushes"],
                "others": tasks["requests"] - self.tasks["requests"]
                - sent - own}

    def settle(self, most: float = 30.0) -> float:
        """
        Wait, C{most} seconds at most, until Cassandra uses under a fifth
        of a core over a second, so that what a load leaves behind does not
        land in the next measurement; give its last CPU ms per second.
        """
        deadline = now() + most
        while True:
            before = cpuSeconds(self.pid)
            time.sleep(1.0)
            rate = (cpuSeconds(self.pid) - before) * 1000
            if rate < 200 or now() > deadline:
                return rate


# The data and the writes

def makeSeries(count: int) -> list[tuple[bytes, str, dict[str, str]]]:
    """C{count} series (series id, source, tags), 100 cpus per node."""
    out = []
    for i in range(count):
        tags = {"node": f"n{i // 100}", "cpu": str(i % 100), "mode": "user"}
        key = ",".join(f"{k}={v}" for k, v in sorted(tags.items()))
        seriesId = hashlib.blake2b(key.encode(), digest_size=16).digest()
        out.append((seriesId, f"n:{tags['node']}", tags))
    return out


def postingLists(series: list[Any]) -> dict[tuple[str, str], list[bytes]]:
    """Per tag key and value, the ids of the series that have it."""
    lists: dict[tuple[str, str], list[bytes]] = {}
    for seriesId, _, tags in series:
        for pair in sorted(tags.items()):
            lists.setdefault(pair, []).append(seriesId)
    return lists


def batchesOf(statement: Any, rows: list[tuple[Any, ...]]) -> Iterator[Any]:
    """C{rows} of one partition as unlogged batches of C{statement}."""
    from cassandra.query import BatchStatement, BatchType

    for start in range(0, len(rows), ROWS_PER_BATCH):
        batch = BatchStatement(BatchType.UNLOGGED)
        for row in rows[start:start + ROWS_PER_BATCH]:
            batch.add(statement, row)
        yield batch


def designLoads(session: Any, series: list[Any], metric: str
                ) -> dict[str, Callable[[], Iterator[Any]]]:
    """
    Per load (C{plain}, C{postings}, C{sai}), what makes its batches, the
    same at each call: the rows of C{series} under C{metric}.
    """
    insert = {t: session.prepare(
        f"INSERT INTO {KEYSPACE}.{t} (metric, slice, series_id, source, "
        f"bucket_ms, tags) VALUES (?, ?, ?, ?, ?, ?)")
        for t in ("series_plain", "series_index")}
    posting = session.prepare(
        f"INSERT INTO {KEYSPACE}.postings (metric, slice, tag_key, "
        f"tag_value, series_id) VALUES (?, ?, ?, ?, ?)")
    rows = [(metric, SLICE, i, source, BUCKET_MS, tags)
            for i, source, tags in series]

    def postings() -> Iterator[Any]:
        """The postings' batches, a posting list at a time."""
        for (key, value), ids in postingLists(series).items():
            yield from batchesOf(posting, [(metric, SLICE, key, value, i)
                                           for i in ids])

    return {"plain": lambda: batchesOf(insert["series_plain"], rows),
            "postings": postings,
            "sai": lambda: batchesOf(insert["series_index"], rows)}


def load(session: Any, batches: Iterator[Any]) -> dict[str, int]:
    """
    Send C{batches}, L{INDEX_WRITES_IN_FLIGHT} in flight: requests, rows.
    """
    from cassandra.concurrent import execute_concurrent

    figures = {"requests": 0, "rows": 0}

    def counted() -> Iterator[Any]:
        """C{batches}, counting what goes out."""
        for batch in batches:
            figures["requests"] += 1
            figures["rows"] += len(batch)
            yield batch, ()

    for _ in execute_concurrent(session, counted(),
                                concurrency=INDEX_WRITES_IN_FLIGHT,
                                raise_on_first_error=True,
                                results_generator=True):
        pass
    return figures


def waitQueryable(session: Any, most: float = 600.0) -> float:
    """
    Wait until the SAI index is built, a query through it answering; give
    the seconds that took.
    """
    start = now()
    while now() - start < most:
        try:
            session.execute(f"SELECT series_id FROM {KEYSPACE}.series_index "
                            f"WHERE metric = %s AND slice = %s AND "
                            f"tags['cpu'] = '0' LIMIT 1", (METRIC, SLICE))
            return now() - start
        except Exception:
            time.sleep(0.5)
    raise SystemExit("tagindex: the SAI index is still not queryable")


# The searches: each gives the series ids found, requests and rows read

def pagesOf(result: Any) -> tuple[list[Any], int]:
    """Every row of a result set, fetching its pages; and the requests."""
    rows, requests = list(result.current_rows), 1
    while result.has_more_pages:
        result.fetch_next_page()
        rows.extend(result.current_rows)
        requests += 1
    return rows, requests


def saiSearcher(session: Any, limit: int) -> Callable[..., Any]:
    """A search through the SAI index: meetrd's query, one request."""
    byCount = {n: session.prepare(SELECT_INDEX.format(
        ks=KEYSPACE, filters=INDEX_FILTER * n)) for n in (1, 2)}

    def search(filters: list[tuple[str, str]]) -> tuple[set[bytes], int, int]:
        """The series matching C{filters}."""
        params = [METRIC, SLICE, *(x for pair in filters for x in pair)]
        rows, requests = pagesOf(session.execute(byCount[len(filters)],
                                                 params + [limit]))
        return {r.series_id for r in rows}, requests, len(rows)

    return search


def invertedSearcher(session: Any) -> Callable[..., Any]:
    """
    A search through the postings: a request per tag filter, at once, then
    one for the rows of the series found in every posting list.
    """
    postings = session.prepare(
        f"SELECT series_id FROM {KEYSPACE}.postings WHERE metric = ? AND "
        f"slice = ? AND tag_key = ? AND tag_value = ?")
    seriesRows = session.prepare(
        f"SELECT series_id, source, bucket_ms, tags FROM {KEYSPACE}."
        f"series_plain WHERE metric = ? AND slice = ? AND series_id IN ?")

    def search(filters: list[tuple[str, str]]) -> tuple[set[bytes], int, int]:
        """The series matching C{filters}."""
        futures = [session.execute_async(postings, (METRIC, SLICE, k, v))
                   for k, v in filters]
        found: set[bytes] | None = None
        requests = read = 0
        for future in futures:
            rows, n = pagesOf(future.result())
            requests, read = requests + n, read + len(rows)
            ids = {r.series_id for r in rows}
            found = ids if found is None else found & ids
        if not found:
            return set(), requests, read
        rows, n = pagesOf(session.execute(
            seriesRows, (METRIC, SLICE, sorted(found))))
        return {r.series_id for r in rows}, requests + n, read + len(rows)

    return search


def measure(search: Callable[..., Any], picks: list[Any], meter: Meter
            ) -> dict[str, Any]:
    """
    C{search} of each of C{picks}, one after the other, the first
    L{WARMUP} unmeasured: per search wall ms (median, p90), requests, rows
    and Cassandra CPU ms; the requests of other clients; each answer.
    """
    answers = [search(filters)[0] for filters in picks[:WARMUP]]
    ms, requests, rows = [], 0, 0
    meter.start()
    for filters in picks[WARMUP:]:
        start = now()
        ids, n, read = search(filters)
        ms.append((now() - start) * 1000)
        answers.append(ids)
        requests, rows = requests + n, rows + read
    used, count = meter.stop(requests), len(ms)
    return {"medianMs": median(ms),
            "p90Ms": sorted(ms)[math.ceil(0.9 * count) - 1],
            "requests": requests / count, "rows": rows / count,
            "cpuMs": used["cassandraCpu"] * 1000 / count,
            "others": used["others"], "flushes": used["flushes"],
            "answers": answers}


# The run

def run(args: argparse.Namespace) -> int:
    """
    Build both designs in a fresh keyspace, measure them, print the
    comparison and drop the keyspace; 1 when an answer is wrong.
    """
    import logging

    from cassandra.cluster import Cluster

    logging.getLogger("cassandra").setLevel(logging.CRITICAL)
    host, port = nodeOf(args.node)
    pid = listenerPid(port)
    if pid is None:
        raise SystemExit(f"tagindex: no java process listens on {port}")
    # No schema metadata nor agreement wait: on one node they only add
    # requests of this process after each schema change.
    cluster = Cluster([host], port=port, schema_metadata_enabled=False,
                      max_schema_agreement_wait=0)
    session = cluster.connect()
    session.default_timeout = 120
    try:
        session.execute(f"DROP KEYSPACE IF EXISTS {KEYSPACE}")
        session.execute(f"CREATE KEYSPACE {KEYSPACE} WITH replication = "
                        f"{{'class': 'SimpleStrategy', "
                        f"'replication_factor': 1}}")
        for ddl in DDL:
            session.execute(ddl.format(ks=KEYSPACE))
        return compare(session, Meter(session, pid),
                       makeSeries(args.series), args)
    finally:
        session.execute(f"DROP KEYSPACE IF EXISTS {KEYSPACE}")
        cluster.shutdown()


def compare(session: Any, meter: Meter, series: list[Any],
            args: argparse.Namespace) -> int:
    """The loads, the searches, their check and the report of L{run}."""
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    log("tagindex: warming up the writes (another metric, not measured)")
    for make in designLoads(session, series[:WARMUP_SERIES],
                            "bench.warmup").values():
        load(session, make())
    loads = {}
    for name, make in designLoads(session, series, METRIC).items():
        meter.settle()
        log(f"tagindex: loading {name}, then flushing it")
        meter.start()
        figures = load(session, make())
        meter.flush(TABLE_OF[name])
        loads[name] = {**figures, **meter.stop(figures["requests"])}
    built = waitQueryable(session)
    idle = meter.settle()
    lists, rng = postingLists(series), random.Random(20240601)
    designs = [("SAI", saiSearcher(session, len(series) + 1)),
               ("inverted", invertedSearcher(session))]
    results, wrong = [], 0
    for turn, (name, filtersOf) in enumerate(SEARCHES):
        picks = []
        for _ in range(WARMUP + args.repeat):
            node = rng.randrange((len(series) + 99) // 100)
            cpu = rng.randrange(min(100, len(series) - node * 100))
            picks.append(filtersOf(f"n{node}", str(cpu)))
        figures = {}
        for design, search in designs[::1 if turn % 2 == 0 else -1]:
            log(f"tagindex: {name}, {design}")
            figures[design] = measure(search, picks, meter)
        for k, filters in enumerate(picks):
            expected = set.intersection(*(set(lists[f]) for f in filters))
            got = [figures[d]["answers"][k] for d in ("SAI", "inverted")]
            if got != [expected, expected]:
                wrong += 1
                log(f"tagindex: WRONG {name} {filters}: {len(expected)} "
                    f"series, SAI found {len(got[0])}, inverted {len(got[1])}")
        results.append((name, figures))
    print(report(len(series), args, loads, built, idle, results, wrong))
    return 1 if wrong else 0


def report(count: int, args: argparse.Namespace, loads: dict[str, Any],
           built: float, idle: float, results: list[Any], wrong: int) -> str:
    """The comparison as text: the writes, then the searches."""
    x = lambda a, b: f"{a / b:.1f}x" if b else "-"  # noqa: E731
    plain, postings, sai = loads["plain"], loads["postings"], loads["sai"]
    inverted = {k: plain[k] + postings[k] for k in plain}
    lines = [f"tag index: {count:,} series of {METRIC} in one slice; "
             f"{args.repeat} searches of each kind after {WARMUP} warm-up",
             "", f"writes: {ROWS_PER_BATCH}-row unlogged batches of one "
             f"partition, {INDEX_WRITES_IN_FLIGHT} in flight",
             f"{'':<28}{'wall s':>7}{'requests':>10}{'rows':>9}"
             f"{'Cassandra CPU s':>17}{'client CPU s':>14}{'flushes':>9}"
             f"{'others':>8}"]
    for name, w in (("table alone, no index", plain), ("postings", postings),
                    ("SAI: table + SAI index", sai),
                    ("inverted: table + postings", inverted)):
        lines.append(f"  {name:<26}{w['wall']:>7.1f}{w['requests']:>10,}"
                     f"{w['rows']:>9,}{w['cassandraCpu']:>17.1f}"
                     f"{w['clientCpu']:>14.1f}"
                     f"{w['flushes']:>9,}{w['others']:>8,}")
    lines += [
        f"  inverted/SAI: wall {x(inverted['wall'], sai['wall'])}, Cassandra"
        f" CPU {x(inverted['cassandraCpu'], sai['cassandraCpu'])}, client "
        f"CPU {x(inverted['clientCpu'], sai['clientCpu'])}",
        f"  Cassandra CPU of the index alone: SAI "
        f"{sai['cassandraCpu'] - plain['cassandraCpu']:.1f} s (table + SAI "
        f"- table alone), postings {postings['cassandraCpu']:.1f} s",
        f"  SAI queryable {built:.1f} s after its load; Cassandra idle at "
        f"{idle:.0f} ms CPU/s before the searches", "",
        f"{'search':<12}{'design':<14}{'median ms':>10}{'p90 ms':>8}"
        f"{'requests':>10}{'rows read':>11}{'Cassandra CPU ms':>18}"
        f"{'flushes':>9}{'others':>8}"]
    for name, figures in results:
        for design in ("SAI", "inverted"):
            f = figures[design]
            lines.append(f"{name if design == 'SAI' else '':<12}{design:<14}"
                         f"{f['medianMs']:>10.2f}{f['p90Ms']:>8.2f}"
                         f"{f['requests']:>10.1f}{f['rows']:>11,.0f}"
                         f"{f['cpuMs']:>18.2f}{f['flushes']:>9,}"
                         f"{f['others']:>8,}")
        s, i = figures["SAI"], figures["inverted"]
        lines.append(f"{'':<12}{'inverted/SAI':<14}"
                     f"{x(i['medianMs'], s['medianMs']):>10}{'':>29}"
                     f"{x(i['cpuMs'], s['cpuMs']):>18}")
    lines += ["", "flushes, others: memtables Cassandra flushed, requests "
              "that other clients sent it, meanwhile (in its CPU too)",
              f"answers: {wrong} WRONG" if wrong else "answers: both designs "
              "found the series the data says, every search"]
    return "\n".join(lines)


def main() -> int:
    """Read the command line and run."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0].rstrip(":") + ".")
    parser.add_argument("--series", type=int, default=100000,
                        help="series to index (default 100000)")
    parser.add_argument("--repeat", type=int, default=200,
                        help="measured searches of each kind (default 200)")
    parser.add_argument("--node", default="127.0.0.1:19042",
                        help="host:port of the node, on loopback only")
    args = parser.parse_args()
    if args.series < 100 or args.repeat < 1:
        parser.error("--series must be 100 or more, --repeat 1 or more")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
