"""
Overload: meetrd under four times the write load it can serve.

Three phases against a real C{twistd -n meetr} and the local node, each
with client processes posting batches of points as fast as they are
answered:

  1. capacity: as many clients as the write cap, so nothing is shed;
  2. 4x: four times as many clients, the same cap: the excess is answered
     503 at once, the accepted requests keep their latency;
  3. 4x without a cap (a cap far above the clients): everything queues.

Printed per phase: accepted/s, shed/s, p50 and p99 latency of accepted
requests, meetrd's peak RSS; and the ratios of phase 2 to phases 1 and 3.
Run: C{MEETR_TEST_CASSANDRA=127.0.0.1:19042 .venv/bin/python bench/overload.py}.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import daemonSettingsFor, nodeAddress  # noqa: E402
from tests.support import Daemon  # noqa: E402


def client(port: int, seconds: float, batch: int, seed: int,
           results: "multiprocessing.Queue[list[tuple[int, float]]]") -> None:
    """
    Post batches until C{seconds} have passed; report (status, latency).
    """
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    answers: list[tuple[int, float]] = []
    base = 1_600_000_000_000 + seed * 10_000_000
    sent = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        body = json.dumps([
            {"metric_id": f"overload.m{i % 20}", "ts": base + sent + i,
             "value": i, "tags": {"client": str(seed)}}
            for i in range(batch)]).encode()
        sent += batch
        started = time.monotonic()
        try:
            connection.request("POST", "/1.0/metrics", body,
                               {"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            answers.append((response.status, time.monotonic() - started))
        except (OSError, http.client.HTTPException):
            answers.append((0, time.monotonic() - started))
            connection.close()
            time.sleep(0.05)
    results.put(answers)


def peakRSS(pid: int) -> int:
    """
    The process's peak resident set, in KiB.
    """
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def phase(tmp: Path, node: tuple[str, int], cap: int, clients: int,
          seconds: float, batch: int) -> dict[str, float]:
    """
    One daemon, one load; the figures of the phase.
    """
    keyspace = "meetr_bench_overload"
    settings = daemonSettingsFor(keyspace, node)
    settings["http"] = {"max_writes_in_flight": cap}
    daemon = Daemon(tmp / f"cap{cap}-c{clients}-{uuid.uuid4().hex[:6]}",
                    settings).start().waitReady()
    try:
        results: multiprocessing.Queue = multiprocessing.Queue()
        workers = [multiprocessing.Process(
            target=client, args=(daemon.port, seconds, batch, i, results))
            for i in range(clients)]
        for worker in workers:
            worker.start()
        answers = [a for _ in workers for a in results.get(timeout=seconds
                                                             + 120)]
        for worker in workers:
            worker.join()
        rss = peakRSS(daemon.process.pid)
    finally:
        daemon.stop()
    accepted = sorted(l for s, l in answers if s == 200)
    shed = [l for s, l in answers if s == 503]
    errors = [s for s, _ in answers if s not in (200, 503)]

    def pct(values: list[float], share: float) -> float:
        return values[min(len(values) - 1, int(len(values) * share))] \
            if values else float("nan")

    return {"cap": cap, "clients": clients,
            "accepted_s": len(accepted) / seconds,
            "shed_s": len(shed) / seconds, "errors": len(errors),
            "p50": pct(accepted, 0.5), "p99": pct(accepted, 0.99),
            "shed_p99": pct(sorted(shed), 0.99), "rss_mib": rss / 1024}


def main(argv: list[str]) -> int:
    """
    Run the three phases and print the table and the ratios.
    """
    parser = argparse.ArgumentParser()
    parser.add_argument("--cap", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args(argv)
    node = nodeAddress()
    tmp = ROOT / ".run" / "bench-overload"
    tmp.mkdir(parents=True, exist_ok=True)
    phases = [
        ("capacity", phase(tmp, node, args.cap, args.cap, args.seconds,
                           args.batch)),
        ("4x, capped", phase(tmp, node, args.cap, 4 * args.cap, args.seconds,
                             args.batch)),
        ("4x, uncapped", phase(tmp, node, 100_000, 4 * args.cap,
                               args.seconds, args.batch)),
    ]
    print(f"{'phase':14} {'cap':>6} {'clients':>7} {'accepted/s':>10} "
          f"{'shed/s':>8} {'p50 s':>7} {'p99 s':>7} {'shed p99':>8} "
          f"{'peak RSS MiB':>12} {'errors':>6}")
    for name, r in phases:
        print(f"{name:14} {r['cap']:>6} {r['clients']:>7} "
              f"{r['accepted_s']:>10.1f} {r['shed_s']:>8.1f} {r['p50']:>7.3f} "
              f"{r['p99']:>7.3f} {r['shed_p99']:>8.4f} {r['rss_mib']:>12.1f} "
              f"{r['errors']:>6}")
    base, capped, uncapped = (r for _, r in phases)
    print(f"4x capped / capacity: accepted/s {capped['accepted_s'] / base['accepted_s']:.2f}, "
          f"p99 {capped['p99'] / base['p99']:.2f}")
    print(f"4x capped / 4x uncapped: p99 {capped['p99'] / uncapped['p99']:.2f}, "
          f"peak RSS {capped['rss_mib'] / uncapped['rss_mib']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
