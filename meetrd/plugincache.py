"""
Regenerate Twisted's plugin cache after an install and check that the
C{meetr} plugin is found: C{python -m meetrd.plugincache}.

A wheel install runs no code of the package, so the cache
(C{twisted/plugins/dropin.cache}) is written on first use, or here; run it
as the user that owns the installation, so that a daemon started as an
unprivileged user does not try (and fail) to write it.
"""

from __future__ import annotations

import sys


def regenerate() -> list[str]:
    """
    Rebuild the cache and return the names of the twistd plugins found.
    """
    from twisted.application.service import IServiceMaker
    from twisted.plugin import IPlugin, getPlugins

    list(getPlugins(IPlugin))
    return sorted(plugin.tapname for plugin in getPlugins(IServiceMaker))


def main() -> int:
    """
    Rebuild the cache; exit 1 when the meetr plugin is not found.
    """
    names = regenerate()
    if "meetr" not in names:
        sys.stderr.write("the meetr twistd plugin was not found; is "
                         "twisted/plugins/meetr_plugin.py installed?\n")
        return 1
    sys.stdout.write("twistd plugins: " + ", ".join(names) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
