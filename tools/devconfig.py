"""
Write the settings of a development run against a local node:
C{python -m tools.devconfig HOST:PORT > meetr.yaml}.
"""

from __future__ import annotations

import sys

import yaml

from meetrd.settings import parseNode


def developmentSettings(node: str, listen: str = "tcp:8888:interface=127.0.0.1"
                        ) -> dict[str, object]:
    """
    Settings for a development run: the API on loopback, the local node,
    a keyspace of its own.
    """
    host, port = parseNode(node)
    return {
        "listen": listen,
        "cassandra": {
            "contact_points": [host],
            "port": port,
            "keyspace": "meetr_dev",
            "replication": {"class": "SimpleStrategy",
                            "replication_factor": 1},
            "consistency": {"read": "ONE", "write": "ONE"},
        },
        "http": {"access_log": True},
    }


def main(argv: list[str]) -> int:
    """
    Print the development settings for the node named on the command line.
    """
    if len(argv) != 2:
        sys.stderr.write("usage: python -m tools.devconfig HOST:PORT\n")
        return 2
    sys.stdout.write(yaml.safe_dump(developmentSettings(argv[1]),
                                    sort_keys=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
