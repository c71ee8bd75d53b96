"""
The twistd dropin for C{twistd meetr}; it names the real module only, so
listing plugins imports nothing heavy.
"""

from twisted.application.service import ServiceMaker

meetr = ServiceMaker(
    "meetr",
    "meetrd.tap",
    "A metrics daemon: HTTP API and hunter over Apache Cassandra.",
    "meetr",
)
