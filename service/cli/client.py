"""A small HTTP client of the API for the CLI (standard library only)."""

from __future__ import annotations

import getpass
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

import orjson

TIMEOUT_S = 30.0
TOKEN_ENV = "CRONSTREAM_TOKEN"
NAMESPACE_HEADER = "Cronstream-Namespace"


class ApiError(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.body = body
        detail = body.get("detail") or body.get("title") or "request failed"
        super().__init__(f"{status}: {detail}")


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any
    headers: dict[str, str]


class ApiClient:
    """Sends ``token`` (default: $CRONSTREAM_TOKEN, when set) as a bearer token, and
    ``namespace`` (when given) as the Cronstream-Namespace header."""

    def __init__(
        self,
        base_url: str,
        timeout_s: float = TIMEOUT_S,
        token: str | None = None,
        namespace: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.namespace = namespace
        self.timeout_s = timeout_s
        self.actor = f"cli:{_user()}@{socket.gethostname()}"
        self.token = token if token is not None else os.environ.get(TOKEN_ENV, "").strip()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        query: dict[str, Any] | None = None,
    ) -> Reply:
        request = self._build(method, path, body, headers, query)
        with self._open(request, self.timeout_s) as response:
            raw = response.read()
            return Reply(
                response.status, orjson.loads(raw) if raw else None, dict(response.headers)
            )

    @contextmanager
    def stream(
        self,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        query: dict[str, Any] | None = None,
        read_timeout_s: float,
    ) -> Iterator[IO[bytes]]:
        """A GET whose body is read as it comes (an event stream); a read that waits
        longer than ``read_timeout_s`` raises TimeoutError."""
        request = self._build("GET", path, None, headers, query)
        with self._open(request, read_timeout_s) as response:
            yield response

    def _build(
        self,
        method: str,
        path: str,
        body: Any,
        headers: dict[str, str] | None,
        query: dict[str, Any] | None,
    ) -> urllib.request.Request:
        url = self.base_url + path
        if query:
            kept = {k: str(v) for k, v in query.items() if v is not None}
            if kept:
                url += "?" + urllib.parse.urlencode(kept)
        data = orjson.dumps(body) if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("X-Actor", self.actor)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        if self.namespace:
            request.add_header(NAMESPACE_HEADER, self.namespace)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        return request

    @staticmethod
    @contextmanager
    def _open(request: urllib.request.Request, timeout_s: float) -> Iterator[Any]:
        """The response; an HTTP error status as ApiError with the problem document."""
        try:
            response = urllib.request.urlopen(request, timeout=timeout_s)
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                problem = orjson.loads(raw) if raw else {}
            except orjson.JSONDecodeError:
                problem = {"detail": raw.decode(errors="replace")[:500]}
            raise ApiError(exc.code, problem if isinstance(problem, dict) else {}) from None
        with response:
            yield response


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
