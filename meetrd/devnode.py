"""
A real single Apache Cassandra node for development and tests.

The node is built only from Maven Central's C{org.apache.cassandra:cassandra-all}
jars, fetched with Maven, and run on the machine's JDK (17).  Everything lives
under one folder, C{MEETR_NODE_HOME} (default: C{.cassandra/} at the
repository root)::

    pom.xml             the throwaway pom used to fetch the jars
    lib/                the jars, plus C{.manifest} once a fetch completed
    conf/cassandra.yaml conf/logback.xml
    data/ logs/ node.pid

Usage::

    python -m meetrd.devnode start    # idempotent; last stdout line is host:port
    python -m meetrd.devnode status   # exit 0 if a node answers CQL, 3 if not
    python -m meetrd.devnode stop     # SIGTERM, then SIGKILL after a grace period

Settings come from the environment (see L{NodeSettings.fromEnvironment}).
Progress goes to stderr; only the contact point goes to stdout.

This module uses the standard library only; cassandra-driver is imported
lazily, for the readiness check.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence, TextIO

#: The newest 5.0.x release found on Maven Central when this was written.
DEFAULT_VERSION = "5.0.9"
DEFAULT_ADDRESS = "127.0.0.1"
#: Not 9042/7000, so a node a developer already runs is left alone.
DEFAULT_PORT = 19042
DEFAULT_STORAGE_PORT = 17000
DEFAULT_HEAP = "1g"
DEFAULT_START_TIMEOUT = 240.0
#: Seconds between SIGTERM and SIGKILL on C{stop}.
DEFAULT_STOP_GRACE = 30.0

CLUSTER_NAME = "meetr-dev"
MAIN_CLASS = "org.apache.cassandra.service.CassandraDaemon"
MAVEN_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
MANIFEST_NAME = ".manifest"
EXIT_NOT_RUNNING = 3

#: The module flags of Cassandra 5.0's C{conf/jvm17-server.options}.
JDK17_MODULE_FLAGS: tuple[str, ...] = tuple(
    f"--add-{kind}={target}=ALL-UNNAMED"
    for kind, target in (
        ("exports", "java.base/jdk.internal.misc"),
        ("exports", "java.management.rmi/com.sun.jmx.remote.internal.rmi"),
        ("exports", "java.rmi/sun.rmi.registry"),
        ("exports", "java.rmi/sun.rmi.server"),
        ("exports", "java.sql/java.sql"),
        ("exports", "java.base/java.lang.ref"),
        ("exports", "jdk.unsupported/sun.misc"),
        ("exports", "jdk.compiler/com.sun.tools.javac.file"),
        ("exports", "jdk.attach/sun.tools.attach"),
        ("opens", "java.base/java.lang.module"),
        ("opens", "java.base/jdk.internal.loader"),
        ("opens", "java.base/jdk.internal.ref"),
        ("opens", "java.base/jdk.internal.reflect"),
        ("opens", "java.base/jdk.internal.math"),
        ("opens", "java.base/jdk.internal.module"),
        ("opens", "java.base/jdk.internal.util.jar"),
        ("opens", "jdk.management/com.sun.management.internal"),
        ("opens", "java.base/sun.nio.ch"),
        ("opens", "java.base/java.io"),
        ("opens", "java.base/java.lang.reflect"),
        ("opens", "jdk.compiler/com.sun.tools.javac"),
        ("opens", "java.base/java.lang"),
        ("opens", "java.base/java.util"),
        ("opens", "java.base/java.nio"),
    )
)

#: System properties that make a lone test node start fast.
FAST_START_PROPERTIES: tuple[str, ...] = (
    "-Dcassandra.skip_wait_for_gossip_to_settle=0",
    "-Dcassandra.load_ring_state=false",
    "-Dcassandra.unsafesystem=true",
    "-Dcassandra.superuser_setup_delay_ms=0",
    "-Dchronicle.analytics.disable=true",
)


class DevNodeError(Exception):
    """
    A dev node could not be set up, started or stopped; the message says why.
    """


# --------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class NodeSettings:
    """
    Everything that decides where and how the dev node runs.

    @ivar home: the folder holding jars, config, data, logs and the pid file.
    @ivar address: the listen, RPC and contact address.
    @ivar port: the CQL native transport port.
    @ivar storage_port: the inter-node (gossip) port.
    @ivar version: the C{cassandra-all} version to fetch and run.
    @ivar heap: the JVM heap size, as C{-Xmx} takes it (C{512m}, C{1g}).
    @ivar start_timeout: seconds C{start} waits for CQL to answer.
    @ivar java_home: C{JAVA_HOME}, or C{None} to use C{java} on C{PATH}.
    @ivar path: the C{PATH} used to find C{java} and C{mvn}.
    @ivar stop_grace: seconds between SIGTERM and SIGKILL.
    @ivar client_tls: a folder holding C{node.pem} (the node's private key
        and certificate) for TLS on the CQL port, or C{None} for none.
    """

    home: Path
    address: str = DEFAULT_ADDRESS
    port: int = DEFAULT_PORT
    storage_port: int = DEFAULT_STORAGE_PORT
    version: str = DEFAULT_VERSION
    heap: str = DEFAULT_HEAP
    start_timeout: float = DEFAULT_START_TIMEOUT
    java_home: str | None = None
    path: str | None = None
    stop_grace: float = DEFAULT_STOP_GRACE
    client_tls: Path | None = None

    @classmethod
    def fromEnvironment(cls, environ: Mapping[str, str]) -> "NodeSettings":
        """
        Build settings from C{MEETR_NODE_*} variables, validating each.

        @raise DevNodeError: a variable has a value that cannot work.
        """
        home = environ.get("MEETR_NODE_HOME") or str(defaultHome())
        return cls(
            home=Path(home).expanduser().resolve(),
            address=parseAddress(environ.get("MEETR_NODE_ADDRESS", DEFAULT_ADDRESS)),
            port=parsePort("MEETR_NODE_PORT", environ.get("MEETR_NODE_PORT"), DEFAULT_PORT),
            storage_port=parsePort(
                "MEETR_NODE_STORAGE_PORT",
                environ.get("MEETR_NODE_STORAGE_PORT"),
                DEFAULT_STORAGE_PORT,
            ),
            version=parseVersion(environ.get("MEETR_NODE_VERSION") or DEFAULT_VERSION),
            heap=parseHeap(environ.get("MEETR_NODE_HEAP") or DEFAULT_HEAP),
            start_timeout=parseSeconds(
                "MEETR_NODE_START_TIMEOUT",
                environ.get("MEETR_NODE_START_TIMEOUT"),
                DEFAULT_START_TIMEOUT,
            ),
            java_home=environ.get("JAVA_HOME") or None,
            path=environ.get("PATH"),
            client_tls=(Path(environ["MEETR_NODE_CLIENT_TLS"]).resolve()
                        if environ.get("MEETR_NODE_CLIENT_TLS") else None),
        ).checked()

    def checked(self) -> "NodeSettings":
        """
        Return C{self} once the settings are consistent with each other.

        @raise DevNodeError: the native and storage ports are the same, or
            the home cannot be on a Java class path.
        """
        if os.pathsep in str(self.home):
            raise DevNodeError(f"MEETR_NODE_HOME={self.home} contains {os.pathsep!r}")
        if self.port == self.storage_port:
            raise DevNodeError(
                f"MEETR_NODE_PORT and MEETR_NODE_STORAGE_PORT are both {self.port}"
            )
        return self

    @property
    def contactPoint(self) -> str:
        """
        The C{host:port} clients connect to.
        """
        return f"{self.address}:{self.port}"

    @property
    def libDir(self) -> Path:
        """
        The folder of the node's jars.
        """
        return self.home / "lib"

    @property
    def confDir(self) -> Path:
        """
        The folder of C{cassandra.yaml} and C{logback.xml}.
        """
        return self.home / "conf"

    @property
    def dataDir(self) -> Path:
        """
        The folder of everything the node persists.
        """
        return self.home / "data"

    @property
    def logDir(self) -> Path:
        """
        The folder of the node's logs.
        """
        return self.home / "logs"

    @property
    def pidFile(self) -> Path:
        """
        The file holding the pid of the JVM C{start} launched.
        """
        return self.home / "node.pid"


def defaultHome() -> Path:
    """
    The default node home: C{.cassandra/} beside the C{meetrd} package.
    """
    return Path(__file__).resolve().parent.parent / ".cassandra"


def parseAddress(value: str) -> str:
    """
    Validate an IP address (host names are refused: Cassandra needs an IP).
    """
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise DevNodeError(f"MEETR_NODE_ADDRESS={value!r} is not an IP address")


def parsePort(name: str, value: str | None, default: int) -> int:
    """
    Validate a TCP port number, or return C{default} when unset or empty.
    """
    if not value:
        return default
    try:
        port = int(value)
    except ValueError:
        raise DevNodeError(f"{name}={value!r} is not a port number")
    if not 1 <= port <= 65535:
        raise DevNodeError(f"{name}={value!r} is not between 1 and 65535")
    return port


def parseSeconds(name: str, value: str | None, default: float) -> float:
    """
    Validate a positive number of seconds, or return C{default} when unset.
    """
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        raise DevNodeError(f"{name}={value!r} is not a number of seconds")
    if not seconds > 0:
        raise DevNodeError(f"{name}={value!r} must be positive")
    return seconds


def parseHeap(value: str) -> str:
    """
    Validate a JVM heap size such as C{512m} or C{1g}.
    """
    if not re.fullmatch(r"[1-9][0-9]*[mMgG]", value):
        raise DevNodeError(f"MEETR_NODE_HEAP={value!r}: expected a size like 512m or 1g")
    return value.lower()


def parseVersion(value: str) -> str:
    """
    Validate a Cassandra version (a dotted release, 5.0 or newer).
    """
    match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", value)
    if not match or (int(match.group(1)), int(match.group(2))) < (5, 0):
        raise DevNodeError(
            f"MEETR_NODE_VERSION={value!r}: expected a release like 5.0.9 "
            "(only 5.0 and newer run on JDK 17)"
        )
    return value


# --------------------------------------------------------------------------
# Rendering (pure)


def renderPom(version: str) -> str:
    """
    The throwaway pom whose only dependency is C{cassandra-all}.
    """
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by meetrd.devnode: the jars of a dev Cassandra node. -->
<project xmlns="http://maven.apache.org/POM/4.0.0"
         xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
         xsi:schemaLocation="http://maven.apache.org/POM/4.0.0 https://maven.apache.org/xsd/maven-4.0.0.xsd">
  <modelVersion>4.0.0</modelVersion>
  <groupId>meetr.dev</groupId>
  <artifactId>meetr-devnode-jars</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.cassandra</groupId>
      <artifactId>cassandra-all</artifactId>
      <version>{version}</version>
    </dependency>
  </dependencies>
</project>
"""


