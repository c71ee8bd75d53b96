"""
What the integration tests share: the Cassandra node named by
C{MEETR_TEST_CASSANDRA}, a plain driver session to look into it, and a
real C{twistd -n meetr} process.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

REPO = Path(__file__).resolve().parent.parent
TWISTD = Path(sys.executable).with_name("twistd")


def waitFor(check: Callable[[], Any], timeout: float, what: str,
            interval: float = 0.1) -> Any:
    """
    Call C{check} every C{interval} seconds until it gives something true,
    and give that; fail naming C{what} when C{timeout} seconds pass first.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(interval)


def nodeAddress() -> tuple[str, int] | None:
    """
    The test node's address, or C{None} when none is named.
    """
    node = os.environ.get("MEETR_TEST_CASSANDRA")
    if not node:
        return None
    host, _, port = node.rpartition(":")
    return host, int(port)


def uniqueKeyspace(prefix: str = "t") -> str:
    """
    A fresh keyspace name for one test or module.
    """
    return f"meetr_{prefix}_{uuid.uuid4().hex[:12]}"


def storeSettings(node: tuple[str, int], keyspace: str) -> Any:
    """
    The Cassandra settings of a store on C{keyspace} at the test node,
    reading and writing at consistency ONE.
    """
    from meetrd.settings import settingsFromMapping

    return settingsFromMapping({"cassandra": {
        "contact_points": [node[0]], "port": node[1], "keyspace": keyspace,
        "consistency": {"read": "ONE", "write": "ONE"}}}, "test").cassandra


def recordShapedPlans(monkeypatch: Any) -> list[bool]:
    """
    Whether each write the store plans from now on was planned from a
    shape (C{WritePlan.shaped}), in order; the test's C{monkeypatch} puts
    the store's planner back afterwards.
    """
    import meetrd.store

    shaped: list[bool] = []
    plain = meetrd.store.planWrite

    def recording(*args: Any, **kwargs: Any) -> Any:
        plan = plain(*args, **kwargs)
        shaped.append(plan.shaped)
        return plan

    monkeypatch.setattr(meetrd.store, "planWrite", recording)
    return shaped


