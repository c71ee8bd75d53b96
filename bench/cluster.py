"""
Ingest through three meetrd instances against one, on a three-node
Cassandra cluster (C{make cassandra NODES=3}, or the cluster this script
starts: ports 19142/17100, files in C{.cassandra-cluster}, stopped at the
end), keyspace replicated three times, C{LOCAL_QUORUM}.

The same JSON batches (node shape: 100 series a node, 5,000 points a
request, 200,000 points a turn) are posted to one instance, then spread
over three (each instance its own four sender connections), in turns,
round after round, each turn new points, after a warm-up round that is
not counted (the JVMs compile, the caches fill).  A 503 is sent again
after 0.2 s, as a client would, and counted.  Printed: points a second of each and their ratio, the
CPU seconds per 1,000 points of the meetrd processes and of the
Cassandra nodes, and how busy the machine was: on this 2-core machine
the three Cassandra JVMs and the instances share two cores, so the ratio
shows what bounds ingest here (the cores), not what three machines
would do.

  .venv/bin/python bench/cluster.py [--rounds 3] [--warmup 1]
      [--nodes 100] [--steps 20] [--json PATH]

With C{MEETR_TEST_CLUSTER} (contact points) the running cluster is used.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    cassandraPids,
    cpuSeconds,
    machineTicks,
    median,
)
from bench.protocols import jsonBodies, postAll, samples  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CLUSTER_ENV = {"MEETR_NODE_HOME": str(REPO / ".cassandra-cluster"),
               "MEETR_NODE_PORT": "19142", "MEETR_NODE_STORAGE_PORT": "17100",
               "MEETR_NODE_COUNT": "3"}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def startCluster() -> tuple[str, bool]:
    """
    The contact points of the cluster to use, and whether this script
    started it.
    """
    named = os.environ.get("MEETR_TEST_CLUSTER")
    if named:
        return named, False
    done = subprocess.run([sys.executable, "-m", "tools.devnode", "start"],
                          env={**os.environ, **CLUSTER_ENV}, cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"cluster did not start:\n{done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()[-1], True


def stopCluster() -> None:
    subprocess.run([sys.executable, "-m", "tools.devnode", "stop"],
                   env={**os.environ, **CLUSTER_ENV}, cwd=REPO,
                   capture_output=True, timeout=300)


def contact(text: str) -> list[tuple[str, int]]:
    return [(p.rpartition(":")[0], int(p.rpartition(":")[2]))
            for p in text.split(",") if p]


class Cluster:
    """
    One instance against three, on the cluster (for C{bench/run.py}).
    """

    def __init__(self, args: argparse.Namespace,
                 log: Callable[[str], None]) -> None:
        self.args = args
        self.log = log

    def run(self) -> dict[str, Any]:
        self.log("cluster: one instance against three on three nodes")
        return run(self.args)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from tests.support import Daemon

    text, started = startCluster()
    points = contact(text)
    keyspace = f"meetr_bench_cluster_{uuid.uuid4().hex[:8]}"
    settings = {
        "listen": "tcp:0:interface=127.0.0.1",
        "cassandra": {"contact_points": [h for h, _ in points],
                      "port": points[0][1], "keyspace": keyspace,
                      "replication": {"class": "NetworkTopologyStrategy",
                                      "dc1": 3}},
    }
    folder = Path(tempfile.mkdtemp(prefix="meetr-bench-cluster-"))
    daemons = [Daemon(folder / f"d{i}", settings) for i in range(3)]
    results: dict[str, Any] = {"one": [], "three": []}
    try:
        for daemon in daemons:
            daemon.start()
        for daemon in daemons:
            daemon.waitReady(120)
        nodes = cassandraPids(os.environ.get(
            "MEETR_NODE_HOME", CLUSTER_ENV["MEETR_NODE_HOME"]).encode())
        assert len(nodes) == 3, nodes
        base = int(time.time() * 1000) - 86_400_000
        step = 0
        for round in range(args.warmup + args.rounds):
            for mode in ("one", "three"):
                data = samples(f"bench.{mode}", args.nodes, args.steps,
                               base + step * args.steps * 10_000)
                step += 1
                bodies = jsonBodies(data)
                used = daemons[:1] if mode == "one" else daemons
                lanes = [bodies[i::len(used)] for i in range(len(used))]
                cpu0 = [cpuSeconds(d.process.pid) for d in daemons]
                cas0 = [cpuSeconds(p) for p in nodes]
                ticks0 = machineTicks()
                t0 = time.monotonic()
                statuses: list[int] = []
                retried: list[int] = []

                def send(daemon: Any, bodies: list[bytes]) -> None:
                    again = [0]
                    statuses.extend(postAll(
                        daemon.port, "/1.0/metrics", bodies,
                        {"Content-Type": "application/json"}, again))
                    retried.append(again[0])

                threads = [threading.Thread(target=send, args=(d, b))
                           for d, b in zip(used, lanes)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                elapsed = time.monotonic() - t0
                ticks1 = machineTicks()
                meetrCpu = sum(cpuSeconds(d.process.pid) - c
                               for d, c in zip(daemons, cpu0))
                cassandraCpu = sum(cpuSeconds(p) - c
                                   for p, c in zip(nodes, cas0))
                assert statuses and set(statuses) == {200}, set(statuses)
                if round < args.warmup:
                    continue
                results[mode].append({
                    "points": len(data), "seconds": elapsed,
                    "points_per_s": len(data) / elapsed,
                    "meetrd_cpu_ms_per_1k": meetrCpu / len(data) * 1e6,
                    "cassandra_cpu_ms_per_1k":
                        cassandraCpu / len(data) * 1e6,
                    "machine_busy": (ticks1[0] - ticks0[0]) / CLOCK_TICKS
                    / elapsed,
                    "retried_503": sum(retried),
                })
    finally:
        for daemon in daemons:
            daemon.stop()
        if started:
            stopCluster()
    return results


def report(results: dict[str, Any]) -> str:
    lines = ["| instances | points/s (median) | rounds | meetrd CPU ms / 1k "
             "points | Cassandra CPU ms / 1k points | machine busy (cores) "
             "| 503s retried |",
             "|---|---|---|---|---|---|---|"]
    for mode, label in (("one", "1"), ("three", "3")):
        rows = results[mode]
        rates = ", ".join(f"{r['points_per_s']:,.0f}" for r in rows)
        lines.append(
            f"| {label} | {median(r['points_per_s'] for r in rows):,.0f} | "
            f"{rates} | "
            f"{median(r['meetrd_cpu_ms_per_1k'] for r in rows):.1f} | "
            f"{median(r['cassandra_cpu_ms_per_1k'] for r in rows):.1f} | "
            f"{median(r['machine_busy'] for r in rows):.2f} | "
            f"{sum(r['retried_503'] for r in rows)} |")
    ratios = [t["points_per_s"] / o["points_per_s"]
              for o, t in zip(results["one"], results["three"])]
    lines.append("")
    lines.append(f"three / one, round by round: "
                 f"{', '.join(f'{r:.2f}' for r in ratios)} "
                 f"(median {median(ratios):.2f})")
    return "\n".join(lines)


def parseArgs(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=1,
                        help="rounds run first and not counted")
    parser.add_argument("--json")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parseArgs(argv)
    results = run(args)
    print(report(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