def yamlScalar(value: object) -> str:
    """
    Render a YAML scalar: booleans, numbers, or a double-quoted string.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def cassandraYamlValues(settings: NodeSettings) -> dict[str, object]:
    """
    The flat C{cassandra.yaml} entries of a single dev node.

    Every key is a field of Cassandra 5.0's C{org.apache.cassandra.config.Config}
    (5.0 refuses unknown keys).  Lists are rendered as YAML sequences.
    """
    data = settings.dataDir
    return {
        "cluster_name": CLUSTER_NAME,
        "num_tokens": 1,
        "initial_token": "0",
        "partitioner": "org.apache.cassandra.dht.Murmur3Partitioner",
        "endpoint_snitch": "SimpleSnitch",
        "listen_address": settings.address,
        "rpc_address": settings.address,
        "storage_port": settings.storage_port,
        "native_transport_port": settings.port,
        "start_native_transport": True,
        "auto_bootstrap": False,
        "auto_snapshot": False,
        "storage_compatibility_mode": "NONE",
        "data_file_directories": [str(data / "data")],
        "commitlog_directory": str(data / "commitlog"),
        "saved_caches_directory": str(data / "saved_caches"),
        "hints_directory": str(data / "hints"),
        "cdc_raw_directory": str(data / "cdc_raw"),
        "commitlog_sync": "periodic",
        "commitlog_sync_period": "10s",
        "concurrent_compactors": 1,
        "disk_failure_policy": "stop",
        "commit_failure_policy": "stop",
        "hinted_handoff_enabled": False,
        "dynamic_snitch": False,
    }


def renderCassandraYaml(settings: NodeSettings) -> str:
    """
    The node's C{cassandra.yaml}, from L{cassandraYamlValues} plus the seeds.
    """
    lines = ["# Written by meetrd.devnode on every start: edits are lost."]
    for key, value in cassandraYamlValues(settings).items():
        if isinstance(value, list):
            lines.append(f"{key}:")
            lines.extend(f"    - {yamlScalar(item)}" for item in value)
        else:
            lines.append(f"{key}: {yamlScalar(value)}")
    seed = f"{settings.address}:{settings.storage_port}"
    lines += [
        "seed_provider:",
        "    - class_name: org.apache.cassandra.locator.SimpleSeedProvider",
        "      parameters:",
        f"          - seeds: {yamlScalar(seed)}",
    ]
    if settings.client_tls is not None:
        lines += [
            "client_encryption_options:",
            "    enabled: true",
            "    optional: false",
            "    require_client_auth: false",
            f"    keystore: {yamlScalar(str(settings.client_tls / 'node.pem'))}",
            "    accepted_protocols: [TLSv1.2, TLSv1.3]",
            "    ssl_context_factory:",
            "        class_name: org.apache.cassandra.security."
            "PEMBasedSslContextFactory",
        ]
    return "\n".join(lines) + "\n"


def renderLogbackXml(settings: NodeSettings) -> str:
    """
    A logback config: INFO to a size-rotated C{logs/system.log}, WARN to stdout.
    """
    log = settings.logDir / "system.log"
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by meetrd.devnode on every start: edits are lost. -->
<configuration scan="false">
  <appender name="FILE" class="ch.qos.logback.core.rolling.RollingFileAppender">
    <file>{log}</file>
    <rollingPolicy class="ch.qos.logback.core.rolling.FixedWindowRollingPolicy">
      <fileNamePattern>{log}.%i.zip</fileNamePattern>
      <minIndex>1</minIndex>
      <maxIndex>3</maxIndex>
    </rollingPolicy>
    <triggeringPolicy class="ch.qos.logback.core.rolling.SizeBasedTriggeringPolicy">
      <maxFileSize>20MB</maxFileSize>
    </triggeringPolicy>
    <encoder>
      <pattern>%-5level [%thread] %date{{ISO8601}} %F:%L - %msg%n</pattern>
    </encoder>
  </appender>
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <filter class="ch.qos.logback.classic.filter.ThresholdFilter">
      <level>WARN</level>
    </filter>
    <encoder>
      <pattern>%-5level [%thread] %date{{ISO8601}} %F:%L - %msg%n</pattern>
    </encoder>
  </appender>
  <root level="INFO">
    <appender-ref ref="FILE" />
    <appender-ref ref="STDOUT" />
  </root>
  <logger name="org.apache.cassandra" level="INFO" />
  <logger name="com.thinkaurelius.thrift" level="ERROR" />
</configuration>
"""


