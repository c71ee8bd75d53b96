"""
The web console's files: the page and its scripts, styles and chart
library, shipped as package data in C{meetrd/console} and served as they
are (no build step).  They hold no data, so they are served without a
token; the console's data comes from the API with the token typed into
the page.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
}

# A file name the console may ask for: letters, digits, dots, dashes and
# underscores, not starting with a dot; folders joined by slashes.
_SEGMENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")

# The page loads only its own scripts and styles, talks only to this
# daemon, and may not be framed.  (The chart library sets element styles
# from script, which style-src must allow.)
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' "
        "'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True)
class ConsoleFile:
    """
    One file of the console, read.

    @ivar body: its bytes.
    @ivar contentType: its C{Content-Type}.
    @ivar etag: a strong entity tag of its bytes.
    """

    body: bytes
    contentType: str
    etag: str


class ConsoleFiles:
    """
    The console's files under one folder, read once each.
    """

    def __init__(self, folder: Path | None = None) -> None:
        """
        @param folder: where the files are; the package's C{console}
            folder by default.
        """
        self.folder = folder or Path(str(files("meetrd").joinpath("console")))
        self._read: dict[str, ConsoleFile | None] = {}

    def get(self, name: str) -> ConsoleFile | None:
        """
        The file at C{name} (a path relative to the folder, C{/}
        separated), or C{None} when there is none or the name is not one
        the console uses (hidden files, C{..}, other characters).
        """
        if name in self._read:
            return self._read[name]
        found = self._load(name)
        if found is not None or len(self._read) < 1000:
            self._read[name] = found
        return found

    def _load(self, name: str) -> ConsoleFile | None:
        segments = name.split("/")
        if not all(_SEGMENT.fullmatch(s) for s in segments):
            return None
        suffix = Path(segments[-1]).suffix
        if suffix not in CONTENT_TYPES:
            return None
        path = self.folder.joinpath(*segments)
        if not path.is_file():
            return None
        body = path.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        return ConsoleFile(body, CONTENT_TYPES[suffix], etag)
