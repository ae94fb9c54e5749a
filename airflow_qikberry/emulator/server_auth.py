"""
Authentication of API requests: the token's documented precedence and the login page.

:func:`resolve_token` finds the token a request carries; ``LOGIN_PAGE`` is what ``/login`` answers (an
unauthenticated browser is redirected there when ``html_login_redirect`` is on).
"""

from __future__ import annotations

from typing import Any

LOGIN_PAGE = (
    b'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Login | Qikberry</title></head>'
    b'<body><h1>Sign in</h1><form action="/login" method="post">'
    b'<label>Username <input type="text" name="username"></label>'
    b'<label>Password <input type="password" name="password"></label>'
    b'<button type="submit">Login</button></form></body></html>\n'
)


def resolve_token(headers: Any, query: dict[str, Any], body: dict[str, Any]) -> str | None:
    """Token by the documented precedence: Bearer, raw Authorization, query, then body."""
    auth = headers.get("Authorization")
    if auth:
        auth = auth.strip()
        if auth[:7].lower() == "bearer ":
            token = auth[7:].strip()
            if token:
                return token
        elif auth.lower() != "bearer":
            return auth
    for source in (query, body):
        for key in ("access_token", "api_token"):
            value = source.get(key)
            if isinstance(value, str) and value:
                return value
    return None
