"""
meetrd's settings: one YAML file, loaded once and validated into immutable
objects that are handed to the constructors that need them.

Every key is documented in the shipped C{etc/meetr/meetr.yaml}.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal, Mapping, Union

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    SecretStr,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from meetrd.durations import DurationError, parseDuration

DEFAULT_PATH = "/etc/meetr/meetr.yaml"

CONSISTENCY_LEVELS = (
    "ANY", "ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM",
    "EACH_QUORUM", "LOCAL_ONE",
)
_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,47}")
_SIZE = re.compile(r"(\d+)\s*(B|KB|MB|GB|KiB|MiB|GiB)?")
_SIZE_UNITS = {
    None: 1, "B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3,
    "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3,
}


class SettingsError(Exception):
    """
    The settings file cannot be used; the message names the file, the key
    and the problem on one line.
    """


def _duration(value: object) -> float:
    try:
        return parseDuration(value)
    except DurationError as e:
        raise ValueError(str(e)) from None


def _size(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a size such as 10MiB or a number of bytes")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    match = _SIZE.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise ValueError(
            f"expected a size such as 512KiB, 10MiB or a number of bytes, "
            f"got {value!r}"
        )
    return int(match.group(1)) * _SIZE_UNITS[match.group(2)]


Duration = Annotated[float, BeforeValidator(_duration)]
NonNegativeDuration = Annotated[float, BeforeValidator(_duration), Field(ge=0)]
PositiveDuration = Annotated[float, BeforeValidator(_duration), Field(gt=0)]
Size = Annotated[int, BeforeValidator(_size)]
PositiveInt = Annotated[StrictInt, Field(gt=0)]
Port = Annotated[StrictInt, Field(ge=1, le=65535)]


class _Frozen(BaseModel):
    """
    Base of every settings object: immutable, unknown keys refused.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")


def parseNode(node: str) -> tuple[str, int]:
    """
    Split C{host:port} (or C{[v6]:port}) into a host and a port.

    @raise ValueError: when C{node} is not of that form.
    """
    if not isinstance(node, str):
        raise ValueError(f"expected host:port, got {node!r}")
    host, sep, port = node.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    if bracketed:
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"write an IPv6 node as [address]:port, got {node!r}")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected host:port, got {node!r}")
    if any(c in host for c in "/?#@ \t") or (":" in host and
                                             not isIPAddress(host)):
        raise ValueError(f"expected host:port, got {node!r}")
    return host, int(port)


def isIPAddress(text: str) -> bool:
    """
    Whether C{text} is an IPv4 or IPv6 address (not a name, not a network).
    """
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


class Consistency(_Frozen):
    """
    Cassandra consistency levels for reads and writes.
    """

    read: Literal[CONSISTENCY_LEVELS] = "LOCAL_QUORUM"  # type: ignore[valid-type]
    write: Literal[CONSISTENCY_LEVELS] = "LOCAL_QUORUM"  # type: ignore[valid-type]


class CassandraTLS(_Frozen):
    """
    TLS to Cassandra: the CA that signed the nodes' certificates, an
    optional client certificate, and whether the node's name is checked.
    """

    enabled: StrictBool = False
    ca_file: StrictStr | None = None
    cert_file: StrictStr | None = None
    key_file: StrictStr | None = None
    server_name: StrictStr | None = None
    check_hostname: StrictBool = True

    @model_validator(mode="after")
    def _complete(self) -> "CassandraTLS":
        if self.enabled and not self.ca_file:
            raise ValueError("ca_file is needed to check the nodes' "
                             "certificates")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("give both cert_file and key_file, or neither")
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, name)
            if self.enabled and path is not None:
                try:
                    with open(path, "rb"):
                        pass
                except OSError as e:
                    raise ValueError(f"{name} {path}: {e.strerror}") from None
        return self


