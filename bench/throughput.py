"""
Throughput before and after, side by side in one run.

Two real C{twistd -n meetr} daemons on the same Cassandra node, each with
a keyspace of its own: one runs this tree, the other the commit given by
C{--before} (by default L{BEFORE}, where the work on throughput started),
checked out in a temporary git worktree and removed at the end.  They take
turns, round after round, under the same load:

  - ingest: node-shape requests (10 nodes x 100 series, 1,000 points at
    one timestamp, each request the next second) posted as JSON bodies
    by C{--connections} keep-alive connections for C{--seconds}: points
    per second, and the daemon's, Cassandra's and this client's CPU per
    1,000 points (from /proc), and how busy the machine was;
  - stalls: one connection posts 50,000-point batches (500 nodes x 100
    series) back to back while
    another asks C{/health} every 20 ms: C{/health}'s p50, p99 and
    longest answer, and the daemon's CPU per 1,000 points of those
    batches.

The bodies are made once (L{Bodies}) and only their timestamps change,
so that the client takes little of the two cores the daemons and
Cassandra share (about 0.6 ms of CPU per 1,000 points, against 3 ms when
every body was encoded afresh).

The ratios (after / before) are what to read: the machine is shared and
its absolute times drift.

  MEETR_TEST_CASSANDRA=127.0.0.1:19042 .venv/bin/python bench/throughput.py \\
      [--before COMMIT] [--rounds 2] [--seconds 20] [--json PATH]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    CpuWatch,
    cassandraPid,
    daemonSettingsFor,
    median,
    nodeAddress,
    runAndReport,
)
from tests.support import REPO, Daemon, uniqueKeyspace  # noqa: E402

#: The commit the throughput work started from.
BEFORE = "cbf11d5"
BIG_BATCH_NODES = 500
HEALTH_EVERY = 0.02


def nodeBody(ts: int, nodes: int = 10) -> bytes:
    """
    A JSON body of C{nodes} x 100 points at epoch second C{ts}, as an
    agent flushes them: a node tag and a dc tag, one value each.
    """
    items = []
    for n in range(nodes):
        tags = {"node": f"node-{n:02d}.example:9100", "dc": "par1"}
        for j in range(100):
            items.append({"metric_id": f"agent.metric_{j:03d}", "ts": ts,
                          "value": ((ts * 7919 + n * 100 + j) % 100000) / 100,
                          "tags": tags})
    return json.dumps(items).encode()


class Bodies:
    """
    Node-shape bodies made cheaply, so that the load's own CPU takes little
    of the machine the daemons and Cassandra share: L{VARIANTS} bodies of
    L{nodeBody} made once, each request one of them with its timestamps
    replaced by the next second's.
    """

    VARIANTS = 16
    # A ten-digit epoch second that the values (below 1,000, two
    # decimals) cannot hold.
    MARK = 1111111111

    def __init__(self, nodes: int) -> None:
        self.templates = [nodeBody(self.MARK + k, nodes).replace(
            b'"ts": %d' % (self.MARK + k), b'"ts": %d' % self.MARK)
            for k in range(self.VARIANTS)]

    def at(self, ts: int) -> bytes:
        """
        The body for epoch second C{ts} (ten digits).
        """
        return self.templates[ts % self.VARIANTS].replace(
            b'"ts": %d' % self.MARK, b'"ts": %d' % ts)


class Poster(threading.Thread):
    """
    Posts bodies over one keep-alive connection until told to stop.
    """

    def __init__(self, port: int, bodies: Callable[[], bytes],
                 stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.bodies = bodies
        self.stop = stop
        self.points = 0
        self.failures = 0

    def run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port,
                                                timeout=120)
        while not self.stop.is_set():
            body = self.bodies()
            connection.request("POST", "/1.0/metrics", body,
                               {"Content-Type": "application/json"})
            reply = connection.getresponse()
            answer = reply.read()
            if reply.status == 200:
                self.points += json.loads(answer)["written"]
            else:
                self.failures += 1
                time.sleep(0.1)
        connection.close()


class HealthProbe(threading.Thread):
    """
    Asks C{/health} every L{HEALTH_EVERY} seconds and keeps the times.
    """

    def __init__(self, port: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.stop = stop
        self.times: list[float] = []

    def run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port,
                                                timeout=60)
        while not self.stop.is_set():
            start = time.perf_counter()
            connection.request("GET", "/health")
            connection.getresponse().read()
            self.times.append(time.perf_counter() - start)
            time.sleep(HEALTH_EVERY)
        connection.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Throughput:
    """
    The two daemons, their turns and the figures.
    """

    def __init__(self, args: argparse.Namespace,
                 log: Callable[[str], None]) -> None:
        self.args = args
        self.log = log
        self.node = nodeAddress()
        self.cassandra = cassandraPid(self.node[1])
        self._clock = int(time.time()) - 86_400
        self._lock = threading.Lock()
        self.small = Bodies(10)
        self.big = Bodies(BIG_BATCH_NODES)

    def nextSecond(self) -> int:
        with self._lock:
            self._clock += 1
            return self._clock

    def run(self) -> dict[str, Any]:
        args = self.args
        with tempfile.TemporaryDirectory(prefix="meetr-throughput-") as home:
            home = Path(home)
            tree = home / "before"
            subprocess.run(["git", "-C", str(REPO), "worktree", "add",
                            "--detach", "-q", str(tree), args.before],
                           check=True)
            daemons: dict[str, Daemon] = {}
            keyspaces = []
            try:
                for name in ("before", "after"):
                    keyspace = uniqueKeyspace(f"tp_{name}")
                    keyspaces.append(keyspace)
                    settings = daemonSettingsFor(keyspace, self.node)
                    workdir = home / name
                    daemon = Daemon(workdir, settings, tree=tree
                                    if name == "before" else None)
                    daemons[name] = daemon.start().waitReady()
                return self.turns(daemons)
            finally:
                for daemon in daemons.values():
                    daemon.stop()
                self.drop(keyspaces)
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove",
                                "--force", str(tree)], check=False)

    def drop(self, keyspaces: list[str]) -> None:
        from cassandra.cluster import Cluster

        cluster = Cluster([self.node[0]], port=self.node[1])
        try:
            session = cluster.connect()
            for name in keyspaces:
                session.execute(f"DROP KEYSPACE IF EXISTS {name}",
                                timeout=120)
        finally:
            cluster.shutdown()

    def turns(self, daemons: dict[str, Daemon]) -> dict[str, Any]:
        args = self.args
        results: dict[str, Any] = {"before": args.before, "ingest": {},
                                   "stalls": {}}
        for name, daemon in daemons.items():
            # Warm-up: the series are new to the index once.
            self.ingest(daemon, 3)
            self.stalls(daemon, 3)
        for round in range(args.rounds):
            for name, daemon in daemons.items():
                figures = self.ingest(daemon, args.seconds)
                results["ingest"].setdefault(name, []).append(figures)
                self.log(f"throughput: round {round + 1} ingest {name}: "
                         f"{figures['rate']:,.0f} points/s, daemon "
                         f"{figures['daemonMs']:.1f} ms/1k, Cassandra "
                         f"{figures['cassandraMs']:.1f}, client "
                         f"{figures['clientMs']:.1f}, machine "
                         f"{figures['busyCores']:.2f} cores busy")
            for name, daemon in daemons.items():
                figures = self.stalls(daemon, args.seconds)
                results["stalls"].setdefault(name, []).append(figures)
                self.log(f"throughput: round {round + 1} stalls {name}: "
                         f"/health p99 {figures['p99'] * 1000:.0f} ms")
        return results

    def ingest(self, daemon: Daemon, seconds: float) -> dict[str, Any]:
        stop = threading.Event()
        posters = [Poster(daemon.port,
                          lambda: self.small.at(self.nextSecond()), stop)
                   for _ in range(self.args.connections)]
        watch = CpuWatch({"daemon": daemon.process.pid,
                          "cassandra": self.cassandra,
                          "client": os.getpid()})
        watch.start()
        started = time.perf_counter()
        for poster in posters:
            poster.start()
        time.sleep(seconds)
        stop.set()
        for poster in posters:
            poster.join()
        elapsed = time.perf_counter() - started
        cpu = watch.stop()
        points = sum(p.points for p in posters)
        return {"points": points, "seconds": elapsed,
                "rate": points / elapsed,
                "failures": sum(p.failures for p in posters),
                "daemonMs": cpu.get("daemon", 0) / points * 1e6,
                "cassandraMs": cpu.get("cassandra", 0) / points * 1e6,
                "clientMs": cpu.get("client", 0) / points * 1e6,
                "busyCores": cpu.get("machine.busy", 0) / elapsed}

    def stalls(self, daemon: Daemon, seconds: float) -> dict[str, Any]:
        stop = threading.Event()
        poster = Poster(daemon.port, lambda: self.big.at(self.nextSecond()),
                        stop)
        probe = HealthProbe(daemon.port, stop)
        watch = CpuWatch({"daemon": daemon.process.pid})
        watch.start()
        poster.start()
        probe.start()
        time.sleep(seconds)
        stop.set()
        poster.join()
        probe.join()
        cpu = watch.stop()
        times = probe.times
        return {"points": poster.points, "health": len(times),
                "p50": percentile(times, 0.5), "p99": percentile(times, 0.99),
                "longest": max(times, default=float("nan")),
                "daemonMs": cpu.get("daemon", 0) / max(1, poster.points) * 1e6}


def report(results: dict[str, Any]) -> str:
    """
    The figures as tables, with the ratios after / before.
    """
    lines = ["## Throughput", "",
             f"before: {results['before']}, after: this tree", "",
             "| ingest, node shape | points/s | daemon CPU ms / 1k | "
             "Cassandra CPU ms / 1k | client CPU ms / 1k | cores busy |",
             "|---|---:|---:|---:|---:|---:|"]
    ingest = results["ingest"]
    rows = {}
    for name in ("before", "after"):
        runs = ingest.get(name, [])
        rows[name] = (median(r["rate"] for r in runs),
                      median(r["daemonMs"] for r in runs),
                      median(r["cassandraMs"] for r in runs))
        lines.append(f"| {name} | {rows[name][0]:,.0f} | {rows[name][1]:.1f} "
                     f"| {rows[name][2]:.1f} | "
                     f"{median(r['clientMs'] for r in runs):.1f} | "
                     f"{median(r['busyCores'] for r in runs):.2f} |")
    before, after = rows["before"], rows["after"]
    perRound = ", ".join(
        f"{a['rate'] / b['rate']:.2f}"
        for b, a in zip(ingest.get("before", []), ingest.get("after", [])))
    lines += [f"| after / before | {after[0] / before[0]:.2f} "
              f"(rounds {perRound}) | "
              f"{after[1] / before[1]:.2f} | {after[2] / before[2]:.2f} | | |",
              "", "| 50,000-point batches | /health p50 ms | p99 ms | "
              "longest ms | daemon CPU ms / 1k |", "|---|---:|---:|---:|---:|"]
    for name in ("before", "after"):
        runs = results["stalls"].get(name, [])
        lines.append(
            f"| {name} | {median(r['p50'] for r in runs) * 1000:.1f} | "
            f"{median(r['p99'] for r in runs) * 1000:.1f} | "
            f"{max(r['longest'] for r in runs) * 1000:.0f} | "
            f"{median(r['daemonMs'] for r in runs):.1f} |")
    return "\n".join(lines)


def parseArgs(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default=BEFORE,
                        help=f"the commit to compare with ({BEFORE})")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--json", metavar="PATH")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    """
    Run the benchmark and print its tables (and write the JSON).
    """
    return runAndReport(Throughput, parseArgs(argv), report)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
