"""
What the benchmarks share: the node, the data shapes, worker processes
that take JSON commands line by line, and CPU time read from /proc.

Every benchmark process is a separate Python process (the orchestrator
L{bench.run} only hands out commands and reads /proc), so that no two
measured parties share a GIL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from meetrd.points import Point, freezeTags  # noqa: E402

DEFAULT_NODE = "127.0.0.1:19042"
POINTS_PER_REQUEST = 1000
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# The node and the settings

def nodeAddress() -> tuple[str, int]:
    """
    The Cassandra node: C{MEETR_TEST_CASSANDRA} (C{host:port}), as
    C{make bench} sets it, else the development node's default.
    """
    node = os.environ.get("MEETR_TEST_CASSANDRA") or DEFAULT_NODE
    host, _, port = node.rpartition(":")
    if host not in ("127.0.0.1", "localhost", "::1", "[::1]"):
        raise SystemExit(f"bench: refusing to run against {node}: the "
                         f"benchmarks only talk to a node on loopback")
    return host, int(port)


def daemonSettingsFor(keyspace: str, node: tuple[str, int]) -> dict[str, Any]:
    """
    The settings of the daemon (C{c}) and of the in-process store (C{b}):
    those of the integration tests, with a longer request timeout since a
    2-core machine running Cassandra beside the load can be slow to answer.
    """
    from tests.support import daemonSettings

    return daemonSettings(keyspace, node, cassandra={"request_timeout": "30s"})


# CPU time

def cpuSeconds(pid: int) -> float:
    """
    User plus system CPU time of a process, all its threads, in seconds;
    0 when it is gone.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # Fields 14 and 15 of stat(5), counted from 1; [0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def cassandraPid(port: int | None = None) -> int | None:
    """
    The pid of the Cassandra node: from the development node's pid file,
    else the one java process running CassandraDaemon; C{None} when
    neither is found (CPU is then not reported for Cassandra).
    """
    home = Path(os.environ.get("MEETR_NODE_HOME") or ROOT / ".cassandra")
    try:
        pid = int((home / "node.pid").read_text().split()[0])
        if Path(f"/proc/{pid}").exists():
            return pid
    except (OSError, ValueError, IndexError):
        pass
    found = cassandraPids()
    return found[0] if len(found) == 1 else None


def cassandraPids(home: bytes = b"") -> list[int]:
    """
    The pids of the Cassandra JVMs running now (those whose command line
    names C{home}, when given).
    """
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"CassandraDaemon" in cmdline and home in cmdline:
            found.append(int(entry.name))
    return found


def machineTicks() -> tuple[int, int, int]:
    """
    The machine's CPU time so far, all cores, in clock ticks: busy (user,
    nice, system, irq, softirq), idle (with iowait) and steal (taken by
    the hypervisor for other guests).
    """
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    return user + nice + system + irq + softirq, idle + iowait, steal


class CpuWatch:
    """
    CPU seconds used by named processes between L{start} and L{stop};
    C{machine.busy}, C{machine.idle}, C{machine.steal}: the whole machine's
    CPU seconds in the same time, all cores together.
    """

    def __init__(self, pids: dict[str, int | None]) -> None:
        self.pids = {name: pid for name, pid in pids.items() if pid}
        self._before: dict[str, float] = {}
        self._machine = (0, 0, 0)

    def start(self) -> None:
        self._before = {name: cpuSeconds(pid)
                        for name, pid in self.pids.items()}
        self._machine = machineTicks()

    def stop(self) -> dict[str, float]:
        used = {name: cpuSeconds(pid) - self._before[name]
                for name, pid in self.pids.items()}
        after = machineTicks()
        for name, a, b in zip(("busy", "idle", "steal"), self._machine,
                              after):
            used[f"machine.{name}"] = (b - a) / _CLOCK_TICKS
        return used


# The data

#: Each shape: 1,000-point requests, request k of a run starting at epoch
#: second C{base}.
SHAPES = {
    # An agent's flush: 10 nodes x 100 series at one timestamp.
    "node": "10 nodes x 100 series, one ts, node tag",
    # A backfill: 10 series x 100 consecutive seconds, no node tag.
    "backfill": "10 series x 100 s, no node tag",
    # The worst case for meetrd's layout: every point its own partition.
    "worst": "1,000 series, one ts, no node tag",
}


def shapeSpan(shape: str, requests: int) -> int:
    """
    The seconds a run of C{requests} requests of C{shape} covers.
    """
    return requests * (100 if shape == "backfill" else 1)


