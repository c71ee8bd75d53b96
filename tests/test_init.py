"""
The init files: the LSB init script run for real (two instances against
the test node, with a temporary sysconfig, pid and log folders), its
command lines, its care with pid files, the systemd launcher and unit,
the shipped sysconfig and the HAProxy example.
"""

from __future__ import annotations

import getpass
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from tests.support import REPO, TWISTD, daemonSettings, http, waitFor

INIT = REPO / "init" / "meetr"
INSTANCES = REPO / "init" / "meetr-instances"
UNIT = REPO / "init" / "meetr@.service"
SYSCONFIG = REPO / "init" / "meetr.sysconfig"
HAPROXY = REPO / "etc" / "haproxy" / "meetr.cfg"

def freePorts(count: int) -> int:
    """
    The first of C{count} consecutive ports free on the loopback.
    """
    for _ in range(200):
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        first = probe.getsockname()[1]
        probe.close()
        if first + count > 65535:
            continue
        held = []
        try:
            for port in range(first, first + count):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise AssertionError(f"no {count} consecutive free ports")


def alive(pid: int) -> bool:
    """
    Whether process C{pid} exists and is not a zombie.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def cmdline(pid: int) -> list[str]:
    """
    The arguments of process C{pid}.
    """
    raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    return [a.decode() for a in raw.split(b"\0") if a]


def option(args: list[str], name: str) -> str:
    """
    The value after C{name} in C{args}.
    """
    return args[args.index(name) + 1]


class Instances:
    """
    A temporary sysconfig for the init script, its folders, and every pid
    it ever started, to be killed by pid at the end.
    """

    def __init__(self, root: Path, count: int, config: Path | None = None,
                 **extra: Any) -> None:
        self.root = root
        self.count = count
        self.first = freePorts(count)
        self.ports = list(range(self.first, self.first + count))
        self.pidDir = root / "run"
        self.logDir = root / "log"
        self.sysconfig = root / "sysconfig"
        root.mkdir(parents=True, exist_ok=True)
        settings = {
            "MEETR_INSTANCES": count,
            "MEETR_FIRST_PORT": self.first,
            "MEETR_LISTEN_INTERFACE": "127.0.0.1",
            "MEETR_CONFIG": config or root / "meetr.yaml",
            "MEETR_USER": getpass.getuser(),
            "MEETR_LOG_DIR": self.logDir,
            "MEETR_PID_DIR": self.pidDir,
            "MEETR_TWISTD": TWISTD,
            "MEETR_START_TIMEOUT": 60,
            "MEETR_STOP_TIMEOUT": 60,
            "PYTHONPATH": REPO,
            **extra,
        }
        self.sysconfig.write_text("".join(
            f'{k}="{v}"\n' for k, v in settings.items()))
        self.seen: set[int] = set()

    def run(self, *args: str, timeout: float = 180
            ) -> subprocess.CompletedProcess[str]:
        """
        Run the init script; remember the pids it leaves behind.
        """
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "MEETR_SYSCONFIG": str(self.sysconfig)}
        result = subprocess.run([str(INIT), *args], env=env,
                                capture_output=True, text=True,
                                timeout=timeout, stdin=subprocess.DEVNULL)
        self.seen.update(p for p in self.pids().values())
        return result

    def pidFile(self, port: int) -> Path:
        """
        The pid file of the instance on C{port}.
        """
        return self.pidDir / f"meetr-{port}.pid"

    def logFile(self, port: int) -> Path:
        """
        The log file of the instance on C{port}.
        """
        return self.logDir / f"meetr-{port}.log"

    def pids(self) -> dict[int, int]:
        """
        The pid in each pid file, by port.
        """
        found = {}
        for port in self.ports:
            try:
                found[port] = int(self.pidFile(port).read_text().strip())
            except (OSError, ValueError):
                pass
        return found

    def logs(self) -> str:
        """
        Every instance's log, for assertion messages.
        """
        return "\n".join(f"--- {p}:\n{p.read_text(errors='replace')}"
                         for p in sorted(self.logDir.glob("*.log*")))

    def cleanUp(self) -> None:
        """
        SIGKILL every pid started here that still runs.
        """
        for pid in self.seen:
            try:
                if alive(pid) and str(self.pidDir) in " ".join(cmdline(pid)):
                    os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


@pytest.fixture
def instances(tmp_path: Path, node: tuple[str, int], keyspace: str
              ) -> Iterator[Instances]:
    """
    Two instances of the init script against the test node, in a fresh
    keyspace, consistency ONE.
    """
    config = tmp_path / "meetr.yaml"
    config.write_text(yaml.safe_dump(daemonSettings(keyspace, node)))
    group = Instances(tmp_path, 2, config)
    try:
        yield group
    finally:
        group.cleanUp()


def waitGone(pid: int, timeout: float = 10) -> bool:
    """
    Whether C{pid} ends within C{timeout}.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.1)
    return False


