"""
How fast L{meetrd.hunter.pages.parsePage} reads hunted pages.

Builds a realistic Prometheus page of 100 samples (counters and gauges with
labels, a summary, a histogram), the same samples as OpenMetrics, a JSON
page of 100 leaves (an Artemis-style node document) and a JSON list of 100
Meetr points, then prints the samples per second of each reader side by
side, with ratios.

prometheus_client's text parser became several times slower in 0.22 (its
UTF-8 rewrite); C{--against 0.21.1} runs the same measurements under
another prometheus_client in a throwaway virtualenv under /tmp (made on
first use with pip) and prints both columns in one table::

    .venv/bin/python bench/parse.py --against 0.21.1

C{--before COMMIT} measures that commit's tree too (a temporary git
worktree, the same interpreter), taking turns with this one, and prints
both columns and their ratio.

Rows:
  - C{library only}: C{text_string_to_metric_families} iterated, no
    points made: the floor of what any reader built on it costs;
  - C{parsePage}: the default reader (the library's line parser);
  - C{parsePage, public API}: the fallback reader on the library's public
    family parser, forced for comparison;
  - C{parsePage + cache}: with a warm L{PageCache}, as on every hunt of a
    target after its first.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from prometheus_client.parser import (  # noqa: E402
    text_string_to_metric_families,
)

from meetrd.hunter import prompage  # noqa: E402
from meetrd.hunter.pages import PageCache, parsePage  # noqa: E402

BASE_TAGS = {"node": "artemis-01", "job": "nodes", "dc": "par1"}
NOW_MS = 1_700_000_000_000
BUCKETS = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0",
           "2.5", "5.0", "+Inf")


def prometheusPage(openMetrics: bool = False) -> tuple[bytes, int]:
    """
    A page of 100 samples as a node_exporter-like process would serve it,
    in the text format or as OpenMetrics; returns it and its sample count.
    """
    lines: list[str] = []
    samples = 0

    def family(name: str, kind: str, help: str) -> None:
        typeName = name
        if openMetrics and kind == "counter":
            typeName = name[:-len("_total")]
        lines.append(f"# HELP {typeName} {help}")
        lines.append(f"# TYPE {typeName} {kind}")

    def sample(text: str) -> None:
        nonlocal samples
        lines.append(text)
        samples += 1

    family("http_requests_total", "counter", "HTTP requests served.")
    for method in ("GET", "POST", "PUT"):
        for code in ("200", "304", "404", "500"):
            for handler in ("/api/v1/query", "/metrics"):
                sample(f'http_requests_total{{code="{code}",handler='
                       f'"{handler}",method="{method}"}} '
                       f'{len(method) * 1000 + int(code)}')
    family("node_memory_bytes", "gauge", "Memory by kind.")
    for i, kind in enumerate(("used", "free", "cached", "buffers", "shared",
                              "available", "slab", "swap_used", "swap_free",
                              "dirty")):
        sample(f'node_memory_bytes{{kind="{kind}"}} {1.5e9 + i * 7.25e7:.1f}')
    family("node_hwmon_temp_celsius", "gauge", "Temperatures.")
    for i in range(5):
        sample(f'node_hwmon_temp_celsius{{chip="platform_coretemp_0",'
               f'sensor="temp{i + 1}"}} {41.5 + i}')
    family("queue_length", "gauge", "Jobs waiting, by queue.")
    for i in range(24):
        sample(f'queue_length{{queue="queue-{i:02d}",priority='
               f'"{("high", "low")[i % 2]}"}} {i * 3}')
    for name, kind, value in (
            ("process_cpu_seconds_total", "counter", "1234.56"),
            ("process_resident_memory_bytes", "gauge", "4.2123008e+07"),
            ("process_open_fds", "gauge", "27"),
            ("go_goroutines", "gauge", "43"),
            ("go_threads", "gauge", "12"),
            ("up", "gauge", "1")):
        family(name, kind, f"{name} of the process.")
        sample(f"{name} {value}")
    family("rpc_duration_seconds", "summary", "RPC latency.")
    for quantile, value in (("0.5", "0.012"), ("0.9", "0.054"),
                            ("0.99", "0.22")):
        sample(f'rpc_duration_seconds{{quantile="{quantile}"}} {value}')
    sample("rpc_duration_seconds_sum 842.5")
    sample("rpc_duration_seconds_count 31337")
    family("http_request_duration_seconds", "histogram", "Latency.")
    for handler in ("/api/v1/query", "/metrics"):
        for i, le in enumerate(BUCKETS):
            sample(f'http_request_duration_seconds_bucket{{handler='
                   f'"{handler}",le="{le}"}} {100 * (i + 1)}')
        sample(f'http_request_duration_seconds_sum{{handler="{handler}"}} '
               f'371.25')
        sample(f'http_request_duration_seconds_count{{handler="{handler}"}} '
               f'{100 * len(BUCKETS)}')
    if openMetrics:
        lines.append("# EOF")
    return ("\n".join(lines) + "\n").encode(), samples


def jsonObjectPage() -> tuple[bytes, int]:
    """
    An Artemis-style node document of 100 leaves; returns it and the count.
    """
    doc = {
        "cpu": {f"core{i}": f"{(i * 7) % 100}%" for i in range(16)},
        "load": {"1m": 0.52, "5m": 0.61, "15m": 0.7},
        "mem": {"used": "1234M", "free": "6666M", "cached": "2.5Gi",
                "swap": {"used": "0", "free": "2Gi"}},
        "disks": {f"sd{c}": {"size": "931.5G", "used": "412.2G",
                             "free": "519.3G", "inodes": 61054976,
                             "mounted": True}
                  for c in "abcdef"},
        "net": {f"eth{i}": {"rx_bytes": 123456789 + i, "tx_bytes": 98765432,
                            "rx_errors": 0, "tx_errors": 0, "up": True,
                            "speed": "1G"}
                for i in range(4)},
        "procs": {"running": 3, "blocked": 0, "total": 412, "zombie": 0},
        "uptime": 8640012.5,
        "services": {f"svc{i}": {"ok": i % 3 != 0, "restarts": i,
                                 "rss": f"{120 + i}Mi"}
                     for i in range(4)},
        "fans": {"fan1": 1200, "fan2": 1180, "fan3": "n/a"},
        "version": "2.4.1",
        "hostname": "artemis-01",
    }
    leaves = sum(1 for _ in _leafCount(doc))
    return json.dumps(doc).encode(), leaves


def _leafCount(doc: dict):
    for value in doc.values():
        if isinstance(value, dict):
            yield from _leafCount(value)
        else:
            yield value


def jsonPointsPage() -> tuple[bytes, int]:
    """
    A JSON list of 100 Meetr points with tags and ISO timestamps.
    """
    items = [{"metric_id": f"sensor.temp{i % 10}",
              "ts": f"2023-11-14 22:13:{i % 60:02d}+0000",
              "value": 20 + i / 10,
              "tags": {"room": f"r{i // 10}"}} for i in range(100)]
    return json.dumps(items).encode(), 100


def measure(cases: dict[str, tuple[Callable[[], object], int]],
            seconds: float, slice: float = 0.05) -> dict[str, float]:
    """
    Samples per second of each case.

    The cases take turns in short slices, round after round, for about
    C{seconds} each, and each keeps its best slice: other work on the
    machine then slows every case alike and the best slices show the
    uncontended speed.

    @param cases: name to (function, samples per call).
    """
    best = {name: 0.0 for name in cases}
    for fn, _ in cases.values():
        fn()
    for _ in range(max(1, round(seconds / slice))):
        for name, (fn, samples) in cases.items():
            calls = 0
            start = time.perf_counter()
            deadline = start + slice
            while True:
                fn()
                calls += 1
                now = time.perf_counter()
                if now >= deadline:
                    break
            best[name] = max(best[name], calls * samples / (now - start))
    return best


def run(seconds: float) -> dict:
    """
    Every measurement under this interpreter, in samples per second.
    """
    text, textSamples = prometheusPage()
    om, omSamples = prometheusPage(openMetrics=True)
    obj, objLeaves = jsonObjectPage()
    points, pointCount = jsonPointsPage()
    assert textSamples == omSamples == 100, textSamples
    assert objLeaves == 100, objLeaves
    decoded = text.decode()

    def page(body: bytes, contentType: str, cache: PageCache | None = None
             ) -> Callable[[], object]:
        def call() -> object:
            return parsePage(body, contentType, "auto", baseTags=BASE_TAGS,
                             defaultTsMs=NOW_MS, cache=cache)
        return call

    check = page(text, "text/plain; version=0.0.4")()
    assert len(check.points) == 100 and check.skipped == 0  # type: ignore
    check = page(om, "application/openmetrics-text; version=1.0.0")()
    assert len(check.points) == 100, check  # type: ignore
    check = page(obj, "application/json")()
    assert len(check.points) + check.skipped == 100  # type: ignore

    def libraryOnly() -> object:
        return [s for family in text_string_to_metric_families(decoded)
                for s in family.samples]

    lineReader = prompage._LIBRARY_SAMPLE_LINE

    def publicAPI() -> object:
        prompage._LIBRARY_SAMPLE_LINE = None
        try:
            return parsePage(text, "text/plain", baseTags=BASE_TAGS,
                             defaultTsMs=NOW_MS)
        finally:
            prompage._LIBRARY_SAMPLE_LINE = lineReader

    results = measure({
        "prometheus text, library only": (libraryOnly, textSamples),
        "prometheus text, parsePage": (page(text, "text/plain"),
                                       textSamples),
        "prometheus text, parsePage, public API": (publicAPI, textSamples),
        "prometheus text, parsePage + cache": (
            page(text, "text/plain", PageCache()), textSamples),
        "openmetrics, parsePage": (
            page(om, "application/openmetrics-text"), omSamples),
        "json object, parsePage": (page(obj, "application/json"),
                                   objLeaves),
        "json points, parsePage": (page(points, "application/json"),
                                   pointCount),
    }, seconds)
    return {"version": prometheus_client_version(),
            "python": sys.version.split()[0], "results": results}


def prometheus_client_version() -> str:
    """
    The installed prometheus_client's version.
    """
    from importlib.metadata import version
    return version("prometheus-client")


def otherPython(version: str) -> str:
    """
    The python of a throwaway venv under /tmp holding prometheus_client
    C{version}, made on first use.
    """
    venv = Path(f"/tmp/meetrd-bench-prometheus-client-{version}")
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"making {venv} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q",
                        f"prometheus-client=={version}"], check=True)
    return str(python)


def runElsewhere(python: str, seconds: float, root: Path = ROOT) -> dict:
    """
    The measurements under another interpreter, or of the tree at C{root}
    (that tree's copy of this script, C{--json}).
    """
    env = dict(os.environ, PYTHONPATH=str(root))
    out = subprocess.run([python, str(root / "bench" / "parse.py"), "--json",
                          "--seconds", str(seconds)], check=True,
                         capture_output=True, text=True, env=env).stdout
    return json.loads(out)


def label(column: dict) -> str:
    """
    A column's name in the table: the tree it measured, or its
    prometheus_client.
    """
    return column.get("tree") or "pc " + column["version"]


def report(columns: list[dict]) -> str:
    """
    The table: samples/s per row and column, each row's ratio to the
    C{parsePage} text row of its column, and the other columns' ratio to
    the first.
    """
    reference = "prometheus text, parsePage"
    rows = list(columns[0]["results"])
    width = max(len(r) for r in rows) + 2
    head = "".ljust(width) + "".join(
        f"{label(c):>14}{'x text':>8}" for c in columns)
    for c in columns[1:]:
        head += f"{'first/' + label(c):>16}"
    out = [head]
    for row in rows:
        line = row.ljust(width)
        for c in columns:
            rate = c["results"][row]
            line += f"{rate:>14,.0f}{rate / c['results'][reference]:>8.2f}"
        for c in columns[1:]:
            line += f"{columns[0]['results'][row] / c['results'][row]:>16.2f}"
        out.append(line)
    out.append("")
    out.append("samples/s, best 50 ms slice of each case, cases and "
               "interpreters taking turns;")
    out.append("'x text' = ratio to 'prometheus text, parsePage' in the "
               f"same column; python {columns[0]['python']}")
    return "\n".join(out)


def main() -> None:
    """
    Measure and print.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0,
                        help="time per case (default 2)")
    parser.add_argument("--against", action="append", default=[],
                        metavar="VERSION",
                        help="also measure under prometheus_client VERSION "
                             "(a venv under /tmp, made on first use)")
    parser.add_argument("--python", action="append", default=[],
                        metavar="PATH",
                        help="also measure under this interpreter, which "
                             "must have prometheus_client")
    parser.add_argument("--json", action="store_true",
                        help="print this interpreter's results as JSON")
    parser.add_argument("--before", metavar="COMMIT",
                        help="also measure the tree of COMMIT (checked out "
                             "in a temporary git worktree)")
    args = parser.parse_args()
    if args.json:
        print(json.dumps(run(args.seconds)))
        return
    pythons = args.python + [otherPython(v) for v in args.against]
    with contextlib.ExitStack() as stack:
        before = None
        if args.before:
            before = stack.enter_context(worktree(args.before))
        # Interpreters and trees take turns, pass after pass, so that
        # other work on the machine weighs on every column alike; each
        # case keeps its best.
        passes = 3 if pythons or before else 1
        share = args.seconds / passes
        columns: list[dict] = []
        for _ in range(passes):
            found = [run(share)] + [runElsewhere(p, share) for p in pythons]
            if before is not None:
                found.append(dict(runElsewhere(sys.executable, share,
                                               before),
                                  tree=args.before[:10]))
            if not columns:
                columns = found
                continue
            for column, more in zip(columns, found):
                for name, rate in more["results"].items():
                    column["results"][name] = max(column["results"][name],
                                                  rate)
    if before is not None:
        columns[0]["tree"] = "this tree"
    print(report(columns))


@contextlib.contextmanager
def worktree(commit: str) -> Iterator[Path]:
    """
    A temporary git worktree of C{commit}, removed on the way out.
    """
    path = Path(tempfile.mkdtemp(prefix="meetrd-parse-before-"))
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach",
                    "-q", str(path), commit], check=True)
    try:
        yield path
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove",
                        "--force", str(path)], check=False)


if __name__ == "__main__":
    main()
