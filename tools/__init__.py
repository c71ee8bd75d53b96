"""
Development tooling, run from the repository root and never installed:
the local Cassandra node (L{tools.devnode}), the settings of a development
run (L{tools.devconfig}) and the console's vendored chart library
(L{tools.consolevendor}).
"""
