"""Stored signing secrets: made by the service, shown once, kept encrypted outside the log.

A workflow whose target says ``signing: stored`` has its webhooks signed with the
secrets kept here instead of one named by ``secret_env``. Each is ``whsec_`` + the
base64 of 32 random bytes (a Standard Webhooks secret), encrypted with AES-256-GCM under
the key in ``CRONSTREAM_SECRET_KEY`` (base64 of 32 bytes; ``cronstream secret-key
generate`` makes one). The associated data names the workflow and the secret, so a
ciphertext copied to another workflow's hash does not decrypt there.

They live in one hash per workflow, ``cs:{p}:signing:<workflow id>`` in the workflow's
partition, written by one script (``signing.lua``): never in the event log, so never
in an event, a view, an archive or a replay. The secret itself is returned once, by
``create`` or ``rotate``; ``live`` lists ids and times only.

Rotation keeps two secrets live, as Standard Webhooks allows: a delivery is signed with
every live secret (``webhook-signature: v1,<a> v1,<b>``), so a receiver that has either
verifies it. ``rotate`` makes a new secret and lets the others live until a grace
period ends; ``revoke`` ends one at once.

Errors:

    SigningKeyMissing (Conflict)   409  no usable CRONSTREAM_SECRET_KEY here: none can be made
    SigningSecretsFull (Conflict)  409  too many live secrets, or create while one is live
    SigningSecretNotFound (NotFound)    404  no such live secret
    SecretUnreadable (ValueError)       a sealed secret that this key cannot open

No message quotes a secret or the key.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from redis.asyncio import Redis

from service.config import SECRET_KEY_VAR
from service.errors import Conflict, NotFound
from service.store.boundary import translate_redis_errors
from service.store.keys import Keyspace
from service.store.scripts import load_script

KEY_BYTES = 32
SECRET_BYTES = 32
SECRET_PREFIX = "whsec_"
ID_PREFIX = "sec_"
MAX_LIVE = 3
"""Live secrets at once: the current one, the one it replaced, and one more rotation
inside the grace period."""
DEFAULT_GRACE_MS = 24 * 3600 * 1000
MAX_GRACE_MS = 30 * 24 * 3600 * 1000
_NONCE_BYTES = 12
_SEALED_VERSION = "v1."


class SigningKeyMissing(Conflict):
    def __init__(self, why: str) -> None:
        super().__init__(f"signing secrets cannot be stored: {why}")


class SigningSecretsFull(Conflict):
    def __init__(self, workflow_id: str, live: int, rotate_instead: bool) -> None:
        self.ident = workflow_id
        if rotate_instead:
            why = "it has a live signing secret: rotate it to make another"
        else:
            why = f"{live} signing secrets are live, at most {MAX_LIVE}: revoke one first"
        super().__init__(f"workflow {workflow_id!r}: {why}")


class SigningSecretNotFound(NotFound):
    kind = "signing secret"


class SecretUnreadable(ValueError):
    """A sealed secret that this key cannot open (another key, or altered)."""


def generate_key() -> str:
    """A new CRONSTREAM_SECRET_KEY: the standard base64 of 32 random bytes."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def parse_key(text: str) -> bytes:
    """The 32-byte key of a CRONSTREAM_SECRET_KEY value (standard or URL-safe base64,
    padding optional); ValueError saying what is wrong, never quoting it."""
    raw = text.strip().rstrip("=")
    alphabet = base64.urlsafe_b64decode if ("-" in raw or "_" in raw) else base64.b64decode
    try:
        key = alphabet(raw + "=" * (-len(raw) % 4))
    except (binascii.Error, ValueError):
        raise ValueError(f"{SECRET_KEY_VAR} is not base64") from None
    if len(key) != KEY_BYTES:
        raise ValueError(
            f"{SECRET_KEY_VAR} must be the base64 of {KEY_BYTES} bytes, not {len(key)}"
        )
    return key


class SecretBox:
    """Seals and opens secrets with one key; the associated data binds each to its place."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    @classmethod
    def from_text(cls, text: str | None) -> SecretBox:
        """The box of a CRONSTREAM_SECRET_KEY value; SigningKeyMissing when unset or bad."""
        if not text:
            raise SigningKeyMissing(f"{SECRET_KEY_VAR} is not set on this server")
        try:
            return cls(parse_key(text))
        except ValueError as exc:
            raise SigningKeyMissing(str(exc)) from None

    def seal(self, secret: str, place: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, secret.encode(), place.encode())
        return _SEALED_VERSION + base64.b64encode(nonce + sealed).decode()

    def open(self, sealed: str, place: str) -> str:
        if not sealed.startswith(_SEALED_VERSION):
            raise SecretUnreadable("not a sealed secret this version knows")
        try:
            raw = base64.b64decode(sealed.removeprefix(_SEALED_VERSION), validate=True)
            return self._aead.decrypt(
                raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], place.encode()
            ).decode()
        except (InvalidTag, binascii.Error, ValueError):
            raise SecretUnreadable(
                f"it was stored under another {SECRET_KEY_VAR}, or altered"
            ) from None


def place_of(workflow_id: str, secret_id: str) -> str:
    """The associated data of a secret: which workflow's which secret it is."""
    return f"cronstream:signing:{workflow_id}:{secret_id}"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def new_secret_id() -> str:
    return ID_PREFIX + secrets.token_hex(8)


