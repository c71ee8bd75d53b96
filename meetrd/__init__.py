"""
meetrd: a metrics daemon that takes points over HTTP, hunts them from
nodes and keeps them in Apache Cassandra.
"""

__version__ = "0.1.0"
