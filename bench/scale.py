"""
Scale: 100,000 series of one metric through L{MetricStore}, and what the
time-sliced series index does for searches, writes and the caps at that
size::

    MEETR_TEST_CASSANDRA=127.0.0.1:19042 .venv/bin/python bench/scale.py
    .venv/bin/python bench/scale.py --json /tmp/scale.json

Four parts, in one run; parts 1, 2 and 4 share a keyspace, each run of
part 3 has one of its own, and all are dropped at the end:

  1. load: 100,000 series of C{scale.cpu} (tags C{node} n0..n999 x C{cpu}
     0..99), 3 scrapes 10 s apart, written through C{writePoints} one
     node's scrape (100 points) per call, several calls in flight; points/s
     and CPU per 1,000 points of the writing process and of Cassandra;
  2. searches over the data's range, each repeated: one series
     (C{tag=node:n17&tag=cpu:3}), one node (C{tag=node:n17}, 100 series),
     and C{group_by=node} over every series, which the caps must refuse;
     wall ms (median, p90), requests and index rows read per search;
  3. ingest before and after: the same 20,000-series write workload
     through the store of commit L{OLD_COMMIT} (a temporary git worktree)
     and through the current one, in fresh worker processes and
     keyspaces, taking turns for several rounds;
  4. write latency: a steady rate of one-node writes alone, then while
     another process runs wide searches (C{group_by=node&tag=cpu:3}, 1,000
     series) back to back.

Every party is a process of its own (see L{bench.common}); the
orchestrator hands out commands and reads CPU time from /proc.  This file
is also the worker processes' program::

    python bench/scale.py store-worker HOST PORT KEYSPACE [--code DIR]
    python bench/scale.py admin-worker HOST PORT

C{--code DIR} puts DIR first on the worker's path, so that it runs the
C{meetrd} package of that tree (the old commit's worktree).

Cassandra's heap is watched with C{jstat} (L{HeapGuard}): a node whose
heap is nearly full when the load arrives is stopped by an out-of-memory
exit, so the workers are stopped first.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
SCALE = str(Path(__file__).resolve())


def codeRoot(argv: list[str]) -> str | None:
    """
    The tree named by C{--code DIR} on a worker's command line, if any.
    """
    if "--code" in argv:
        return argv[argv.index("--code") + 1]
    return None


_CODE = codeRoot(sys.argv) if __name__ == "__main__" else None
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if _CODE:
    # Before anything imports meetrd: the worker runs that tree's package
    # (and, bench being a namespace package, that tree's bench.common and
    # tests.support, which the old commit has as they are now).
    sys.path.insert(0, _CODE)

from bench.common import (  # noqa: E402
    CpuWatch,
    Worker,
    cassandraPid,
    dayStart,
    median,
    nodeAddress,
    now,
    serveBlocking,
)
from bench.workerloop import serveStore  # noqa: E402

METRIC = "scale.cpu"
OLD_COMMIT = "5799c91"
NODE_BUCKET_S = 3600


# The data

def pointValue(node: int, cpu: int, scrape: int) -> float:
    """
    The value of a series' point in scrape C{scrape}; deterministic, so
    that the orchestrator can check the searches' answers.
    """
    return ((node * 131 + cpu * 17 + scrape * 7) % 1000) / 10.0


def scrapeTime(baseS: int, stepS: int, scrape: int) -> int:
    """
    The epoch millisecond of scrape C{scrape}.
    """
    return (baseS + scrape * stepS) * 1000


class Scrapes:
    """
    One node's scrape as C{writePoints} gets it: the node's C{cpus}
    series of C{scale.cpu} at one timestamp.  Tags are frozen once per
    series.
    """

    def __init__(self, cpus: int) -> None:
        """
        @param cpus: the series of a node (its C{cpu} tags 0..cpus-1).
        """
        from meetrd.points import Point, freezeTags

        self.cpus = cpus
        self._point = Point
        self._freeze = freezeTags
        self._tags: dict[int, list[Any]] = {}

    def tagsOf(self, node: int) -> list[Any]:
        """
        The frozen tags of a node's series, by cpu.
        """
        found = self._tags.get(node)
        if found is None:
            found = self._tags[node] = [
                self._freeze({"node": f"n{node}", "cpu": str(cpu)})
                for cpu in range(self.cpus)]
        return found

    def batch(self, node: int, scrape: int, tsMs: int) -> list[Any]:
        """
        The points of node C{node}'s scrape number C{scrape}, at C{tsMs}.
        """
        point = self._point
        return [point(METRIC, tags, tsMs, pointValue(node, cpu, scrape))
                for cpu, tags in enumerate(self.tagsOf(node))]


class CollectorWatch:
    """
    The pauses of Python's cyclic garbage collector in this process, by
    generation, from C{gc.callbacks}: a process holding 100,000 series in
    its caches has that many long-lived objects for a full collection to
    walk.
    """

    def __init__(self) -> None:
        """
        Register with C{gc.callbacks}; the window starts now.
        """
        import gc

        self._began = 0.0
        self.reset()
        gc.callbacks.append(self._callback)

    def reset(self) -> None:
        """
        Start a new window.
        """
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        """
        Time one collection, from its start to its stop.
        """
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.pauses[info["generation"]].append(
                time.perf_counter() - self._began)

    def summary(self) -> dict[str, Any]:
        """
        Per generation, the collections of the window, their total and
        their longest pause in ms.
        """
        return {str(gen): {"count": len(p), "totalMs": sum(p) * 1000,
                           "maxMs": max(p, default=0.0) * 1000}
                for gen, p in self.pauses.items()}


def percentile(values: list[float], share: float) -> float:
    """
    The nearest-rank percentile of C{values} (C{share} in 0..1).
    """
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


# The store worker: MetricStore in a Twisted process

def storeWorker(host: str, port: int, keyspace: str) -> None:
    """
    A Twisted process with one connected L{MetricStore} (of whichever
    C{meetrd} is first on the path), taking JSON commands line by line;
    a command may answer later than the next one arrives, so that
    C{wideStart} and C{wideStop} can bracket another party's work.
    """
    from twisted.internet import defer, reactor
    from twisted.python.failure import Failure

    import meetrd
    from bench.common import daemonSettingsFor
    from meetrd.settings import settingsFromMapping
    from meetrd.store import MetricStore

    settings = settingsFromMapping(daemonSettingsFor(keyspace, (host, port)),
                                   "bench")
    store = MetricStore(settings.cassandra, settings.retentionSeconds, reactor)
    state: dict[str, Any] = {}
    makers: dict[int, Scrapes] = {}
    collector = CollectorWatch()

    def scrapesOf(cpus: int) -> Scrapes:
        """
        The scrape maker for nodes of C{cpus} series, made once.
        """
        if cpus not in makers:
            makers[cpus] = Scrapes(cpus)
        return makers[cpus]

    def counters() -> tuple[int, int]:
        """
        The store's requests sent and index rows read so far (the old
        store does not count index rows: 0).
        """
        return store.requests, getattr(store, "indexRowsRead", 0)

    async def whoami() -> dict[str, Any]:
        """
        Which meetrd this worker runs, and whether its store counts index
        rows.
        """
        return {"meetrd": str(Path(meetrd.__file__).resolve().parent),
                "indexRowsRead": hasattr(store, "indexRowsRead"),
                "pid": os.getpid()}

    async def prepare(nodes: int, cpus: int, scrapes: int, stepS: int,
                      baseS: int) -> dict[str, Any]:
        """
        Build the batches of a load before the clock starts: scrape after
        scrape, every node's scrape one batch.
        """
        maker = scrapesOf(cpus)
        state["batches"] = [
            maker.batch(node, scrape, scrapeTime(baseS, stepS, scrape))
            for scrape in range(scrapes) for node in range(nodes)]
        return {"points": nodes * cpus * scrapes,
                "calls": len(state["batches"])}

    async def go(inflight: int) -> dict[str, Any]:
        """
        Write the prepared batches, C{inflight} C{writePoints} calls at a
        time.
        """
        queue = list(reversed(state.pop("batches")))
        points = sum(len(b) for b in queue)
        written = 0

        async def lane() -> None:
            """
            One call in flight at a time, until the batches run out.
            """
            nonlocal written
            while queue:
                # Not "written += await ...": that reads written before
                # the await, and the other lanes' additions would be lost.
                n = await store.writePoints(queue.pop())
                written += n

        requests, _ = counters()
        collector.reset()
        start = now()
        await defer.gatherResults(
            [defer.ensureDeferred(lane()) for _ in range(inflight)],
            consumeErrors=True)
        end = now()
        return {"start": start, "end": end, "points": points,
                "failed": points - written,
                "requests": store.requests - requests,
                "gc": collector.summary()}

    def makeQuery(metric: str, fromMs: int, toMs: int, aggregation: str,
                  filters: list[list[Any]], groupBy: str | None) -> Any:
        """
        A L{meetrd.search.Query} from a command's JSON parameters
        (C{filters}: C{[key, [values]]} pairs).
        """
        from meetrd.search import Query
        from meetrd.timestamps import formatTimestamp

        return Query(metric, formatTimestamp(fromMs), formatTimestamp(toMs),
                     fromMs, toMs, aggregation,
                     tuple((key, frozenset(values))
                           for key, values in filters),
                     groupBy, None)

    async def searchOnce(query: Any) -> dict[str, Any]:
        """
        One search: its wall time, the requests and index rows it cost,
        and its answer in brief (or why it was refused).
        """
        from meetrd.readplan import SearchTooWide
        from meetrd.search import runSearch

        requests, indexRows = counters()
        start = now()
        try:
            answer = await runSearch(store, query, settings.limits, reactor)
            outcome: dict[str, Any] = {
                "value": answer["value"],
                "groups": len(answer.get("groups", ())),
                "groupSum": sum(g["value"] or 0.0
                                for g in answer.get("groups", ()))}
        except SearchTooWide as e:
            outcome = {"refused": e.field, "problem": e.problem}
        except Exception as e:
            outcome = {"error": f"{type(e).__name__}: {e}"}
        end = now()
        after = counters()
        return {"start": start, "end": end, "seconds": end - start,
                "requests": after[0] - requests,
                "indexRows": after[1] - indexRows, **outcome}

    async def search(metric: str, fromMs: int, toMs: int, aggregation: str,
                     filters: list[list[Any]], groupBy: str | None,
                     repeats: int) -> dict[str, Any]:
        """
        The same search C{repeats} times, one after the other.
        """
        query = makeQuery(metric, fromMs, toMs, aggregation, filters, groupBy)
        runs = []
        for _ in range(repeats):
            runs.append(await searchOnce(query))
        return {"runs": runs}

    async def steady(rate: float, seconds: float, warmup: float, first: int,
                     nodes: int, cpus: int, baseS: int, stepS: int
                     ) -> dict[str, Any]:
        """
        Write one node's scrape every 1/C{rate} s for C{warmup} +
        C{seconds} s, on schedule whatever the answers (an open loop);
        write C{first + k} is node C{(first + k) % nodes}'s scrape number
        C{(first + k) // nodes}.  Answers, for the writes after the
        warm-up: each one's latency (sent to acknowledged) and lag (due to
        sent).
        """
        maker = scrapesOf(cpus)
        interval = 1.0 / rate
        total = round(rate * (warmup + seconds))
        skip = round(rate * warmup)
        records: list[tuple[float, float, float, bool]] = []
        errors: list[str] = []
        issued = 0
        outstanding = 0
        finished: defer.Deferred[None] = defer.Deferred()
        start = now() + 0.05

        def acknowledged(result: Any, due: float, sent: float, k: int
                         ) -> None:
            """
            Record write C{k}'s answer (a count or a failure); fire
            C{finished} after the last one.
            """
            nonlocal outstanding
            ok = not isinstance(result, Failure)
            if not ok and len(errors) < 5:
                errors.append(result.getErrorMessage())
            if k >= skip:
                records.append((due, sent, now(), ok))
            outstanding -= 1
            if issued == total and not outstanding and not finished.called:
                finished.callback(None)

        def issue() -> None:
            """
            Send every write that is due, then wait for the next one.
            """
            nonlocal issued, outstanding
            while issued < total and start + issued * interval <= now():
                k = issued
                issued += 1
                write = first + k
                node, scrape = write % nodes, write // nodes
                batch = maker.batch(node, scrape,
                                    scrapeTime(baseS, stepS, scrape))
                due = start + k * interval
                outstanding += 1
                sent = now()
                store.writePoints(batch).addBoth(acknowledged, due, sent, k)
            if issued < total:
                reactor.callLater(max(0.0, start + issued * interval - now()),
                                  issue)
            elif not outstanding and not finished.called:
                finished.callback(None)

        reactor.callLater(max(0.0, start - now()), issue)
        collector.reset()
        await finished
        return {"writes": len(records), "next": first + total,
                "start": min(r[1] for r in records),
                "end": max(r[2] for r in records),
                "latency": [done - sent for _, sent, done, _ in records],
                "lag": [sent - due for due, sent, _, _ in records],
                "failed": sum(1 for r in records if not r[3]),
                "errors": errors, "gc": collector.summary()}

    async def wideStart(metric: str, fromMs: int, toMs: int, aggregation: str,
                        filters: list[list[Any]], groupBy: str | None
                        ) -> dict[str, Any]:
        """
        Start running the search back to back until L{wideStop}; answer at
        once.
        """
        query = makeQuery(metric, fromMs, toMs, aggregation, filters, groupBy)
        wide: dict[str, Any] = {"stop": False, "runs": []}

        async def loop() -> None:
            """
            One search after the other until told to stop.
            """
            while not wide["stop"]:
                wide["runs"].append(await searchOnce(query))

        wide["done"] = defer.ensureDeferred(loop())
        state["wide"] = wide
        return {"started": now()}

    async def wideStop() -> dict[str, Any]:
        """
        Stop the searches of L{wideStart} once the one running ends; answer
        with every search run.
        """
        wide = state.pop("wide")
        wide["stop"] = True
        await wide["done"]
        return {"runs": wide["runs"]}

    async def gcProbe(top: int = 8) -> dict[str, Any]:
        """
        What the cyclic collector has to walk in this process: the objects
        it tracks, the most common types among them, and how long a full
        collection takes now.
        """
        import collections
        import gc

        tracked = gc.get_objects()
        kinds = collections.Counter(type(o).__name__ for o in tracked)
        count = len(tracked)
        del tracked
        started = time.perf_counter()
        unreachable = gc.collect()
        return {"tracked": count, "common": kinds.most_common(top),
                "collectMs": (time.perf_counter() - started) * 1000,
                "unreachable": unreachable,
                "trackedAfter": len(gc.get_objects())}

    handlers: dict[str, Callable[..., Any]] = {
        "whoami": whoami, "prepare": prepare, "go": go, "search": search,
        "steady": steady, "wideStart": wideStart, "wideStop": wideStop,
        "gcProbe": gcProbe}

    serveStore(store, handlers, reactor)


# The admin worker: a plain driver session

def adminWorker(host: str, port: int) -> None:
    """
    A blocking driver session (the driver's default connection class) that
    checks what was written and drops the keyspaces.
    """
    import re
    import warnings

    warnings.simplefilter("ignore")
    from cassandra.cluster import Cluster

    cluster = Cluster([host], port=port)
    session = cluster.connect()
    session.default_timeout = 120

    def checked(keyspace: str) -> str:
        """
        C{keyspace}, when it is one of this benchmark's (its name then
        stands in CQL); else C{ValueError}.
        """
        if not re.fullmatch(r"bench_scale_[a-z0-9_]+", keyspace):
            raise ValueError(f"not a keyspace of this benchmark: {keyspace}")
        return keyspace

    def count(keyspace: str, source: str, bucket: int) -> dict[str, Any]:
        """
        The rows of one partition of a keyspace's points table.
        """
        row = session.execute(
            f"SELECT count(*) FROM {checked(keyspace)}.points WHERE "
            f"source = %s AND bucket = %s", (source, bucket)).one()
        return {"rows": row[0]}

    def drop(keyspace: str) -> dict[str, Any]:
        """
        Drop a keyspace of this benchmark.
        """
        session.execute(f"DROP KEYSPACE IF EXISTS {checked(keyspace)}",
                        timeout=120)
        return {"dropped": keyspace}

    try:
        serveBlocking({"count": count, "drop": drop})
    finally:
        cluster.shutdown()


# The orchestrator

class HeapGuard:
    """
    Cassandra's Java heap, read with C{jstat -gc} (which reads the JVM's
    performance counters and does not pause it), and a watch that stops
    this benchmark's workers when the node is in back-to-back full
    collections, so that a heap filled by other work is not pushed into
    an out-of-memory exit.  Without C{jstat}, or without Cassandra's pid,
    it does nothing.
    """

    #: Tripped by a full collection that leaves the old generation fuller
    #: than this share of its most, or by full collections taking this
    #: share of the last C{WINDOW} seconds.
    FULL = 0.85
    SHARE = 0.2
    WINDOW = 5.0

    def __init__(self, pid: int | None, log: Callable[[str], None]) -> None:
        """
        @param pid: Cassandra's.
        @param log: where to say that the guard tripped.
        """
        import threading

        self.pid = pid
        self.jstat = shutil.which("jstat") if pid else None
        self.log = log
        self.tripped: str | None = None
        self._oldMostMB: float | None = None
        self.onTrip: list[Callable[[], None]] = []
        self._stop = threading.Event()
        self._thread: Any = None

    def sample(self) -> dict[str, float] | None:
        """
        The old generation's use and size in MB, and the full collections
        so far (count and seconds); C{None} when they cannot be read.
        """
        if not self.jstat:
            return None
        try:
            out = subprocess.run([self.jstat, "-gc", str(self.pid)],
                                 capture_output=True, text=True, timeout=10,
                                 check=True).stdout.split("\n")
            values = dict(zip(out[0].split(), map(float, out[1].split())))
            if self._oldMostMB is None:
                most = subprocess.run(
                    [self.jstat, "-gccapacity", str(self.pid)],
                    capture_output=True, text=True, timeout=10,
                    check=True).stdout.split("\n")
                self._oldMostMB = dict(zip(most[0].split(), map(
                    float, most[1].split())))["OGCMX"] / 1024
            return {"oldMB": values["OU"] / 1024,
                    "oldCapacityMB": values["OC"] / 1024,
                    "oldMostMB": self._oldMostMB,
                    "fullGCs": values["FGC"], "fullGCSeconds": values["FGCT"]}
        except (OSError, subprocess.SubprocessError, ValueError, KeyError,
                IndexError):
            return None

    def start(self) -> None:
        """
        Start watching, every second, in a thread of the orchestrator.
        """
        import threading

        if self.sample() is None:
            return
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """
        Stop watching.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15)

    def _watch(self) -> None:
        """
        The watching thread: sample twice a second until stopped or
        tripped; when tripped, run C{onTrip}.
        """
        history: list[tuple[float, float]] = []
        fullGCs = None
        while not self._stop.wait(0.5):
            found = self.sample()
            if found is None:
                continue
            t = now()
            history.append((t, found["fullGCSeconds"]))
            history = [h for h in history if t - h[0] <= self.WINDOW]
            spent = history[-1][1] - history[0][1]
            span = history[-1][0] - history[0][0]
            full = found["oldMB"] / found["oldMostMB"]
            if fullGCs is not None and found["fullGCs"] > fullGCs \
                    and full > self.FULL:
                self.tripped = (
                    f"a full collection of Cassandra's heap left its old "
                    f"generation at {found['oldMB']:.0f} of "
                    f"{found['oldMostMB']:.0f} MB")
            elif span >= self.WINDOW * 0.8 and spent >= self.SHARE * span:
                self.tripped = (
                    f"Cassandra spent {spent:.1f} s of the last {span:.0f} s "
                    f"in full collections, its old generation "
                    f"{found['oldMB']:.0f} of {found['oldMostMB']:.0f} MB")
            fullGCs = found["fullGCs"]
            if self.tripped:
                self.log(f"scale: {self.tripped}: stopping the workers")
                for action in self.onTrip:
                    try:
                        action()
                    except Exception:
                        traceback.print_exc()
                return


