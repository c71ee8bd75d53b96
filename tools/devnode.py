"""
A real single Apache Cassandra node (or a small cluster of them) for
development and tests.

The node is built only from Maven Central's C{org.apache.cassandra:cassandra-all}
jars, fetched with Maven, and run on the machine's JDK (17).  Everything lives
under one folder, C{MEETR_NODE_HOME} (default: C{.cassandra/} at the
repository root)::

    pom.xml             the throwaway pom used to fetch the jars
    lib/                the jars, plus C{.manifest} once a fetch completed
    conf/cassandra.yaml conf/logback.xml
    data/ logs/ node.pid

Usage::

    python -m tools.devnode start    # idempotent; last stdout line is host:port
    python -m tools.devnode status   # exit 0 if a node answers CQL, 3 if not
    python -m tools.devnode stop     # SIGTERM, then SIGKILL after a grace period

With C{MEETR_NODE_COUNT} above 1, C{start} runs a cluster instead: node M{i}
listens on the M{i}-th address from C{MEETR_NODE_ADDRESS} on (127.0.0.1,
127.0.0.2, ...), all on the same ports, in one data centre C{dc1}; node 1 is
the seed.  The jars stay in C{lib/}; each node has its own folder::

    node1/conf/ node1/data/ node1/logs/ node1/node.pid
    node2/...

C{start} then waits until every node sees every other one NORMAL and prints
the contact points, comma-separated.  One node is handled alone with::

    python -m tools.devnode stop-node 2    # SIGTERM, as stop
    python -m tools.devnode kill-node 2    # SIGKILL, as a crash
    python -m tools.devnode start-node 2   # waits until the others see it NORMAL

C{stop} stops every node of the home; C{status} and the node commands find
the number of nodes from the C{node*} folders when C{MEETR_NODE_COUNT} is
not set.

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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence, TextIO

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
#: The most nodes C{MEETR_NODE_COUNT} may ask for.
MAX_NODES = 9
#: The data centre and rack of every node of a cluster.
DATACENTER = "dc1"
RACK = "rack1"

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

#: Of those, the one the nodes of a cluster do without: it keeps the system
#: tables, the schema among them, out of the commit log, so a killed node
#: would come back without the tables created since its last flush.
UNSAFE_SYSTEM_PROPERTY = "-Dcassandra.unsafesystem=true"

#: System properties added for the nodes of a cluster: a node that knows
#: peers from an earlier run tries to gossip with them for the ring delay
#: (30 s by default) before it starts alone, as the seed does on a restart
#: of the whole cluster.
CLUSTER_START_PROPERTIES: tuple[str, ...] = (
    "-Dcassandra.ring_delay_ms=5000",
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
    @ivar count: the number of nodes; 1 is the single-node layout, with
        everything directly in C{home}.
    @ivar index: which node of the cluster these settings describe, from 1
        (the seed); C{address} is that node's address.
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
    count: int = 1
    index: int = 1

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
            count=parseCount(environ.get("MEETR_NODE_COUNT")),
        ).checked()

    def checked(self) -> "NodeSettings":
        """
        Return C{self} once the settings are consistent with each other.

        @raise DevNodeError: the native and storage ports are the same, the
            home cannot be on a Java class path, or there are not enough
            addresses after C{MEETR_NODE_ADDRESS} for every node.
        """
        if os.pathsep in str(self.home):
            raise DevNodeError(f"MEETR_NODE_HOME={self.home} contains {os.pathsep!r}")
        if self.port == self.storage_port:
            raise DevNodeError(
                f"MEETR_NODE_PORT and MEETR_NODE_STORAGE_PORT are both {self.port}"
            )
        if not 1 <= self.index <= self.count:
            raise DevNodeError(f"there is no node {self.index} in a cluster of {self.count}")
        try:
            self.nodeAddresses
        except ValueError:
            raise DevNodeError(
                f"MEETR_NODE_ADDRESS={self.seedAddress}: {self.count} nodes need "
                f"{self.count} addresses from it on"
            )
        return self

    def forNode(self, index: int) -> "NodeSettings":
        """
        The settings of node C{index} of the same cluster: its address and
        its folder.

        @raise DevNodeError: the cluster has no such node.
        """
        if not 1 <= index <= self.count:
            raise DevNodeError(f"there is no node {index} in a cluster of {self.count}")
        return replace(self, index=index, address=self.nodeAddresses[index - 1])

    def withCount(self, count: int) -> "NodeSettings":
        """
        The settings of node 1 of a cluster of C{count} nodes from the same
        first address.
        """
        return replace(self, count=count, index=1, address=self.seedAddress).checked()

    @property
    def seedAddress(self) -> str:
        """
        The address of node 1, the seed (the first of the addresses).
        """
        return str(ipaddress.ip_address(self.address) - (self.index - 1))

    @property
    def nodeAddresses(self) -> tuple[str, ...]:
        """
        The address of each node: consecutive ones from the seed's on.

        @raise ValueError: they run past the last address.
        """
        first = ipaddress.ip_address(self.seedAddress)
        return tuple(str(first + offset) for offset in range(self.count))

    @property
    def clustered(self) -> bool:
        """
        Whether these are the settings of a cluster (more than one node).
        """
        return self.count > 1

    @property
    def name(self) -> str:
        """
        How progress messages call this node: C{the node}, or C{node2}.
        """
        return f"node{self.index}" if self.clustered else "the node"

    @property
    def nodeHome(self) -> Path:
        """
        The folder of this node's config, data, logs and pid file: the home
        itself for a single node, C{node<index>/} in it for a cluster.
        """
        return self.home / f"node{self.index}" if self.clustered else self.home

    @property
    def storageEndpoint(self) -> str:
        """
        The C{address:port} the node gossips on, as C{system_views.gossip_info}
        names it.
        """
        return f"{self.address}:{self.storage_port}"

    @property
    def contactPoints(self) -> str:
        """
        The C{host:port} of every node, comma-separated.
        """
        return ",".join(f"{address}:{self.port}" for address in self.nodeAddresses)

    @property
    def contactPoint(self) -> str:
        """
        The C{host:port} clients connect to.
        """
        return f"{self.address}:{self.port}"

    @property
    def libDir(self) -> Path:
        """
        The folder of the node's jars (shared by every node of a cluster).
        """
        return self.home / "lib"

    @property
    def confDir(self) -> Path:
        """
        The folder of C{cassandra.yaml} and C{logback.xml}.
        """
        return self.nodeHome / "conf"

    @property
    def dataDir(self) -> Path:
        """
        The folder of everything the node persists.
        """
        return self.nodeHome / "data"

    @property
    def logDir(self) -> Path:
        """
        The folder of the node's logs.
        """
        return self.nodeHome / "logs"

    @property
    def pidFile(self) -> Path:
        """
        The file holding the pid of the JVM C{start} launched.
        """
        return self.nodeHome / "node.pid"


def defaultHome() -> Path:
    """
    The default node home: C{.cassandra/} at the repository root, beside
    the C{tools} package.
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


