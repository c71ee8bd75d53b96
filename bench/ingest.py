"""
Ingest: the same 1,000-point requests written three ways, side by side.

  - C{a}, C{driver loop}: what a user writes without meetrd: cassandra-driver
    with its default connection class (libev), one prepared INSERT per
    point into meetrd's own C{points} table (source, bucket and series id
    from L{meetrd.layout}, computed before the clock starts), every point
    of the run in one C{execute_concurrent_with_args} at concurrency 100;
  - C{b}, C{store}: L{MetricStore.writePoints} in a Twisted process,
    lists of 1,000 L{Point}s (made before the clock starts), several
    calls in flight;
  - C{c}, C{http}: a real C{twistd -n meetr}, the same requests as JSON
    bodies from client processes of several threads, each a keep-alive
    C{http.client} connection, one request in flight per connection.

Each party is a process of its own; the orchestrator (L{bench.run}) hands
out the data shape and a time range, lets the party build its data, then
says go, and reads the CPU time of every process (and of Cassandra) from
/proc around the timed part.

This file is also the worker processes' program::

    python bench/ingest.py naive-worker HOST PORT KEYSPACE
    python bench/ingest.py store-worker HOST PORT KEYSPACE
    python bench/ingest.py http-client PORT CONNECTIONS
"""

from __future__ import annotations

import collections
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    POINTS_PER_REQUEST,
    CpuWatch,
    makeRequests,
    now,
    serveBlocking,
    toPoints,
)
from bench.workerloop import serveStore  # noqa: E402

METHODS = ("a", "b", "c")
METHOD_NAMES = {"a": "driver loop", "b": "store", "c": "http"}


# a: the naive driver loop (also the plain driver session of the search)

def naiveWorker(host: str, port: int, keyspace: str) -> None:
    import warnings

    warnings.simplefilter("ignore")
    from cassandra.cluster import Cluster
    from cassandra.concurrent import execute_concurrent_with_args

    from meetrd.layout import bucketOf, placeSeries

    cluster = Cluster([host], port=port)  # the default connection class
    session = cluster.connect()
    session.default_timeout = 60
    insert = session.prepare(
        f"INSERT INTO {keyspace}.points (source, bucket, series_id, ts, "
        f"value) VALUES (?, ?, ?, ?, ?)")
    state: dict[str, Any] = {}

    def prepare(shape: str, requests: int, base: int) -> dict[str, Any]:
        rows = []
        for items in makeRequests(shape, requests, base):
            for point in toPoints(items):
                placement = placeSeries(point.metric, point.tags)
                rows.append((placement.source,
                             bucketOf(point.ts_ms, placement.bucketMs),
                             placement.seriesId, point.ts_ms, point.value))
        state["rows"] = rows
        return {"points": len(rows)}

    def go(concurrency: int = 100) -> dict[str, Any]:
        rows = state.pop("rows")
        start = now()
        results = execute_concurrent_with_args(
            session, insert, rows, concurrency=concurrency)
        end = now()
        failed = sum(1 for ok, _ in results if not ok)
        return {"start": start, "end": end, "points": len(rows),
                "failed": failed}

    def check(metric: str, tags: dict[str, str], ts: int) -> dict[str, Any]:
        from meetrd.points import freezeTags

        placement = placeSeries(metric, freezeTags(tags))
        row = session.execute(
            f"SELECT value FROM {keyspace}.points WHERE source = %s AND "
            f"bucket = %s AND series_id = %s AND ts = %s",
            (placement.source, bucketOf(ts * 1000, placement.bucketMs),
             placement.seriesId, ts * 1000)).one()
        return {"found": row is not None}

    def drop() -> dict[str, Any]:
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)
        return {"dropped": keyspace}

    from bench.search import naiveHandlers

    handlers = {"prepare": prepare, "go": go, "check": check, "drop": drop}
    handlers.update(naiveHandlers(session, keyspace))
    try:
        serveBlocking(handlers)
    finally:
        cluster.shutdown()


# b: MetricStore.writePoints in a Twisted process

def storeWorker(host: str, port: int, keyspace: str) -> None:
    import traceback

    from twisted.internet import defer, reactor

    from bench.common import daemonSettingsFor
    from meetrd.settings import settingsFromMapping
    from meetrd.store import MetricStore

    settings = settingsFromMapping(daemonSettingsFor(keyspace, (host, port)),
                                   "bench")
    store = MetricStore(settings.cassandra, settings.retentionSeconds, reactor)
    state: dict[str, Any] = {}

    async def prepare(shape: str, requests: int, base: int) -> dict[str, Any]:
        state["batches"] = [toPoints(items) for items in
                            makeRequests(shape, requests, base)]
        return {"points": sum(len(b) for b in state["batches"])}

    async def go(inflight: int) -> dict[str, Any]:
        queue = list(reversed(state.pop("batches")))
        points = sum(len(b) for b in queue)
        written = 0

        async def lane() -> None:
            nonlocal written
            while queue:
                n = await store.writePoints(queue.pop())
                written += n

        start = now()
        await defer.gatherResults(
            [defer.ensureDeferred(lane()) for _ in range(inflight)],
            consumeErrors=True)
        end = now()
        return {"start": start, "end": end, "points": points,
                "failed": points - written}

    from bench.search import storeHandlers

    handlers = {"prepare": prepare, "go": go}
    handlers.update(storeHandlers(store, settings))

    try:
        serveStore(store, handlers, reactor)
    except Exception:
        traceback.print_exc()


