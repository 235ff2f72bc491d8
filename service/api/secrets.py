"""A workflow's stored signing secrets: make one (shown once), rotate, list, revoke.

The secret is in the answer to the call that made it and nowhere else the API serves:
the listing has ids and times only, and nothing here appends to the log. The store
(service/store/secrets.py) keeps it encrypted under CRONSTREAM_SECRET_KEY; without
that key a create is a 409 problem that says so.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from service.api import tenancy
from service.api.context import KEYS, REDIS, SETTINGS, VIEWS, json_response, read_model
from service.api.params import ID
from service.api.routing import Param, Reply, route
from service.domain.ids import is_valid_id
from service.domain.timeutil import to_rfc3339
from service.domain.tokens import Scope
from service.domain.types import Duration
from service.errors import WorkflowNotFound
from service.store.secrets import (
    DEFAULT_GRACE_MS,
    MAX_GRACE_MS,
    MadeSecret,
    SigningSecretNotFound,
    SigningSecrets,
    StoredSecret,
)

TAG = "workflows"
PATH = "/v1/workflows/{id}/signing-secrets"
SECRET_ID = r"^sec_[0-9a-f]{16}$"
NO_STORE = {"Cache-Control": "no-store"}
PARAMS = (Param("id", "Workflow id", ID, location="path", required=True),)
SECRET_PARAM = Param(
    "secret_id",
    "Signing secret id",
    {"type": "string", "pattern": SECRET_ID},
    location="path",
    required=True,
)


class SigningSecretMade(BaseModel):
    id: str
    workflow_id: str
    secret: str = Field(
        description="The secret (whsec_ + base64 of 32 bytes). Shown in this answer only."
    )
    created_at: str


class SigningSecretView(BaseModel):
    id: str
    created_at: str
    expires_at: str | None = Field(description="None: live until rotated or revoked")


class SigningSecretPage(BaseModel):
    items: list[SigningSecretView]


class RotateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grace: Duration = Field(
        default=DEFAULT_GRACE_MS,
        le=MAX_GRACE_MS,
        description="How long the secrets live now stay live beside the new one (0: end now).",
    )


async def _secrets(request: web.Request) -> tuple[SigningSecrets, str]:
    """The store, and the id of the workflow the path names (404 when it has none)."""
    named = request.match_info["id"]
    if not is_valid_id(named):
        raise WorkflowNotFound(named)
    wid = tenancy.internal(request, named)
    if await request.app[VIEWS].workflow(wid) is None:
        raise WorkflowNotFound(named)
    # the API's key is its settings' (CRONSTREAM_SECRET_KEY as serve read it); "" is none
    store = SigningSecrets(
        request.app[REDIS], request.app[KEYS], request.app[SETTINGS].secret_key or ""
    )
    return store, wid


def _made(made: MadeSecret, wid: str) -> web.Response:
    body = {
        "id": made.id,
        "workflow_id": tenancy.bare(wid),
        "secret": made.secret,
        "created_at": to_rfc3339(made.created_ms),
    }
    return json_response(body, 201, NO_STORE)


def _view(stored: StoredSecret) -> dict[str, str | None]:
    expires = stored.expires_ms
    return {
        "id": stored.id,
        "created_at": to_rfc3339(stored.created_ms),
        "expires_at": to_rfc3339(expires) if expires is not None else None,
    }


@route(
    "POST",
    PATH,
    summary="Make a workflow's first stored signing secret (shown once)",
    tag=TAG,
    scope=Scope.WORKFLOWS_WRITE,
    body_required=False,
    replies=(Reply(201, "Made: the secret is in this answer only", SigningSecretMade),),
    problems=(404, 409, 503),
    params=PARAMS,
)
async def create_secret(request: web.Request) -> web.StreamResponse:
    store, wid = await _secrets(request)
    return _made(await store.create(wid), wid)


@route(
    "POST",
    PATH + "/rotate",
    summary="Make a new signing secret; the live ones end after a grace period",
    tag=TAG,
    scope=Scope.WORKFLOWS_WRITE,
    body=RotateBody,
    body_required=False,
    replies=(Reply(201, "Made: the secret is in this answer only", SigningSecretMade),),
    problems=(404, 409, 422, 503),
    params=PARAMS,
)
async def rotate_secret(request: web.Request) -> web.StreamResponse:
    store, wid = await _secrets(request)
    body = await read_model(request, RotateBody, allow_empty=True)
    return _made(await store.rotate(wid, body.grace), wid)


@route(
    "GET",
    PATH,
    summary="List a workflow's live signing secrets (ids and times, never a secret)",
    tag=TAG,
    scope=Scope.WORKFLOWS_READ,
    replies=(Reply(200, "The live secrets, oldest first", SigningSecretPage),),
    problems=(404, 503),
    params=PARAMS,
)
async def list_secrets(request: web.Request) -> web.StreamResponse:
    store, wid = await _secrets(request)
    return json_response({"items": [_view(s) for s in await store.live(wid)]})


@route(
    "DELETE",
    PATH + "/{secret_id}",
    summary="Revoke a signing secret now",
    tag=TAG,
    scope=Scope.WORKFLOWS_WRITE,
    replies=(Reply(204, "Revoked", media_type=None),),
    problems=(404, 503),
    params=(*PARAMS, SECRET_PARAM),
)
async def revoke_secret(request: web.Request) -> web.StreamResponse:
    store, wid = await _secrets(request)
    secret_id = request.match_info["secret_id"]
    if not secret_id.startswith("sec_") or len(secret_id) != 20:
        raise SigningSecretNotFound(secret_id)
    await store.revoke(wid, secret_id)
    return web.Response(status=204)
