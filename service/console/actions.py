"""The console's forms: create and change a schedule, pause, resume, run now, delete;
sign in and out. Each checks the form came from this site (guard.console) and sends
one /v1 call; the answer is a redirect (POST-redirect-GET) or the form with its errors."""

from __future__ import annotations

from urllib.parse import quote, urlsplit

from aiohttp import web

from service.console.client import Api
from service.console.editor import form_errors, render_editor, schedule_body
from service.console.guard import LOGIN, console, need
from service.console.session import Visitor, check_csrf, sign_in, sign_out, visitor
from service.console.view import page, redirect


def _form(data: object) -> dict[str, str]:
    assert hasattr(data, "items")
    return {k: v for k, v in data.items() if isinstance(v, str)}


FORM = web.RequestKey("console_form", dict[str, str])


def _back(request: web.Request, fallback: str) -> str:
    """Where a form returns to: its 'back' field when it is a path of this site."""
    target = request.get(FORM, {}).get("back", "")
    parts = urlsplit(target)
    ok = target.startswith("/") and not target.startswith("//") and not parts.netloc
    return target if ok else fallback


async def _form_of(request: web.Request) -> dict[str, str]:
    form = _form(await request.post())
    request[FORM] = form
    return form


@console
async def create_schedule(request: web.Request, who: Visitor, api: Api) -> web.StreamResponse:
    form = await _form_of(request)
    body, errors = schedule_body(form)
    sid = form.get("id", "").strip()
    if sid:
        body["id"] = sid
    if form.get("note", "").strip():
        body["note"] = form["note"].strip()
    if not errors:
        key = form.get("idempotency_key") or None
        answer = await api.call(
            "POST",
            "/v1/schedules",
            body=body,
            headers={"Idempotency-Key": key} if key else None,
        )
        if answer.ok:
            return redirect(f"/console/schedules/{quote(answer.body['id'])}")
        errors = form_errors(answer)
    return await render_editor(request, who, api, form, errors, editing=None, status=422)


@console
async def update_schedule(request: web.Request, who: Visitor, api: Api) -> web.StreamResponse:
    sid = request.match_info["id"]
    form = await _form_of(request)
    body, errors = schedule_body(form)
    if not errors:
        version = form.get("version", "").strip()
        answer = await api.call(
            "PATCH",
            f"/v1/schedules/{quote(sid, safe='')}",
            body=body,
            headers={
                "Content-Type": "application/merge-patch+json",
                **({"If-Match": f'"{version}"'} if version.isdigit() else {}),
            },
        )
        if answer.ok:
            return redirect(f"/console/schedules/{quote(sid, safe='')}")
        errors = form_errors(answer)
        if answer.status == 412:
            errors["body"] = "someone changed this schedule meanwhile: reload to edit it again"
    form["id"] = sid
    return await render_editor(request, who, api, form, errors, editing=sid, status=422)


async def _command(request: web.Request, api: Api, verb: str, body: dict[str, str]) -> None:
    sid = request.match_info["id"]
    need(await api.call("POST", f"/v1/schedules/{quote(sid, safe='')}/{verb}", body=body))


@console
async def pause(request: web.Request, who: Visitor, api: Api) -> web.StreamResponse:
    form = await _form_of(request)
    await _command(request, api, "pause", {"note": form.get("note", "").strip()})
    return redirect(_back(request, "/console/schedules"))


@console
async def resume(request: web.Request, who: Visitor, api: Api) -> web.StreamResponse:
    form = await _form_of(request)
    await _command(request, api, "resume", {"note": form.get("note", "").strip()})
    return redirect(_back(request, "/console/schedules"))


@console
async def run_now(request: web.Request, who: Visitor, api: Api) -> web.StreamResponse:
    """Run now, then the new run's page (or back, when the overlap policy held it off)."""
    await _form_of(request)
    sid = request.match_info["id"]
    fired = need(await api.call("POST", f"/v1/schedules/{quote(sid, safe='')}/trigger", body={}))
    if fired.get("run_id"):
        return redirect(f"/console/runs/{quote(fired['run_id'])}")
    return redirect(_back(request, f"/console/schedules/{quote(sid, safe='')}"))


@console
async def cancel_run(request: web.Request, who: Visitor, api: Api) -> web.StreamResponse:
    return await _run_command(request, api, "cancel")


@console
async def retry_run(request: web.Request, who: Visitor, api: Api) -> web.StreamResponse:
    return await _run_command(request, api, "retry")


async def _run_command(request: web.Request, api: Api, verb: str) -> web.StreamResponse:
    """Cancel or retry a run (the API says when it cannot: finished, or not failed)."""
    await _form_of(request)
    rid = quote(request.match_info["id"], safe="")
    need(await api.call("POST", f"/v1/runs/{rid}/{verb}", body={}))
    return redirect(f"/console/runs/{rid}")


@console
async def confirm_delete(request: web.Request, who: Visitor, api: Api) -> web.StreamResponse:
    schedule = need(await api.get(f"/v1/schedules/{quote(request.match_info['id'], safe='')}"))
    return page(request, who, "delete.html", s=schedule)


@console
async def delete(request: web.Request, who: Visitor, api: Api) -> web.StreamResponse:
    await _form_of(request)
    need(await api.call("DELETE", f"/v1/schedules/{quote(request.match_info['id'], safe='')}"))
    return redirect("/console/schedules")


async def login_page(request: web.Request) -> web.StreamResponse:
    who = visitor(request)
    if not who.auth:
        return redirect("/console/schedules")
    return page(request, who, "login.html", error=None, next=_next(request.query.get("next")))


def _next(target: str | None) -> str:
    ok = bool(target) and target.startswith("/") and not target.startswith("//")  # type: ignore[union-attr]
    return target if ok and target else "/console/schedules"


async def login(request: web.Request) -> web.StreamResponse:
    who = visitor(request)
    form = _form(await request.post())
    refused = check_csrf(request, form.get("csrf"))
    if refused or not who.auth:
        return page(request, who, "error.html", 403, title="Refused", detail=refused or "")
    token = form.get("token", "").strip()
    api = Api(request, token)
    probe = await api.get("/v1/schedules", limit="1")
    if probe.status == 401 or not token:
        detail = probe.errors().get("body", "a token is required")
        return page(request, who, "login.html", 401, error=detail, next=_next(form.get("next")))
    # an empty create: refused for the scope (403) before validation (422); writes nothing
    write = await api.call("POST", "/v1/schedules", body={})
    response = redirect(_next(form.get("next")))
    sign_in(request, response, token, write.status == 422)
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    form = _form(await request.post())
    if check_csrf(request, form.get("csrf")):
        return page(request, visitor(request), "error.html", 403, title="Refused", detail="")
    response = redirect(LOGIN)
    sign_out(response)
    return response