# c: the HTTP clients

def httpClient(port: int, connections: int) -> None:
    from http.client import HTTPConnection, RemoteDisconnected

    conns = [HTTPConnection("127.0.0.1", port, timeout=300)
             for _ in range(connections)]
    for conn in conns:
        conn.connect()
    state: dict[str, Any] = {}

    def prepare(shape: str, requests: int, base: int, part: int = 0,
                parts: int = 1) -> dict[str, Any]:
        mine = makeRequests(shape, requests, base)[part::parts]
        state["bodies"] = [json.dumps(items).encode() for items in mine]
        # twisted.web closes connections idle for a minute: new ones.
        for conn in conns:
            conn.close()
            conn.connect()
        return {"requests": len(mine), "bytes": sum(map(len, state["bodies"]))}

    def go() -> dict[str, Any]:
        queue = collections.deque(state.pop("bodies"))
        written = [0] * len(conns)
        errors: list[str] = []

        def lane(i: int) -> None:
            conn = conns[i]
            while True:
                try:
                    body = queue.popleft()
                except IndexError:
                    return
                try:
                    conn.request("POST", "/1.0/metrics", body,
                                 {"Content-Type": "application/json"})
                    response = conn.getresponse()
                except (ConnectionError, RemoteDisconnected):
                    # Closed while idle: again on a new connection
                    # (writes are idempotent).
                    conn.close()
                    conn.request("POST", "/1.0/metrics", body,
                                 {"Content-Type": "application/json"})
                    response = conn.getresponse()
                data = response.read()
                if response.status != 200:
                    errors.append(f"{response.status} {data[:200]!r}")
                else:
                    written[i] += json.loads(data)["written"]

        threads = [threading.Thread(target=lane, args=(i,))
                   for i in range(len(conns))]
        start = now()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        end = now()
        return {"start": start, "end": end, "points": sum(written),
                "errors": errors[:5], "failed": len(errors)}

    serveBlocking({"prepare": prepare, "go": go})


# The orchestrator's part

class IngestBench:
    """
    Runs one measurement of one method at a time, with the CPU of every
    process involved.

    @param parties: C{naive}, C{store}: L{bench.common.Worker}s;
        C{clients}: a list of them; C{daemon}: a L{tests.support.Daemon}.
    """

    def __init__(self, naive: Any, store: Any, daemon: Any,
                 clients: list[Any], cassandraPid: int | None,
                 inflight: int, concurrency: int) -> None:
        self.naive = naive
        self.store = store
        self.daemon = daemon
        self.clients = clients
        self.cassandraPid = cassandraPid
        self.inflight = inflight
        self.concurrency = concurrency

    def settle(self, quiet: float = 0.25, timeout: float = 20.0) -> None:
        """
        Wait until Cassandra is nearly idle (its memtable flushes and
        compactions after the previous run done), at most C{timeout} s.
        """
        if not self.cassandraPid:
            time.sleep(1.0)
            return
        from bench.common import cpuSeconds

        deadline = now() + timeout
        while now() < deadline:
            before = cpuSeconds(self.cassandraPid)
            time.sleep(0.5)
            if (cpuSeconds(self.cassandraPid) - before) / 0.5 < quiet:
                return

    def run(self, method: str, shape: str, requests: int, base: int,
            profile: tuple[str, Path] | None = None) -> dict[str, Any]:
        """
        One measurement: C{requests} requests of C{shape} from epoch
        second C{base}; with C{profile} (py-spy, output file), the
        party's process is sampled meanwhile.
        """
        pids: dict[str, int | None] = {"cassandra": self.cassandraPid}
        if method == "a":
            self.naive.call(cmd="prepare", shape=shape, requests=requests,
                            base=base)
            pids["party"] = self.naive.pid
        elif method == "b":
            self.store.call(cmd="prepare", shape=shape, requests=requests,
                            base=base)
            pids["party"] = self.store.pid
        else:
            for i, client in enumerate(self.clients):
                client.call(cmd="prepare", shape=shape, requests=requests,
                            base=base, part=i, parts=len(self.clients))
                pids[f"client{i}"] = client.pid
            pids["party"] = self.daemon.process.pid
        profiler = None
        if profile is not None:
            profiler = Profiler(profile[0], pids["party"], profile[1])
        self.settle()
        watch = CpuWatch(pids)
        watch.start()
        if method == "a":
            answers = [self.naive.call(cmd="go",
                                       concurrency=self.concurrency)]
        elif method == "b":
            answers = [self.store.call(cmd="go", inflight=self.inflight)]
        else:
            for client in self.clients:
                client.send(cmd="go")
            answers = [client.read() for client in self.clients]
        cpu = watch.stop()
        profileSummary = profiler.stop() if profiler else None
        start = min(a["start"] for a in answers)
        end = max(a["end"] for a in answers)
        points = sum(a["points"] for a in answers)
        failed = sum(a["failed"] for a in answers)
        if failed or points != requests * POINTS_PER_REQUEST:
            detail = [a.get("errors") for a in answers]
            raise RuntimeError(f"{method} {shape}: {failed} failed, "
                               f"{points} points written: {detail}")
        wall = end - start
        clientCpu = sum(v for k, v in cpu.items() if k.startswith("client"))
        return {
            "method": method, "shape": shape, "points": points,
            "seconds": wall, "rate": points / wall,
            "cpu": {"party": cpu.get("party", 0.0) / wall,
                    "cassandra": cpu.get("cassandra", float("nan")) / wall,
                    "clients": clientCpu / wall,
                    "machine busy": cpu["machine.busy"] / wall,
                    "machine idle": cpu["machine.idle"] / wall,
                    "steal": cpu["machine.steal"] / wall},
            "cpuSeconds": cpu,
            "profile": profileSummary,
        }

    def check(self, shape: str, requests: int, base: int) -> None:
        """
        The last point of a run is in Cassandra.
        """
        last = makeRequests(shape, requests, base)[-1][-1]
        found = self.naive.call(cmd="check", metric=last["metric_id"],
                                tags=last["tags"], ts=last["ts"])
        if not found["found"]:
            raise RuntimeError(f"the last point of a {shape} run is not in "
                               f"Cassandra: {last}")