def buildJavaCommand(settings: NodeSettings, java: str, jammJar: Path) -> list[str]:
    """
    The full command line of the node's JVM.
    """
    conf = settings.confDir
    return [
        java,
        f"-Xms{settings.heap}",
        f"-Xmx{settings.heap}",
        "-Xss256k",
        "-XX:+UseG1GC",
        "-XX:+ParallelRefProcEnabled",
        "-XX:MaxGCPauseMillis=300",
        "-XX:+ExitOnOutOfMemoryError",
        f"-XX:ErrorFile={settings.logDir / 'hs_err_pid%p.log'}",
        "-Djava.net.preferIPv4Stack=true",
        "-Djdk.attach.allowAttachSelf=true",
        "-Dio.netty.tryReflectionSetAccessible=true",
        "-Dio.netty.allocator.useCacheForAllThreads=true",
        "-Dio.netty.allocator.maxOrder=11",
        *JDK17_MODULE_FLAGS,
        f"-javaagent:{jammJar}",
        "-Dcassandra-foreground=yes",
        f"-Dcassandra.config={(conf / 'cassandra.yaml').as_uri()}",
        f"-Dcassandra.storagedir={settings.dataDir}",
        f"-Dcassandra.logdir={settings.logDir}",
        f"-Dlogback.configurationFile={conf / 'logback.xml'}",
        f"-Dcassandra.triggers_dir={conf / 'triggers'}",
        *FAST_START_PROPERTIES,
        "-cp",
        f"{conf}{os.pathsep}{settings.libDir / '*'}",
        MAIN_CLASS,
    ]