class CassandraSettings(_Frozen):
    """
    How to reach Cassandra and where meetrd keeps its tables.
    """

    contact_points: tuple[StrictStr, ...] = ("127.0.0.1",)
    port: Port = 9042
    keyspace: StrictStr = "meetr"
    replication: dict[StrictStr, StrictStr | StrictInt] = Field(
        default_factory=lambda: {"class": "SimpleStrategy",
                                 "replication_factor": 1}
    )
    consistency: Consistency = Consistency()
    connect_timeout: Duration = 5.0
    request_timeout: Duration = 10.0
    max_in_flight: PositiveInt = 512
    max_reads_in_flight: PositiveInt = 64
    index_slice: Duration = 86400.0
    max_partition_rows: PositiveInt = 500_000
    reconnect_max_delay: Duration = 5.0
    username: StrictStr | None = None
    password_file: StrictStr | None = None
    tls: CassandraTLS = CassandraTLS()

    @field_validator("contact_points")
    @classmethod
    def _someContactPoint(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one contact point is needed")
        return value

    @field_validator("keyspace")
    @classmethod
    def _keyspaceName(cls, value: str) -> str:
        if not _IDENTIFIER.fullmatch(value):
            raise ValueError(
                "a keyspace name is a letter then up to 47 letters, digits "
                "or underscores"
            )
        return value

    @field_validator("replication")
    @classmethod
    def _replicationMap(cls, value: dict[str, Any]) -> dict[str, Any]:
        strategy = value.get("class")
        if strategy not in ("SimpleStrategy", "NetworkTopologyStrategy"):
            raise ValueError(
                "'class' must be SimpleStrategy or NetworkTopologyStrategy"
            )
        for key, factor in value.items():
            if key == "class":
                continue
            if not _IDENTIFIER.fullmatch(key):
                raise ValueError(f"{key!r} is not a data centre name")
            if not str(factor).isdigit() or int(factor) < 1:
                raise ValueError(f"{key}: a replication factor is a positive "
                                 f"whole number")
        if strategy == "SimpleStrategy" and set(value) != {
                "class", "replication_factor"}:
            raise ValueError("SimpleStrategy takes exactly "
                             "'replication_factor'")
        if len(value) < 2:
            raise ValueError("name at least one replication factor")
        return value

    @field_validator("connect_timeout", "request_timeout")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be more than 0")
        return value

    @field_validator("index_slice")
    @classmethod
    def _wholeSlice(cls, value: float) -> float:
        if value < 1 or value > 7 * 86400 or value != int(value):
            raise ValueError("an index slice is whole seconds, from 1s to 7d")
        return value


class HTTPSettings(_Frozen):
    """
    The HTTP API's own limits.
    """

    max_body_size: Size = 16 * 1024 * 1024
    access_log: StrictBool = False
    max_writes_in_flight: PositiveInt = 64
    max_searches_in_flight: PositiveInt = 32


class Limits(_Frozen):
    """
    What one point, one batch and one search may hold.
    """

    max_batch_points: PositiveInt = 50000
    max_metric_length: PositiveInt = 255
    max_tags: PositiveInt = 32
    max_tag_key_length: PositiveInt = 128
    max_tag_value_length: PositiveInt = 512
    max_future: Duration = 600.0
    max_past: Duration = 0.0
    max_search_series: PositiveInt = 10000
    max_search_partitions: PositiveInt = 20000
    max_search_points: PositiveInt = 100000
    max_query_samples: PositiveInt = 2000000
    search_timeout: PositiveDuration = 30.0


class TargetGroup(_Frozen):
    """
    A group of nodes hunted alike.
    """

    job: StrictStr
    nodes: tuple[StrictStr, ...]
    path: StrictStr = "/metrics"
    interval: Duration = 10.0
    timeout: Duration | None = None
    format: Literal["auto", "json", "prometheus"] = "auto"
    labels: dict[StrictStr, StrictStr] = Field(default_factory=dict)

    @field_validator("job")
    @classmethod
    def _jobName(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a job needs a name")
        return value

    @field_validator("nodes")
    @classmethod
    def _nodes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for node in value:
            parseNode(node)
        return value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("a path starts with /")
        return value

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: float) -> float:
        if value < 0.1:
            raise ValueError("an interval is at least 100ms")
        return value

    @model_validator(mode="after")
    def _timeoutWithinInterval(self) -> "TargetGroup":
        if self.timeout is None:
            object.__setattr__(self, "timeout", min(self.interval, 10.0))
        elif not 0 < self.timeout <= self.interval:
            raise ValueError(
                "timeout must be more than 0 and never above interval"
            )
        return self


class Shard(_Frozen):
    """
    This instance's share of the targets: instance C{index} of C{count}.
    """

    index: Annotated[StrictInt, Field(ge=0)] = 0
    count: PositiveInt = 1

    @model_validator(mode="after")
    def _indexBelowCount(self) -> "Shard":
        if self.index >= self.count:
            raise ValueError("index must be below count")
        return self


class HunterSettings(_Frozen):
    """
    What the hunter fetches, from where, and within which limits.
    """

    allow: tuple[StrictStr, ...] = ("127.0.0.0/8", "::1/128")
    targets: tuple[TargetGroup, ...] = ()
    target_files: tuple[StrictStr, ...] = ()
    target_files_check: Duration = 5.0
    max_in_flight: PositiveInt = 256
    max_body_size: Size = 10 * 1024 * 1024
    max_redirects: Annotated[StrictInt, Field(ge=0)] = 3
    sample_limit: PositiveInt = 50000
    # "auto": instances share the targets by themselves (see
    # meetrd.membership); {index, count}: a fixed share.
    shard: Union[Literal["auto"], Shard] = "auto"
    heartbeat: PositiveDuration = 5.0
    heartbeat_ttl: PositiveDuration = 15.0
    instance: StrictStr | None = None
    fetch_jobs_kept: PositiveInt = 1000
    fetch_jobs_ttl: Duration = 3600.0
    fetch_timeout: Duration = 10.0
    slot: NonNegativeDuration = 0.1

    @field_validator("shard", mode="before")
    @classmethod
    def _autoOrFixed(cls, value: Any) -> Any:
        if value == "auto" or isinstance(value, Shard):
            return value
        if not isinstance(value, Mapping):
            raise ValueError("expected auto, or {index, count} for a fixed "
                             "share")
        try:
            return Shard.model_validate(value)
        except ValidationError as e:
            raise ValueError(describeErrors(e).replace(
                "(top level): ", "")) from None

    @model_validator(mode="after")
    def _heartbeatWithinTTL(self) -> "HunterSettings":
        if self.heartbeat_ttl < 2 * self.heartbeat:
            raise ValueError("heartbeat_ttl must be at least twice "
                             "heartbeat, or a late heartbeat drops a live "
                             "instance")
        return self

    @field_validator("allow")
    @classmethod
    def _allowRules(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for rule in value:
            if "/" in rule or isIPAddress(rule):
                try:
                    ipaddress.ip_network(rule, strict=False)
                except ValueError:
                    raise ValueError(f"{rule!r} is not a CIDR") from None
            elif not re.fullmatch(r"[A-Za-z0-9.*-]+", rule):
                raise ValueError(f"{rule!r} is neither a CIDR nor a host name")
        return value


ROLES = ("read", "write", "admin")


class Token(_Frozen):
    """
    A bearer token and the roles it grants; the token is given in the
    file or, better, read from C{token_file}.
    """

    token: SecretStr | None = None
    token_file: StrictStr | None = None
    roles: tuple[Literal[ROLES], ...]  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _readToken(self) -> "Token":
        if (self.token is None) == (self.token_file is None):
            raise ValueError("give exactly one of token and token_file")
        if self.token_file is not None:
            try:
                with open(self.token_file, encoding="utf-8") as f:
                    secret = f.read().strip()
            except OSError as e:
                raise ValueError(f"token_file {self.token_file}: "
                                 f"{e.strerror}") from None
            object.__setattr__(self, "token", SecretStr(secret))
        if len(self.token.get_secret_value()) < 16:  # type: ignore[union-attr]
            raise ValueError("a token has at least 16 characters")
        if not self.roles:
            raise ValueError("a token needs at least one role")
        return self


class AuthSettings(_Frozen):
    """
    Who may call the API.  Without tokens, everyone may.
    """

    tokens: tuple[Token, ...] = ()
    metrics_need_token: StrictBool = False


class LogSettings(_Frozen):
    """
    How meetrd writes its log.
    """

    format: Literal["text", "json"] = "text"


class RollupLevel(_Frozen):
    """
    One level of rollups: per series and per C{resolution}, the summary of
    its points, kept for C{retention} (0: forever).
    """

    resolution: Duration
    retention: NonNegativeDuration = 0.0

    @field_validator("resolution")
    @classmethod
    def _wholeSeconds(cls, value: float) -> float:
        if value < 1 or value != int(value):
            raise ValueError("a resolution is whole seconds, at least 1s")
        return value


class RollupServiceSettings(_Frozen):
    """
    How the rollup service works: it looks for raw buckets to roll up every
    C{interval}, and rolls a bucket up once C{grace} has passed since it
    closed (points arriving later roll it up again).
    """

    interval: Annotated[float, BeforeValidator(_duration),
                        Field(ge=0.1)] = 10.0
    grace: NonNegativeDuration = 60.0


class GraphiteSettings(_Frozen):
    """
    The Graphite plaintext listener: off unless C{listen} is set (a Twisted
    endpoint string such as C{tcp:2003}).
    """

    listen: StrictStr | None = None


class Settings(_Frozen):
    """
    All of meetrd's settings.
    """

    listen: StrictStr = "tcp:8888"
    retention: Duration = 0.0
    shutdown_grace: Duration = 30.0
    http: HTTPSettings = HTTPSettings()
    cassandra: CassandraSettings = CassandraSettings()
    limits: Limits = Limits()
    hunter: HunterSettings = HunterSettings()
    auth: AuthSettings = AuthSettings()
    log: LogSettings = LogSettings()
    rollups: tuple[RollupLevel, ...] = ()
    rollup: RollupServiceSettings = RollupServiceSettings()
    graphite: GraphiteSettings = GraphiteSettings()

    @field_validator("rollups")
    @classmethod
    def _coarserEach(cls, value: tuple[RollupLevel, ...]
                     ) -> tuple[RollupLevel, ...]:
        for finer, coarser in zip(value, value[1:]):
            if coarser.resolution <= finer.resolution or \
                    coarser.resolution % finer.resolution:
                raise ValueError(
                    "each level's resolution is a whole multiple of the one "
                    "before it, and larger")
        return value

    @property
    def retentionSeconds(self) -> int:
        """
        The retention as a TTL in whole seconds; 0 keeps points forever.
        """
        return int(self.retention)

    def withOverrides(self, **changes: Any) -> "Settings":
        """
        A copy with top-level keys replaced (the command line's overrides).
        """
        return self.model_copy(update=changes)


def settingsFromMapping(data: Mapping[str, Any], source: str) -> Settings:
    """
    Validate a mapping (the parsed YAML) into L{Settings}.

    @param source: the file name, for messages.
    @raise SettingsError: naming C{source}, the key and the problem.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise SettingsError(f"{source}: expected a mapping of settings at "
                            f"the top level")
    try:
        return Settings.model_validate(data)
    except ValidationError as e:
        raise SettingsError(f"{source}: {describeErrors(e)}") from None


def describeErrors(error: ValidationError) -> str:
    """
    One line naming each bad key and its problem.
    """
    parts = []
    for detail in error.errors():
        key = ".".join(str(p) for p in detail["loc"]) or "(top level)"
        if detail["type"] == "extra_forbidden":
            problem = "unknown key"
        else:
            problem = detail["msg"].removeprefix("Value error, ")
        parts.append(f"{key}: {problem}")
    return "; ".join(parts)


def loadSettings(path: str) -> Settings:
    """
    Read and validate a settings file.

    @raise SettingsError: when it is missing, unreadable, not YAML or not
        valid; the message is one line.
    """
    try:
        with open(path, "rb") as f:
            text = f.read()
    except OSError as e:
        raise SettingsError(f"{path}: cannot read: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark \
            else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SettingsError(f"{path}: invalid YAML{where}: {problem}") \
            from None
    return settingsFromMapping(data, path)