@dataclass(frozen=True)
class StoredSecret:
    """A live secret as listed: its id and times, never the secret."""

    id: str
    created_ms: int
    expires_ms: int | None  # None: until rotated or revoked


@dataclass(frozen=True)
class MadeSecret:
    """A secret just made: the one time the secret itself is shown."""

    id: str
    secret: str
    created_ms: int


class SigningSecrets:
    """The adapter over ``signing.lua``.

    ``key`` is the CRONSTREAM_SECRET_KEY value; None reads the environment at each use
    (workers have no settings of their own, and a key set for a restart is found then).
    """

    def __init__(self, redis: Redis, keys: Keyspace, key: str | None = None) -> None:
        self.redis = redis
        self.keys = keys
        self._key = key
        self._boxes: dict[str, SecretBox] = {}
        self._script = load_script(redis, "service.store", "signing.lua")

    def box(self) -> SecretBox:
        text = self._key if self._key is not None else os.environ.get(SECRET_KEY_VAR)
        if text and text in self._boxes:
            return self._boxes[text]
        made = SecretBox.from_text(text)
        self._boxes = {text or "": made}
        return made

    @translate_redis_errors
    async def _call(self, workflow_id: str, action: str, now_ms: int | None, *args: Any) -> Any:
        key = self.keys.signing_secrets(self.keys.partition_of(workflow_id), workflow_id)
        now = "" if now_ms is None else now_ms
        return await self._script(keys=[key], args=[action, now, *args])

    @translate_redis_errors
    async def forget(self, workflow_id: str) -> None:
        """Drop every secret of a deleted workflow, so one defined again under its id
        starts with none (a receiver of the old one must not trust the new one)."""
        await self.redis.delete(
            self.keys.signing_secrets(self.keys.partition_of(workflow_id), workflow_id)
        )

    async def create(self, workflow_id: str, now_ms: int | None = None) -> MadeSecret:
        """The workflow's first secret (SigningSecretsFull while one is live)."""
        return await self._make(workflow_id, "create", now_ms)

    async def rotate(
        self, workflow_id: str, grace_ms: int = DEFAULT_GRACE_MS, now_ms: int | None = None
    ) -> MadeSecret:
        """A new secret; the others stay live for ``grace_ms`` more at most."""
        return await self._make(workflow_id, "rotate", now_ms, grace_ms)

    async def _make(
        self, workflow_id: str, action: str, now_ms: int | None, *extra: int
    ) -> MadeSecret:
        box = self.box()  # refuse before anything is written without a usable key
        secret_id, secret = new_secret_id(), new_secret()
        sealed = box.seal(secret, place_of(workflow_id, secret_id))
        reply = await self._call(workflow_id, action, now_ms, secret_id, sealed, MAX_LIVE, *extra)
        outcome = _text(reply[0])
        if outcome in ("live", "full"):
            raise SigningSecretsFull(workflow_id, int(reply[1]), rotate_instead=outcome == "live")
        return MadeSecret(secret_id, secret, int(reply[1]))

    async def revoke(self, workflow_id: str, secret_id: str, now_ms: int | None = None) -> None:
        if not int(await self._call(workflow_id, "revoke", now_ms, secret_id)):
            raise SigningSecretNotFound(secret_id)

    async def live(self, workflow_id: str, now_ms: int | None = None) -> list[StoredSecret]:
        """The live secrets, oldest first: ids and times only."""
        return [stored for stored, _ in await self._live(workflow_id, now_ms)]

    async def _live(self, workflow_id: str, now_ms: int | None) -> list[tuple[StoredSecret, str]]:
        flat = await self._call(workflow_id, "live", now_ms)
        found = []
        for i in range(0, len(flat), 4):
            expires = int(flat[i + 2])
            stored = StoredSecret(_text(flat[i]), int(flat[i + 1]), expires or None)
            found.append((stored, _text(flat[i + 3])))
        return sorted(found, key=lambda pair: (pair[0].created_ms, pair[0].id))

    async def signing_secrets(self, workflow_id: str, now_ms: int | None = None) -> list[str]:
        """Every live secret of the workflow, decrypted, newest first (for a delivery).

        Raises SigningKeyMissing without a usable key and SecretUnreadable for a secret
        this key cannot open: the caller fails the delivery closed, sending nothing.
        """
        box = self.box()
        opened = []
        for stored, sealed in reversed(await self._live(workflow_id, now_ms)):
            try:
                opened.append(box.open(sealed, place_of(workflow_id, stored.id)))
            except SecretUnreadable as exc:
                raise SecretUnreadable(
                    f"signing secret {stored.id} cannot be decrypted: {exc}"
                ) from None
        return opened


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