@pytest.mark.cassandra
@pytest.mark.daemon
def test_lifecycle(instances: Instances) -> None:
    """start, status, start again, reload, stop and status keep the LSB exit codes and the processes they promise."""
    started = instances.run("start")
    assert started.returncode == 0, started.stdout + started.stderr
    pids = instances.pids()
    assert set(pids) == set(instances.ports)
    for port, pid in pids.items():
        assert f"{port}: started (pid {pid})" in started.stdout
        assert alive(pid)

    status = instances.run("status")
    assert status.returncode == 0, status.stdout
    for port, pid in pids.items():
        assert f"meetr {port}: running (pid {pid})" in status.stdout

    for port in instances.ports:
        deadline = time.monotonic() + 60
        while http("GET", f"http://127.0.0.1:{port}/ready").status != 200:
            assert time.monotonic() < deadline, instances.logs()
            time.sleep(0.2)

    args = {port: cmdline(pid) for port, pid in pids.items()}
    names = {port: f"{os.uname().nodename}:{port}" for port in pids}
    for port, a in args.items():
        # The instances share the hunt by themselves, each under a name
        # that outlives its restarts; they find each other in Cassandra.
        assert option(a, "--instance") == names[port]
        assert "--shard-index" not in a and "--shard-count" not in a
        waitFor(lambda: sorted(http("GET", f"http://127.0.0.1:{port}"
                                    "/targets").json()["members"]) ==
                sorted(names.values()), 30, "the members")
        assert http("GET", f"http://127.0.0.1:{port}/targets").json()[
            "instance"] == names[port]
        assert option(a, "--listen") == f"tcp:{port}:interface=127.0.0.1"
        assert f"--pidfile={instances.pidFile(port)}" in a
        assert f"--logfile={instances.logFile(port)}" in a

    again = instances.run("start")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already running" in again.stdout
    assert instances.pids() == pids

    reloaded = instances.run("reload")
    assert reloaded.returncode == 0, reloaded.stdout + reloaded.stderr
    waitFor(lambda: instances.logs().count("SIGHUP: reloading") >=
            len(instances.ports), 30, "every instance reloading")
    assert instances.pids() == pids
    assert all(alive(pid) for pid in pids.values())
    for port in instances.ports:
        assert http("GET", f"http://127.0.0.1:{port}/health").status == 200

    stopped = instances.run("stop")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    for pid in pids.values():
        assert not alive(pid)
    assert not any(instances.pidFile(p).exists() for p in instances.ports)

    after = instances.run("status")
    assert after.returncode == 3, after.stdout
    assert instances.run("stop").returncode == 0


@pytest.mark.cassandra
@pytest.mark.daemon
def test_killedInstance(instances: Instances) -> None:
    """A SIGKILLed instance makes status exit 1, and start brings back only that one."""
    started = instances.run("start")
    assert started.returncode == 0, started.stdout + started.stderr
    pids = instances.pids()
    victim, survivor = instances.ports
    os.kill(pids[victim], signal.SIGKILL)
    assert waitGone(pids[victim])

    status = instances.run("status")
    assert status.returncode == 1, status.stdout
    assert f"meetr {victim}: dead" in status.stdout
    assert f"meetr {survivor}: running (pid {pids[survivor]})" in \
        status.stdout

    restarted = instances.run("start")
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    fresh = instances.pids()
    assert fresh[survivor] == pids[survivor]
    assert fresh[victim] != pids[victim] and alive(fresh[victim])
    assert instances.run("status").returncode == 0

    assert instances.run("stop").returncode == 0
    assert not any(alive(pid) for pid in fresh.values())


@pytest.mark.daemon
def test_startFailureShowsLog(tmp_path: Path) -> None:
    """start exits 1 and shows the end of the instance's log when its port is taken."""
    config = tmp_path / "meetr.yaml"
    config.write_text(yaml.safe_dump(daemonSettings("meetr_unused",
                                                    ("127.0.0.1", 1))))
    group = Instances(tmp_path, 1, config, MEETR_START_TIMEOUT=20)
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", group.first))
    blocker.listen()
    try:
        result = group.run("start")
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"meetr {group.first}: twistd failed" in result.stderr, \
            result.stderr
        assert "last lines of" in result.stderr, result.stderr
        assert f"Couldn't listen on 127.0.0.1:{group.first}" in \
            result.stderr, result.stderr
        assert group.run("status").returncode == 3
    finally:
        blocker.close()
        group.cleanUp()


