"""
The hunter benchmark: a real C{twistd -n meetr} hunting many loopback
nodes at a fixed interval, with Cassandra on the same machine::

    MEETR_TEST_CASSANDRA=127.0.0.1:19042 .venv/bin/python bench/hunt.py
    .venv/bin/python bench/hunt.py --steps 200,500,1000,2000 --interval 10 \\
        --window 3 --budget 480
    PY_SPY=/path/to/py-spy .venv/bin/python bench/hunt.py --steps 2000 \\
        --cold --profile /tmp/hunt-prof --native --cprofile /tmp/hunt-prof

The nodes are served by separate processes (C{python -m tests.nodefarm},
one per 1000 nodes by default, each answering a Prometheus text page of
C{--samples} samples on every port); one meetrd hunts them in a fresh
keyspace at consistency ONE.  The targets come in a target file once the
daemon is ready, and each step rewrites it with more nodes.  A step waits
until the added targets are absorbed (each has been scraped, and meetrd
is back to about one Cassandra request per scrape: the index rows of the
new series are written), for at least C{--warmup} intervals; then a
window of C{--window} intervals is measured from the deltas of
C{/targets} and C{/metrics}, and of the CPU time in C{/proc} of meetrd
(and of its reactor thread), the node farm, Cassandra and the machine.
Once the hunt stops, the points of each window, and of the whole run, are
counted in Cassandra through the API.

Figures are ratios and shares measured within one run, since absolute
rates on a small shared machine drift.  See docs/benchmarks-hunt.md.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import cassandraPid, nodeAddress  # noqa: E402
from tests.support import Daemon, daemonSettings  # noqa: E402

DEFAULT_NODE = "127.0.0.1:19042"
ON_TIME_SHARE = 0.1  # as meetrd.hunter.scrape.ON_TIME_SHARE
FAMILIES_PER_PAGE = 10  # tests.nodefarm: samples // 10 families
_TICKS = os.sysconf("SC_CLK_TCK")


def log(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


# The node and the processes

def codeVersion(tree: Path = ROOT) -> str:
    """
    The commit of a working tree, and whether meetrd's files differ from
    it, for the report.
    """
    try:
        head = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short",
                               "HEAD"], capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(tree), "status",
                                "--porcelain", "--", "meetrd"],
                               capture_output=True, text=True,
                               timeout=10).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    changed = [line[3:] for line in dirty if line.strip()]
    return head + (f" with uncommitted changes to {', '.join(changed)}"
                   if changed else "")


def cpuSeconds(pid: int, tid: int | None = None) -> float:
    """
    User plus system CPU seconds of a process (all threads) or of one of
    its threads; 0 when gone.
    """
    path = f"/proc/{pid}/stat" if tid is None else \
        f"/proc/{pid}/task/{tid}/stat"
    try:
        with open(path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def machineBusy() -> float:
    """
    CPU seconds the whole machine spent busy (not idle, not iowait).
    """
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / _TICKS


class Farm:
    """
    One C{tests.nodefarm} process serving C{count} loopback nodes.
    """

    def __init__(self, count: int, samples: int) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.nodefarm", "--count", str(count),
             "--samples", str(samples)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"nodefarm exited {self.process.wait()}")
        self.ports: list[int] = json.loads(line)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# twistd in a Python that can switch a CPU-time cProfile of its main
# (reactor) thread on and off with SIGUSR2, and dumps it when switched off.
PROFILED_TWISTD = """
import cProfile, signal, sys, time
path = sys.argv[1]
sys.argv = ["twistd"] + sys.argv[2:]
profile = cProfile.Profile(time.thread_time)
state = []
def toggle(number, frame):
    if state:
        profile.disable()
        profile.dump_stats(path)
        state.clear()
    else:
        state.append(1)
        profile.enable()