def makeRequests(shape: str, requests: int, base: int
                 ) -> list[list[dict[str, Any]]]:
    """
    The JSON items of C{requests} requests of C{shape}, as a client sends
    them: C{{metric_id, ts, value, tags}}, C{ts} in epoch seconds.
    """
    out = []
    for k in range(requests):
        items: list[dict[str, Any]] = []
        if shape == "node":
            ts = base + k
            for n in range(10):
                tags = {"node": f"node-{n:02d}.example:9100", "dc": "par1"}
                for j in range(100):
                    items.append({"metric_id": f"agent.metric_{j:03d}",
                                  "ts": ts, "value": _value(k, n * 100 + j),
                                  "tags": tags})
        elif shape == "backfill":
            start = base + k * 100
            for s in range(10):
                tags = {"dc": "par1", "sensor": f"s{s}"}
                for i in range(100):
                    items.append({"metric_id": "backfill.temperature",
                                  "ts": start + i, "value": _value(k, s * 100 + i),
                                  "tags": tags})
        elif shape == "worst":
            ts = base + k
            tags = {"dc": "par1"}
            for i in range(1000):
                items.append({"metric_id": f"wide.metric_{i:04d}", "ts": ts,
                              "value": _value(k, i), "tags": tags})
        else:
            raise ValueError(f"unknown shape {shape!r}")
        out.append(items)
    return out


def _value(k: int, i: int) -> float:
    return ((k * 7919 + i * 104729) % 100000) / 100.0


def toPoints(items: Iterable[dict[str, Any]]) -> list[Point]:
    """
    The points meetrd's validation makes of C{items} (epoch seconds):
    points of equal tags share one frozen tuple, as the API's decoder
    (L{meetrd.jsonbatch}) and the hunter's page reader give them to the
    store, whose plan of a write looks series up by that tuple's
    identity.  (Each point had a tuple of its own before 2026-12-03: 2.9
    ms of planning a 1,000-point node-shape request instead of 1.8.)
    """
    tagSets: dict[Any, Any] = {}
    points = []
    for item in items:
        raw = item.get("tags") or {}
        key = tuple(raw.items())
        tags = tagSets.get(key)
        if tags is None:
            tags = tagSets[key] = freezeTags(raw)
        points.append(Point(item["metric_id"], tags, item["ts"] * 1000,
                            float(item["value"])))
    return points


def dayStart(daysAgo: int) -> int:
    """
    The epoch second of midnight UTC C{daysAgo} days before today.
    """
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0,
                                               microsecond=0)
    return int(today.timestamp()) - daysAgo * 86400


# Worker processes

class Worker:
    """
    A Python process of ours, taking one JSON command per line on stdin
    and answering one JSON line on stdout.
    """

    def __init__(self, *args: str, name: str = "") -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.name = name or args[0]
        self.process = subprocess.Popen(
            [sys.executable, *args], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, env=env, cwd=ROOT, text=True, bufsize=1)
        hello = self.read()
        if not hello.get("ready"):
            raise RuntimeError(f"{self.name} did not start: {hello}")

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, **command: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            code = self.process.wait()
            raise RuntimeError(f"{self.name} exited with status {code}")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"{self.name}: {answer['error']}")
        return answer

    def call(self, **command: Any) -> dict[str, Any]:
        self.send(**command)
        return self.read()

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.call(cmd="quit")
            except (RuntimeError, OSError, ValueError):
                pass
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def serveBlocking(handlers: dict[str, Callable[..., dict[str, Any]]]) -> None:
    """
    The loop of a blocking worker: read a command, answer it, until
    C{quit} or end of input.
    """
    import traceback

    out = sys.stdout
    sys.stdout = sys.stderr  # stray prints must not break the protocol
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        command = json.loads(line)
        name = command.pop("cmd")
        if name == "quit":
            out.write(json.dumps({"bye": True}) + "\n")
            out.flush()
            break
        try:
            answer = handlers[name](**command)
        except Exception:
            answer = {"error": traceback.format_exc()}
        out.write(json.dumps(answer) + "\n")
        out.flush()


def runAndReport(runner: Callable[[Any, Callable[[str], None]], Any],
                 args: Any, report: Callable[[dict[str, Any]], str]) -> int:
    """
    Run a benchmark (C{runner(args, log).run()}, its progress on standard
    error), write its figures to C{args.json} when given, print its
    report, and give the exit code: 1 when the run says it was aborted.
    """
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    started = time.monotonic()
    results = runner(args, log).run()
    results["seconds"] = time.monotonic() - started
    if getattr(args, "json", None):
        Path(args.json).write_text(json.dumps(results, indent=1))
    print(report(results))
    return 1 if results.get("aborted") else 0


def median(values: Iterable[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    if not n:
        return float("nan")
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def now() -> float:
    """
    CLOCK_MONOTONIC, which every process of the machine shares.
    """
    return time.monotonic()

