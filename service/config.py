"""Settings: environment first (12-factor), command-line flags override."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from ipaddress import ip_address
from pathlib import Path

from service.domain.addresses import ALLOW_PRIVATE_VAR, ALLOWLIST_VAR, OutboundPolicy
from service.domain.tokens import DEFAULT_RATE, Rate

ALL_ROLES = ("api", "projector", "ticker", "worker")
SECRET_KEY_VAR = "CRONSTREAM_SECRET_KEY"


@dataclass(frozen=True)
class Settings:
    redis_url: str | None = None
    key_prefix: str = "cs"
    partitions: int = 1
    data_dir: Path = Path(".cronstream")
    host: str = "127.0.0.1"
    port: int = 8080
    roles: tuple[str, ...] = ALL_ROLES
    max_body_bytes: int = 256 * 1024
    idempotency_ttl_ms: int = 24 * 3600 * 1000
    read_your_writes_timeout_s: float = 5.0
    readiness_lag_s: float = 10.0
    redis_timeout_s: float = 5.0
    lease_ttl_ms: int = 5000
    worker_concurrency: int = 16
    reclaim_idle_ms: int = 30_000
    metrics_port_given: bool = False
    archive_dir: Path | None = None
    """CRONSTREAM_ARCHIVE_DIR: where ``archive`` writes when given no --to, and where readers
    of history look instead of the directory the last archive run recorded (a copy)."""
    auth: bool = True
    """Every /v1 route asks for a token with its scope, and each token's rate is limited.
    False only under ``serve --insecure-dev`` (loopback only), and in tests that say so."""
    admin_token: str | None = field(default=None, repr=False)
    """CRONSTREAM_ADMIN_TOKEN: an admin token whose hash serve stores on its first start."""
    metrics_auth: bool = False
    """CRONSTREAM_METRICS_AUTH=1: /metrics asks for a token with metrics:read too."""
    rate_limit: Rate = DEFAULT_RATE
    """CRONSTREAM_RATE_LIMIT (like ``100/min``): the rate of a token created without one."""
    allow_private_targets: bool = False
    """CRONSTREAM_ALLOW_PRIVATE_TARGETS=1: webhooks may reach loopback, private and other
    non-public addresses (the default refuses them: see service/domain/addresses.py)."""
    target_allowlist: tuple[str, ...] = ()
    """CRONSTREAM_TARGET_ALLOWLIST: comma-separated CIDRs, addresses and host names that
    webhooks may reach although they are not public."""
    secret_key: str | None = field(default=None, repr=False)
    """CRONSTREAM_SECRET_KEY: base64 of 32 bytes, the AES-256-GCM key that stored signing
    secrets are encrypted with (see service/store/secrets.py). Unset: none can be made."""
    config_dir: Path | None = None
    """``serve --config-dir``: a directory of workflow and schedule files that serve
    applies at start and after each change (service/manifests/watch.py)."""
    config_interval_s: float = 1.0
    config_prune: bool = False
    config_keep_overrides: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        base = cls()
        return replace(
            base,
            redis_url=env.get("REDIS_URL") or None,
            key_prefix=env.get("CRONSTREAM_KEY_PREFIX", base.key_prefix),
            partitions=_positive_int(env, "CRONSTREAM_PARTITIONS", base.partitions),
            data_dir=Path(env.get("CRONSTREAM_DATA_DIR", str(base.data_dir))),
            archive_dir=Path(env["CRONSTREAM_ARCHIVE_DIR"])
            if env.get("CRONSTREAM_ARCHIVE_DIR")
            else None,
            lease_ttl_ms=_positive_int(env, "CRONSTREAM_LEASE_TTL_MS", base.lease_ttl_ms),
            worker_concurrency=_positive_int(
                env, "CRONSTREAM_WORKER_CONCURRENCY", base.worker_concurrency
            ),
            reclaim_idle_ms=_positive_int(env, "CRONSTREAM_RECLAIM_IDLE_MS", base.reclaim_idle_ms),
            allow_private_targets=_flag(env, ALLOW_PRIVATE_VAR),
            target_allowlist=_allowlist(env),
            admin_token=env.get("CRONSTREAM_ADMIN_TOKEN") or None,
            metrics_auth=_flag(env, "CRONSTREAM_METRICS_AUTH"),
            rate_limit=_rate(env, "CRONSTREAM_RATE_LIMIT", base.rate_limit),
            secret_key=env.get(SECRET_KEY_VAR) or None,
        )

    def outbound_policy(self) -> OutboundPolicy:
        """Where webhooks may go (raises ValueError on an allowlist entry that is not one)."""
        return OutboundPolicy.parse(self.allow_private_targets, self.target_allowlist)

    def with_overrides(self, **changes: object) -> Settings:
        kept = {k: v for k, v in changes.items() if v is not None}
        return replace(self, **kept)  # type: ignore[arg-type]


def outbound_policy_from_env(env: dict[str, str] | None = None) -> OutboundPolicy:
    """The outbound policy the environment sets, as ``serve`` reads it."""
    env = dict(os.environ if env is None else env)
    return OutboundPolicy.parse(_flag(env, ALLOW_PRIVATE_VAR), _allowlist(env))


def _flag(env: dict[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ValueError(f"{name} must be 1 or 0, not {env[name]!r}")


def _allowlist(env: dict[str, str]) -> tuple[str, ...]:
    entries = tuple(e.strip() for e in env.get(ALLOWLIST_VAR, "").split(",") if e.strip())
    try:
        OutboundPolicy.parse(False, entries)
    except ValueError as exc:
        raise ValueError(f"{ALLOWLIST_VAR}: {exc}") from None
    return entries


def _positive_int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a positive integer, not {raw!r}") from exc
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, not {raw!r}")
    return value


def _rate(env: dict[str, str], name: str, default: Rate) -> Rate:
    raw = env.get(name)
    if not raw:
        return default
    try:
        return Rate.parse(raw)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


INSECURE_HOST = (
    "--insecure-dev serves on 127.0.0.1 only, not on {host}: "
    "drop --insecure-dev (and use tokens) to listen elsewhere"
)


def is_loopback(host: str) -> bool:
    """``host`` names this machine's loopback only: where an open API may listen."""
    if host == "localhost":
        return True
    try:
        return ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