# Profiles

def pySpy() -> str | None:
    """
    The py-spy executable: C{PY_SPY}, else one on C{PATH}, else C{None}.
    """
    import os
    import shutil

    return os.environ.get("PY_SPY") or shutil.which("py-spy")


class Profiler:
    """
    py-spy sampling one process (every thread, idle ones left out) into a
    raw (collapsed stacks) file until L{stop}.
    """

    def __init__(self, executable: str, pid: int, output: Path) -> None:
        import subprocess

        self.output = output
        self.process = subprocess.Popen(
            [executable, "record", "--pid", str(pid), "--format", "raw",
             "--nonblocking", "--function", "--rate", "250",
             "--output", str(output)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # attached

    def stop(self) -> dict[str, Any]:
        import signal

        self.process.send_signal(signal.SIGINT)
        self.process.wait(60)
        return summarizeProfile(self.output)


#: The stages of a write, each named by the function that starts it.  A
#: sample counts for the innermost stage on its stack.
STAGES = (
    ("HTTP, Klein (twisted.web)", "HTTPChannel.dataReceived", "twisted/web/"),
    ("JSON decoding and checking", "decodeBatch", "meetrd/jsonbatch.py"),
    ("JSON decoding", "parseJSON", "meetrd/validation.py"),
    ("validation (checkBatch)", "checkBatch", "meetrd/validation.py"),
    ("writePoints: placement, batches", "MetricStore.writePoints",
     "meetrd/store.py"),
    ("driver: execute_async", "executeAsync", "meetrd/driverbridge.py"),
    ("driver: reading answers", "TwistedConnection.handle_read",
     "cassandra/"),
    ("answers to Deferreds", "_fire", "meetrd/driverbridge.py"),
    ("answering (JSON, request.finish)", "_respond", "meetrd/api.py"),
)
OTHER_STAGE = "other (reactor, logging...)"


def summarizeProfile(path: Path, top: int = 12) -> dict[str, Any]:
    """
    A py-spy raw file in brief: each stage's share of the samples (see
    L{STAGES}), and the functions that most often run (C{self}).
    """
    stages: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [f for f in stack.split(";") if f]
        stage = OTHER_STAGE
        for frame in frames:
            name, _, where = frame.partition(" (")
            for label, function, module in STAGES:
                if name == function and module in where:
                    stage = label
        stages[stage] += n
        if frames:
            name, _, where = frames[-1].partition(" (")
            own[f"{name} ({where.rsplit(':', 1)[0]})"] += n
    total = total or 1
    return {
        "samples": total,
        "stages": {label: stages[label] / total
                   for label in [s[0] for s in STAGES] + [OTHER_STAGE]},
        "self": [(name, n / total) for name, n in own.most_common(top)],
    }


def main(argv: list[str]) -> None:
    role = argv[1]
    if role == "naive-worker":
        naiveWorker(argv[2], int(argv[3]), argv[4])
    elif role == "store-worker":
        storeWorker(argv[2], int(argv[3]), argv[4])
    elif role == "http-client":
        httpClient(int(argv[2]), int(argv[3]))
    else:
        raise SystemExit(f"unknown role {role!r}; run bench/run.py")


if __name__ == "__main__":
    main(sys.argv)
