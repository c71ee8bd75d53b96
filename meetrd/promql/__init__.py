"""
PromQL on meetrd's store: the Prometheus HTTP query API.

L{syntax} turns a query parsed by C{promql-parser} into the expressions
meetrd evaluates (refusing what it does not support, before any read);
L{selectors} reads the series and samples a query needs from the store;
L{engine} evaluates an expression at each step, with the range functions
of L{functions}; L{httpapi} reads the request parameters and writes the
answers in Prometheus's format.
"""