def test_commandsShareTheHuntByThemselves(tmp_path: Path) -> None:
    """By default each rendered command line names its instance (host and port) for the members sharing the hunt, and gives no fixed shard."""
    group = Instances(tmp_path, 3, MEETR_OPTS="--help-never-mind")
    result = group.run("commands")
    assert result.returncode == 0, result.stderr
    lines = [shlex.split(line) for line in result.stdout.splitlines()]
    assert [option(args, "--instance") for args in lines] == [
        f"{os.uname().nodename}:{port}" for port in group.ports]
    for args in lines:
        assert "--shard-index" not in args and "--shard-count" not in args
        assert args[-1] == "--help-never-mind"
    bad = Instances(tmp_path / "bad", 1, MEETR_SHARD="static")
    refused = bad.run("commands")
    assert refused.returncode == 6
    assert "MEETR_SHARD must be auto or fixed: 'static'" in refused.stderr


def test_commandsShareTheTargets(tmp_path: Path) -> None:
    """With MEETR_SHARD=fixed, each rendered command line has its own port, pid file, log file and --shard-index, and the same --shard-count."""
    group = Instances(tmp_path, 4, MEETR_TWISTD_OPTS="--umask=0027",
                      MEETR_OPTS="--help-never-mind", MEETR_SHARD="fixed")
    result = group.run("commands")
    assert result.returncode == 0, result.stderr
    lines = [shlex.split(line) for line in result.stdout.splitlines()]
    assert len(lines) == 4
    for index, (port, args) in enumerate(zip(group.ports, lines)):
        assert args[0] == str(TWISTD)
        assert args[1:4] == [f"--pidfile={group.pidFile(port)}",
                             f"--logfile={group.logFile(port)}",
                             "--umask=0027"]
        assert args[4] == "meetr"
        assert option(args, "--listen") == f"tcp:{port}:interface=127.0.0.1"
        assert option(args, "--shard-index") == str(index)
        assert option(args, "--shard-count") == "4"
        assert args[-1] == "--help-never-mind"
    assert len({option(a, "--shard-index") for a in lines}) == 4


def test_ipv6InterfaceIsEscaped(tmp_path: Path) -> None:
    """An IPv6 listen interface reaches Twisted with its colons escaped."""
    group = Instances(tmp_path, 1, MEETR_LISTEN_INTERFACE="::1")
    args = shlex.split(group.run("commands").stdout)
    assert option(args, "--listen") == f"tcp:{group.first}:interface=\\:\\:1"


FAKE_TWISTD = """\
#!/bin/sh
# A stand-in for twistd that daemonizes, writes its pid file and ignores
# SIGTERM.
for a; do case $a in --pidfile=*) pf=${a#--pidfile=};; esac; done
if [ "${FAKE_CHILD:-}" != 1 ]; then
    FAKE_CHILD=1 "$0" "$@" </dev/null >/dev/null 2>&1 &
    while [ ! -s "$pf" ]; do sleep 0.1; done
    exit 0
fi
trap '' TERM
echo $$ > "$pf"
while :; do sleep 1; done
"""


def test_stopEscalatesToSigkill(tmp_path: Path) -> None:
    """stop sends SIGKILL once MEETR_STOP_TIMEOUT has passed after SIGTERM, and still exits 0."""
    fake = tmp_path / "bin" / "twistd"
    fake.parent.mkdir()
    fake.write_text(FAKE_TWISTD)
    fake.chmod(0o755)
    group = Instances(tmp_path, 2, tmp_path / "meetr.yaml",
                      MEETR_TWISTD=fake, MEETR_START_CHECK="",
                      MEETR_STOP_TIMEOUT=2)
    (tmp_path / "meetr.yaml").write_text("{}\n")
    try:
        assert group.run("start").returncode == 0
        pids = group.pids()
        assert len(pids) == 2 and all(alive(p) for p in pids.values())
        assert group.run("status").returncode == 0
        began = time.monotonic()
        result = group.run("stop")
        assert result.returncode == 0, result.stdout + result.stderr
        assert time.monotonic() - began >= 2
        assert "sending SIGKILL" in result.stderr
        assert not any(alive(p) for p in pids.values())
        assert not any(group.pidFile(p).exists() for p in group.ports)
        assert group.run("status").returncode == 3
    finally:
        group.cleanUp()


