"""
Real programs that tests talk to, built from the Go module proxy with
C{go install} into C{.cache/peers} (kept between runs: a build is done
once per version).

Run as C{python -m tests.peers NAME...} to build them ahead of the tests
(C{make test} does).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache" / "peers"
# name: (package, version).  Pinned: a test's expectations are those of
# this version.
PEERS = {
    "vmagent": ("github.com/VictoriaMetrics/VictoriaMetrics/app/vmagent",
                "v1.151.0"),
    "prometheus": ("github.com/prometheus/prometheus/cmd/prometheus",
                   "v0.316.0"),
}
BUILD_TIMEOUT = 1800


def peer(name: str) -> Path:
    """
    The path of the peer program C{name}, built first if it is not yet.
    """
    package, version = PEERS[name]
    folder = CACHE / f"{name}-{version}"
    binary = folder / name
    if binary.exists():
        return binary
    folder.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, GOBIN=str(folder), GOFLAGS="-mod=mod")
    print(f"peers: building {name} {version} with go install (once)",
          file=sys.stderr, flush=True)
    done = subprocess.run(["go", "install", f"{package}@{version}"],
                          env=env, cwd=folder, capture_output=True,
                          text=True, timeout=BUILD_TIMEOUT)
    if done.returncode != 0 or not binary.exists():
        raise RuntimeError(f"go install {package}@{version} failed "
                           f"({done.returncode}):\n{done.stderr[-4000:]}")
    return binary


if __name__ == "__main__":
    for wanted in sys.argv[1:] or list(PEERS):
        print(peer(wanted))