def daemonSettings(keyspace: str, node: tuple[str, int], **extra: Any
                   ) -> dict[str, Any]:
    """
    Settings for a daemon under test: loopback, a port chosen by the
    kernel, the test node, the given keyspace.
    """
    settings: dict[str, Any] = {
        "listen": "tcp:0:interface=127.0.0.1",
        "cassandra": {
            "contact_points": [node[0]],
            "port": node[1],
            "keyspace": keyspace,
            "consistency": {"read": "ONE", "write": "ONE"},
            "connect_timeout": "2s",
            "request_timeout": "5s",
        },
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(settings.get(key), dict):
            settings[key] = {**settings[key], **value}
        else:
            settings[key] = value
    return settings


@dataclass
class Reply:
    """
    An HTTP answer.
    """

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """
        The body as JSON.
        """
        return json.loads(self.body)


def http(method: str, url: str, body: bytes | None = None,
         headers: dict[str, str] | None = None, timeout: float = 30.0
         ) -> Reply:
    """
    One HTTP request with the standard library; errors are answers too.
    """
    request = urllib.request.Request(url, data=body, method=method,
                                     headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Reply(response.status,
                         {k.lower(): v for k, v in response.headers.items()},
                         response.read())
    except urllib.error.HTTPError as e:
        return Reply(e.code, {k.lower(): v for k, v in e.headers.items()},
                     e.read())


def form(fields: dict[str, Any] | list[tuple[str, Any]]) -> bytes:
    """
    A URL-encoded form body.
    """
    return urllib.parse.urlencode(fields, doseq=True).encode("ascii")


# twistd with another tree's code: that tree first on the path and this
# one off it (the virtualenv's editable install puts it there), so that
# twistd finds that tree's plugin and package only.
_TREE_TWISTD = """
import sys
sys.path = [{tree!r}] + [p for p in sys.path
                         if p and p.rstrip("/") != {repo!r}]
sys.argv = ["twistd"] + sys.argv[1:]
from twisted.scripts.twistd import run
run()
"""


class Daemon:
    """
    A real C{twistd -n meetr} process.
    """

    def __init__(self, workdir: Path, settings: dict[str, Any] | None = None,
                 configText: str | None = None,
                 args: tuple[str, ...] = (), tree: Path | None = None) -> None:
        """
        @param tree: another checkout of meetrd (an older commit's
            worktree, for a benchmark) whose code the process runs
            instead of this one's.
        """
        self.tree = tree
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "meetr.yaml"
        if configText is None:
            configText = yaml.safe_dump(settings or {})
        self.config.write_text(configText)
        self.args = args
        self.process: subprocess.Popen[bytes] | None = None
        self.logPath = workdir / "twistd.log"
        self.port: int | None = None

    @property
    def base(self) -> str:
        """
        The API's base URL.
        """
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Daemon":
        """
        Start the process; return once it listens.
        """
        env = dict(os.environ, PYTHONPATH=str(self.tree or REPO))
        command = [str(TWISTD)]
        if self.tree is not None:
            command = [sys.executable, "-c", _TREE_TWISTD.format(
                tree=str(self.tree), repo=str(REPO))]
        self._log = open(self.logPath, "ab")
        self.process = subprocess.Popen(
            [*command, "--pidfile=", "-n", "meetr", "-c", str(self.config),
             *self.args],
            cwd=self.workdir, env=env, stdout=self._log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return self._waitListening()

    def _waitListening(self) -> "Daemon":
        """
        Wait until the started process says on which port it listens.
        """
        assert self.process is not None
        deadline = time.monotonic() + 60
        offset = self.logPath.stat().st_size if self.port else 0
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"twistd exited {self.process.returncode}"
                                     f":\n{self.log()}")
            match = re.search(r"MeetrSite(?: \(TLS\))? starting on (\d+)",
                              self.log()[offset:])
            if match:
                self.port = int(match.group(1))
                return self
            time.sleep(0.1)
        raise AssertionError(f"twistd did not listen in 60s:\n{self.log()}")

    def waitReady(self, timeout: float = 60.0) -> "Daemon":
        """
        Wait until C{/ready} answers 200.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.get("/ready").status == 200:
                return self
            time.sleep(0.2)
        raise AssertionError(f"not ready in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        """
        What the process logged so far.
        """
        return self.logPath.read_text(errors="replace")

    def get(self, path: str, **params: Any) -> Reply:
        """
        A GET of C{path} with query parameters.
        """
        query = urllib.parse.urlencode(params, doseq=True)
        return http("GET", self.base + path + ("?" + query if query else ""))

    def post(self, path: str, body: bytes, contentType: str =
             "application/x-www-form-urlencoded",
             headers: dict[str, str] | None = None) -> Reply:
        """
        A POST of C{body} to C{path}.
        """
        return http("POST", self.base + path, body,
                    {"Content-Type": contentType, **(headers or {})})

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """
        Send C{sig} and wait for the exit (SIGKILL after C{timeout}).
        """
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


def runTwistd(config: Path, *args: str, timeout: float = 60.0
              ) -> subprocess.CompletedProcess[str]:
    """
    Run C{twistd -n meetr} expecting it to exit by itself.
    """
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [str(TWISTD), "--pidfile=", "-n", "meetr", "-c", str(config), *args],
        cwd=config.parent, env=env, capture_output=True, text=True,
        timeout=timeout, stdin=subprocess.DEVNULL)


def pageHandler(body: bytes | Callable[[], bytes]
                ) -> type[BaseHTTPRequestHandler]:
    """
    A request handler for a loopback node that answers every GET with
    C{body} (or what C{body()} gives at each request) as a Prometheus
    text page, and logs nothing.
    """

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            page = body() if callable(body) else body
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args: Any) -> None:
            pass

    return Page


@contextlib.contextmanager
def nodeFarm(count: int, samples: int, format: str = "prometheus"
             ) -> Iterator[list[str]]:
    """
    C{count} hunted loopback nodes served by a process of their own
    (L{tests.nodefarm}), so that serving them competes with nothing of
    the test's: their addresses; the process is ended by its PID.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.nodefarm", "--count", str(count),
         "--samples", str(samples), "--format", format],
        cwd=REPO, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
        env=dict(os.environ, PYTHONPATH=str(REPO)), text=True)
    try:
        ports = json.loads(process.stdout.readline())
        yield [f"127.0.0.1:{port}" for port in ports]
    finally:
        process.kill()
        process.wait()