def parseArgs(argv: list[str]) -> argparse.Namespace:
    """
    The options; the defaults are the measured configuration.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000,
                        help="nodes of the loaded data, 100 series each "
                             "(1000: 100,000 series)")
    parser.add_argument("--scrapes", type=int, default=3,
                        help="points per series, 10 s apart (3)")
    parser.add_argument("--inflight", type=int, default=8,
                        help="writePoints calls in flight (8)")
    parser.add_argument("--repeats", type=int, default=30,
                        help="runs of each search (30)")
    parser.add_argument("--compare-nodes", type=int, default=200,
                        help="nodes of the before/after workload "
                             "(200: 20,000 series)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of the before/after runs (3)")
    parser.add_argument("--old", default=OLD_COMMIT,
                        help=f"the commit to compare with ({OLD_COMMIT})")
    parser.add_argument("--rate", type=float, default=50.0,
                        help="writes/s of the latency part, one node's "
                             "scrape (100 points) each (50: 5,000 points/s;"
                             " one store process on 2 cores spends about "
                             "7 ms of CPU per such write)")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="seconds of each latency phase (10)")
    parser.add_argument("--no-compare", action="store_true",
                        help="skip the before/after part")
    parser.add_argument("--no-latency", action="store_true",
                        help="skip the write latency part")
    parser.add_argument("--json", metavar="PATH",
                        help="also write every measurement as JSON")
    parser.add_argument("--keep", action="store_true",
                        help="keep the loaded keyspace")
    return parser.parse_args(argv)


class Scale:
    """
    The orchestrator's state: the node, Cassandra's pid, the workers and
    keyspaces to clean up.
    """

    CPUS = 100
    STEP_S = 10

    def __init__(self, args: argparse.Namespace,
                 log: Callable[[str], None]) -> None:
        """
        @param args: from L{parseArgs}.
        @param log: where progress goes (stderr).
        """
        self.args = args
        self.log = log
        self.node = nodeAddress()
        self.cassandra = cassandraPid(self.node[1])
        self.keyspace = f"bench_scale_{uuid.uuid4().hex[:8]}"
        self.workers: list[Worker] = []
        self.keyspaces: list[str] = []
        self.admin: Worker | None = None
        self.heap = HeapGuard(self.cassandra, log)
        self.heap.onTrip.append(self.killWorkers)
        # The loaded data: yesterday 12:00 UTC onwards, one hour bucket.
        self.baseS = dayStart(1) + 12 * 3600
        self.lastS = self.baseS + (args.scrapes - 1) * self.STEP_S

    def worker(self, keyspace: str, code: Path | None = None,
               name: str = "store", dropLater: bool = True) -> Worker:
        """
        A store worker on C{keyspace} (created by its store), running the
        C{meetrd} of C{code} when given; checked to run the right one.
        With C{dropLater}, the keyspace is dropped at the end unless
        L{drop} drops it before.
        """
        extra = ["--code", str(code)] if code else []
        if dropLater and keyspace not in self.keyspaces:
            self.keyspaces.append(keyspace)
        worker = Worker(SCALE, "store-worker", self.node[0],
                        str(self.node[1]), keyspace, *extra, name=name)
        self.workers.append(worker)
        where = Path(worker.call(cmd="whoami")["meetrd"])
        expected = (code or ROOT) / "meetrd"
        if where != expected.resolve():
            raise RuntimeError(f"{name} runs {where}, not {expected}")
        return worker

    def killWorkers(self) -> None:
        """
        Stop the store workers at once (SIGKILL to each one's pid), so that
        their load on Cassandra ends; the orchestrator's pending call then
        fails.
        """
        for worker in list(self.workers):
            if worker.process.poll() is None:
                worker.process.kill()

    def retire(self, worker: Worker) -> None:
        """
        Stop a worker now.
        """
        worker.close()
        self.workers.remove(worker)

    def settle(self) -> None:
        """
        Wait until Cassandra is nearly idle, as the ingest benchmark does
        before each of its runs (L{bench.ingest.IngestBench.settle}).
        """
        from bench.ingest import IngestBench

        IngestBench(None, None, None, [], self.cassandra, 0, 0).settle()

    def measure(self, pids: dict[str, int], call: Callable[[], Any]
                ) -> tuple[Any, dict[str, float], float]:
        """
        Run C{call} with the CPU of the given processes and of Cassandra
        watched: its answer, the CPU seconds of each (and the machine's,
        see L{CpuWatch}) and the seconds watched.
        """
        watch = CpuWatch({**pids, "cassandra": self.cassandra})
        started = now()
        watch.start()
        answer = call()
        cpu = watch.stop()
        return answer, cpu, now() - started

    def background(self, seconds: float = 3.0) -> dict[str, float]:
        """
        What Cassandra and the machine do without this benchmark, as shares
        of one core: other work on the node and the machine shows in every
        figure of Cassandra's CPU.
        """
        _, cpu, wall = self.measure({}, lambda: time.sleep(seconds))
        return {"cassandra": cpu.get("cassandra", float("nan")) / wall,
                "machine": cpu["machine.busy"] / wall,
                "steal": cpu["machine.steal"] / wall}

    def checkPartition(self, keyspace: str, node: int, scrapes: int,
                       baseS: int) -> None:
        """
        Node C{node}'s partition holds all its points.
        """
        assert self.admin is not None
        bucket = baseS // NODE_BUCKET_S
        found = self.admin.call(cmd="count", keyspace=keyspace,
                                source=f"n:n{node}", bucket=bucket)["rows"]
        if found != self.CPUS * scrapes:
            raise RuntimeError(f"{keyspace}: node n{node} has {found} rows, "
                               f"not {self.CPUS * scrapes}")

    def write(self, worker: Worker, nodes: int, baseS: int) -> dict[str, Any]:
        """
        One timed load of C{nodes} nodes' scrapes through a worker's store,
        with the CPU of the worker and of Cassandra.
        """
        args = self.args
        worker.call(cmd="prepare", nodes=nodes, cpus=self.CPUS,
                    scrapes=args.scrapes, stepS=self.STEP_S, baseS=baseS)
        self.settle()
        answer, cpu, watched = self.measure(
            {"writer": worker.pid},
            lambda: worker.call(cmd="go", inflight=args.inflight))
        if answer["failed"]:
            raise RuntimeError(f"{answer['failed']} points failed")
        wall = answer["end"] - answer["start"]
        points = answer["points"]
        return {"points": points, "seconds": wall, "rate": points / wall,
                "requests": answer["requests"],
                "writerMsPerK": cpu["writer"] / points * 1e6,
                "cassandraMsPerK": cpu.get("cassandra", float("nan"))
                / points * 1e6,
                "machineBusy": cpu["machine.busy"] / watched,
                "cpuSeconds": cpu, "gc": answer["gc"]}

    # The parts

    def load(self, writer: Worker) -> dict[str, Any]:
        """
        Part 1: the 100,000 series.
        """
        self.log(f"scale: loading {self.args.nodes * self.CPUS:,} series")
        result = self.write(writer, self.args.nodes, self.baseS)
        # What the writer's collector walks right after the load (the
        # driver keeps each request's future until its timeout passes).
        result["gcProbe"] = writer.call(cmd="gcProbe")
        for node in (0, 17, self.args.nodes - 1):
            self.checkPartition(self.keyspace, node, self.args.scrapes,
                                self.baseS)
        self.log(f"scale: load {result['rate']:,.0f} points/s")
        return result

    def searches(self, searcher: Worker) -> dict[str, Any]:
        """
        Part 2: the three searches, each on a quiet Cassandra, warmed up
        twice, then repeated with the CPU of the searcher and of Cassandra
        around the repeats; their answers checked against the data.
        """
        args = self.args
        fromMs, toMs = self.baseS * 1000, self.lastS * 1000
        nodeSeries = [(17, cpu) for cpu in range(self.CPUS)]
        cases = [
            ("tag=node:n17&tag=cpu:3", [["node", ["n17"]], ["cpu", ["3"]]],
             None, [(17, 3)]),
            ("tag=node:n17", [["node", ["n17"]]], None, nodeSeries),
            ("group_by=node", [], "node", None),
        ]
        from meetrd.settings import Limits

        # Refused when there are more series than a search may match (a
        # smaller --nodes for a quick look is answered).
        refuse = args.nodes * self.CPUS > Limits().max_search_series
        out = {}
        for label, filters, groupBy, expected in cases:
            command = dict(cmd="search", metric=METRIC, fromMs=fromMs,
                           toMs=toMs, aggregation="avg", filters=filters,
                           groupBy=groupBy)
            self.settle()  # the load's flushes and compactions done
            searcher.call(**command, repeats=2)
            answer, cpu, _ = self.measure(
                {"searcher": searcher.pid},
                lambda: searcher.call(**command, repeats=args.repeats))
            runs = answer["runs"]
            for run in runs:
                if "error" in run:
                    raise RuntimeError(f"{label}: {run['error']}")
                if expected is None:
                    if refuse and run.get("refused") != "tag":
                        raise RuntimeError(f"{label} was not refused on tag: "
                                           f"{run}")
                    if not refuse and run.get("groups") != args.nodes:
                        raise RuntimeError(f"{label}: {run}")
                    continue
                values = [pointValue(n, c, s) for n, c in expected
                          for s in range(args.scrapes)]
                want = sum(values) / len(values)
                if "refused" in run or not math.isclose(run["value"], want,
                                                        rel_tol=1e-9):
                    raise RuntimeError(f"{label}: {run}, expected {want}")
            out[label] = summarizeSearch(runs, cpu, args.repeats)
            self.log(f"scale: {label}: median "
                     f"{out[label]['medianMs']:.1f} ms")
        return out

    def compare(self) -> dict[str, Any]:
        """
        Part 3: the before/after write workload, a fresh worker process and
        keyspace per run, old and new taking turns.
        """
        args = self.args
        baseS = dayStart(2) + 12 * 3600
        tree = OldTree(args.old)
        runs: list[dict[str, Any]] = []
        try:
            tree.add()
            for r in range(args.rounds):
                order = ("old", "new") if r % 2 == 0 else ("new", "old")
                for which in order:
                    keyspace = f"bench_scale_{which}_{uuid.uuid4().hex[:8]}"
                    worker = self.worker(
                        keyspace, tree.path if which == "old" else None,
                        name=f"{which} store")
                    try:
                        result = self.write(worker, args.compare_nodes, baseS)
                        self.checkPartition(keyspace, args.compare_nodes - 1,
                                            args.scrapes, baseS)
                    finally:
                        self.retire(worker)
                        self.drop(keyspace)
                    result.update(code=which, round=r)
                    runs.append(result)
                    self.log(f"scale: round {r} {which}: "
                             f"{result['rate']:,.0f} points/s, writer "
                             f"{result['writerMsPerK']:.1f} ms/1k points")
        finally:
            tree.remove()
        return {"runs": runs, "commit": tree.commit}

    def latency(self, writer: Worker, searcher: Worker) -> dict[str, Any]:
        """
        Part 4: the steady writes alone, then beside back-to-back wide
        searches (C{group_by=node&tag=cpu:3}: 1,000 series, 1,000
        partitions).  The writes go on with later scrapes of the loaded
        nodes, in the same partitions, past the searched range.
        """
        args = self.args
        steady = dict(cmd="steady", rate=args.rate, seconds=args.seconds,
                      warmup=1.0, nodes=args.nodes, cpus=self.CPUS,
                      baseS=self.baseS, stepS=self.STEP_S)
        first = args.nodes * args.scrapes
        pids = {"writer": writer.pid, "searcher": searcher.pid}
        phases = {}
        self.settle()
        alone, cpu, watched = self.measure(
            pids, lambda: writer.call(**steady, first=first))
        phases["alone"] = summarizeSteady(alone, cpu, watched)
        self.log(f"scale: writes alone p50 "
                 f"{phases['alone']['p50Ms']:.1f} ms")

        def beside() -> tuple[dict[str, Any], list[dict[str, Any]]]:
            """
            The wide searches started, the steady writes, the searches
            stopped: the writes' and the searches' answers.
            """
            searcher.call(cmd="wideStart", metric=METRIC,
                          fromMs=self.baseS * 1000, toMs=self.lastS * 1000,
                          aggregation="avg", filters=[["cpu", ["3"]]],
                          groupBy="node")
            time.sleep(0.5)  # the first search under way
            writes = writer.call(**steady, first=alone["next"])
            return writes, searcher.call(cmd="wideStop")["runs"]

        self.settle()
        (writes, wide), cpu, watched = self.measure(pids, beside)
        phases["wide"] = summarizeSteady(writes, cpu, watched)
        phases["wide"]["searches"] = summarizeWide(wide, writes, args.nodes)
        self.log(f"scale: writes beside wide searches p50 "
                 f"{phases['wide']['p50Ms']:.1f} ms")
        return phases

    def drop(self, keyspace: str) -> None:
        """
        Drop a keyspace through the admin worker.
        """
        assert self.admin is not None
        self.admin.call(cmd="drop", keyspace=keyspace)
        if keyspace in self.keyspaces:
            self.keyspaces.remove(keyspace)

    def run(self) -> dict[str, Any]:
        """
        Every part; the workers stopped and the keyspaces dropped at the
        end, whatever happens.
        """
        args = self.args
        results: dict[str, Any] = {"keyspace": self.keyspace,
                                   "args": vars(args)}
        self.log(f"scale: node {self.node[0]}:{self.node[1]} (pid "
                 f"{self.cassandra}), keyspace {self.keyspace}")
        results["code"] = {"start": codeState()}
        results["heap"] = {"start": self.heap.sample()}
        self.heap.start()
        try:
            self.admin = Worker(SCALE, "admin-worker", self.node[0],
                                str(self.node[1]), name="admin worker")
            results["background"] = self.background()
            writer = self.worker(self.keyspace, name="writer",
                                 dropLater=False)
            results["load"] = self.load(writer)
            searcher = self.worker(self.keyspace, name="searcher",
                                   dropLater=False)
            results["search"] = self.searches(searcher)
            if not args.no_compare:
                results["compare"] = self.compare()
            if not args.no_latency:
                results["latency"] = self.latency(writer, searcher)
        except Exception as e:
            if self.heap.tripped is None:
                raise
            results["aborted"] = f"{self.heap.tripped} ({e})"
        finally:
            self.heap.stop()
            for worker in list(self.workers):
                try:
                    self.retire(worker)
                except Exception:
                    traceback.print_exc()
            if self.admin is not None:
                drops = list(self.keyspaces)
                if not args.keep:
                    drops.append(self.keyspace)
                for keyspace in drops:
                    try:
                        self.drop(keyspace)
                        self.log(f"scale: dropped {keyspace}")
                    except Exception:
                        traceback.print_exc()
                self.admin.close()
            results["heap"]["end"] = self.heap.sample()
            results["code"]["end"] = codeState()
        return results


class OldTree:
    """
    A temporary git worktree of an earlier commit of this repository.
    """

    def __init__(self, commit: str) -> None:
        """
        @param commit: any name of the commit that git understands.
        """
        self.commit = commit
        self.folder: Path | None = None

    @property
    def path(self) -> Path:
        """
        The worktree's root.
        """
        assert self.folder is not None
        return self.folder / "tree"

    def add(self) -> None:
        """
        Check the commit out into a temporary folder.
        """
        self.folder = Path(tempfile.mkdtemp(prefix="meetrd-old-"))
        self.commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", self.commit],
            check=True, capture_output=True, text=True).stdout.strip()
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--quiet",
                        "--detach", str(self.path), self.commit], check=True)

    def remove(self) -> None:
        """
        Remove the worktree and its folder.
        """
        if self.folder is None:
            return
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove",
                        "--force", str(self.path)], check=False)
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder = None


def codeState() -> dict[str, Any]:
    """
    Which meetrd the workers run: the commit, whether meetrd/ differs from
    it, and the newest change to its files; taken at the start and the
    end of a run, so that a run during which meetrd/ changed says so.
    """
    def git(*args: str) -> str:
        """
        One git command's output in this repository, or C{""}.
        """
        done = subprocess.run(["git", "-C", str(ROOT), *args],
                              capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    newest = max((path.stat().st_mtime
                  for path in (ROOT / "meetrd").rglob("*.py")), default=0.0)
    return {"commit": git("rev-parse", "--short", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--", "meetrd")),
            "newest": newest}


def summarizeSearch(runs: list[dict[str, Any]], cpu: dict[str, float],
                    repeats: int) -> dict[str, Any]:
    """
    One search's figures: wall ms (median, p90), requests and index rows
    (median and most), CPU ms per search of the searcher and of
    Cassandra, and whether it was refused.
    """
    ms = [r["seconds"] * 1000 for r in runs]
    refused = [r for r in runs if "refused" in r]
    return {
        "medianMs": median(ms), "p90Ms": percentile(ms, 0.9),
        "requests": median(r["requests"] for r in runs),
        "requestsMax": max(r["requests"] for r in runs),
        "indexRows": median(r["indexRows"] for r in runs),
        "indexRowsMax": max(r["indexRows"] for r in runs),
        "searcherCpuMs": cpu["searcher"] / repeats * 1000,
        "cassandraCpuMs": cpu.get("cassandra", float("nan")) / repeats * 1000,
        "refused": len(refused),
        "refusedField": refused[0]["refused"] if refused else None,
        "problem": refused[0]["problem"] if refused else None,
        "runs": runs,
    }


def summarizeSteady(answer: dict[str, Any], cpu: dict[str, float],
                    watched: float) -> dict[str, Any]:
    """
    One latency phase's figures: the writes' latency p50/p99 and lag, the
    rate achieved and the CPU of every party (shares of one core over the
    C{watched} seconds).
    """
    latency = [v * 1000 for v in answer["latency"]]
    lag = [v * 1000 for v in answer["lag"]]
    wall = answer["end"] - answer["start"]
    return {
        "writes": answer["writes"], "failed": answer["failed"],
        "errors": answer["errors"], "rate": answer["writes"] / wall,
        "p50Ms": percentile(latency, 0.5), "p99Ms": percentile(latency, 0.99),
        "maxMs": max(latency), "lagP99Ms": percentile(lag, 0.99),
        "cpuShare": {name: value / watched for name, value in cpu.items()},
        "gc": answer["gc"],
    }


def summarizeWide(runs: list[dict[str, Any]], writes: dict[str, Any],
                  nodes: int) -> dict[str, Any]:
    """
    The wide searches of a latency phase: how many overlapped the writes,
    how long they took, and that each answered every node.
    """
    bad = [r for r in runs if r.get("groups") != nodes]
    overlapping = [r for r in runs if r["start"] < writes["end"]
                   and r["end"] > writes["start"]]
    ms = [r["seconds"] * 1000 for r in runs]
    return {"searches": len(runs), "overlapping": len(overlapping),
            "medianMs": median(ms), "requests": median(
                r["requests"] for r in runs),
            "indexRows": median(r["indexRows"] for r in runs),
            "bad": bad[:3], "badCount": len(bad),
            "covered": (min(r["start"] for r in runs) <= writes["start"]
                        and max(r["end"] for r in runs) >= writes["end"])
            if runs else False}


# The report

def report(results: dict[str, Any]) -> str:
    """
    The compact table of every part.
    """
    args = argparse.Namespace(**results["args"])
    out = []
    load = os.getloadavg()
    out.append(f"meetrd scale benchmark: {os.cpu_count()} cores, Cassandra "
               f"on the same machine, load average now {load[0]:.2f}")
    code = results.get("code") or {}
    if code.get("start") and code.get("end"):
        a, b = code["start"], code["end"]
        same = a == b
        out.append(f"meetrd: commit {a['commit']}"
                   + (" with changes to meetrd/ not committed" if a["dirty"]
                      else "")
                   + ("; meetrd/ unchanged during the run" if same else
                      f"; meetrd/ CHANGED during the run (now commit "
                      f"{b['commit']}): workers started at different times "
                      f"ran different code"))
    heap = results.get("heap") or {}
    if heap.get("start") and heap.get("end"):
        a, b = heap["start"], heap["end"]
        out.append(f"Cassandra's heap (jstat): old generation {a['oldMB']:.0f}"
                   f" of {a['oldCapacityMB']:.0f} MB at the start, "
                   f"{b['oldMB']:.0f} of {b['oldCapacityMB']:.0f} MB at the "
                   f"end; {b['fullGCs'] - a['fullGCs']:.0f} full collections "
                   f"meanwhile, {b['fullGCSeconds'] - a['fullGCSeconds']:.1f}"
                   f" s in all")
    if results.get("aborted"):
        out.append(f"ABORTED: {results['aborted']}")
    quiet = results.get("background")
    if quiet:
        out.append(f"Before the run, without this benchmark's processes: "
                   f"Cassandra {quiet['cassandra'] * 100:.0f}% of one core, "
                   f"the machine {quiet['machine'] * 100:.0f}% (other work "
                   f"shows in every CPU figure below)")
    part = results.get("load")
    if part:
        series = args.nodes * Scale.CPUS
        out.append("")
        out.append(f"1. Load: {series:,} series of {METRIC} ({args.nodes:,} "
                   f"nodes x {Scale.CPUS} cpus), {args.scrapes} scrapes "
                   f"{Scale.STEP_S} s apart: {part['points']:,} points, one "
                   f"node's scrape per writePoints call, {args.inflight} in "
                   f"flight")
        out.append(f"   {part['rate']:,.0f} points/s in "
                   f"{part['seconds']:.1f} s"
                   f", {part['requests']:,} requests; CPU ms per 1,000 "
                   f"points: writer {part['writerMsPerK']:.1f}, Cassandra "
                   f"{part['cassandraMsPerK']:.1f}; machine "
                   f"{part['machineBusy'] * 100:.0f}% of one core busy")
        full = part["gc"]["2"]
        out.append(f"   writer's full collections (gen 2): {full['count']}, "
                   f"{full['totalMs']:.0f} ms in all, longest "
                   f"{full['maxMs']:.0f} ms")
        probe = part.get("gcProbe")
        if probe:
            out.append(f"   right after the load the writer's collector "
                       f"tracked {probe['tracked']:,} objects (most: "
                       + ", ".join(f"{n:,} {kind}" for kind, n in
                                   probe["common"][:3])
                       + f"); a full collection took "
                       f"{probe['collectMs']:.0f} ms and freed "
                       f"{probe['unreachable']:,}")
    search = results.get("search")
    if search:
        out.append("")
        out.append(f"2. Searches over the data's range (avg), {args.repeats} "
                   f"runs each after 2 warm-up runs, Cassandra idle before "
                   f"each; CPU ms per search (/proc, 10 ms ticks, over all "
                   f"runs)")
        out.append(f"   {'query':<24}{'median ms':>10}{'p90 ms':>8}"
                   f"{'requests':>10}{'index rows':>12}{'cpu searcher':>14}"
                   f"{'cpu cass':>10}  outcome")
        for label, s in search.items():
            if s["refused"]:
                outcome = (f"refused {s['refused']}/{args.repeats} "
                           f"(field {s['refusedField']!r})")
            else:
                outcome = "answered, checked"
            out.append(f"   {label:<24}{s['medianMs']:>10.1f}"
                       f"{s['p90Ms']:>8.1f}"
                       f"{s['requests']:>10.0f}{s['indexRows']:>12,.0f}"
                       f"{s['searcherCpuMs']:>14.1f}"
                       f"{s['cassandraCpuMs']:>10.1f}  {outcome}")
        one = search.get("tag=node:n17&tag=cpu:3")
        node = search.get("tag=node:n17")
        if one:
            ok = one["medianMs"] <= 20 and one["indexRowsMax"] <= 10
            out.append(f"   target one series <= 20 ms median, <= 10 index "
                       f"rows: {'met' if ok else 'MISSED'}")
        if node:
            ok = node["medianMs"] <= 50
            out.append(f"   target one node (100 series) <= 50 ms median: "
                       f"{'met' if ok else 'MISSED'}")
        wide = search.get("group_by=node")
        if wide and wide["problem"]:
            out.append(f"   refusal: {wide['problem']}")
    compare = results.get("compare")
    if compare:
        runs = compare["runs"]
        points = runs[0]["points"]
        out.append("")
        out.append(f"3. Ingest before ({compare['commit']}) and after: "
                   f"{points:,} points ({args.compare_nodes * Scale.CPUS:,} "
                   f"new series x {args.scrapes}), fresh process and "
                   f"keyspace per run, {args.rounds} rounds taking turns; "
                   f"medians")
        out.append(f"   {'code':<6}{'points/s':>10}{'requests':>10}"
                   f"{'writer ms/1k':>14}{'cass ms/1k':>12}{'machine':>9}")
        med = {}
        for which in ("old", "new"):
            mine = [r for r in runs if r["code"] == which]
            med[which] = {k: median(r[k] for r in mine) for k in (
                "rate", "requests", "writerMsPerK", "cassandraMsPerK",
                "machineBusy")}
            m = med[which]
            out.append(f"   {which:<6}{m['rate']:>10,.0f}"
                       f"{m['requests']:>10,.0f}{m['writerMsPerK']:>14.1f}"
                       f"{m['cassandraMsPerK']:>12.1f}"
                       f"{m['machineBusy'] * 100:>8.0f}%")
        ratios = []
        for r in range(args.rounds):
            byCode = {x["code"]: x["rate"] for x in runs if x["round"] == r}
            ratios.append(byCode["new"] / byCode["old"])
        new, old = med["new"], med["old"]
        out.append(f"   new/old: points/s {new['rate'] / old['rate']:.2f} "
                   f"(rounds {min(ratios):.2f}-{max(ratios):.2f}), writer "
                   f"CPU {new['writerMsPerK'] / old['writerMsPerK']:.2f}, "
                   f"Cassandra CPU "
                   f"{new['cassandraMsPerK'] / old['cassandraMsPerK']:.2f}, "
                   f"requests {new['requests'] / old['requests']:.2f}")
    latency = results.get("latency")
    if latency:
        out.append("")
        out.append(f"4. Write latency: {args.rate:g} writes/s of one node's "
                   f"{Scale.CPUS} series (open loop), {args.seconds:g} s "
                   f"after a 1 s warm-up, alone and beside back-to-back wide "
                   f"searches (group_by=node&tag=cpu:3: {args.nodes:,} "
                   f"series) in another process")
        out.append(f"   {'phase':<14}{'writes/s':>9}{'p50 ms':>8}{'p99 ms':>8}"
                   f"{'max ms':>8}{'lag p99':>9}   CPU, % of one core: "
                   f"writer, searcher, Cassandra, machine")
        for name, p in latency.items():
            share = p["cpuShare"]
            out.append(
                f"   {name:<14}{p['rate']:>9.0f}{p['p50Ms']:>8.1f}"
                f"{p['p99Ms']:>8.1f}{p['maxMs']:>8.1f}{p['lagP99Ms']:>9.1f}"
                f"   {share['writer'] * 100:.0f}, "
                f"{share['searcher'] * 100:.0f}, "
                f"{share.get('cassandra', float('nan')) * 100:.0f}, "
                f"{share['machine.busy'] * 100:.0f}"
                + (f"  ({p['failed']} failed)" if p["failed"] else ""))
        out.append("   writer's collections during each phase (gen 2 and "
                   "gen 1: count, longest pause): " + "; ".join(
                       f"{name} {p['gc']['2']['count']} x <= "
                       f"{p['gc']['2']['maxMs']:.0f} ms, "
                       f"{p['gc']['1']['count']} x <= "
                       f"{p['gc']['1']['maxMs']:.0f} ms"
                       for name, p in latency.items()))
        alone, wide = latency["alone"], latency["wide"]
        s = wide["searches"]
        out.append(f"   with/alone: p50 {wide['p50Ms'] / alone['p50Ms']:.2f}, "
                   f"p99 {wide['p99Ms'] / alone['p99Ms']:.2f}; wide searches: "
                   f"{s['searches']} ran ({s['overlapping']} overlapping the "
                   f"writes, which they covered: "
                   f"{'yes' if s['covered'] else 'NO'}), median "
                   f"{s['medianMs']:.0f} ms, {s['requests']:.0f} requests "
                   f"and {s['indexRows']:,.0f} index rows each"
                   + (f"; {s['badCount']} answered wrong" if s["badCount"]
                      else ""))
    return "\n".join(out)


def main(argv: list[str]) -> int:
    """
    Run the benchmark and print its tables (and write the JSON).
    """
    # Imported here: a worker of the old commit runs this file with that
    # tree's bench.common first on its path, which has no runAndReport.
    from bench.common import runAndReport

    return runAndReport(Scale, parseArgs(argv), report)


def worker(argv: list[str]) -> None:
    """
    The worker processes' entry point.
    """
    role = argv[1]
    if role == "store-worker":
        storeWorker(argv[2], int(argv[3]), argv[4])
    elif role == "admin-worker":
        adminWorker(argv[2], int(argv[3]))
    else:
        raise SystemExit(f"unknown role {role!r}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1].endswith("-worker"):
        worker(sys.argv)
    else:
        sys.exit(main(sys.argv[1:]))
