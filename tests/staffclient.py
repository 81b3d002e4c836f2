"""A staff member's browser for the session and edge tests: log in with the page's CSRF token."""

from __future__ import annotations

import re

TOKEN_RE = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
PASSWORD = "correct horse battery"


def csrf_token(client, path: str = "/dashboard/login") -> str:
    match = TOKEN_RE.search(client.get(path).get_data(as_text=True))
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def login(client, email: str, password: str = PASSWORD, **extra):
    """POST the login form as a browser would; returns the response."""
    return client.post("/dashboard/login", data={"email": email, "password": password,
                                                 "csrf_token": csrf_token(client), **extra})


def post(client, path: str, data: dict | None = None):
    """POST a dashboard form with the session's CSRF token."""
    return client.post(path, data={"csrf_token": csrf_token(client, "/dashboard/"), **(data or {})})
