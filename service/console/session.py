"""Who the browser is to the console: its token cookie, and the checks on its forms.

With tokens on, the console asks for a token once and keeps it in an HttpOnly,
SameSite=Strict cookie (Secure over HTTPS), which scripts cannot read and other sites
cannot make the browser send. Every form and every script call that changes something
must come from this origin: a Sec-Fetch-Site or Origin header naming another site is
refused, and so is a request without the CSRF token, a random value kept in a cookie
of its own and repeated in the form (or the X-CSRF-Token header), compared in constant
time. A token without ``schedules:write`` sees no write buttons: that is found out once,
at sign-in, by a create the API refuses before reading it (403 without the scope, 422
with it), and kept in a cookie that only hides buttons: the API decides every write.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from aiohttp import web

TOKEN_COOKIE = "cs_console_token"
CSRF_COOKIE = "cs_console_csrf"
WRITE_COOKIE = "cs_console_write"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
SAME_SITE = frozenset({"same-origin", "none"})
SESSION_S = 12 * 3600
AUTH = web.AppKey("console_auth", bool)
"""Whether the API asks for tokens (else the console opens directly, as under --insecure-dev)."""


@dataclass(frozen=True)
class Visitor:
    token: str | None
    can_write: bool
    csrf: str
    new_csrf: bool
    signed_in: bool
    auth: bool


def visitor(request: web.Request) -> Visitor:
    auth = request.app[AUTH]
    token = request.cookies.get(TOKEN_COOKIE) if auth else None
    csrf = request.cookies.get(CSRF_COOKIE, "")
    fresh = len(csrf) < 32
    if fresh:
        csrf = secrets.token_urlsafe(32)
    can_write = (not auth) or request.cookies.get(WRITE_COOKIE) == "1"
    return Visitor(token, can_write, csrf, fresh, bool(token) or not auth, auth)


def keep_csrf(request: web.Request, response: web.StreamResponse, who: Visitor) -> None:
    if who.new_csrf:
        _cookie(request, response, CSRF_COOKIE, who.csrf)


def _cookie(request: web.Request, response: web.StreamResponse, name: str, value: str) -> None:
    response.set_cookie(
        name,
        value,
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        path="/",
        max_age=SESSION_S,
    )


def sign_in(request: web.Request, response: web.StreamResponse, token: str, write: bool) -> None:
    _cookie(request, response, TOKEN_COOKIE, token)
    _cookie(request, response, WRITE_COOKIE, "1" if write else "0")


def sign_out(response: web.StreamResponse) -> None:
    for name in (TOKEN_COOKIE, WRITE_COOKIE):
        response.del_cookie(name, path="/")


def same_origin(request: web.Request) -> str | None:
    """Why a state-changing request is not this site's own (None: it is)."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in SAME_SITE:
        return f"a request from another site (Sec-Fetch-Site: {site})"
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{request.host}":
        return "a request from another origin"
    return None


def check_csrf(request: web.Request, sent: str | None) -> str | None:
    """Why a state-changing request must be refused (None: it may go on)."""
    refused = same_origin(request)
    if refused:
        return refused
    kept = request.cookies.get(CSRF_COOKIE, "")
    if not sent or not kept or not hmac.compare_digest(sent.encode(), kept.encode()):
        return "the form's CSRF token is missing or stale: reload the page and try again"
    return None
