"""
Errors of the Prometheus query API, in Prometheus's own terms.
"""

from __future__ import annotations


class PromError(Exception):
    """
    A query that cannot be answered: the HTTP code and C{errorType} of
    Prometheus's API (C{bad_data} 400, C{execution} 422, C{timeout} and
    C{unavailable} 503).
    """

    code = 400
    errorType = "bad_data"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadData(PromError):
    """
    The request or the query is wrong, or uses what meetrd does not
    support: C{400 bad_data}.
    """


class ExecutionError(PromError):
    """
    A valid query that cannot be evaluated (too many series, duplicate
    label sets, matching that is not one-to-one): C{422 execution}.
    """

    code = 422
    errorType = "execution"