def buildJavaEnvironment(environ: Mapping[str, str]) -> dict[str, str]:
    """
    The node's environment: ours, with glibc arenas capped as Cassandra does.
    """
    env = dict(environ)
    env.setdefault("MALLOC_ARENA_MAX", "4")
    return env


# --------------------------------------------------------------------------
# Files


def writeTextAtomically(path: Path, text: str) -> None:
    """
    Replace C{path} with C{text} so readers never see half a file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def writeConfig(settings: NodeSettings) -> None:
    """
    Write C{conf/cassandra.yaml} and C{conf/logback.xml} for these settings.
    """
    writeTextAtomically(settings.confDir / "cassandra.yaml", renderCassandraYaml(settings))
    writeTextAtomically(settings.confDir / "logback.xml", renderLogbackXml(settings))
    (settings.confDir / "triggers").mkdir(exist_ok=True)


def readPid(pidFile: Path) -> int | None:
    """
    The pid in a pid file, or C{None} if it is missing or not a valid pid.
    """
    try:
        text = pidFile.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not text.isdigit():
        return None
    pid = int(text)
    return pid if pid > 1 else None


def writePid(pidFile: Path, pid: int) -> None:
    """
    Record the node's pid.
    """
    writeTextAtomically(pidFile, f"{pid}\n")


def removePid(pidFile: Path) -> None:
    """
    Forget the node's pid (no error if there is none).
    """
    with contextlib.suppress(FileNotFoundError):
        pidFile.unlink()


def tailText(path: Path, lines: int = 30, offset: int = 0, width: int = 300) -> str:
    """
    The last C{lines} lines of a file from byte C{offset} on ("" if none),
    each cut to C{width} characters (Cassandra logs some huge lines).
    """
    try:
        with path.open("rb") as f:
            if offset > os.fstat(f.fileno()).st_size:
                offset = 0  # the log was rotated since
            f.seek(offset)
            data = f.read()
    except OSError:
        return ""
    tail = data.decode("utf-8", "replace").splitlines()[-lines:]
    return "\n".join(shorten(line, width) for line in tail)


def shorten(line: str, width: int) -> str:
    """
    Cut a line to C{width} characters, marking the cut.
    """
    return line if len(line) <= width else line[: width - 5] + " [..]"


def fileSize(path: Path) -> int:
    """
    The size of a file, 0 if it does not exist.
    """
    try:
        return path.stat().st_size
    except OSError:
        return 0


@contextlib.contextmanager
def homeLock(settings: NodeSettings) -> Iterator[None]:
    """
    Hold an exclusive lock on the node home, so two C{start}s don't race.
    """
    settings.home.mkdir(parents=True, exist_ok=True)
    with open(settings.home / ".lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say("waiting for another devnode command on the same home")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


# --------------------------------------------------------------------------
# Jars


def readManifest(libDir: Path) -> list[str] | None:
    """
    The lines of C{lib/.manifest}, or C{None} if there is none.
    """
    try:
        return (libDir / MANIFEST_NAME).read_text(encoding="utf-8").splitlines()
    except OSError:
        return None


def libIsComplete(libDir: Path, version: str) -> bool:
    """
    Whether C{lib/} holds a completed fetch of this version, every jar present.

    The manifest's first line is C{cassandra-all <version>}, the others name
    the jars; it is written last, so a folder without one is incomplete.
    """
    manifest = readManifest(libDir)
    if not manifest or manifest[0] != f"cassandra-all {version}":
        return False
    jars = manifest[1:]
    if f"cassandra-all-{version}.jar" not in jars:
        return False
    return all(fileSize(libDir / jar) > 0 for jar in jars)


def renderManifest(version: str, jars: Sequence[str]) -> str:
    """
    The text of C{lib/.manifest} for a finished fetch.
    """
    return "\n".join([f"cassandra-all {version}", *sorted(jars)]) + "\n"


def findExecutable(name: str, settings: NodeSettings) -> str:
    """
    The path of a program on the settings' C{PATH}.

    @raise DevNodeError: it is not there.
    """
    found = shutil.which(name, path=settings.path)
    if not found:
        raise DevNodeError(f"{name!r} was not found on PATH")
    return found


def fetchJars(settings: NodeSettings) -> None:
    """
    Fetch C{cassandra-all} and its run-time dependencies into C{lib/}.

    Maven copies into a fresh temporary folder which replaces C{lib/} only
    once complete, so a killed fetch never leaves a half C{lib/}.
    """
    mvn = findExecutable("mvn", settings)
    home = settings.home
    pom = home / "pom.xml"
    writeTextAtomically(pom, renderPom(settings.version))
    for leftover in home.glob("lib.tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    staging = home / f"lib.tmp-{os.getpid()}"
    command = [
        mvn, "-B", "-q", "-f", str(pom),
        f"{MAVEN_DEPENDENCY_PLUGIN}:copy-dependencies",
        f"-DoutputDirectory={staging}",
        "-DincludeScope=runtime",
    ]
    say(f"fetching cassandra-all {settings.version} jars with Maven into {settings.libDir}")
    started = time.monotonic()
    try:
        result = subprocess.run(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, errors="replace",
        )
        if result.returncode != 0:
            raise DevNodeError(
                f"Maven failed (exit {result.returncode}) fetching "
                f"org.apache.cassandra:cassandra-all:{settings.version}:\n"
                + stripAnsi(result.stdout).strip()
            )
        jars = [p.name for p in staging.glob("*.jar")]
        writeTextAtomically(staging / MANIFEST_NAME, renderManifest(settings.version, jars))
        if not libIsComplete(staging, settings.version):
            raise DevNodeError(f"Maven did not fetch cassandra-all-{settings.version}.jar")
        replaceFolder(staging, settings.libDir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    say(f"fetched {len(jars)} jars in {time.monotonic() - started:.1f}s")


def stripAnsi(text: str) -> str:
    """
    Remove terminal colour codes (Maven 3.8 prints some even with C{-B}).
    """
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def replaceFolder(new: Path, target: Path) -> None:
    """
    Put folder C{new} in the place of C{target}, removing the old one.
    """
    old = target.with_name(f"{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)


def ensureJars(settings: NodeSettings) -> None:
    """
    Fetch the jars unless C{lib/} already holds a complete fetch.
    """
    if not libIsComplete(settings.libDir, settings.version):
        fetchJars(settings)


def findJammJar(libDir: Path) -> Path:
    """
    The jamm jar Cassandra needs as a Java agent.

    @raise DevNodeError: there is none.
    """
    jars = sorted(libDir.glob("jamm-*.jar"))
    if not jars:
        raise DevNodeError(f"no jamm-*.jar in {libDir}")
    return jars[-1]


def findJava(settings: NodeSettings) -> str:
    """
    The C{java} of C{JAVA_HOME}, else the one on C{PATH}.

    @raise DevNodeError: there is none.
    """
    if settings.java_home:
        java = Path(settings.java_home) / "bin" / "java"
        if not os.access(java, os.X_OK):
            raise DevNodeError(f"JAVA_HOME={settings.java_home} has no bin/java")
        return str(java)
    return findExecutable("java", settings)


# --------------------------------------------------------------------------
# Processes


def processCmdline(pid: int) -> list[str] | None:
    """
    The command line of a live process, or C{None} if it is gone or a zombie.
    """
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if not raw:
        return None
    return raw.decode("utf-8", "replace").rstrip("\0").split("\0")


def cmdlineIsOurNode(cmdline: Sequence[str] | None, home: Path) -> bool:
    """
    Whether a command line is a Cassandra daemon run from this node home.
    """
    if not cmdline:
        return False
    isDaemon = any(arg.endswith("CassandraDaemon") for arg in cmdline)
    ourHome = any(f"{home}{os.sep}" in arg for arg in cmdline)
    return isDaemon and ourHome


def isOurNode(pid: int, home: Path) -> bool:
    """
    Whether C{pid} is a live Cassandra JVM of this node home.
    """
    return cmdlineIsOurNode(processCmdline(pid), home)


def ourRunningPid(settings: NodeSettings) -> int | None:
    """
    The pid in the pid file, if it is a live node of this home.
    """
    pid = readPid(settings.pidFile)
    if pid is not None and isOurNode(pid, settings.home):
        return pid
    return None


def waitForExit(pid: int, home: Path, seconds: float) -> bool:
    """
    Wait up to C{seconds} for our node C{pid} to exit; whether it did.
    """
    deadline = time.monotonic() + seconds
    while isOurNode(pid, home):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)
    return True


def terminate(pid: int, home: Path, grace: float) -> bool:
    """
    SIGTERM our node, then SIGKILL it after C{grace} seconds; whether it ended.
    """
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if waitForExit(pid, home, grace):
        return True
    say(f"node (pid {pid}) still runs after {grace:.0f}s: sending SIGKILL")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return waitForExit(pid, home, 10.0)


def launchNode(settings: NodeSettings, environ: Mapping[str, str]) -> subprocess.Popen:
    """
    Start the node's JVM detached: its own session, output to C{logs/node.out}.

    Being the leader of a new session with no terminal and no pipe to us,
    it outlives the shell or make that ran C{start}.
    """
    command = buildJavaCommand(settings, findJava(settings), findJammJar(settings.libDir))
    settings.logDir.mkdir(parents=True, exist_ok=True)
    settings.dataDir.mkdir(parents=True, exist_ok=True)
    with open(settings.logDir / "node.out", "ab") as out:
        return subprocess.Popen(
            command,
            cwd=settings.home,
            env=buildJavaEnvironment(environ),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )


# --------------------------------------------------------------------------
# Probes


def portAccepts(address: str, port: int, timeout: float = 1.0) -> bool:
    """
    Whether something accepts TCP connections on C{address:port}.
    """
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def cqlReleaseVersion(settings: NodeSettings, timeout: float = 3.0) -> str | None:
    """
    The C{release_version} a node on the contact point answers, or C{None}.
    """
    if not portAccepts(settings.address, settings.port):
        return None
    try:
        from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
        from cassandra.policies import WhiteListRoundRobinPolicy
    except ImportError:
        raise DevNodeError("cassandra-driver is not installed (make venv installs it)")

    profile = ExecutionProfile(
        load_balancing_policy=WhiteListRoundRobinPolicy([settings.address]),
        request_timeout=timeout,
    )
    sslContext = None
    if settings.client_tls is not None:
        import ssl

        sslContext = ssl.create_default_context(
            cafile=str(settings.client_tls / "ca.pem"))
    cluster = Cluster(
        contact_points=[settings.address],
        port=settings.port,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        ssl_context=sslContext,
        connect_timeout=timeout,
        control_connection_timeout=timeout,
        schema_metadata_enabled=False,
        token_metadata_enabled=False,
    )
    try:
        session = cluster.connect()
        row = session.execute("SELECT release_version FROM system.local").one()
        return str(row[0]) if row else None
    except Exception:
        return None
    finally:
        cluster.shutdown()


def waitUntilReady(
    settings: NodeSettings, process: subprocess.Popen | None, pid: int
) -> str:
    """
    Poll until the node answers CQL; its release version.

    @param process: the JVM we launched, to notice early if it dies.
    @raise DevNodeError: it died or did not answer within the start timeout.
    """
    started = time.monotonic()
    deadline = started + settings.start_timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise DevNodeError(f"the node's JVM exited with status {process.returncode}")
        if process is None and not isOurNode(pid, settings.home):
            raise DevNodeError(f"the node (pid {pid}) exited")
        version = cqlReleaseVersion(settings)
        if version is not None:
            return version
        time.sleep(1.0)
    raise DevNodeError(
        f"the node did not answer CQL on {settings.contactPoint} "
        f"within {settings.start_timeout:.0f}s (MEETR_NODE_START_TIMEOUT)"
    )


# --------------------------------------------------------------------------
# Commands


def say(message: str, stream: TextIO | None = None) -> None:
    """
    Print a progress message to stderr.
    """
    print(f"devnode: {message}", file=stream or sys.stderr, flush=True)


def start(settings: NodeSettings, environ: Mapping[str, str]) -> int:
    """
    Make sure a node answers CQL, reusing one if it does; print the contact point.
    """
    with homeLock(settings):
        pid = ourRunningPid(settings)
        if pid is not None:
            say(f"node already running (pid {pid}); waiting for CQL")
            version = waitUntilReady(settings, None, pid)
        elif (version := cqlReleaseVersion(settings)) is not None:
            say(f"a node not started by devnode already answers on {settings.contactPoint}")
        else:
            removePid(settings.pidFile)
            version = startNew(settings, environ)
    say(f"Cassandra {version} answers CQL on {settings.contactPoint}")
    print(settings.contactPoint, flush=True)
    return 0


def checkPortsFree(settings: NodeSettings) -> None:
    """
    Fail early and clearly if something else holds the node's ports.
    """
    for name, port in (("MEETR_NODE_PORT", settings.port), ("MEETR_NODE_STORAGE_PORT", settings.storage_port)):
        if portAccepts(settings.address, port):
            raise DevNodeError(
                f"{settings.address}:{port} ({name}) is used by another program"
            )


def startNew(settings: NodeSettings, environ: Mapping[str, str]) -> str:
    """
    Fetch jars if needed, write the config, launch the JVM and wait for CQL.

    On failure the JVM is killed and the tails of its logs are shown.
    """
    ensureJars(settings)
    writeConfig(settings)
    checkPortsFree(settings)
    logs = [settings.logDir / "node.out", settings.logDir / "system.log"]
    offsets = [fileSize(log) for log in logs]
    process = launchNode(settings, environ)
    writePid(settings.pidFile, process.pid)
    say(f"launched Cassandra {settings.version} (pid {process.pid}, heap {settings.heap}); waiting for CQL")
    started = time.monotonic()
    try:
        version = waitUntilReady(settings, process, process.pid)
    except BaseException as e:
        abandon(settings, process)
        if isinstance(e, DevNodeError):
            raise DevNodeError(f"{e}\n{logTails(logs, offsets)}") from None
        raise
    say(f"ready in {time.monotonic() - started:.1f}s")
    return version


def abandon(settings: NodeSettings, process: subprocess.Popen) -> None:
    """
    Kill a JVM that failed to start, and forget its pid.
    """
    if process.poll() is None:
        say(f"killing the node (pid {process.pid})")
        process.kill()
        process.wait()
    removePid(settings.pidFile)


def logTails(logs: Sequence[Path], offsets: Sequence[int]) -> str:
    """
    The tails of the node's logs written since the given offsets.
    """
    parts = []
    for log, offset in zip(logs, offsets):
        tail = tailText(log, offset=offset)
        if tail:
            parts.append(f"--- last lines of {log} ---\n{tail}")
    return "\n".join(parts) or "(the node wrote no log)"


def stop(settings: NodeSettings) -> int:
    """
    Stop the node the pid file names, if it is really ours.
    """
    if not settings.home.is_dir():
        say("no node of ours is running")
        return 0
    with homeLock(settings):
        pid = readPid(settings.pidFile)
        if pid is None or not isOurNode(pid, settings.home):
            if pid is not None:
                say(f"pid {pid} in {settings.pidFile} is not our node: forgetting it")
            removePid(settings.pidFile)
            say("no node of ours is running")
            if portAccepts(settings.address, settings.port):
                say(f"something not started by devnode listens on {settings.contactPoint}; left alone")
            return 0
        say(f"stopping the node (pid {pid})")
        if not terminate(pid, settings.home, settings.stop_grace):
            raise DevNodeError(f"the node (pid {pid}) did not exit, even after SIGKILL")
        removePid(settings.pidFile)
        say("stopped")
    return 0


def status(settings: NodeSettings) -> int:
    """
    Say whether a node answers on the contact point: exit 0 if so, 3 if not.
    """
    pid = ourRunningPid(settings)
    version = cqlReleaseVersion(settings)
    owner = f"pid {pid}" if pid is not None else "not started by devnode"
    if version is not None:
        print(f"running: Cassandra {version} ({owner}) answers CQL on {settings.contactPoint}")
        return 0
    if pid is not None:
        print(f"starting or unresponsive: pid {pid} runs but {settings.contactPoint} does not answer CQL")
    else:
        print(f"not running: nothing answers CQL on {settings.contactPoint}")
    return EXIT_NOT_RUNNING


COMMANDS = ("start", "stop", "status")


def interrupt(signum: int, frame: object) -> None:
    """
    Turn SIGTERM into L{KeyboardInterrupt}, so a killed C{start} cleans up
    (Maven and a half-started JVM are killed, the temporary lib removed).
    """
    raise KeyboardInterrupt()


def main(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """
    Run C{start}, C{stop} or C{status}; the process exit code.
    """
    signal.signal(signal.SIGTERM, interrupt)
    if len(argv) != 1 or argv[0] not in COMMANDS:
        print(f"usage: python -m meetrd.devnode {{{'|'.join(COMMANDS)}}}", file=sys.stderr)
        return 2
    try:
        settings = NodeSettings.fromEnvironment(environ)
        if argv[0] == "start":
            return start(settings, environ)
        if argv[0] == "stop":
            return stop(settings)
        return status(settings)
    except DevNodeError as e:
        say(f"error: {e}")
        return 1
    except KeyboardInterrupt:
        say("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], os.environ))
