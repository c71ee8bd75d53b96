"""
The rules names follow in meetrd, for what clients send
(L{meetrd.validation}) and for what the hunter reads
(L{meetrd.hunter.pagebuild}) alike, so that whatever is stored can be asked
for.
"""

from __future__ import annotations

import re

METRIC_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:/\-]*")
"""A metric name, whole (use C{fullmatch})."""

TAG_KEY_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
"""A tag key, whole (use C{fullmatch})."""

CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")
"""A character no tag value may hold (use C{search})."""

METRIC_RULE = ("letters, digits and _ . : / - (not starting with "
               ". : / or -)")
"""L{METRIC_PATTERN} in words, for a client."""

TAG_KEY_RULE = "a letter or _, then letters, digits, _ . or -"
"""L{TAG_KEY_PATTERN} in words, for a client."""
