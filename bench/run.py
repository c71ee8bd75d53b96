"""
meetrd's benchmarks: ingest (L{bench.ingest}), search (L{bench.search})
scale (L{bench.scale}: 100,000 series), rollups (L{bench.rollups}: a
year of one series, a month of 1,000 nodes) and throughput before and
after (L{bench.throughput}: the ingest path and the reactor's stalls
against an older commit) against the Cassandra node
named by C{MEETR_TEST_CASSANDRA}, in keyspaces of their own that are
dropped at the end::

    make bench                      # starts the local node when needed
    MEETR_TEST_CASSANDRA=127.0.0.1:19042 .venv/bin/python bench/run.py

Every figure is a ratio or a median of runs taken side by side in this one
run (the parties take turns, their order rotating), since absolute times
on a small shared machine drift.  See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import sys
import tempfile
import traceback
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    POINTS_PER_REQUEST,
    SHAPES,
    Worker,
    cassandraPid,
    daemonSettingsFor,
    dayStart,
    median,
    nodeAddress,
    shapeSpan,
)
from bench.ingest import METHODS, IngestBench  # noqa: E402
from bench.search import DAY_POINTS, SearchBench  # noqa: E402

INGEST = str(Path(__file__).with_name("ingest.py"))


#: The benchmarks of modules of their own, run after ingest and search:
#: each module's runner class, whose C{run()} gives what its C{report}
#: prints.
EXTRAS = {"scale": "Scale", "rollups": "Rollups", "throughput": "Throughput",
          "protocols": "Protocols", "cluster": "Cluster"}


def parseArgs(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=50_000,
                        help="points per ingest run (default 50000)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="ingest runs of each method and shape (3)")
    parser.add_argument("--shapes", default=",".join(SHAPES),
                        help="ingest shapes, of " + ", ".join(SHAPES))
    parser.add_argument("--inflight", type=int, default=8,
                        help="requests in flight for b and c (8)")
    parser.add_argument("--concurrency", type=int, default=100,
                        help="execute_concurrent's concurrency for a (100)")
    parser.add_argument("--clients", type=int, default=2,
                        help="HTTP client processes for c (2); the "
                             "connections are split among them")
    parser.add_argument("--search-rounds", type=int, default=7,
                        help="rounds of the search measurements (7)")
    parser.add_argument("--profile", metavar="DIR",
                        help="after the measured ingest runs, one more run "
                             "of b and c per shape with py-spy (PY_SPY or "
                             "on PATH) sampling the store process and the "
                             "daemon; raw profiles go to DIR, a summary to "
                             "the table")
    parser.add_argument("--no-ingest", action="store_true")
    parser.add_argument("--no-search", action="store_true")
    parser.add_argument("--no-scale", action="store_true",
                        help="skip the scale benchmark (bench/scale.py, "
                             "about 4 minutes)")
    parser.add_argument("--no-rollups", action="store_true",
                        help="skip the rollups benchmark (bench/rollups.py, "
                             "about 40 minutes)")
    parser.add_argument("--no-throughput", action="store_true",
                        help="skip the throughput benchmark, before and "
                             "after (bench/throughput.py, about 4 minutes)")
    parser.add_argument("--no-protocols", action="store_true",
                        help="skip JSON, remote write and Graphite side by "
                             "side (bench/protocols.py, about 2 minutes)")
    parser.add_argument("--no-cluster", action="store_true",
                        help="skip one instance against three on a "
                             "three-node cluster (bench/cluster.py, about "
                             "4 minutes)")
    parser.add_argument("--only", choices=("ingest", "search", *EXTRAS),
                        help="run this benchmark only")
    parser.add_argument("--json", metavar="PATH",
                        help="also write every measurement as JSON")
    parser.add_argument("--keep", action="store_true",
                        help="keep the keyspace and the daemon's folder")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    """
    Run the benchmarks the options choose, print the table (and write the
    JSON); exit status 1 when one of them failed.
    """
    args = parseArgs(argv)
    if args.only:
        args.no_ingest = args.only != "ingest"
        args.no_search = args.only != "search"
        for name in EXTRAS:
            setattr(args, f"no_{name}", args.only != name)
    shapes = [s for s in args.shapes.split(",") if s]
    for shape in shapes:
        if shape not in SHAPES:
            raise SystemExit(f"unknown shape {shape!r}")
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    results: dict[str, Any] = {"args": vars(args)}
    ok = True
    if not (args.no_ingest and args.no_search):
        ok = runParties(args, shapes, results, log)
    for name, runnerName in EXTRAS.items():
        if getattr(args, f"no_{name}"):
            continue
        module = importlib.import_module(f"bench.{name}")
        try:
            results[name] = getattr(module, runnerName)(
                module.parseArgs([]), log).run()
            ok = ok and not results[name].get("aborted")
        except Exception:
            traceback.print_exc()
            ok = False

    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    print(report(results, args))
    return 0 if ok else 1


def runParties(args: argparse.Namespace, shapes: list[str],
               results: dict[str, Any], log: Any) -> bool:
    """
    The ingest and search benchmarks: the parties started, measured and
    stopped, their keyspace dropped; whether all went well.
    """
    node = nodeAddress()
    keyspace = f"meetr_bench_{uuid.uuid4().hex[:10]}"
    cassandra = cassandraPid(node[1])
    workdir = Path(tempfile.mkdtemp(prefix="meetrd-bench-"))
    log(f"bench: node {node[0]}:{node[1]} (pid {cassandra}), keyspace "
        f"{keyspace}, daemon folder {workdir}")

    from tests.support import Daemon

    started: list[Any] = []
    results["keyspace"] = keyspace
    ok = False
    try:
        # The store worker creates the keyspace and the tables first.
        store = Worker(INGEST, "store-worker", node[0], str(node[1]),
                       keyspace, name="store worker")
        started.append(store)
        naive = Worker(INGEST, "naive-worker", node[0], str(node[1]),
                       keyspace, name="driver worker")
        started.append(naive)
        daemon = Daemon(workdir, daemonSettingsFor(keyspace, node))
        started.append(daemon)
        daemon.start().waitReady()
        connections = [args.inflight // args.clients
                       + (i < args.inflight % args.clients)
                       for i in range(args.clients)]
        clients = [Worker(INGEST, "http-client", str(daemon.port), str(n),
                          name=f"http client {i}")
                   for i, n in enumerate(connections) if n]
        started.extend(clients)

        if not args.no_ingest:
            bench = IngestBench(naive, store, daemon, clients, cassandra,
                                args.inflight, args.concurrency)
            results["ingest"], results["profiles"] = runIngest(
                bench, shapes, args, log)
        if not args.no_search:
            searches = SearchBench(naive, store, daemon, dayStart(90),
                                   cassandra)
            log("search: loading one day of 1 s points")
            searches.load()
            log(f"search: {args.search_rounds} rounds")
            results["search"] = searches.measure(args.search_rounds)
        ok = True
    except Exception:
        traceback.print_exc()
        for party in started:
            if hasattr(party, "log"):
                log(f"--- daemon log ({party.logPath}):\n{party.log()[-4000:]}")
    finally:
        for party in reversed(started):
            if party is not started[1]:  # the driver worker drops, last
                try:
                    party.stop() if hasattr(party, "stop") else party.close()
                except Exception:
                    traceback.print_exc()
        if len(started) > 1:
            if not args.keep:
                try:
                    started[1].call(cmd="drop")
                    log(f"bench: dropped {keyspace}")
                except Exception:
                    traceback.print_exc()
            started[1].close()
        if not args.keep and ok:
            shutil.rmtree(workdir, ignore_errors=True)
    return ok


def runIngest(bench: IngestBench, shapes: list[str], args: argparse.Namespace,
              log: Any) -> tuple[dict[str, list[dict[str, Any]]],
                              dict[str, dict[str, Any]]]:
    """
    Every ingest run: per shape a short warm-up of each method (series
    index rows, connections, prepared statements), then C{repeats} rounds
    of a, b, c, the order rotating each round.
    """
    requests = max(1, args.points // POINTS_PER_REQUEST)
    cursor = dayStart(60)
    runs: dict[str, list[dict[str, Any]]] = {}
    profiles: dict[str, dict[str, Any]] = {}
    for shape in shapes:
        for method in METHODS:
            bench.run(method, shape, 10, cursor)
            bench.check(shape, 10, cursor)
            cursor += shapeSpan(shape, 10)
        for r in range(args.repeats):
            order = METHODS[r % 3:] + METHODS[:r % 3]
            for method in order:
                result = bench.run(method, shape, requests, cursor)
                result["round"] = r
                if r == 0:
                    bench.check(shape, requests, cursor)
                cursor += shapeSpan(shape, requests)
                runs.setdefault(shape, []).append(result)
                logRun(log, result, f"round {r}")
        if args.profile:
            from bench.ingest import pySpy

            spy = pySpy()
            if not spy:
                raise SystemExit("--profile needs py-spy: pip install "
                                 "py-spy, or set PY_SPY")
            folder = Path(args.profile)
            folder.mkdir(parents=True, exist_ok=True)
            for method in ("b", "c"):
                output = folder / f"{shape}-{method}.txt"
                result = bench.run(method, shape, requests, cursor,
                                   profile=(spy, output))
                cursor += shapeSpan(shape, requests)
                result["round"] = "profiled"
                profiles.setdefault(shape, {})[method] = result
                logRun(log, result, "profiled")
    return runs, profiles


def logRun(log: Any, result: dict[str, Any], what: str) -> None:
    log(f"ingest {result['shape']:8} {result['method']} {what}: "
        f"{result['rate']:9,.0f} points/s  cpu "
        + " ".join(f"{k} {v * 100:.0f}%" for k, v in result["cpu"].items()))


def report(results: dict[str, Any], args: argparse.Namespace) -> str:
    """
    The compact table.
    """
    out = []
    load = os.getloadavg()
    out.append(f"meetrd benchmarks: {os.cpu_count()} cores, Cassandra on the "
               f"same machine, load average now {load[0]:.2f}")
    ingest = results.get("ingest")
    if ingest:
        out.append("")
        out.append(f"Ingest, points/s: median of {args.repeats} runs of "
                   f"{args.points:,} points in 1,000-point requests "
                   f"(b and c: {args.inflight} in flight; a: concurrency "
                   f"{args.concurrency})")
        head = (f"{'shape':<44}{'a driver':>10}{'b store':>10}{'c http':>10}"
                f"{'c/a':>7}{'c/b':>7}")
        out.append(head)
        cpuLines = []
        for shape, runs in ingest.items():
            rate = {m: median(r["rate"] for r in runs if r["method"] == m)
                    for m in METHODS}
            pairs = {}
            for other in ("a", "b"):
                paired = []
                for rnd in sorted({r["round"] for r in runs}):
                    byMethod = {r["method"]: r["rate"] for r in runs
                                if r["round"] == rnd}
                    paired.append(byMethod["c"] / byMethod[other])
                pairs[other] = paired
            label = f"{shape}: {SHAPES[shape]}"
            out.append(f"{label:<44}{rate['a']:>10,.0f}{rate['b']:>10,.0f}"
                       f"{rate['c']:>10,.0f}{rate['c'] / rate['a']:>7.2f}"
                       f"{rate['c'] / rate['b']:>7.2f}")
            perK = {m: {k: median(r["cpuSeconds"].get(k, float("nan"))
                                  / r["points"] * 1e6 for r in runs
                                  if r["method"] == m)
                        for k in ("party", "cassandra")}
                    for m in METHODS}
            clientsK = median(
                sum(v for k, v in r["cpuSeconds"].items()
                    if k.startswith("client")) / r["points"] * 1e6
                for r in runs if r["method"] == "c")
            busy = {m: median(r["cpu"]["machine busy"] for r in runs
                              if r["method"] == m) * 100 for m in METHODS}
            cpuLines.append(
                f"{shape:<10}{perK['a']['party']:>9.1f}"
                f"{perK['a']['cassandra']:>7.1f} |{perK['b']['party']:>9.1f}"
                f"{perK['b']['cassandra']:>7.1f} |{perK['c']['party']:>9.1f}"
                f"{perK['c']['cassandra']:>7.1f}{clientsK:>8.1f} |"
                f"{busy['a']:>5.0f}{busy['b']:>5.0f}{busy['c']:>5.0f}"
                f"  {min(pairs['a']):>5.2f}-{max(pairs['a']):<5.2f}"
                f"{min(pairs['b']):>5.2f}-{max(pairs['b']):<5.2f}")
        out.append("")
        out.append("CPU ms per 1,000 points (median): the party's process "
                   "(a: the driver loop, b: the store worker, c: the daemon), "
                   "Cassandra, the HTTP clients; machine: how busy all "
                   f"{os.cpu_count()} cores were, % of one core (other work "
                   "on the machine included); the range of the per-round "
                   "ratios")
        out.append(f"{'':<10}{'a: driver':>9}{'cass':>7} |{'b: store':>9}"
                   f"{'cass':>7} |{'c: meetrd':>9}{'cass':>7}{'clients':>8} |"
                   f"{'machine a/b/c':>15}  {'c/a':^11}{'c/b':^11}")
        out.extend(cpuLines)
    profiles = results.get("profiles") or {}
    if profiles:
        from bench.ingest import OTHER_STAGE, STAGES

        columns = [(shape, method, result)
                   for shape, byMethod in profiles.items()
                   for method, result in byMethod.items()]
        out.append("")
        out.append("Where the CPU goes: py-spy on the store worker (b) and "
                   "the daemon (c), one extra run each, not counted above; "
                   "CPU ms per 1,000 points by stage (the run's CPU per "
                   "point times the stage's share of the samples)")
        out.append(f"{'stage':<34}" + "".join(
            f"{shape[:8] + ' ' + method:>11}" for shape, method, _ in columns))
        for label in [s[0] for s in STAGES] + [OTHER_STAGE]:
            cells = []
            for _, _, result in columns:
                perPoint = result["cpuSeconds"]["party"] / result["points"]
                share = result["profile"]["stages"][label]
                cells.append(f"{share * perPoint * 1e6:>11.1f}")
            out.append(f"{label:<34}" + "".join(cells))
        out.append(f"{'total':<34}" + "".join(
            f"{r['cpuSeconds']['party'] / r['points'] * 1e6:>11.1f}"
            for _, _, r in columns))
        out.append(f"{'points/s under py-spy':<34}" + "".join(
            f"{r['rate']:>11,.0f}" for _, _, r in columns))
    search = results.get("search")
    if search:
        out.append("")
        out.append(f"Search over one day of 1 s points of one series "
                   f"({DAY_POINTS:,} rows, one partition), ms: median of "
                   f"{args.search_rounds}")
        out.append(f"{'query':<18}{'driver+py':>11}{'store':>9}{'http':>9}"
                   f"{'floor':>9}{'driver/http':>13}{'driver/store':>14}")
        for label, times in search.items():
            ms = {p: median(v) * 1000 for p, v in times.items()}
            out.append(f"{label:<18}{ms['naive']:>11.1f}{ms['store']:>9.1f}"
                       f"{ms['http']:>9.1f}{ms['floor']:>9.1f}"
                       f"{ms['naive'] / ms['http']:>13.2f}"
                       f"{ms['naive'] / ms['store']:>14.2f}")
        out.append("floor: the driver sending the store's own aggregate CQL "
                   "(what Cassandra alone takes)")
        out.append("")
        out.append("CPU ms per search (median; /proc counts 10 ms ticks): "
                   "Cassandra's, and the querying process's (the driver "
                   "loop's; the daemon's)")
        out.append(f"{'query':<18}{'cass driver+py':>15}{'cass http':>10}"
                   f"{'cass floor':>11}{'driver+py':>11}{'daemon':>8}")
        for label, times in search.items():
            ms = {p: median(v) * 1000 for p, v in times.items()}
            out.append(f"{label:<18}{ms['naive cassandra']:>15.1f}"
                       f"{ms['http cassandra']:>10.1f}"
                       f"{ms['floor cassandra']:>11.1f}"
                       f"{ms['naive process']:>11.1f}"
                       f"{ms['http process']:>8.1f}")
    for name in EXTRAS:
        if results.get(name):
            module = importlib.import_module(f"bench.{name}")
            out.append("")
            out.append(module.report(results[name]))
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
