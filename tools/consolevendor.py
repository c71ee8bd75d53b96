"""
The web console's chart library, uPlot, fetched from the npm registry at
a pinned version and checked against the registry's sha512 integrity,
into C{meetrd/console/vendor} (git-ignored, shipped in the wheel as package
data; this module is not).  Run by C{make} from the repository root before
anything that serves, tests or packages the console:

    python -m tools.consolevendor

Nothing is fetched when the files of the pinned version are already there;
nothing is fetched at run time.
"""

from __future__ import annotations

import base64
import hashlib
import io
import sys
import tarfile
import urllib.request
from pathlib import Path

VERSION = "1.6.32"
TARBALL = f"https://registry.npmjs.org/uplot/-/uplot-{VERSION}.tgz"
INTEGRITY = ("sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+"
             "jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw==")
# The files the console loads, by their place in the package tarball.
FILES = {
    "package/dist/uPlot.iife.min.js": "uPlot.iife.min.js",
    "package/dist/uPlot.min.css": "uPlot.min.css",
    "package/LICENSE": "uPlot.LICENSE.txt",
}
# The console folder of the package, beside this one.
REPOSITORY = Path(__file__).resolve().parent.parent
VENDOR = REPOSITORY / "meetrd" / "console" / "vendor"


class IntegrityError(Exception):
    """
    The tarball is not the one the registry's integrity names.
    """


def checkIntegrity(data: bytes, integrity: str) -> None:
    """
    Raise L{IntegrityError} unless C{data} has the SRI C{integrity}
    (C{sha512-<base64>}).
    """
    algorithm, _, expected = integrity.partition("-")
    if algorithm != "sha512":
        raise IntegrityError(f"unsupported integrity {integrity[:20]!r}")
    actual = base64.b64encode(hashlib.sha512(data).digest()).decode("ascii")
    if actual != expected:
        raise IntegrityError(f"sha512 {actual} is not the pinned {expected}")


def extract(data: bytes, folder: Path) -> list[Path]:
    """
    Write the console's files of the tarball C{data} into C{folder}.
    """
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member, name in FILES.items():
            source = tar.extractfile(member)
            if source is None:
                raise IntegrityError(f"{member} is not a file")
            target = folder / name
            target.write_bytes(source.read())
            written.append(target)
    (folder / "VERSION").write_text(VERSION + "\n")
    return written


def present(folder: Path) -> bool:
    """
    Whether C{folder} already holds the files of the pinned version.
    """
    stamp = folder / "VERSION"
    return stamp.is_file() and stamp.read_text().strip() == VERSION and \
        all((folder / name).is_file() for name in FILES.values())


def main(folder: Path = VENDOR) -> int:
    """
    Fetch, check and extract the pinned uPlot unless it is there already.
    """
    if present(folder):
        return 0
    with urllib.request.urlopen(TARBALL, timeout=60) as response:
        data = response.read()
    try:
        checkIntegrity(data, INTEGRITY)
    except IntegrityError as e:
        print(f"tools.consolevendor: {TARBALL}: {e}", file=sys.stderr)
        return 1
    for path in extract(data, folder):
        print(f"tools.consolevendor: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
