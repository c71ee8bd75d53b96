"""
Which nodes an on-demand fetch may reach: the C{hunter.allow} rules.

A rule is a network (C{127.0.0.0/8}, C{::1}) or a host name, exact or
with a leading wildcard (C{*.example.org}).  A node given as an address
must fall in a network rule; a node given as a name must match a name rule
(names are not resolved, so that DNS cannot move a node inside a network).
"""

from __future__ import annotations

import fnmatch
import ipaddress
from typing import Sequence

from meetrd.settings import isIPAddress


class NotAllowed(Exception):
    """
    A node is outside every allow rule; the message names the rules.
    """


def checkAllowed(host: str, rules: Sequence[str]) -> None:
    """
    Raise L{NotAllowed} unless C{host} matches a rule.
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for rule in rules:
        if address is not None:
            if "/" in rule or isIPAddress(rule):
                if address in ipaddress.ip_network(rule, strict=False):
                    return
        elif not ("/" in rule or isIPAddress(rule)):
            if fnmatch.fnmatchcase(host.lower(), rule.lower()):
                return
    raise NotAllowed(
        f"{host} is not allowed by hunter.allow "
        f"[{', '.join(rules)}]" if rules else
        f"{host} is not allowed: hunter.allow is empty")
