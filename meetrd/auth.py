"""
Bearer tokens with roles: C{read} (searches, reports), C{write} (points)
and C{admin} (on-demand fetches).  Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
from typing import Any, Sequence

from meetrd.settings import AuthSettings


class AuthError(Exception):
    """
    A request may not go on: C{401} without a valid token, C{403} with one
    that lacks the role.
    """

    def __init__(self, code: int, message: str, role: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.role = role


class Authorizer:
    """
    Decides whether a request's bearer token grants a role.
    """

    def __init__(self, settings: AuthSettings) -> None:
        self._tokens: Sequence[tuple[bytes, frozenset[str]]] = [
            (t.token.get_secret_value().encode("utf-8"),  # type: ignore[union-attr]
             frozenset(t.roles))
            for t in settings.tokens]

    @property
    def enabled(self) -> bool:
        """
        Whether any token is configured.
        """
        return bool(self._tokens)

    def rolesOf(self, presented: bytes) -> frozenset[str] | None:
        """
        The roles a presented token grants, or C{None} when it is none of
        ours.  Every configured token is compared, each in constant time.
        """
        granted = None
        for token, roles in self._tokens:
            if hmac.compare_digest(token, presented):
                granted = roles
        return granted

    def check(self, request: Any, role: str) -> None:
        """
        Raise L{AuthError} unless C{request} carries a token granting
        C{role} (or no token is configured).
        """
        if not self._tokens:
            return
        header = request.getHeader(b"authorization") or b""
        scheme, _, presented = header.partition(b" ")
        if scheme.lower() != b"bearer" or not presented.strip():
            raise AuthError(401, "a bearer token is required", role)
        roles = self.rolesOf(presented.strip())
        if roles is None:
            raise AuthError(401, "the bearer token is not valid", role)
        if role not in roles and "admin" not in roles:
            raise AuthError(403, f"the token lacks the {role!r} role", role)
