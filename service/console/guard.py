"""What every console page does first: know the visitor, send it to sign in when the
API needs a token it has not given, and show the API's refusals as pages."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any
from urllib.parse import quote

from aiohttp import web

from service.console.client import Answer, Api
from service.console.session import Visitor, check_csrf, sign_out, visitor
from service.console.view import page, redirect

Page = Callable[[web.Request, Visitor, Api], Awaitable[web.StreamResponse]]
LOGIN = "/console/login"


class Refused(Exception):
    """The API refused a call a page needed: the page shows why."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.status)
        self.answer = answer


def need(answer: Answer) -> Any:
    if not answer.ok:
        raise Refused(answer)
    return answer.body


def to_login(request: web.Request) -> web.Response:
    target = quote(request.path_qs, safe="")
    return redirect(f"{LOGIN}?next={target}")


def console(handler: Page) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A console page: signed in (when tokens are on), with the API's refusals shown."""

    @wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        who = visitor(request)
        if not who.signed_in:
            return to_login(request)
        if request.method != "GET":
            form = await request.post()
            sent = form.get("csrf") or request.headers.get("X-CSRF-Token")
            refused = check_csrf(request, sent if isinstance(sent, str) else None)
            if refused:
                return page(request, who, "error.html", 403, title="Refused", detail=refused)
        try:
            return await handler(request, who, Api(request, who.token))
        except Refused as exc:
            return refused_page(request, who, exc.answer)

    return wrapped


def refused_page(request: web.Request, who: Visitor, answer: Answer) -> web.StreamResponse:
    if answer.status == 401 and who.auth:
        response = to_login(request)
        sign_out(response)
        return response
    body = answer.body if isinstance(answer.body, dict) else {}
    detail = str(body.get("detail") or body.get("title") or f"the API answered {answer.status}")
    return page(
        request,
        who,
        "error.html",
        answer.status if answer.status >= 400 else 502,
        title=str(body.get("title") or "Error"),
        detail=detail,
    )