def parseCount(value: str | None) -> int:
    """
    Validate a number of nodes, or return 1 when unset or empty.
    """
    if not value:
        return 1
    if not value.strip().isdigit() or not 1 <= int(value) <= MAX_NODES:
        raise DevNodeError(f"MEETR_NODE_COUNT={value!r}: expected a number of nodes from 1 to {MAX_NODES}")
    return int(value)


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
<!-- Written by tools.devnode: the jars of a dev Cassandra node. -->
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


def initialToken(index: int, count: int) -> str:
    """
    The one token of node C{index} of C{count}: the middle of its equal
    slice of the Murmur3 ring (C{0} for a single node).
    """
    step = 2**64 // count
    return str(-(2**63) + step * (index - 1) + step // 2)


def cassandraYamlValues(settings: NodeSettings) -> dict[str, object]:
    """
    The flat C{cassandra.yaml} entries of a single dev node, or of one node
    of a cluster.

    Every key is a field of Cassandra 5.0's C{org.apache.cassandra.config.Config}
    (5.0 refuses unknown keys).  Lists are rendered as YAML sequences.

    A node of a cluster differs only in its token (evenly spread over the
    ring), the snitch (C{GossipingPropertyFileSnitch}, reading
    C{cassandra-rackdc.properties}) and hinted handoff, on as in production
    so a node that was down catches up.
    """
    data = settings.dataDir
    values: dict[str, object] = {
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
    if settings.clustered:
        values.update({
            "initial_token": initialToken(settings.index, settings.count),
            "endpoint_snitch": "GossipingPropertyFileSnitch",
            "hinted_handoff_enabled": True,
        })
    return values


def renderCassandraYaml(settings: NodeSettings) -> str:
    """
    The node's C{cassandra.yaml}, from L{cassandraYamlValues} plus the seeds.
    """
    lines = ["# Written by tools.devnode on every start: edits are lost."]
    for key, value in cassandraYamlValues(settings).items():
        if isinstance(value, list):
            lines.append(f"{key}:")
            lines.extend(f"    - {yamlScalar(item)}" for item in value)
        else:
            lines.append(f"{key}: {yamlScalar(value)}")
    seed = f"{settings.seedAddress}:{settings.storage_port}"
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


def renderRackdcProperties() -> str:
    """
    The C{cassandra-rackdc.properties} of a node of a cluster: data centre
    and rack, for C{GossipingPropertyFileSnitch}.
    """
    return (
        "# Written by tools.devnode on every start: edits are lost.\n"
        f"dc={DATACENTER}\nrack={RACK}\n"
    )


def renderLogbackXml(settings: NodeSettings) -> str:
    """
    A logback config: INFO to a size-rotated C{logs/system.log}, WARN to stdout.
    """
    log = settings.logDir / "system.log"
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by tools.devnode on every start: edits are lost. -->
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
        *startProperties(settings),
        "-cp",
        f"{conf}{os.pathsep}{settings.libDir / '*'}",
        MAIN_CLASS,
    ]


def startProperties(settings: NodeSettings) -> tuple[str, ...]:
    """
    The system properties that make the node start fast: all of
    L{FAST_START_PROPERTIES} for a single node; for a node of a cluster, all
    but L{UNSAFE_SYSTEM_PROPERTY}, and L{CLUSTER_START_PROPERTIES}.
    """
    if not settings.clustered:
        return FAST_START_PROPERTIES
    return tuple(
        prop for prop in FAST_START_PROPERTIES if prop != UNSAFE_SYSTEM_PROPERTY
    ) + CLUSTER_START_PROPERTIES


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
    Write C{conf/cassandra.yaml} and C{conf/logback.xml} for these settings,
    and C{conf/cassandra-rackdc.properties} for a node of a cluster.
    """
    writeTextAtomically(settings.confDir / "cassandra.yaml", renderCassandraYaml(settings))
    writeTextAtomically(settings.confDir / "logback.xml", renderLogbackXml(settings))
    if settings.clustered:
        writeTextAtomically(settings.confDir / "cassandra-rackdc.properties",
                            renderRackdcProperties())
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
    if pid is not None and isOurNode(pid, settings.nodeHome):
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
    return killIfStillRunning(pid, home, grace, grace)


def killIfStillRunning(
    pid: int, home: Path, seconds: float, grace: float, name: str = "node"
) -> bool:
    """
    Wait up to C{seconds} for our node to exit, then SIGKILL it; whether it
    ended.

    @param grace: the grace period the message names.
    @param name: how the message calls the node.
    """
    if waitForExit(pid, home, seconds):
        return True
    say(f"{name} (pid {pid}) still runs after {grace:.0f}s: sending SIGKILL")
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
            cwd=settings.nodeHome,
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


def driverCluster(
    settings: NodeSettings, addresses: Sequence[str], timeout: float, only: bool
) -> Any:
    """
    A cassandra-driver C{Cluster} for the nodes on C{addresses}, on the
    settings' CQL port, with TLS when the node has it.

    @param only: whether requests go to those addresses only (else to every
        node the driver finds, as a client's would).
    @raise DevNodeError: cassandra-driver is not installed.
    """
    try:
        from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
        from cassandra.policies import WhiteListRoundRobinPolicy
    except ImportError:
        raise DevNodeError("cassandra-driver is not installed (make venv installs it)")

    if only:
        profile = ExecutionProfile(
            load_balancing_policy=WhiteListRoundRobinPolicy(list(addresses)),
            request_timeout=timeout,
        )
    else:
        profile = ExecutionProfile(request_timeout=timeout)
    sslContext = None
    if settings.client_tls is not None:
        import ssl

        sslContext = ssl.create_default_context(
            cafile=str(settings.client_tls / "ca.pem"))
    return Cluster(
        contact_points=list(addresses),
        port=settings.port,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        ssl_context=sslContext,
        connect_timeout=timeout,
        control_connection_timeout=timeout,
        schema_metadata_enabled=False,
        token_metadata_enabled=False,
    )


def cqlRows(
    settings: NodeSettings, queries: Sequence[str], timeout: float = 3.0
) -> list[list[Any]] | None:
    """
    The rows of each query, as the node on the contact point answers them
    itself; C{None} if it does not answer them all.
    """
    if not portAccepts(settings.address, settings.port):
        return None
    cluster = driverCluster(settings, [settings.address], timeout, only=True)
    try:
        session = cluster.connect()
        return [list(session.execute(query)) for query in queries]
    except Exception:
        return None
    finally:
        cluster.shutdown()


def cqlReleaseVersion(settings: NodeSettings, timeout: float = 3.0) -> str | None:
    """
    The C{release_version} a node on the contact point answers, or C{None}.
    """
    answers = cqlRows(settings, ["SELECT release_version FROM system.local"], timeout)
    if not answers or not answers[0]:
        return None
    return str(answers[0][0][0])


@dataclass(frozen=True)
class GossipEntry:
    """
    What one node's gossip says of a node (itself or another).

    @ivar generation: when that node last started, as it told the cluster.
    @ivar status: its C{STATUS_WITH_PORT}, such as C{NORMAL,0} (empty if
        unknown).
    @ivar rpcReady: whether it said it serves CQL.
    @ivar schema: the version of the schema it has.
    """

    generation: int
    status: str
    rpcReady: bool
    schema: str

    @property
    def isNormal(self) -> bool:
        """
        Whether the node is a NORMAL member of the ring that serves CQL.
        """
        return self.status.split(",", 1)[0] == "NORMAL" and self.rpcReady


#: One node's gossip about every node it knows of (Cassandra 4.1 and later).
#: Only a node's own entry has the legacy C{status}; the others have
#: C{status_with_port} only.
GOSSIP_QUERY = (
    "SELECT address, port, generation, status_with_port, rpc_ready, \"schema\" "
    "FROM system_views.gossip_info"
)


def gossipView(rows: Sequence[Sequence[Any]]) -> dict[str, GossipEntry]:
    """
    The rows of L{GOSSIP_QUERY} by storage endpoint (C{address:port}).
    """
    return {
        f"{address}:{port}": GossipEntry(
            int(generation or 0), status or "", rpcReady == "true", schema or "")
        for address, port, generation, status, rpcReady, schema in rows
    }


def gossipProblems(
    views: Mapping[str, Mapping[str, GossipEntry]], subjects: Sequence[str]
) -> list[str]:
    """
    Why some of C{subjects} are not yet up, NORMAL and of the same schema
    in the eyes of every node that answers; empty when they all are.

    A node sees a subject up once it has the subject's gossip of its current
    start (the generation the subject gives itself): a node that was killed
    stays NORMAL in the others' gossip, but in its old generation.  A node
    that starts again may have missed schema changes: until it has them,
    it fails reads of the tables it lacks.

    @param views: the L{gossipView} of each node that answers CQL, by the
        node's storage endpoint.
    @param subjects: the storage endpoints of the nodes that must answer.
    """
    problems = []
    for subject in subjects:
        own = views.get(subject, {}).get(subject)
        if own is None:
            problems.append(f"{subject} does not answer CQL")
            continue
        for viewer, view in views.items():
            entry = view.get(subject)
            if entry is None:
                problems.append(f"{viewer} does not know {subject}")
            elif entry.generation != own.generation:
                problems.append(f"{viewer} has not seen {subject} start")
            elif not entry.isNormal:
                ready = "" if entry.rpcReady else ", not ready for CQL"
                problems.append(f"{viewer} sees {subject} {entry.status or 'with no status'}{ready}")
            elif viewer not in view or entry.schema != view[viewer].schema:
                problems.append(f"{viewer} sees {subject} with another schema")
    return problems


@dataclass(frozen=True)
class NodeProbe:
    """
    What a node answers over CQL.

    @ivar version: its release version.
    @ivar view: its L{gossipView}.
    """

    version: str
    view: dict[str, GossipEntry]


def probeNode(settings: NodeSettings, timeout: float = 3.0) -> NodeProbe | None:
    """
    The release version and gossip view of the node, or C{None} if it does
    not answer CQL.
    """
    answers = cqlRows(
        settings, ["SELECT release_version FROM system.local", GOSSIP_QUERY], timeout)
    if not answers or not answers[0]:
        return None
    return NodeProbe(str(answers[0][0][0]), gossipView(answers[1]))


def driverSeesUp(
    settings: NodeSettings, viewers: Sequence[NodeSettings],
    subjects: Sequence[NodeSettings], timeout: float = 5.0,
) -> bool:
    """
    Whether a driver given C{viewers} as contact points finds, and connects
    to, every one of C{subjects}, as a client of the cluster would.
    """
    cluster = driverCluster(settings, [node.address for node in viewers], timeout, only=False)
    try:
        cluster.connect()
        up = {host.address for host in cluster.metadata.all_hosts() if host.is_up}
        return all(node.address in up for node in subjects)
    except Exception:
        return False
    finally:
        cluster.shutdown()


def waitUntilSettled(
    settings: NodeSettings, subjects: Sequence[NodeSettings],
    launched: Mapping[int, subprocess.Popen], deadline: float,
) -> str:
    """
    Poll until every one of C{subjects} answers CQL, every node of the
    cluster that answers sees each of them up and NORMAL (L{gossipProblems}),
    and a driver finds them up; the release version of the first subject.

    @param settings: the settings of any node of the cluster.
    @param launched: the JVMs we launched, by node index, to notice early
        if one dies.
    @param deadline: when to give up, in C{time.monotonic()} seconds.
    @raise DevNodeError: a launched JVM died, or the deadline passed.
    """
    nodes = allNodes(settings)
    endpoints = [node.storageEndpoint for node in subjects]
    reported = ""
    while True:
        for index, process in launched.items():
            if process.poll() is not None:
                raise DevNodeError(
                    f"{settings.forNode(index).name}'s JVM exited with status {process.returncode}")
        probes = {node.storageEndpoint: probe for node in nodes
                  if (probe := probeNode(node)) is not None}
        problems = gossipProblems({e: probe.view for e, probe in probes.items()}, endpoints)
        if not problems:
            viewers = [node for node in nodes if node.storageEndpoint in probes]
            if driverSeesUp(settings, viewers, subjects):
                return probes[endpoints[0]].version
            problems = ["the driver does not find every node up yet"]
        if problems[0] != reported:
            reported = problems[0]
            say(f"waiting: {reported}")
        if time.monotonic() >= deadline:
            raise DevNodeError(
                "gave up waiting (MEETR_NODE_START_TIMEOUT is "
                f"{settings.start_timeout:.0f}s per node): " + "; ".join(problems))
        time.sleep(1.0)


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
        if process is None and not isOurNode(pid, settings.nodeHome):
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
        say(f"killing {settings.name} (pid {process.pid})")
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
    Stop every node of the home that is really ours: the single node, and
    each node of a cluster whose folder is there.
    """
    if not settings.home.is_dir():
        say("no node of ours is running")
        return 0
    with homeLock(settings):
        running = []
        for node in homeNodes(settings):
            pid = readPid(node.pidFile)
            if pid is not None and isOurNode(pid, node.nodeHome):
                running.append((node, pid))
                continue
            if pid is not None:
                say(f"pid {pid} in {node.pidFile} is not our node: forgetting it")
            removePid(node.pidFile)
        if not running:
            say("no node of ours is running")
            if portAccepts(settings.address, settings.port):
                say(f"something not started by devnode listens on {settings.contactPoint}; left alone")
            return 0
        for node, pid in running:
            say(f"stopping {node.name} (pid {pid})")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + settings.stop_grace
        stubborn = []
        for node, pid in running:
            remaining = max(0.0, deadline - time.monotonic())
            if not killIfStillRunning(pid, node.nodeHome, remaining, settings.stop_grace, node.name):
                stubborn.append(f"{node.name} (pid {pid})")
            else:
                removePid(node.pidFile)
        if stubborn:
            raise DevNodeError(f"{', '.join(stubborn)} did not exit, even after SIGKILL")
        say("stopped")
    return 0


def status(settings: NodeSettings) -> int:
    """
    Say whether a node answers on the contact point: exit 0 if so, 3 if not.

    For a cluster, say so of each node, and exit 0 only if every node sees
    every other one up and NORMAL.
    """
    if settings.clustered:
        return clusterStatus(settings)
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


# --------------------------------------------------------------------------
# Clusters


def allNodes(settings: NodeSettings) -> list[NodeSettings]:
    """
    The settings of every node of the cluster, from node 1 on.
    """
    return [settings.forNode(index) for index in range(1, settings.count + 1)]


def clusterSize(home: Path) -> int:
    """
    The number of nodes of the cluster whose folders are in C{home}: the
    highest M{n} of a C{node<n>/} folder, or 1 when there is none.
    """
    indexes = [int(match.group(1)) for path in home.glob("node*")
               if path.is_dir() and (match := re.fullmatch(r"node([1-9])", path.name))]
    return max(indexes, default=1)


def homeNodes(settings: NodeSettings) -> list[NodeSettings]:
    """
    The single node of the home, then each node of the cluster whose
    folders are in it.
    """
    nodes = [settings.withCount(1)]
    count = clusterSize(settings.home)
    if count > 1:
        nodes += allNodes(settings.withCount(count))
    return nodes


@dataclass(frozen=True)
class Launch:
    """
    A node's JVM we launched, and where its logs stood before.
    """

    process: subprocess.Popen
    logs: tuple[Path, ...]
    offsets: tuple[int, ...]


def launchLogged(settings: NodeSettings, environ: Mapping[str, str]) -> Launch:
    """
    Write the node's config, check its ports are free, launch it and
    record its pid.
    """
    writeConfig(settings)
    checkPortsFree(settings)
    logs = (settings.logDir / "node.out", settings.logDir / "system.log")
    offsets = tuple(fileSize(log) for log in logs)
    process = launchNode(settings, environ)
    writePid(settings.pidFile, process.pid)
    say(f"launched {settings.name} on {settings.address} "
        f"(pid {process.pid}, heap {settings.heap})")
    return Launch(process, logs, offsets)


def abandonAll(settings: NodeSettings, launches: Mapping[int, Launch]) -> str:
    """
    Kill the JVMs we launched (see L{abandon}); the tails of their logs.
    """
    tails = []
    for index, launch in launches.items():
        node = settings.forNode(index)
        abandon(node, launch.process)
        tails.append(f"=== {node.name} ===\n{logTails(launch.logs, launch.offsets)}")
    return "\n".join(tails)


def startCluster(settings: NodeSettings, environ: Mapping[str, str]) -> int:
    """
    Make sure every node of the cluster runs and sees every other one up and
    NORMAL, reusing those that run; print the contact points.

    The seed starts first; once it answers, the other nodes start together
    (none bootstraps: they take their tokens from C{initial_token}).  The
    wait is up to the start timeout per node.
    """
    nodes = allNodes(settings)
    began = time.monotonic()
    with homeLock(settings):
        single = ourRunningPid(settings.withCount(1))
        if single is not None:
            raise DevNodeError(
                f"the single node of {settings.home} runs (pid {single}) on "
                f"{settings.withCount(1).contactPoint}: stop it first (make cassandra-stop)")
        ensureJars(settings)
        deadline = began + settings.start_timeout * settings.count
        launches: dict[int, Launch] = {}
        try:
            for group, subjects in ((nodes[:1], nodes[:1]), (nodes[1:], nodes)):
                for node in group:
                    pid = ourRunningPid(node)
                    if pid is not None:
                        say(f"{node.name} already running (pid {pid})")
                        continue
                    removePid(node.pidFile)
                    launches[node.index] = launchLogged(node, environ)
                version = waitUntilSettled(
                    settings, subjects,
                    {index: launch.process for index, launch in launches.items()}, deadline)
        except BaseException as e:
            tails = abandonAll(settings, launches)
            if isinstance(e, DevNodeError):
                raise DevNodeError("\n".join(filter(None, [str(e), tails]))) from None
            raise
    say(f"Cassandra {version}: {settings.count} nodes up and NORMAL "
        f"in {time.monotonic() - began:.1f}s")
    print(settings.contactPoints, flush=True)
    return 0


def clusterStatus(settings: NodeSettings) -> int:
    """
    Say of each node whether it answers CQL, then whether the cluster is
    settled: exit 0 if every node sees every other one up and NORMAL, 3 if not.
    """
    nodes = allNodes(settings)
    views = {}
    for node in nodes:
        pid = ourRunningPid(node)
        probe = probeNode(node)
        owner = f"pid {pid}" if pid is not None else "not started by devnode"
        if probe is not None:
            views[node.storageEndpoint] = probe.view
            print(f"{node.name} running: Cassandra {probe.version} ({owner}) "
                  f"answers CQL on {node.contactPoint}")
        elif pid is not None:
            print(f"{node.name} starting or unresponsive: pid {pid} runs but "
                  f"{node.contactPoint} does not answer CQL")
        else:
            print(f"{node.name} not running: nothing answers CQL on {node.contactPoint}")
    problems = gossipProblems(views, [node.storageEndpoint for node in nodes])
    if problems:
        print("cluster not settled: " + "; ".join(problems))
        return EXIT_NOT_RUNNING
    print(f"cluster settled: every node sees all {len(nodes)} up and NORMAL; "
          f"contact points {settings.contactPoints}")
    return 0


def settingLines(text: str) -> list[str]:
    """
    The lines of a C{cassandra.yaml} without its comments: a node's config
    written by an earlier version of this tool, whose header named it
    otherwise, has the same settings.
    """
    return [line for line in text.splitlines()
            if not line.lstrip().startswith("#")]


def checkConfigUnchanged(settings: NodeSettings) -> None:
    """
    Refuse to restart a node of a cluster with other settings than those it
    last ran with (it would not find the others, or clash with them).

    @raise DevNodeError: its C{cassandra.yaml} differs from what these
        settings make.
    """
    path = settings.confDir / "cassandra.yaml"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return
    if settingLines(text) != settingLines(renderCassandraYaml(settings)):
        raise DevNodeError(
            f"{path} was written with other settings (MEETR_NODE_ADDRESS, "
            "MEETR_NODE_PORT, MEETR_NODE_STORAGE_PORT, MEETR_NODE_COUNT...): use "
            "those the cluster was started with, or start the whole cluster again")


def startNode(settings: NodeSettings, environ: Mapping[str, str]) -> int:
    """
    Start one node of a cluster unless it runs, and wait until it answers
    CQL and every node that answers sees it up and NORMAL; print its
    contact point.
    """
    began = time.monotonic()
    with homeLock(settings):
        launches: dict[int, Launch] = {}
        pid = ourRunningPid(settings)
        if pid is not None:
            say(f"{settings.name} already running (pid {pid})")
        else:
            removePid(settings.pidFile)
            ensureJars(settings)
            checkConfigUnchanged(settings)
            launches[settings.index] = launchLogged(settings, environ)
        try:
            waitUntilSettled(
                settings, [settings],
                {index: launch.process for index, launch in launches.items()},
                began + settings.start_timeout)
        except BaseException as e:
            tails = abandonAll(settings, launches)
            if isinstance(e, DevNodeError):
                raise DevNodeError("\n".join(filter(None, [str(e), tails]))) from None
            raise
    say(f"{settings.name} is up and NORMAL in {time.monotonic() - began:.1f}s")
    print(settings.contactPoint, flush=True)
    return 0


def stopNode(settings: NodeSettings, kill: bool = False) -> int:
    """
    Stop one node of a cluster: SIGTERM as L{stop} does, or with C{kill}
    SIGKILL, as a crash would.
    """
    with homeLock(settings):
        pid = readPid(settings.pidFile)
        if pid is None or not isOurNode(pid, settings.nodeHome):
            removePid(settings.pidFile)
            say(f"{settings.name} is not running")
            return 0
        if kill:
            say(f"killing {settings.name} (pid {pid}) with SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            ended = waitForExit(pid, settings.nodeHome, 10.0)
        else:
            say(f"stopping {settings.name} (pid {pid})")
            ended = terminate(pid, settings.nodeHome, settings.stop_grace)
        if not ended:
            raise DevNodeError(f"{settings.name} (pid {pid}) did not exit, even after SIGKILL")
        removePid(settings.pidFile)
        say("killed" if kill else "stopped")
    return 0


COMMANDS = ("start", "stop", "status")
NODE_COMMANDS = ("start-node", "stop-node", "kill-node")
USAGE = (f"usage: python -m tools.devnode {{{'|'.join(COMMANDS)}}}\n"
         f"       python -m tools.devnode {{{'|'.join(NODE_COMMANDS)}}} N")


def parseArguments(argv: Sequence[str]) -> tuple[str, int | None] | None:
    """
    The command and, for the node commands, the node number; C{None} if
    the arguments are not a command.
    """
    if len(argv) == 1 and argv[0] in COMMANDS:
        return argv[0], None
    if (len(argv) == 2 and argv[0] in NODE_COMMANDS and argv[1].isdigit()
            and 1 <= int(argv[1]) <= MAX_NODES):
        return argv[0], int(argv[1])
    return None


def interrupt(signum: int, frame: object) -> None:
    """
    Turn SIGTERM into L{KeyboardInterrupt}, so a killed C{start} cleans up
    (Maven and a half-started JVM are killed, the temporary lib removed).
    """
    raise KeyboardInterrupt()


def main(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """
    Run a command (see L{parseArguments}); the process exit code.

    Without C{MEETR_NODE_COUNT}, C{status} and the node commands take the
    cluster whose folders are in the home (C{status} only when the home's
    single node does not run).
    """
    signal.signal(signal.SIGTERM, interrupt)
    parsed = parseArguments(argv)
    if parsed is None:
        print(USAGE, file=sys.stderr)
        return 2
    command, index = parsed
    try:
        settings = NodeSettings.fromEnvironment(environ)
        if command == "start":
            if settings.clustered:
                return startCluster(settings, environ)
            return start(settings, environ)
        if command == "stop":
            return stop(settings)
        if not environ.get("MEETR_NODE_COUNT") and (
                index is not None or ourRunningPid(settings) is None):
            settings = settings.withCount(clusterSize(settings.home))
        if command == "status":
            return status(settings)
        if not settings.clustered:
            raise DevNodeError(
                f"{command} needs a cluster: MEETR_NODE_COUNT above 1, or node folders "
                f"in {settings.home} (make cassandra NODES=3 starts one)")
        assert index is not None
        node = settings.forNode(index)
        if command == "start-node":
            return startNode(node, environ)
        return stopNode(node, kill=command == "kill-node")
    except DevNodeError as e:
        say(f"error: {e}")
        return 1
    except KeyboardInterrupt:
        say("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], os.environ))
