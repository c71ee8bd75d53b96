"""
Targets: one node of one group, with a stable identity that decides its
place in the schedule and which instance of several hunts it.
"""

from __future__ import annotations

import glob
import hashlib
import os
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

import yaml
from pydantic import TypeAdapter, ValidationError

from meetrd.settings import (
    HunterSettings,
    Shard,
    SettingsError,
    TargetGroup,
    describeErrors,
)


@dataclass(frozen=True)
class Target:
    """
    One node to hunt, as one group describes it.

    @ivar key: the target's identity: job, node and path.
    """

    job: str
    node: str
    path: str
    interval: float
    timeout: float
    format: str
    labels: tuple[tuple[str, str], ...]

    @property
    def key(self) -> str:
        """
        What identifies this target across reloads.
        """
        return f"{self.job}|{self.node}|{self.path}"

    @property
    def url(self) -> str:
        """
        The URL fetched.
        """
        return f"http://{self.node}{self.path}"

    @property
    def tags(self) -> dict[str, str]:
        """
        The tags every sample of this target gets.
        """
        tags = dict(self.labels)
        tags["job"] = self.job
        tags["node"] = self.node
        return tags


def stableHash(key: str) -> int:
    """
    A 64-bit hash of a key, the same in every process and every run.
    """
    return int.from_bytes(
        hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "big")


def startOffset(target: Target, slot: float = 0.0) -> float:
    """
    Where in its interval a target's scrapes fall, in seconds: spread by a
    stable hash so that many targets of one interval do not fire at once.

    With a C{slot}, the offset is the start of one of the interval's
    slots, C{slot} seconds apart (or as near as the interval divides into
    a whole number of them), so that the targets of one slot start
    together, in one turn of the reactor: their fetches go out together,
    their answers come back together, and their writes share the
    connection's sends to Cassandra.  At 1,000 targets every 10 s, slots
    of 100 ms (ten targets each) took the reactor 1.5 ms a scrape where
    spread offsets took 2.2 (C{bench/hunt.py}); a slot's targets arrive
    at a node's network and at Cassandra as one burst, which is the price.
    """
    if slot > 0:
        slots = max(1, round(target.interval / slot))
        return (stableHash(target.key) % slots) * (target.interval / slots)
    return (stableHash(target.key) % 1_000_000) / 1_000_000 * target.interval


def ownedBy(target: Target, shard: Shard) -> bool:
    """
    Whether instance C{shard.index} of C{shard.count} hunts C{target}.
    """
    return stableHash("shard|" + target.key) % shard.count == shard.index


def expand(groups: Iterable[TargetGroup]) -> list[Target]:
    """
    One L{Target} per node of each group; a node listed twice in a group
    counts once.
    """
    targets: dict[str, Target] = {}
    for group in groups:
        labels = tuple(sorted(group.labels.items()))
        for node in group.nodes:
            target = Target(group.job, node, group.path, group.interval,
                            group.timeout or group.interval, group.format,
                            labels)
            targets.setdefault(target.key, target)
    return list(targets.values())


_GROUPS = TypeAdapter(tuple[TargetGroup, ...])


def readTargetFile(path: str) -> tuple[TargetGroup, ...]:
    """
    Read one target file: a YAML list of groups in the settings' form (or
    a mapping with a C{targets} list).

    @raise SettingsError: naming the file and the problem.
    """
    try:
        with open(path, "rb") as f:
            data = yaml.safe_load(f.read())
    except OSError as e:
        raise SettingsError(f"{path}: cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise SettingsError(f"{path}: invalid YAML: "
                            f"{str(e).splitlines()[0]}") from None
    if isinstance(data, Mapping) and set(data) == {"targets"}:
        data = data["targets"]
    if data is None:
        return ()
    if not isinstance(data, list):
        raise SettingsError(f"{path}: expected a list of target groups")
    try:
        return _GROUPS.validate_python(data)
    except ValidationError as e:
        raise SettingsError(f"{path}: {describeErrors(e)}") from None


def targetFiles(patterns: Sequence[str]) -> list[str]:
    """
    The files the target-file patterns name now, sorted.
    """
    found: set[str] = set()
    for pattern in patterns:
        found.update(glob.glob(pattern))
    return sorted(found)


def fileStamps(paths: Iterable[str]) -> dict[str, tuple[float, int]]:
    """
    Modification time and size of each file, to notice changes.
    """
    stamps = {}
    for path in paths:
        try:
            info = os.stat(path)
        except OSError:
            continue
        stamps[path] = (info.st_mtime, info.st_size)
    return stamps


def configuredTargets(settings: HunterSettings,
                      fileGroups: Iterable[TargetGroup] = (),
                      owns: Callable[[Target], bool] | None = None
                      ) -> list[Target]:
    """
    The targets of the settings plus the target files, this instance's
    share only: those C{owns} accepts, or by default those of the fixed
    C{shard} (every one with C{shard: auto}).
    """
    if owns is None:
        shard = settings.shard
        if isinstance(shard, Shard):
            def owns(target: Target) -> bool:
                return ownedBy(target, shard)
        else:
            return expand([*settings.targets, *fileGroups])
    return [target for target in expand([*settings.targets, *fileGroups])
            if owns(target)]