def test_foreignPidIsNotSignalled(tmp_path: Path) -> None:
    """A pid file naming a process that is not a twistd meetr is reported stale and the process is left alone."""
    group = Instances(tmp_path, 1, MEETR_STOP_TIMEOUT=1)
    stranger = subprocess.Popen(["sleep", "300"])
    try:
        group.pidDir.mkdir()
        group.pidFile(group.first).write_text(f"{stranger.pid}\n")
        status = group.run("status")
        assert status.returncode == 1, status.stdout
        assert "dead, but the pid file" in status.stdout
        assert group.run("reload").returncode == 7
        result = group.run("stop")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "stale pid file" in result.stdout
        assert stranger.poll() is None
        assert not group.pidFile(group.first).exists()
        assert group.run("status").returncode == 3
    finally:
        stranger.kill()
        stranger.wait()


def test_badSettingsAndActions(tmp_path: Path) -> None:
    """An unknown action exits 2, a bad or missing sysconfig 6 (4 for status), a missing twistd 5."""
    group = Instances(tmp_path, 1)
    assert group.run("frobnicate").returncode == 2
    group.sysconfig.write_text(group.sysconfig.read_text() +
                               'MEETR_INSTANCES="two"\n')
    assert group.run("start").returncode == 6
    assert group.run("status").returncode == 4
    group = Instances(tmp_path / "b", 1,
                      MEETR_TWISTD=tmp_path / "no" / "twistd")
    assert group.run("start").returncode == 5
    env = {"PATH": os.environ["PATH"],
           "MEETR_SYSCONFIG": str(tmp_path / "none")}
    for action, code in (("start", 6), ("status", 4)):
        missing = subprocess.run([str(INIT), action], capture_output=True,
                                 env=env)
        assert missing.returncode == code


def test_shippedSysconfig(tmp_path: Path) -> None:
    """The shipped sysconfig documents every variable the scripts read, and its values are the scripts' defaults."""
    text = SYSCONFIG.read_text()
    used = set(re.findall(r"\bMEETR_[A-Z_]+\b",
                          INIT.read_text() + INSTANCES.read_text() +
                          (INIT.parent / "meetr-functions").read_text()))
    # Where the scripts find their files: the environment's, not settings.
    used -= {"MEETR_SYSCONFIG", "MEETR_FUNCTIONS"}
    lines = text.splitlines()
    for name in sorted(used):
        index = next((i for i, line in enumerate(lines)
                      if line.startswith(name + "=")), None)
        assert index is not None, f"{name} is not in the sysconfig"
        block = lines[:index]
        while block and block[-1].startswith("MEETR_"):
            block.pop()
        assert block and block[-1].startswith("#"), \
            f"{name} has no comment"
    empty = tmp_path / "empty"
    empty.write_text("")
    env = {"PATH": os.environ["PATH"]}
    shipped = subprocess.run([str(INIT), "commands"], capture_output=True,
                             text=True, env={**env, "MEETR_SYSCONFIG":
                                             str(SYSCONFIG)})
    defaults = subprocess.run([str(INIT), "commands"], capture_output=True,
                              text=True, env={**env, "MEETR_SYSCONFIG":
                                              str(empty)})
    assert shipped.returncode == 0, shipped.stderr
    assert shipped.stdout == defaults.stdout
    assert len(shipped.stdout.splitlines()) == 4
    units = subprocess.run([str(INSTANCES), "units"], capture_output=True,
                           text=True, env={**env, "MEETR_SYSCONFIG":
                                           str(SYSCONFIG)})
    assert units.stdout.split() == [f"meetr@{p}.service"
                                    for p in range(8881, 8885)]


def test_systemdAndInitAgree(tmp_path: Path) -> None:
    """meetr@PORT runs the same listen and shard options as the init script's instance on PORT, in the foreground, and refuses other ports."""
    group = Instances(tmp_path, 3, MEETR_OPTS="--shard-count-is-not-this")
    init = [shlex.split(line)
            for line in group.run("commands").stdout.splitlines()]
    env = {"PATH": os.environ["PATH"],
           "MEETR_SYSCONFIG": str(group.sysconfig)}
    for port, initArgs in zip(group.ports, init):
        result = subprocess.run([str(INSTANCES), "command", str(port)],
                                capture_output=True, text=True, env=env)
        assert result.returncode == 0, result.stderr
        unitArgs = shlex.split(result.stdout)
        assert unitArgs[:4] == [str(TWISTD), "-n", "--pidfile=",
                                "--logfile=-"]
        assert unitArgs[unitArgs.index("meetr"):] == \
            initArgs[initArgs.index("meetr"):]
    for port in (group.first - 1, group.first + 3):
        result = subprocess.run([str(INSTANCES), "command", str(port)],
                                capture_output=True, text=True, env=env)
        assert result.returncode == 78
        assert "not one of the 3 instance ports" in result.stderr
    plan = subprocess.run([str(INSTANCES), "enable", "--now"],
                          capture_output=True, text=True,
                          env={**env, "SYSTEMCTL": "echo systemctl"})
    assert plan.stdout.split() == ["systemctl", "enable", "--now",
                                   *(f"meetr@{p}.service"
                                     for p in group.ports)]


