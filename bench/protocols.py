"""
Protocols side by side: the same points written to one real daemon as
JSON batches (C{POST /1.0/metrics}), as Prometheus remote write requests
(C{POST /api/v1/write}) and as Graphite plaintext lines, in turns, round
after round.

The data has the shape of hunted nodes: C{--nodes} nodes of 100 series,
one sample a series a step, 5,000 samples a request (JSON and remote
write bodies are made before the clock starts, so that the client's
encoding is not measured).  Each protocol writes its own metric, so each
round of each stores new rows of the same shape.  Graphite's lines go over
one connection; its time runs until the JSON API counts every point
(batches are written a second after their first line at the latest).

Printed: points a second and the daemon's CPU per 1,000 points (from
/proc) for each protocol, and their ratios to JSON's.  Ratios are what
to read: the machine is shared with Cassandra and absolute rates drift.

  MEETR_TEST_CASSANDRA=127.0.0.1:19042 .venv/bin/python bench/protocols.py \\
      [--rounds 3] [--nodes 100] [--steps 10] [--json PATH]
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import socket
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    cpuSeconds,
    daemonSettingsFor,
    median,
    nodeAddress,
    runAndReport,
)

SERIES_A_NODE = 100
PER_REQUEST = 5000
CONNECTIONS = 4


def samples(metric: str, nodes: int, steps: int, baseMs: int
            ) -> list[tuple[str, dict[str, str], int, float]]:
    """
    C{(metric, tags, tsMs, value)} of every sample of a run, step by
    step: one sample of each series of each node a step, 10 s apart.
    """
    return [(metric, {"node": f"n{n}:9100", "series": f"s{s}"},
             baseMs + step * 10_000, float(step * 7 + s))
            for step in range(steps) for n in range(nodes)
            for s in range(SERIES_A_NODE)]


def jsonBodies(points: list[Any]) -> list[bytes]:
    return [json.dumps([{"metric_id": m, "tags": t, "ts": ts, "value": v}
                        for m, t, ts, v in points[i:i + PER_REQUEST]]).encode()
            for i in range(0, len(points), PER_REQUEST)]


def remoteBodies(points: list[Any]) -> list[bytes]:
    import cramjam

    from meetrd.proto.remote_pb2 import WriteRequest

    bodies = []
    for i in range(0, len(points), PER_REQUEST):
        request = WriteRequest()
        series: dict[tuple[str, ...], Any] = {}
        for metric, tags, ts, value in points[i:i + PER_REQUEST]:
            key = (metric, *sorted(tags.items()))
            found = series.get(key)
            if found is None:
                found = series[key] = request.timeseries.add()
                found.labels.add(name="__name__", value=metric)
                for name, text in sorted(tags.items()):
                    found.labels.add(name=name, value=text)
            found.samples.add(value=value, timestamp=ts)
        bodies.append(bytes(cramjam.snappy.compress_raw(
            request.SerializeToString())))
    return bodies


def graphiteLines(points: list[Any]) -> bytes:
    return "".join(f"{m};node={t['node']};series={t['series']} {v} "
                   f"{ts / 1000:.3f}\n" for m, t, ts, v in points).encode()


def postAll(port: int, path: str, bodies: list[bytes],
            headers: dict[str, str], retried: list[int] | None = None
            ) -> list[int]:
    """
    POST every body, C{CONNECTIONS} keep-alive connections at once; the
    status of each answer.  With C{retried}, a body answered 503 is sent
    again after 0.2 s (as a client would), and C{retried[0]} counts the
    503s.
    """
    statuses: list[int] = []
    queue = list(reversed(bodies))
    lock = threading.Lock()

    def lane() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            with lock:
                if not queue:
                    break
                body = queue.pop()
            while True:
                conn.request("POST", path, body, headers)
                reply = conn.getresponse()
                reply.read()
                if reply.status != 503 or retried is None:
                    break
                with lock:
                    retried[0] += 1
                time.sleep(0.2)
            with lock:
                statuses.append(reply.status)
        conn.close()

    lanes = [threading.Thread(target=lane) for _ in range(CONNECTIONS)]
    for thread in lanes:
        thread.start()
    for thread in lanes:
        thread.join()
    return statuses


class Protocols:
    """
    One daemon, three protocols in turns.
    """

    def __init__(self, args: argparse.Namespace,
                 log: Callable[[str], None]) -> None:
        self.args = args
        self.log = log

    def count(self, metric: str, fromMs: int, toMs: int) -> int:
        reply = self.daemon.get("/1.0/metrics", metric=metric,
                                aggregation="count",
                                **{"from": str(fromMs), "to": str(toMs)})
        return reply.json()["value"]

    def written(self) -> float:
        """
        The daemon's count of points written (C{/metrics}).
        """
        found = re.search(rb"^meetr_points_written_total (\S+)$",
                          self.daemon.get("/metrics").body, re.M)
        return float(found[1]) if found else 0.0

    def one(self, protocol: str, run: int) -> dict[str, Any]:
        args = self.args
        metric = f"bench.{protocol}.{run}"
        baseMs = (int(time.time()) - 7200) * 1000
        points = samples(metric, args.nodes, args.steps, baseMs)
        endMs = baseMs + args.steps * 10_000
        if protocol == "json":
            bodies = jsonBodies(points)
        elif protocol == "remote":
            bodies = remoteBodies(points)
        else:
            lines = graphiteLines(points)
        pid = self.daemon.process.pid
        written0 = self.written()
        cpu0, wall0 = cpuSeconds(pid), time.monotonic()
        if protocol == "json":
            statuses = postAll(self.daemon.port, "/1.0/metrics", bodies,
                               {"Content-Type": "application/json"})
        elif protocol == "remote":
            statuses = postAll(self.daemon.port, "/api/v1/write", bodies, {
                "Content-Type": "application/x-protobuf",
                "Content-Encoding": "snappy",
                "X-Prometheus-Remote-Write-Version": "0.1.0"})
        else:
            with socket.create_connection(("127.0.0.1", self.graphite)) as c:
                c.sendall(lines)
            statuses = []
            # Written once the daemon's own count says so (cheaper to ask
            # than a search).
            while self.written() < written0 + len(points):
                time.sleep(0.05)
        wall, cpu = time.monotonic() - wall0, cpuSeconds(pid) - cpu0
        bad = [s for s in statuses if s not in (200, 204)]
        stored = self.count(metric, baseMs, endMs)
        if bad or stored != len(points):
            raise RuntimeError(f"{protocol}: answers {set(bad)}, stored "
                               f"{stored} of {len(points)}")
        return {"points": len(points), "seconds": wall, "cpu": cpu,
                "rate": len(points) / wall,
                "cpuPer1k": cpu * 1000 / len(points) * 1000}

    def run(self) -> dict[str, Any]:
        from tests.support import Daemon

        node = nodeAddress()
        keyspace = f"meetr_bench_protocols_{uuid.uuid4().hex[:8]}"
        settings = daemonSettingsFor(keyspace, node)
        settings["graphite"] = {"listen": "tcp:0:interface=127.0.0.1"}
        workdir = Path(tempfile.mkdtemp(prefix="meetrd-protocols-"))
        self.daemon = Daemon(workdir, settings)
        results: dict[str, Any] = {"runs": {"json": [], "remote": [],
                                            "graphite": []}}
        try:
            self.daemon.start().waitReady()
            self.graphite = int(re.search(r"GraphiteFactory starting on "
                                          r"(\d+)", self.daemon.log())[1])
            self.one("json", -1)
            for run in range(self.args.rounds):
                for protocol in ("json", "remote", "graphite"):
                    result = self.one(protocol, run)
                    results["runs"][protocol].append(result)
                    self.log(f"protocols: round {run + 1} {protocol}: "
                             f"{result['rate']:,.0f} points/s, "
                             f"{result['cpuPer1k']:.1f} ms CPU/1k")
        except Exception as e:
            results["aborted"] = f"{type(e).__name__}: {e}"
        finally:
            self.daemon.stop()
            from cassandra.cluster import Cluster

            cluster = Cluster([node[0]], port=node[1])
            try:
                cluster.connect().execute(f"DROP KEYSPACE IF EXISTS "
                                          f"{keyspace}", timeout=120)
            finally:
                cluster.shutdown()
        return results


def report(results: dict[str, Any]) -> str:
    if results.get("aborted"):
        return f"protocols: aborted: {results['aborted']}"
    runs = results["runs"]
    rate = {p: median(r["rate"] for r in runs[p]) for p in runs}
    cpu = {p: median(r["cpuPer1k"] for r in runs[p]) for p in runs}
    lines = ["| protocol | points/s (median) | / JSON | daemon CPU ms per "
             "1,000 points | / JSON |", "|---|---|---|---|---|"]
    for protocol, label in (("json", "JSON batches"),
                            ("remote", "Prometheus remote write"),
                            ("graphite", "Graphite plaintext")):
        lines.append(f"| {label} | {rate[protocol]:,.0f} | "
                     f"{rate[protocol] / rate['json']:.2f} | "
                     f"{cpu[protocol]:.1f} | "
                     f"{cpu[protocol] / cpu['json']:.2f} |")
    return "\n".join(lines)


def parseArgs(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--json", metavar="PATH")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    return runAndReport(Protocols, parseArgs(argv), report)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
