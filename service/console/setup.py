"""Mount the console on the API's application."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from service.console import actions, editor, forecast_page, pages, proxy
from service.console.client import client_session
from service.console.session import AUTH
from service.console.view import PARTITIONS

STATIC = Path(__file__).parent / "static"


async def home(request: web.Request) -> web.StreamResponse:
    return web.Response(status=303, headers={"Location": "/console/schedules"})


def setup_console(app: web.Application, *, auth: bool, partitions: int) -> None:
    """The console's routes on ``app``; ``auth``: the API asks for tokens; ``partitions``:
    of the log, for the event stream's starting position."""
    app[AUTH] = auth
    app[PARTITIONS] = partitions
    app.cleanup_ctx.append(client_session)
    add = app.router.add_route
    add("GET", "/", home)
    add("GET", "/console", home)
    add("GET", "/console/schedules", pages.schedules_page)
    add("POST", "/console/schedules", actions.create_schedule)
    add("GET", "/console/schedules/new", editor.new_schedule)
    add("GET", "/console/schedules/{id}", pages.schedule_page)
    add("POST", "/console/schedules/{id}", actions.update_schedule)
    add("GET", "/console/schedules/{id}/edit", editor.edit_schedule)
    add("POST", "/console/schedules/{id}/pause", actions.pause)
    add("POST", "/console/schedules/{id}/resume", actions.resume)
    add("POST", "/console/schedules/{id}/run", actions.run_now)
    add("GET", "/console/schedules/{id}/delete", actions.confirm_delete)
    add("POST", "/console/schedules/{id}/delete", actions.delete)
    add("GET", "/console/runs", pages.runs_page)
    add("GET", "/console/runs/{id}", pages.run_page)
    add("POST", "/console/runs/{id}/cancel", actions.cancel_run)
    add("POST", "/console/runs/{id}/retry", actions.retry_run)
    add("GET", "/console/forecast", forecast_page.forecast_page)
    add("GET", "/console/login", actions.login_page)
    add("POST", "/console/login", actions.login)
    add("POST", "/console/logout", actions.logout)
    add("GET", "/console/v1/{tail:.+}", proxy.proxy)
    add("POST", "/console/v1/{tail:.+}", proxy.proxy)
    app.router.add_static("/console/static", STATIC)