@pytest.mark.cassandra
@pytest.mark.daemon
def test_systemdLauncher(tmp_path: Path, node: tuple[str, int],
                         keyspace: str) -> None:
    """meetr-instances exec becomes twistd itself (systemd's main pid): ready, survives SIGHUP, exits 0 on SIGTERM."""
    config = tmp_path / "meetr.yaml"
    config.write_text(yaml.safe_dump(daemonSettings(keyspace, node)))
    port = freePorts(1)
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO),
           "MEETR_INSTANCES": "3", "MEETR_FIRST_PORT": str(port - 2),
           "MEETR_CONFIG": str(config), "MEETR_TWISTD": str(TWISTD),
           "MEETR_LISTEN_INTERFACE": "127.0.0.1"}
    log = open(tmp_path / "journal.log", "wb")
    process = subprocess.Popen([str(INSTANCES), "exec", str(port)], env=env,
                               stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, cwd="/")
    try:
        journal = tmp_path / "journal.log"
        deadline = time.monotonic() + 60
        while not (_listening(port) and
                   http("GET", f"http://127.0.0.1:{port}/ready",
                        timeout=2).status == 200):
            assert process.poll() is None, journal.read_text()
            assert time.monotonic() < deadline, journal.read_text()
            time.sleep(0.2)
        args = cmdline(process.pid)
        assert any(a.endswith("twistd") for a in args)
        assert option(args, "--instance") == \
            f"{os.uname().nodename}:{port}"
        assert "--shard-index" not in args
        assert "--pidfile=" in args and "-n" in args
        process.send_signal(signal.SIGHUP)
        waitFor(lambda: "SIGHUP: reloading" in journal.read_text(), 30,
                "the reload in the journal")
        assert process.poll() is None, journal.read_text()
        assert http("GET", f"http://127.0.0.1:{port}/health").status == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, journal.read_text()
        assert "SIGHUP: reloading" in journal.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def test_systemdUnit(tmp_path: Path) -> None:
    """The template unit passes systemd-analyze verify and carries the reload, restart, stop and hardening settings."""
    text = UNIT.read_text()
    for line in ("ExecStart=/usr/local/sbin/meetr-instances exec %i",
                 "ExecReload=/bin/kill -HUP $MAINPID",
                 "EnvironmentFile=/etc/sysconfig/meetr",
                 "Restart=on-failure", "KillSignal=SIGTERM",
                 "TimeoutStopSec=45", "NoNewPrivileges=yes",
                 "ProtectSystem=strict", "ProtectHome=yes",
                 "PrivateTmp=yes"):
        assert line in text.splitlines(), line
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    unit = tmp_path / "meetr@.service"
    unit.write_text(text.replace("/usr/local/sbin/meetr-instances",
                                 str(INSTANCES)))
    (tmp_path / "meetr@8881.service").symlink_to(unit)
    result = subprocess.run([analyze, "verify",
                             str(tmp_path / "meetr@8881.service")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "meetr@.service" not in result.stderr, result.stderr


def test_scriptsPassShellcheck() -> None:
    """The init script and the systemd helper are clean POSIX sh for shellcheck."""
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed")
    for script in (INIT, INSTANCES):
        result = subprocess.run([shellcheck, "-s", "sh", str(script)],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stdout
    header = INIT.read_text()
    assert "### BEGIN INIT INFO" in header and "### END INIT INFO" in header


def test_haproxyExample(tmp_path: Path) -> None:
    """The HAProxy example balances the four default ports, checks GET /ready, and is valid for haproxy -c."""
    text = HAPROXY.read_text()
    assert "option httpchk GET /ready" in text
    servers = re.findall(r"^\s*server \S+ 127\.0\.0\.1:(\d+) check", text,
                         re.M)
    assert servers == ["8881", "8882", "8883", "8884"]
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        pytest.skip("haproxy is not installed")
    result = subprocess.run([haproxy, "-c", "-f", str(HAPROXY)],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
