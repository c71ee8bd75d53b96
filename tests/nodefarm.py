"""
Many hunted nodes in one separate process: C{python -m tests.nodefarm
--count N [--samples K] [--format prometheus|json]} listens on N loopback
ports and prints them as a JSON list on its first line of output.  Each
answers every path with a page of K samples whose values change with
every request.
"""

from __future__ import annotations

import argparse
import json
import sys

from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import Site


class FarmPage(Resource):
    """
    A Prometheus text or JSON page of C{samples} samples.
    """

    isLeaf = True

    def __init__(self, samples: int, format: str) -> None:
        super().__init__()
        self.samples = samples
        self.format = format
        self.hits = 0

    def render_GET(self, request: object) -> bytes:
        self.hits += 1
        if self.format == "json":
            request.setHeader(b"content-type", b"application/json")
            return json.dumps({f"farm.value{i}": self.hits + i
                               for i in range(self.samples)}).encode()
        request.setHeader(b"content-type", b"text/plain; version=0.0.4")
        lines = ["# HELP farm_requests_total Requests.",
                 "# TYPE farm_requests_total counter"]
        families = max(1, self.samples // 10)
        for i in range(self.samples):
            lines.append(f'farm_metric_{i % families}{{instance="x",'
                         f'slot="{i}"}} {self.hits + i}')
        return ("\n".join(lines) + "\n").encode()


def main(argv: list[str]) -> int:
    """
    Listen, print the ports, serve until killed.
    """
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--format", default="prometheus",
                        choices=("prometheus", "json"))
    args = parser.parse_args(argv)
    site = Site(FarmPage(args.samples, args.format))
    site.noisy = False
    ports = [reactor.listenTCP(0, site, interface="127.0.0.1").getHost().port
             for _ in range(args.count)]
    sys.stdout.write(json.dumps(ports) + "\n")
    sys.stdout.flush()
    reactor.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