signal.signal(signal.SIGUSR2, toggle)
from twisted.scripts.twistd import run
run()
"""


class ProfiledDaemon(Daemon):
    """
    L{Daemon} whose twistd can be profiled (see L{PROFILED_TWISTD}) over
    a chosen span with L{toggleProfile}.
    """

    def __init__(self, workdir: Path, settings: dict[str, Any],
                 statsPath: Path | None = None, tree: Path | None = None
                 ) -> None:
        super().__init__(workdir, settings, tree=tree)
        self.statsPath = statsPath

    def start(self) -> "ProfiledDaemon":
        if self.statsPath is None:
            super().start()
            return self
        import re

        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self._log = open(self.logPath, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-c", PROFILED_TWISTD, str(self.statsPath),
             "--pidfile=", "-n", "meetr", "-c", str(self.config)],
            cwd=self.workdir, env=env, stdout=self._log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"twistd exited "
                                     f"{self.process.returncode}:\n"
                                     f"{self.log()}")
            match = re.search(r"MeetrSite starting on (\d+)", self.log())
            if match:
                self.port = int(match.group(1))
                return self
            time.sleep(0.1)
        raise AssertionError(f"twistd did not listen in 60s:\n{self.log()}")

    def toggleProfile(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGUSR2)


# Reading meetrd

@dataclass
class Snapshot:
    """
    Everything read at one end of a window.
    """

    wall: float
    mono: float
    targets: dict[str, Any]
    metrics: dict[str, Any]
    cpu: dict[str, float]
    busy: float
    threads: dict[int, float]
    cpuMono: float
    read: float


def scrapeLag(entry: dict[str, Any]) -> float | None:
    """
    How long after its grid time (the target's stable offset plus whole
    intervals, as meetrd computes lateness) a target's last scrape began;
    the grid is that of the next scrape C{/targets} gives, so that it is
    the daemon's own (whatever its C{hunter.slot}).
    """
    from datetime import datetime

    if not entry["last_scrape"] or not entry.get("next_scrape"):
        return None

    def seconds(stamp: str) -> float:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")
                                      ).timestamp()

    interval = entry["interval"]
    lag = (seconds(entry["last_scrape"]) - seconds(entry["next_scrape"])) \
        % interval
    # Both times are truncated to the millisecond: a scrape on time within
    # a millisecond or two of its grid time would look an interval late.
    return 0.0 if lag > interval - 0.003 else lag


def targetTotals(daemon: Daemon) -> dict[str, Any]:
    """
    The sums of C{/targets}' counters over every target, and the lag of
    each target's last scrape behind its grid.
    """
    entries = daemon.get("/targets").json()["targets"]
    totals: dict[str, Any] = {"targets": len(entries), "scrapes": 0,
                              "failures": 0, "on_time": 0, "retries": 0,
                              "lag": {}, "byNode": {}}
    health: collections.Counter[str] = collections.Counter()
    samples: collections.Counter[int] = collections.Counter()
    errors: collections.Counter[str] = collections.Counter()
    for entry in entries:
        for key in ("scrapes", "failures", "on_time", "retries"):
            totals[key] += entry[key]
        health[entry["health"]] += 1
        samples[entry["samples_stored"]] += 1
        if entry["last_error"]:
            errors[entry["last_error"][:80]] += 1
        lag = scrapeLag(entry)
        if lag is not None:
            totals["lag"][entry["node"]] = lag
        totals["byNode"][entry["node"]] = (entry["scrapes"],
                                           entry["failures"])
    totals["health"] = dict(health)
    totals["samples_stored"] = {str(k): v for k, v in samples.items()}
    totals["errors"] = dict(errors.most_common(3))
    return totals


def selfMetrics(daemon: Daemon) -> dict[str, Any]:
    """
    The counters and histograms of C{/metrics} the benchmark uses.
    """
    from prometheus_client.parser import text_string_to_metric_families

    text = daemon.get("/metrics").body.decode()
    out: dict[str, Any] = {"scrapes": {}, "lateness": {}, "duration": {},
                           "cassandra_requests": 0.0,
                           "cassandra_errors": {}}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if name == "meetr_hunter_scrapes_total":
                out["scrapes"][labels["result"]] = value
            elif name == "meetr_hunter_scrape_lateness_seconds_bucket":
                out["lateness"][labels["le"]] = value
            elif name == "meetr_hunter_scrape_duration_seconds_bucket":
                out["duration"][labels["le"]] = value
            elif name == "meetr_cassandra_requests_total":
                out["cassandra_requests"] = value
            elif name == "meetr_cassandra_errors_total":
                out["cassandra_errors"][labels["kind"]] = value
            elif name == "meetr_hunter_targets":
                out.setdefault("health", {})[labels["health"]] = value
            elif name == "meetr_index_queue_rows":
                # Daemons from before the index queue have none.
                out["index_queue"] = value
            elif name == "meetr_gc_seconds_total":
                # Daemons from before the collector was timed have none.
                out["gc_seconds"] = out.get("gc_seconds", 0.0) + value
                generation = labels.get("generation", "")
                byGeneration = out.setdefault("gc_by_generation", {})
                byGeneration[generation] = byGeneration.get(generation,
                                                            0.0) + value
    return out


def histogramDelta(before: dict[str, float], after: dict[str, float]
                   ) -> list[tuple[float, float]]:
    """
    C{(upper bound, cumulative count)} of a histogram over a window.
    """
    bounds = sorted(after, key=lambda le: float(le))
    return [(float(le), after[le] - before.get(le, 0.0)) for le in bounds]


def quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """
    The upper bound of the bucket holding quantile C{q}.
    """
    total = buckets[-1][1] if buckets else 0
    if not total:
        return float("nan")
    for bound, count in buckets:
        if count >= q * total:
            return bound
    return float("inf")


def shareWithin(buckets: list[tuple[float, float]], bound: float) -> float:
    total = buckets[-1][1] if buckets else 0
    if not total:
        return float("nan")
    for upper, count in buckets:
        if upper >= bound - 1e-9:
            return count / total
    return 1.0


def snapshot(daemon: Daemon, pids: dict[str, tuple[int, int | None]]
             ) -> Snapshot:
    """
    Read meetrd and /proc, CPU first and last so the reads cost little.
    """
    cpu = {name: cpuSeconds(pid, tid) for name, (pid, tid) in pids.items()}
    busy = machineBusy()
    pid = pids["meetrd"][0]
    threads = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        threads[int(task.name)] = cpuSeconds(pid, int(task.name))
    cpuMono = time.monotonic()
    wall = time.time()
    targets = targetTotals(daemon)
    metrics = selfMetrics(daemon)
    read = time.monotonic() - cpuMono
    # The counters were read somewhere in between; meetrd answers in
    # milliseconds unless its reactor is behind (see "read").
    half = read / 2
    return Snapshot(wall + half, cpuMono + half, targets, metrics, cpu, busy,
                    threads, cpuMono, read)


def countPoints(daemon: Daemon, metric: str, fromMs: int, toMs: int,
                nodes: list[str] | None = None, timeout: float = 120.0
                ) -> float | None:
    """
    The count of C{metric}'s points over the range, of C{nodes} only when
    given, through the API; C{None} (and a line on standard error) when
    the search fails.
    """
    import urllib.parse

    from tests.support import http

    params: list[tuple[str, str]] = [
        ("metric", metric), ("aggregation", "count"),
        ("from", str(fromMs)), ("to", str(toMs))]
    params.extend(("tag", f"node:{node}") for node in nodes or ())
    url = f"{daemon.base}/1.0/metrics?{urllib.parse.urlencode(params)}"
    try:
        reply = http("GET", url, timeout=timeout)
    except OSError as e:
        log(f"hunt: count of {metric}: {e}")
        return None
    if reply.status != 200:
        log(f"hunt: count of {metric}: HTTP {reply.status} "
            f"{reply.body[:300]!r}")
        return None
    return reply.json()["value"]


def verifyStored(daemon: Daemon, before: Snapshot, after: Snapshot,
                 args: argparse.Namespace, sample: int = 100
                 ) -> dict[str, Any]:
    """
    Count in Cassandra, through the API, the points whose time falls in
    the window: C{up} (one per scrape) and C{farm_metric_0} (C{samples /
    10} per successful scrape), for a sample of nodes (against their own
    scrape counts from C{/targets}) and for every node (against the
    totals).  Scrapes in flight at either end of the window make the two
    differ by a few.
    """
    fromMs = int(before.wall * 1000)
    toMs = int(after.wall * 1000) - 1
    b, a = before.targets["byNode"], after.targets["byNode"]
    nodes = sorted(n for n in a if n in b)
    step = max(1, len(nodes) // sample)
    chosen = nodes[::step][:sample]
    perFamily = args.samples // FAMILIES_PER_PAGE

    def expected(which: list[str]) -> tuple[int, int]:
        scrapes = sum(a[n][0] - b[n][0] for n in which)
        ok = scrapes - sum(a[n][1] - b[n][1] for n in which)
        return scrapes, ok * perFamily

    out: dict[str, Any] = {"sample": len(chosen)}
    for label, which, tagged in (("sample", chosen, chosen),
                                 ("all", nodes, None)):
        upWanted, familyWanted = expected(which)
        out[label] = {
            "up": countPoints(daemon, "up", fromMs, toMs, tagged),
            "up_expected": upWanted,
            "family0": countPoints(daemon, "farm_metric_0", fromMs, toMs,
                                   tagged),
            "family0_expected": familyWanted,
        }
    return out


# py-spy

def findPySpy() -> str | None:
    """
    py-spy: C{PY_SPY}, on C{PATH}, or beside this venv's Python.
    """
    candidates = [os.environ.get("PY_SPY"), shutil.which("py-spy"),
                  str(Path(sys.executable).with_name("py-spy"))]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def startPySpy(pid: int, seconds: float, output: Path, rate: int,
               native: bool = False) -> subprocess.Popen[bytes] | None:
    spy = findPySpy()
    if spy is None:
        log("hunt: py-spy not found (set PY_SPY or put it on PATH); "
            "no profile")
        return None
    return subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--duration",
         str(max(1, int(seconds))), "--rate", str(rate), "--format", "raw",
         "--threads", "--output", str(output)]
        + (["--native"] if native else []),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _frameName(frame: str, withLine: bool = False) -> str:
    """
    C{function (path/to/file.py:line)} as C{package/module.py:function},
    with the line when asked.
    """
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path, _, line = where.rpartition(":")
    parts = Path(path).parts
    for anchor in ("meetrd", "twisted", "cassandra", "treq", "prometheus_client",
                   "hyperlink", "zope", "attr", "incremental"):
        if anchor in parts:
            short = "/".join(parts[parts.index(anchor):])
            break
    else:
        short = Path(path).name
    return f"{short}:{line} {name}" if withLine else f"{short} {name}"


# Where a sample of the reactor thread goes: the garbage collector when
# it is in the stack (it runs inside whatever allocates), else the rule of
# the innermost frame that matches one.
GC_FRAME = "gc_collect_main"
CATEGORIES = (
    ("parsing pages", ("meetrd/hunter/pages.py", "meetrd/hunter/prompage.py",
                       "meetrd/hunter/pagebuild.py",
                       "prometheus_client/parser.py")),
    ("building the writes (MetricStore.writePoints: batches, binding rows)",
     ("MetricStore.writePoints",)),
    ("sending the writes (MetricStore._run, driver execute_async)",
     ("executeAsync (", "MetricStore._run")),
    ("the driver otherwise (responses, connections)", ("cassandra/",)),
    ("fetching pages (twisted.web client, treq, TCP)",
     ("twisted/web/", "treq/", "hyperlink/", "meetrd/hunter/fetch.py",
      "twisted/internet/tcp.py")),
    ("the API and self-metrics", ("meetrd/api.py", "meetrd/web.py",
                                  "meetrd/selfmetrics.py",
                                  "meetrd/hunter/service.py")),
    ("the scrape loop (scrape.py, its Deferreds)", ("meetrd/hunter/scrape.py",)),
)


def category(frames: list[str]) -> str:
    if any(GC_FRAME in f for f in frames):
        return "garbage collector"
    if frames and "doPoll" in frames[-1]:
        return "waiting in epoll"
    for frame in reversed(frames):
        if ".so" in frame or "(<string>" not in frame and ".py:" not in frame:
            continue  # a native frame: its Python caller decides
        for name, patterns in CATEGORIES:
            if any(p in frame for p in patterns):
                return name
    return "the rest (reactor, Deferreds)"


def summarizeProfile(path: Path, top: int = 25) -> dict[str, Any]:
    """
    Own and cumulative sample counts per function of the reactor thread
    (C{MainThread}), from py-spy's raw (collapsed) output; own time also
    per line, since the driver's compiled code shows no frames and is
    counted on the line that calls it.
    """
    threads: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    ownLine: collections.Counter[str] = collections.Counter()
    cumulative: collections.Counter[str] = collections.Counter()
    categories: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        thread, frames = frames[0], frames[1:]
        threads[thread] += n
        if "MainThread" not in thread:
            continue
        total += n
        categories[category(frames)] += n
        if frames:
            own[_frameName(frames[-1])] += n
            ownLine[_frameName(frames[-1], True)] += n
        for name in {_frameName(f) for f in frames}:
            cumulative[name] += n
    return {
        "threads": threads.most_common(),
        "samples": total,
        "own": own.most_common(top),
        "ownLine": ownLine.most_common(top),
        "cumulative": cumulative.most_common(top),
        "categories": categories.most_common(),
    }


def summarizeCProfile(path: Path, top: int = 25) -> dict[str, Any]:
    import pstats

    stats = pstats.Stats(str(path))
    rows = []
    for (filename, line, name), (cc, nc, tt, ct, _) in stats.stats.items():
        parts = Path(filename).parts
        for anchor in ("meetrd", "twisted", "cassandra", "treq",
                       "prometheus_client"):
            if anchor in parts:
                filename = "/".join(parts[parts.index(anchor):])
                break
        else:
            filename = Path(filename).name
        rows.append((f"{filename}:{line}:{name}", nc, tt, ct))
    return {
        "total": stats.total_tt,
        "own": [(n, c, t) for n, c, t, _ in
                sorted(rows, key=lambda r: -r[2])[:top]],
        "cumulative": [(n, c, ct) for n, c, _, ct in
                       sorted(rows, key=lambda r: -r[3])[:top]],
    }


# The run

@dataclass
class Step:
    """
    One number of targets, measured.
    """

    targets: int
    result: dict[str, Any] = field(default_factory=dict)


def farmSplit(targets: int, farms: int) -> list[int]:
    base, extra = divmod(targets, farms)
    return [base + (1 if i < extra else 0) for i in range(farms)]


class HuntRun:
    """
    One node farm and one daemon for every step: each step writes the
    target file with more nodes, lets the daemon absorb them, then
    measures a window.
    """

    def __init__(self, args: argparse.Namespace, node: tuple[str, int],
                 keyspace: str, workdir: Path, tree: Path | None = None
                 ) -> None:
        """
        @param tree: another checkout whose code the daemon runs (the
            C{--before} commit's worktree), or C{None} for this one.
        """
        self.tree = tree
        self.args = args
        self.node = node
        self.keyspace = keyspace
        self.workdir = workdir
        self.interval = args.interval
        self.farms: list[Farm] = []
        self.nodes: list[str] = []
        self.daemon: ProfiledDaemon | None = None
        self.targetFile = workdir / "targets" / "farm.yaml"
        self.statsPath: Path | None = None
        self.pids: dict[str, tuple[int, int | None]] = {}
        self.changedAt = 0.0

    def start(self, total: int, farms: int, first: int) -> float:
        """
        Start the farm (C{total} nodes over C{farms} processes) and the
        daemon; return the seconds the daemon took to be ready.
        """
        args = self.args
        for count in farmSplit(total, farms):
            self.farms.append(Farm(count, args.samples))
        # Round robin over the farm processes, so every step loads each.
        for i in range(max(len(f.ports) for f in self.farms)):
            for farm in self.farms:
                if i < len(farm.ports):
                    self.nodes.append(f"127.0.0.1:{farm.ports[i]}")
        self.targetFile.parent.mkdir(parents=True, exist_ok=True)
        hunter: dict[str, Any] = {
            "sample_limit": max(50000, args.samples * 2),
            "target_files": [str(self.targetFile.parent / "*.yaml")],
            "target_files_check": "1s",
        }
        if args.cold:
            hunter["targets"] = self.groups(first)
        if args.slot is not None and self.tree is None:
            hunter["slot"] = args.slot
        settings = daemonSettings(
            self.keyspace, self.node, hunter=hunter,
            cassandra={"request_timeout": "30s", "connect_timeout": "10s"},
            limits={"max_search_series": 200000,
                    "max_search_partitions": 1000000})
        if args.cprofile:
            self.statsPath = Path(args.cprofile).resolve() / \
                f"meetrd-{total}.pstats"
            self.statsPath.parent.mkdir(parents=True, exist_ok=True)
            self.statsPath.unlink(missing_ok=True)
        self.daemon = ProfiledDaemon(self.workdir / "daemon", settings,
                                     self.statsPath, self.tree)
        started = time.monotonic()
        self.daemon.start().waitReady(timeout=90)
        pid = self.daemon.process.pid  # type: ignore[union-attr]
        self.pids = {"meetrd": (pid, None), "reactor": (pid, pid)}
        for i, farm in enumerate(self.farms):
            self.pids[f"farm{i}"] = (farm.pid, None)
        cassandra = cassandraPid()
        if cassandra:
            self.pids["cassandra"] = (cassandra, None)
        return time.monotonic() - started

    @property
    def pid(self) -> int:
        return self.pids["meetrd"][0]

    def groups(self, count: int) -> list[dict[str, Any]]:
        return [{"job": "farm", "nodes": self.nodes[:count],
                 "interval": f"{self.interval:g}s", "format": "prometheus"}]

    def setTargets(self, count: int) -> None:
        """
        Hunt the first C{count} nodes (none: the file goes); return once
        C{/targets} lists them.
        """
        import yaml

        assert self.daemon is not None
        if count:
            partial = self.targetFile.with_suffix(".part")
            partial.write_text(yaml.safe_dump(self.groups(count)))
            partial.rename(self.targetFile)
        else:
            self.targetFile.unlink(missing_ok=True)
        self.changedAt = time.monotonic()
        wanted = count if count or not self.args.cold else None
        deadline = time.monotonic() + 60
        while True:
            listed = len(self.daemon.get("/targets").json()["targets"])
            if wanted is None or listed == wanted:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"/targets lists {listed} targets, not "
                                   f"{count}, a minute after the target "
                                   f"file changed")
            time.sleep(0.2)

    def snapshot(self) -> Snapshot:
        assert self.daemon is not None
        return snapshot(self.daemon, self.pids)

    def settle(self, step: Step, limit: float) -> tuple[dict[str, Any],
                                                         Snapshot]:
        """
        Wait, interval by interval, until every target has been scraped
        and meetrd sends Cassandra about one request per scrape (the new
        series' index rows are written), for at least C{--warmup}
        intervals and at most C{limit} seconds.
        """
        args = self.args
        began = self.snapshot()
        last = began
        timeline = []
        settled = False
        # Timed from the change of the target file, which meetrd looks at
        # once a second.
        absorbed = AbsorbProbe(self.changedAt)
        while True:
            due = last.mono + self.interval
            while absorbed.at is None and time.monotonic() < due - POLL:
                time.sleep(POLL)
                absorbed.poll(time.monotonic(), selfMetrics(self.daemon))
            time.sleep(max(0.0, due - time.monotonic()))
            now = self.snapshot()
            seconds = now.mono - last.mono
            scrapes = now.targets["scrapes"] - last.targets["scrapes"]
            requests = now.metrics["cassandra_requests"] - \
                last.metrics["cassandra_requests"]
            unknown = now.targets["health"].get("unknown", 0)
            elapsed = now.mono - began.mono
            timeline.append({
                "t": round(elapsed, 1),
                "scrapes_per_s": round(scrapes / seconds, 1),
                "requests_per_s": round(requests / seconds),
                "unknown": unknown,
                "reactor": round((now.cpu["reactor"] - last.cpu["reactor"])
                                 / (now.cpuMono - last.cpuMono), 3),
                "read": round(now.read, 2),
            })
            last = now
            if elapsed >= args.warmup * self.interval - 0.5 and \
                    unknown == 0 and requests <= 1.2 * scrapes + 10 and \
                    absorbed.at is not None:
                settled = True
                break
            if elapsed >= limit:
                break
        figures = warmupFigures(step, began, last, args)
        figures.update({"settled": settled, "timeline": timeline,
                        "absorbed_s": absorbed.at, "absorbed_by": absorbed.by,
                        "queue_peak": absorbed.queuePeak})
        return figures, last

    def window(self, step: Step, spyPath: Path | None = None,
               cprofile: bool = False) -> dict[str, Any]:
        """
        Measure one window of C{--window} intervals (with py-spy over it
        when given a path for its output, or with cProfile).
        """
        args = self.args
        assert self.daemon is not None
        window = args.window * self.interval
        spy = None
        if spyPath is not None:
            spyPath.parent.mkdir(parents=True, exist_ok=True)
            spy = startPySpy(self.pid, window, spyPath, args.rate,
                             args.native)
        if cprofile:
            self.daemon.toggleProfile()
        before = self.snapshot()
        log(f"hunt: {step.targets} targets: measuring {window:g}s"
            + (" under py-spy" if spy else "")
            + (" under cProfile" if cprofile else ""))
        time.sleep(max(0.0, before.mono + window - time.monotonic()))
        after = self.snapshot()
        if cprofile and self.statsPath is not None:
            self.daemon.toggleProfile()
            deadline = time.monotonic() + 30
            while not self.statsPath.exists() and \
                    time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(1.0)  # let the dump finish
        result = measure(step, before, after, args)
        if cprofile and self.statsPath is not None and \
                self.statsPath.exists():
            result["cprofile"] = summarizeCProfile(self.statsPath)
            result["cprofile"]["file"] = str(self.statsPath)
        result["snapshots"] = (before, after)
        names: dict[int, str] = {}
        if spy is not None and spyPath is not None:
            _, err = spy.communicate(timeout=120)
            if spy.returncode != 0 or not spyPath.exists():
                log(f"hunt: py-spy failed: {err.decode(errors='replace')}")
            else:
                result["pyspy"] = summarizeProfile(spyPath)
                result["pyspy"].update(file=str(spyPath), rate=args.rate)
                for thread, _ in result["pyspy"]["threads"]:
                    # "thread (TID): NAME"
                    tid, _, label = thread.partition("): ")
                    tid = tid.rpartition("(")[2]
                    if tid.isdigit():
                        names[int(tid)] = label
        span = after.cpuMono - before.cpuMono
        result["threads"] = [
            (names.get(tid, "main" if tid == self.pid else str(tid)),
             round(share, 3))
            for tid, share in sorted(
                ((tid, (after.threads.get(tid, 0.0)
                        - before.threads.get(tid, 0.0)) / span)
                 for tid in after.threads), key=lambda x: -x[1])[:5]]
        result["farm_cpu_each"] = [
            round((after.cpu[f"farm{i}"] - before.cpu[f"farm{i}"]) / span, 3)
            for i in range(len(self.farms))]
        return result

    def verify(self, results: list[dict[str, Any]]) -> None:
        """
        Count each window's points in Cassandra.
        """
        assert self.daemon is not None
        for result in results:
            if "snapshots" not in result:
                continue
            before, after = result["snapshots"]
            try:
                result["stored"] = verifyStored(self.daemon, before, after,
                                                self.args)
            except Exception as e:
                log(f"hunt: counting the stored points failed: {e!r}")

    def verifyAll(self, begun: float) -> dict[str, Any]:
        """
        Once the hunt has stopped: every point of the run in Cassandra
        against meetrd's own count of its scrapes.
        """
        assert self.daemon is not None
        metrics = selfMetrics(self.daemon)
        ok = metrics["scrapes"].get("ok", 0)
        failed = metrics["scrapes"].get("failed", 0)
        fromMs = int((time.time() - (time.monotonic() - begun) - 60) * 1000)
        toMs = int((time.time() + 60) * 1000)
        return {
            "ok": ok, "failed": failed,
            "up": countPoints(self.daemon, "up", fromMs, toMs),
            "family0": countPoints(self.daemon, "farm_metric_0", fromMs,
                                   toMs),
            "family0_expected": ok * (self.args.samples
                                      // FAMILIES_PER_PAGE),
        }

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()
        for farm in self.farms:
            farm.stop()


# Seconds between the polls that time the absorbing of new targets.
POLL = 0.5
# The trailing seconds over which a daemon without an index queue gauge
# must send about one request a scrape to count as having absorbed.
TRAILING = 2.0


class AbsorbProbe:
    """
    The moment new targets were absorbed, to a poll: every target has been
    scraped and no index row waits.  A daemon with no index queue gauge
    (from before the queue) has absorbed them once it has sent Cassandra
    about one request a scrape over the last L{TRAILING} seconds.

    @ivar at: seconds from C{start} (the change of the target file) to
        the first poll that found them absorbed, or C{None} while none
        has.
    @ivar by: what told: C{"index queue"} or C{"request rate"}.
    @ivar queuePeak: the most index rows seen waiting.
    """

    def __init__(self, start: float) -> None:
        self.start = start
        self.at: float | None = None
        self.by: str | None = None
        self.queuePeak = 0.0
        self._polls: list[tuple[float, float, float]] = []

    def poll(self, now: float, metrics: dict[str, Any]) -> None:
        """
        Look at one reading of C{/metrics}, taken at C{now}.
        """
        health = metrics.get("health")
        if health is None:
            # No gauge of the targets' health: never taken as absorbed.
            return
        unknown = health.get("unknown", 0.0)
        queue = metrics.get("index_queue")
        requests = metrics["cassandra_requests"]
        scrapes = sum(metrics["scrapes"].values())
        self._polls.append((now, requests, scrapes))
        if queue is not None:
            self.queuePeak = max(self.queuePeak, queue)
            if unknown == 0 and queue == 0:
                self.at, self.by = now - self.start, "index queue"
            return
        earlier = [p for p in self._polls if p[0] <= now - TRAILING]
        if unknown == 0 and earlier:
            _, r0, s0 = earlier[-1]
            if requests - r0 <= 1.2 * (scrapes - s0) + 5:
                self.at, self.by = now - self.start, "request rate"


def warmupFigures(step: Step, boot: Snapshot, before: Snapshot,
                  args: argparse.Namespace) -> dict[str, Any]:
    """
    Scrapes and lateness of the warm-up, from the daemon's readiness.
    """
    scrapes = before.targets["scrapes"] - boot.targets["scrapes"]
    onTime = before.targets["on_time"] - boot.targets["on_time"]
    lateness = histogramDelta(boot.metrics["lateness"],
                              before.metrics["lateness"])
    seconds = before.mono - boot.mono
    return {
        "seconds": seconds,
        "scrapes": scrapes,
        "failures": before.targets["failures"] - boot.targets["failures"],
        "on_time_of_started": onTime / scrapes if scrapes else float("nan"),
        "lateness_p50": quantile(lateness, 0.5),
        "lateness_p99": quantile(lateness, 0.99),
        "cassandra_requests": before.metrics["cassandra_requests"]
        - boot.metrics["cassandra_requests"],
        "meetrd_cpu": (before.cpu["meetrd"] - boot.cpu["meetrd"]) / seconds,
    }


def lagFigures(before: dict[str, float], after: dict[str, float],
               interval: float) -> dict[str, Any]:
    """
    How far each target's last scrape lagged its grid, at both ends of the
    window: a late target whose lag did not change kept one offset for the
    whole window (a LoopingCall keeps the phase of its first call).
    """
    limit = ON_TIME_SHARE * interval
    nodes = [n for n in after if n in before]
    lateEnd = [n for n in nodes if after[n] > limit]
    lateBoth = [n for n in lateEnd if before[n] > limit]
    steady = [n for n in lateBoth
              if abs(after[n] - before[n]) < 0.02 * interval]
    lags = sorted(after.values())

    def q(x: float) -> float:
        return lags[min(len(lags) - 1, int(x * len(lags)))] if lags \
            else float("nan")

    return {
        "targets": len(nodes),
        "late_at_end": len(lateEnd),
        "late_at_both_ends": len(lateBoth),
        "late_same_lag": len(steady),
        "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "max": q(1.0),
    }


def measure(step: Step, before: Snapshot, after: Snapshot,
            args: argparse.Namespace) -> dict[str, Any]:
    """
    The figures of one window.
    """
    seconds = after.mono - before.mono
    t0, t1 = before.targets, after.targets
    scrapes = t1["scrapes"] - t0["scrapes"]
    onTime = t1["on_time"] - t0["on_time"]
    failures = t1["failures"] - t0["failures"]
    due = step.targets * seconds / args.interval
    m0, m1 = before.metrics, after.metrics
    ok = m1["scrapes"].get("ok", 0) - m0["scrapes"].get("ok", 0)
    lateness = histogramDelta(m0["lateness"], m1["lateness"])
    duration = histogramDelta(m0["duration"], m1["duration"])
    cpuSeconds = after.cpuMono - before.cpuMono
    cpu = {name: (after.cpu[name] - before.cpu[name]) / cpuSeconds
           for name in after.cpu}
    farmCpu = sum(v for k, v in cpu.items() if k.startswith("farm"))
    busy = (after.busy - before.busy) / cpuSeconds
    named = cpu.get("meetrd", 0) + farmCpu + cpu.get("cassandra", 0)
    reactorMs = (after.cpu["reactor"] - before.cpu["reactor"]) * 1000 / \
        scrapes if scrapes else float("nan")
    reactorSeconds = after.cpu["reactor"] - before.cpu["reactor"]
    gcShare = None
    if "gc_seconds" in m1 and "gc_seconds" in m0 and reactorSeconds > 0:
        gcShare = (m1["gc_seconds"] - m0["gc_seconds"]) / reactorSeconds
    gcByGeneration = {
        generation: (seconds - m0.get("gc_by_generation", {}).get(
            generation, 0.0)) / reactorSeconds
        for generation, seconds in m1.get("gc_by_generation", {}).items()
    } if reactorSeconds > 0 else {}
    return {
        "gc_by_generation": gcByGeneration,
        "targets": step.targets,
        "seconds": seconds,
        "reactor_ms_per_scrape": reactorMs,
        "gc_share": gcShare,
        "cassandra_ms_per_scrape": (
            after.cpu.get("cassandra", 0) - before.cpu.get("cassandra", 0))
        * 1000 / scrapes if scrapes else float("nan"),
        "read_seconds": max(before.read, after.read),
        "windowFrom": before.wall,
        "windowTo": after.wall,
        "due": due,
        "scrapes": scrapes,
        "ok": ok,
        "failures": failures,
        "on_time": onTime,
        "scrapes_per_s": scrapes / seconds,
        "due_per_s": due / seconds,
        "on_time_of_due": onTime / due if due else float("nan"),
        "on_time_of_started": onTime / scrapes if scrapes else float("nan"),
        "late_share_hist": 1 - shareWithin(lateness,
                                           ON_TIME_SHARE * args.interval),
        "lateness_p50": quantile(lateness, 0.5),
        "lateness_p99": quantile(lateness, 0.99),
        "duration_p50": quantile(duration, 0.5),
        "duration_p99": quantile(duration, 0.99),
        "samples_per_s": ok * args.samples / seconds,
        "cassandra_requests_per_s":
            (m1["cassandra_requests"] - m0["cassandra_requests"]) / seconds,
        "cassandra_errors": {k: v - m0["cassandra_errors"].get(k, 0)
                             for k, v in m1["cassandra_errors"].items()},
        "lag": lagFigures(t0["lag"], t1["lag"], args.interval),
        "cpu": cpu,
        "farm_cpu": farmCpu,
        "machine_busy": busy,
        "others": max(0.0, busy - named),
        "health": t1["health"],
        "samples_stored": t1["samples_stored"],
        "errors": t1["errors"],
    }


# The report

def pct(x: float) -> str:
    return "-" if x is None or math.isnan(x) else f"{100 * x:.1f}%"


def secs(x: float) -> str:
    if x is None or math.isnan(x):
        return "-"
    if math.isinf(x):
        return ">max"
    return f"{x * 1000:.0f}ms" if x < 1 else f"{x:g}s"


def storedText(v: dict[str, Any] | None) -> str:
    """
    C{up} and C{farm_metric_0} counted, as shares of what was expected.
    """
    if not v:
        return "-"

    def share(got: float | None, wanted: int) -> str:
        return "-" if got is None or not wanted else pct(got / wanted)

    return (f"{share(v['up'], v['up_expected'])} / "
            f"{share(v['family0'], v['family0_expected'])}")


def bound(r: dict[str, Any]) -> str:
    """
    What the figures say bounds a step.
    """
    cpu = r["cpu"]
    reasons = []
    if cpu.get("reactor", 0) >= 0.85:
        reasons.append(f"meetrd's reactor thread at "
                       f"{pct(cpu['reactor'])} of a core")
    if r["machine_busy"] >= 1.8:
        reasons.append(f"the machine's 2 cores ({r['machine_busy']:.2f} "
                       f"busy: meetrd {cpu.get('meetrd', 0):.2f}, Cassandra "
                       f"{cpu.get('cassandra', 0):.2f}, farm "
                       f"{r['farm_cpu']:.2f}, others {r['others']:.2f})")
    if any(v >= 0.85 for v in r.get("farm_cpu_each", [])):
        reasons.append("a node farm process near a full core")
    if reasons:
        return "; ".join(reasons)
    if min(r["on_time_of_due"], r["on_time_of_started"]) >= 0.99:
        return "nothing saturated"
    text = (f"no CPU saturated: late scrapes come from stalls and bursts of "
            f"meetrd's reactor thread (at {pct(cpu.get('reactor', 0))} on "
            f"average)")
    steady = r.get("lag", {}).get("late_same_lag", 0)
    if steady:
        text += (f"; {steady} targets late by the same lag at both ends of "
                 f"the window (a LoopingCall keeps the phase of a late "
                 f"first tick)")
    return text


def report(results: list[dict[str, Any]], args: argparse.Namespace,
           farms: int) -> str:
    lines = [
        f"Hunter: {args.samples} samples per page, interval "
        f"{args.interval:g}s, windows of {args.window:g} intervals once "
        f"the added targets are absorbed (at least {args.warmup:g} "
        f"intervals); {farms} node farm process(es); CPU as a share of one "
        f"core over the window; machine: {os.cpu_count()} cores; meetrd "
        f"at {args.code}.",
        "",
        "| targets | scrapes/s (due) | on time, of due | on time, of "
        "started | failed | samples/s | stored (up / family 0) | lateness "
        "p50 / p99 | scrape p50 / p99 | reactor ms per scrape (ceiling/s) | "
        "meetrd CPU (reactor thread) | farm CPU | Cassandra CPU | machine "
        "busy (others) |",
        "|---:|---:|---:|---:|---:|---:|---|---|---|---|---|---|---:|---|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['targets']} | failed: {r['error']} |"
                         + " |" * 12)
            continue
        cpu = r["cpu"]
        stored = storedText(r.get("stored", {}).get("sample"))
        farmEach = "+".join(pct(v) for v in r.get("farm_cpu_each", []))
        ms = r["reactor_ms_per_scrape"]
        lines.append(
            f"| {r['targets']} | {r['scrapes_per_s']:.1f} "
            f"({r['due_per_s']:.0f}) | {pct(r['on_time_of_due'])} | "
            f"{pct(r['on_time_of_started'])} | {r['failures']} | "
            f"{r['samples_per_s']:,.0f} | {stored} | "
            f"{secs(r['lateness_p50'])} / {secs(r['lateness_p99'])} | "
            f"{secs(r['duration_p50'])} / {secs(r['duration_p99'])} | "
            f"{ms:.1f} ({1000 / ms:.0f}) | "
            f"{pct(cpu.get('meetrd', float('nan')))} "
            f"({pct(cpu.get('reactor', float('nan')))}) | {farmEach} | "
            f"{pct(cpu.get('cassandra', float('nan')))} | "
            f"{r['machine_busy']:.2f} cores ({r['others']:.2f}) |")
    lines.extend([
        "",
        "stored: points of the window counted in Cassandra through the API "
        "for a sample of 100 nodes, as a share of their scrapes (up) and of "
        f"their successful scrapes x {args.samples // FAMILIES_PER_PAGE} "
        "series (farm_metric_0), from /targets.  reactor ms per scrape: "
        "CPU time of meetrd's main (reactor) thread over the window divided "
        "by the scrapes; ceiling: the scrapes per second that would fill "
        "one core at that cost.",
        ""])
    for r in results:
        if "error" in r:
            continue
        met = min(r["on_time_of_due"], r["on_time_of_started"]) >= 0.99
        lines.append(f"- {r['targets']} targets: "
                     f"{'reached' if met else 'NOT reached'} "
                     f"(>= 99% of due scrapes on time); bound: {bound(r)}; "
                     f"Cassandra requests {r['cassandra_requests_per_s']:.0f}"
                     f"/s ({r['cassandra_ms_per_scrape']:.1f} ms of "
                     f"Cassandra CPU per scrape), errors "
                     f"{r['cassandra_errors'] or 'none'}; /targets and "
                     f"/metrics answered in {r['read_seconds']:.2f}s at most; "
                     f"health {r['health']}; the garbage collector "
                     + ("not timed" if r.get("gc_share") is None else
                        f"{pct(r['gc_share'])} of the reactor thread's CPU"
                        + (" (by generation: " + ", ".join(
                            f"{g} {pct(v)}" for g, v in
                            sorted(r["gc_by_generation"].items())) + ")"
                           if r.get("gc_by_generation") else ""))
                     + (f"; last errors {r['errors']}" if r["errors"] else ""))
        w = r.get("settle")
        if w:
            peak = max((t["read"] for t in w["timeline"]), default=0)
            lines.append(
                f"  absorbing the {w['added']} added targets: "
                f"{'settled' if w['settled'] else 'NOT settled'} after "
                f"{w['seconds']:.0f}s ("
                + ("absorbed after "
                   f"{w['absorbed_s']:.1f}s by the {w['absorbed_by']}"
                   if w.get("absorbed_s") is not None else "absorbed: not "
                   "timed") + (f", at most {w['queue_peak']:.0f} index rows "
                               "waiting" if w.get("queue_peak") else "")
                + f"); meanwhile {w['scrapes']} scrapes "
                f"({w['failures']} failed, {pct(w['on_time_of_started'])} "
                f"of them on time), {w['cassandra_requests']:.0f} Cassandra "
                f"requests, meetrd CPU {pct(w['meetrd_cpu'])}, /targets "
                f"answered in {peak:.1f}s at worst")
            lines.append("  timeline (s: scrapes/s, requests/s, targets "
                         "never scraped, reactor): " + "; ".join(
                             f"{t['t']:.0f}: {t['scrapes_per_s']:.0f}, "
                             f"{t['requests_per_s']}, {t['unknown']}, "
                             f"{pct(t['reactor'])}" for t in w["timeline"]))
        every = r.get("stored", {}).get("all")
        if every:
            lines.append(
                f"  stored, every node: up {every['up']} of "
                f"{every['up_expected']} scrapes, farm_metric_0 "
                f"{every['family0']} of {every['family0_expected']} "
                f"({storedText(every)})")
        lag = r["lag"]
        lines.append(
            f"  each target's last scrape behind its grid: p50 "
            f"{secs(lag['p50'])}, p90 {secs(lag['p90'])}, p99 "
            f"{secs(lag['p99'])}, max {secs(lag['max'])}; late (>10%) at "
            f"the window's end {lag['late_at_end']}, at both ends "
            f"{lag['late_at_both_ends']}, of which by the same lag (+-2%) "
            f"{lag['late_same_lag']}")
        lines.append("  meetrd's busiest threads (share of a core): "
                     + ", ".join(f"{n} {pct(v)}" for n, v in r["threads"]))
    for r in results:
        if r.get("pyspy"):
            lines.extend(["", *profileLines(r)])
        if r.get("cprofile"):
            lines.extend(["", *cprofileLines(r["cprofile"], r)])
    return "\n".join(lines)


def profileLines(r: dict[str, Any], top: int = 20) -> list[str]:
    p = r["pyspy"]
    seconds = r["seconds"]
    rate = p.get("rate", 100)
    total = p["samples"] or 1
    lines = [f"py-spy, {r['targets']} targets, reactor thread (MainThread): "
             f"{p['samples']} samples on CPU over {seconds:.0f}s at "
             f"{rate}/s, i.e. {p['samples'] / rate / seconds:.0%} of a core "
             f"(from /proc: {pct(r['cpu'].get('reactor', float('nan')))}); "
             f"shares below are of the reactor thread's samples; raw: "
             f"{p['file']}", "",
             "where the reactor thread's samples go: " + "; ".join(
                 f"{name} {100 * n / total:.1f}%"
                 for name, n in p.get("categories", [])), "",
             "| own | function | own | line | cumulative | function |",
             "|---:|---|---:|---|---:|---|"]
    rows = max(len(p["own"]), len(p["ownLine"]), len(p["cumulative"]))
    for i in range(min(top, rows)):
        cells = []
        for key in ("own", "ownLine", "cumulative"):
            entries = p[key]
            if i < len(entries):
                name, n = entries[i]
                cells.append(f"{100 * n / total:.1f}% | `{name}`")
            else:
                cells.append(" | ")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def cprofileLines(p: dict[str, Any], r: dict[str, Any], top: int = 20
                  ) -> list[str]:
    lines = [f"cProfile of the reactor thread's CPU time "
             f"(time.thread_time), {r['targets']} targets, over the "
             f"window: {p['total']:.1f}s of CPU in {r['seconds']:.0f}s; "
             f"raw: {p['file']}", "",
             "| own s | calls | function | cumulative s | calls | "
             "function |", "|---:|---:|---|---:|---:|---|"]
    for (oname, oc, ot), (cname, cc, ct) in zip(p["own"][:top],
                                                p["cumulative"][:top]):
        lines.append(f"| {ot:.2f} | {oc} | `{oname}` | {ct:.2f} | {cc} | "
                     f"`{cname}` |")
    return lines


# Main

def parseArgs(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", default="200,500,1000,2000",
                        help="numbers of targets, one step each "
                             "(200,500,1000,2000)")
    parser.add_argument("--interval", type=float, default=10.0,
                        help="the targets' interval in seconds (10)")
    parser.add_argument("--warmup", type=float, default=2,
                        help="intervals, at least, between adding targets "
                             "and the window (2)")
    parser.add_argument("--settle-max", type=float, default=180,
                        help="seconds, at most, to wait for the added "
                             "targets to be absorbed: every target scraped "
                             "and about one Cassandra request per scrape "
                             "(180)")
    parser.add_argument("--window", type=float, default=3,
                        help="intervals measured (3)")
    parser.add_argument("--samples", type=int, default=100,
                        help="samples per page (100)")
    parser.add_argument("--farms", default="auto",
                        help="node farm processes: a number, or auto = one "
                             "per 1000 targets (auto)")
    parser.add_argument("--cold", action="store_true",
                        help="give the first step's targets in the settings, "
                             "so the hunt starts with the daemon, before "
                             "Cassandra is connected (by default they come "
                             "in a target file once /ready answers 200); "
                             "the hunt then never stops before the counts")
    parser.add_argument("--profile", metavar="DIR",
                        help="after the last step, one more window of it "
                             "with py-spy (PY_SPY, on PATH or beside the "
                             "venv's python) sampling meetrd; raw profiles "
                             "go to DIR")
    parser.add_argument("--rate", type=int, default=100,
                        help="py-spy samples per second (100)")
    parser.add_argument("--native", action="store_true",
                        help="py-spy --native: C frames too, such as the "
                             "garbage collector's")
    parser.add_argument("--cprofile", metavar="DIR",
                        help="after the last step, one more window of it "
                             "with a cProfile of the reactor thread's CPU "
                             "time (time.thread_time) switched on in "
                             "meetrd by SIGUSR2; the stats go to DIR")
    parser.add_argument("--budget", type=float, default=480,
                        help="seconds the whole run may take; the waits "
                             "are cut and steps skipped to fit (480)")
    parser.add_argument("--slot", metavar="DURATION",
                        help="hunter.slot for this tree's daemon (the "
                             "--before commit's keeps its own default), "
                             "e.g. 0s for offsets spread over the interval")
    parser.add_argument("--json", metavar="PATH",
                        help="also write every measurement as JSON")
    parser.add_argument("--keep", action="store_true",
                        help="keep the keyspace and the daemons' folders")
    parser.add_argument("--before", metavar="COMMIT",
                        help="run the whole benchmark first on COMMIT (a "
                             "temporary git worktree), then on this tree, "
                             "and compare them step by step")
    return parser.parse_args(argv)


def dropKeyspace(node: tuple[str, int], keyspace: str) -> None:
    import warnings

    warnings.simplefilter("ignore")
    from cassandra.cluster import Cluster

    cluster = Cluster([node[0]], port=node[1])
    try:
        session = cluster.connect()
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)
    finally:
        cluster.shutdown()


def main(argv: list[str]) -> int:
    """
    Run the benchmark on this tree; with C{--before}, first on that
    commit (in a temporary worktree), then on this tree, and compare.
    """
    args = parseArgs(argv)
    if not args.before:
        ok, text, _ = hunt(args)
        print(text)
        return 0 if ok else 1
    if args.profile or args.cprofile:
        raise SystemExit("hunt: --before runs without the profilers")
    with tempfile.TemporaryDirectory(prefix="meetrd-hunt-before-") as home:
        tree = Path(home) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach",
                        "-q", str(tree), args.before], check=True)
        try:
            okBefore, textBefore, before = hunt(args, tree)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove",
                            "--force", str(tree)], check=False)
    okAfter, textAfter, after = hunt(args)
    print(f"## Before: {args.before}\n\n{textBefore}\n\n"
          f"## After: this tree\n\n{textAfter}\n\n"
          f"{compare(before, after)}")
    return 0 if okBefore and okAfter else 1


def compare(before: list[dict[str, Any]], after: list[dict[str, Any]]
            ) -> str:
    """
    The figures of each step before and after, side by side.
    """
    lines = ["| targets | on time of due, before / after | reactor ms per "
             "scrape, before / after | after / before | added targets "
             "absorbed in, before / after |",
             "|---:|---:|---:|---:|---:|"]

    def absorbed(r: dict[str, Any]) -> str:
        seconds = r.get("settle", {}).get("absorbed_s")
        return "–" if seconds is None else f"{seconds:.1f} s"

    byTargets = {r["targets"]: r for r in before if "error" not in r}
    for r in after:
        b = byTargets.get(r["targets"])
        if b is None or "error" in r:
            continue
        lines.append(
            f"| {r['targets']} | {pct(b['on_time_of_due'])} / "
            f"{pct(r['on_time_of_due'])} | "
            f"{b['reactor_ms_per_scrape']:.2f} / "
            f"{r['reactor_ms_per_scrape']:.2f} | "
            f"{r['reactor_ms_per_scrape'] / b['reactor_ms_per_scrape']:.2f} | "
            f"{absorbed(b)} / {absorbed(r)} |")
    return "\n".join(lines)


def hunt(args: argparse.Namespace, tree: Path | None = None
         ) -> tuple[bool, str, list[dict[str, Any]]]:
    """
    One whole run of the benchmark, with the daemon on C{tree}'s code (this
    tree's when C{None}): whether it went through, its report, and the
    figures of its steps.
    """
    args.code = codeVersion(tree or ROOT)
    node = nodeAddress()
    steps = [Step(int(t)) for t in args.steps.split(",") if t.strip()]
    if not steps or sorted(s.targets for s in steps) != \
            [s.targets for s in steps]:
        raise SystemExit("hunt: --steps: increasing numbers of targets")
    total = steps[-1].targets
    farms = (max(1, math.ceil(total / 1000)) if args.farms == "auto"
             else int(args.farms))
    window = args.window * args.interval
    keyspace = f"meetr_hunt_{uuid.uuid4().hex[:10]}"
    workdir = Path(tempfile.mkdtemp(prefix="meetrd-hunt-"))
    results: list[dict[str, Any]] = []
    profiled: list[dict[str, Any]] = []
    wholeRun: dict[str, Any] | None = None
    begun = time.monotonic()
    ok = True
    run = HuntRun(args, node, keyspace, workdir, tree)
    try:
        startup = run.start(total, farms, steps[0].targets)
        log(f"hunt: {total} nodes on {farms} farm process(es); meetrd ready "
            f"in {startup:.1f}s; keyspace {keyspace}")
        hunted = 0
        # Kept for the profiled windows and for counting at the end.
        reserve = (window + 20) * (bool(args.profile) + bool(args.cprofile)) \
            + 45
        for step in steps:
            left = args.budget - reserve - (time.monotonic() - begun)
            if left < window + 60:
                log(f"hunt: skipping {step.targets} targets: over the budget")
                continue
            try:
                run.setTargets(step.targets)
                log(f"hunt: {step.targets} targets: absorbing "
                    f"{step.targets - hunted} new ones")
                settle, _ = run.settle(
                    step, min(args.settle_max, left - window - 40))
                settle["added"] = step.targets - hunted
                hunted = step.targets
                result = run.window(step)
                result["settle"] = settle
            except Exception as e:
                traceback.print_exc()
                ok = False
                result = {"targets": step.targets, "error": str(e)[:200]}
            results.append(result)
            if "error" not in result:
                log(f"hunt: {step.targets}: {result['scrapes_per_s']:.1f} "
                    f"scrapes/s, {pct(result['on_time_of_due'])} of due on "
                    f"time, reactor {pct(result['cpu'].get('reactor', 0))}, "
                    f"{result['reactor_ms_per_scrape']:.1f} ms/scrape, "
                    f"machine {result['machine_busy']:.2f}")
        if results and "error" not in results[-1]:
            step = steps[-1]
            if args.profile:
                spyPath = Path(args.profile).resolve() / \
                    f"meetrd-{step.targets}.txt"
                profiled.append(run.window(step, spyPath))
            if args.cprofile:
                profiled.append(run.window(step, cprofile=True))
        if not args.cold:
            run.setTargets(0)  # the hunt stops; count undisturbed
            time.sleep(3.0)
            wholeRun = run.verifyAll(begun)
        run.verify(results + profiled)
    except Exception:
        traceback.print_exc()
        ok = False
        if run.daemon is not None:
            log(f"--- daemon log ({run.daemon.logPath}):\n"
                f"{run.daemon.log()[-3000:]}")
    finally:
        run.stop()
        if not args.keep:
            try:
                dropKeyspace(node, keyspace)
                log(f"hunt: dropped {keyspace}")
            except Exception:
                traceback.print_exc()
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"hunt: kept {keyspace} and {workdir}")
    log(f"hunt: {time.monotonic() - begun:.0f}s in all")
    for r in results + profiled:
        r.pop("snapshots", None)
    if args.json:
        path = Path(args.json)
        if tree is not None:
            path = path.with_name(path.stem + "-before" + path.suffix)
        path.write_text(json.dumps(
            {"code": args.code, "results": results, "profiled": profiled,
             "whole_run": wholeRun}, indent=1, default=str))
    out = [report(results, args, farms)]
    if wholeRun:
        w = wholeRun
        out.append(f"\nThe whole run, counted in Cassandra once the hunt "
                   f"stopped: up {w['up']} points for {w['ok']:.0f} "
                   f"successful and {w['failed']:.0f} failed scrapes "
                   f"(meetr_hunter_scrapes_total); farm_metric_0 "
                   f"{w['family0']} points of {w['family0_expected']:.0f} "
                   f"expected.")
    if profiled:
        out.append("\nThe last step again, under the profilers (which cost "
                   "CPU too):")
        out.append(report(profiled, args, farms))
    return ok, "\n".join(out), results


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
