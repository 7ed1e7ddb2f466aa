"""API keys with scopes (`RILLET_API_KEYS`): 401 without a known key, 403 without the scope.

`admin` implies every scope. The app factory attaches `require(scope)` to each `/v1`
router when keys are configured; without keys authentication is off (and costs nothing).
Keys are compared in constant time; they never appear in logs or error messages.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from features.errors import AuthError

bearer = HTTPBearer(auto_error=False, description="An API key from RILLET_API_KEYS")


def check_key(keys: Mapping[str, str], presented: str | None, scope: str) -> str:
    """The scope granted to `presented` if it allows `scope`; raises `AuthError` otherwise.

    >>> check_key({"k": "admin"}, "k", "write")
    'admin'
    """
    if not presented:
        msg = "missing API key: send `Authorization: Bearer <key>`"
        raise AuthError(msg)
    granted = None
    for key, key_scope in keys.items():
        if hmac.compare_digest(key.encode(), presented.encode()):
            granted = key_scope
    if granted is None:
        msg = "unknown API key"
        raise AuthError(msg)
    if granted != "admin" and granted != scope:
        msg = f"this API key has scope {granted!r}; the request needs {scope!r}"
        raise AuthError(msg, forbidden=True)
    return granted


def require(scope: str) -> Callable[..., Awaitable[None]]:
    """A dependency that enforces `scope` when API keys are configured."""

    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        keys: Mapping[str, str] = request.app.state.api_keys
        if not keys:
            return
        check_key(keys, credentials.credentials if credentials else None, scope)

    return dependency


ReadScope = Depends(require("read"))
WriteScope = Depends(require("write"))
