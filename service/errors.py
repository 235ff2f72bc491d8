"""The errors cronstream raises, and what each one means to a client.

    CronstreamError
    ├── NotFound (LookupError)            404  an id that does not exist
    │   ├── ScheduleNotFound
    │   ├── WorkflowNotFound
    │   └── RunNotFound (service/api/runs.py)
    ├── Conflict                          409  the request contradicts the current state
    │   ├── AlreadyExists
    │   └── WorkflowInUse
    ├── IdempotencyKeyReused              422  same Idempotency-Key, different request
    ├── VersionMismatch                   412  If-Match names an older version
    ├── InvalidInput (ValueError)         422  a field failed validation (names the field)
    ├── StoreUnavailable (ConnectionError) 503  Redis cannot be reached or answered late
    ├── ArchiveUnavailable (RuntimeError, service/store/archive_record.py)  503  the events
    │                                     asked for are archived where they cannot be read
    ├── KeyspaceVersionError (RuntimeError)    the keyspace is newer than this build knows
    │   └── KeyspaceTooOld (migrations/keyspace.py)  older: run `cronstream migrate` first
    ├── RedisVersionUnsupported (RuntimeError)  the Redis server is older than 6.2
    └── LogTrimmed (RuntimeError, projections/rebuild.py)  a rebuild of a trimmed log
                                                         needs the archive

Errors carry their message, built from the id they are about; the API maps each
class to an RFC 9457 problem document and never sends a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass

ID_SEPARATOR = "/"
"""What separates a namespace from an id (``NS/ID``): the same as
``service.domain.ids.NAMESPACE_SEPARATOR``; kept here too because the error tree imports
nothing of the project (tests/test_layers.py), and a unit test holds the two equal."""


def bare_id(ident: str) -> str:
    """``ident`` without the namespace it is kept under (see domain/namespaces.py)."""
    return ident.rpartition(ID_SEPARATOR)[2]


class CronstreamError(Exception):
    """Base of every error cronstream raises on purpose."""


class NotFound(CronstreamError, LookupError):
    kind = "resource"

    def __init__(self, ident: str) -> None:
        self.ident = ident
        # a client knows its resources by bare ids: the namespace a resource is kept
        # under (``NS/ID``) is the request's own and never shown back
        super().__init__(f"{self.kind} {bare_id(ident)!r} does not exist")


class ScheduleNotFound(NotFound):
    kind = "schedule"


class WorkflowNotFound(NotFound):
    kind = "workflow"


class Conflict(CronstreamError):
    """The request cannot be applied to the current state."""


class AlreadyExists(Conflict):
    def __init__(self, kind: str, ident: str) -> None:
        self.ident = ident
        super().__init__(f"{kind} {bare_id(ident)!r} already exists")


class WorkflowInUse(Conflict):
    def __init__(self, ident: str, schedules: list[str]) -> None:
        self.ident = ident
        self.schedules = schedules
        shown = ", ".join(bare_id(s) for s in schedules[:5])
        super().__init__(f"workflow {bare_id(ident)!r} is used by schedules: {shown}")


class IdempotencyKeyReused(CronstreamError):
    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"Idempotency-Key {key!r} was already used for a different request")


class VersionMismatch(CronstreamError):
    def __init__(self, ident: str, expected: int, actual: int) -> None:
        self.ident = ident
        self.expected = expected
        self.actual = actual
        super().__init__(f"{bare_id(ident)!r} is at version {actual}, not {expected}")


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str


class InvalidInput(CronstreamError, ValueError):
    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        first = errors[0] if errors else FieldError("body", "invalid")
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"{first.field}: {first.message}{more}")

    @classmethod
    def one(cls, field: str, message: str) -> InvalidInput:
        return cls([FieldError(field, message)])


class StoreUnavailable(CronstreamError, ConnectionError):
    """Redis could not be reached, or did not answer in time (the outcome is unknown).

    Raised by the store adapters (service/store/boundary.py) from the Redis error.
    """

    def __init__(self, where: str, detail: str) -> None:
        self.where = where
        super().__init__(f"the event store cannot be reached ({where}): {detail}")


class KeyspaceVersionError(CronstreamError, RuntimeError):
    def __init__(self, found: int, known: int) -> None:
        self.found = found
        self.known = known
        super().__init__(
            f"the keyspace is at version {found}, this build knows up to {known}: "
            "upgrade cronstream before starting it on this Redis"
        )


class RedisVersionUnsupported(CronstreamError, RuntimeError):
    """The Redis server is older than cronstream needs (service/store/features.py)."""

    def __init__(self, found: str, minimum: str) -> None:
        self.found = found
        self.minimum = minimum
        super().__init__(
            f"the Redis server is {found}; cronstream needs Redis {minimum} or newer "
            "(XAUTOCLAIM, XTRIM MINID): point REDIS_URL, or REDIS_SERVER_BIN for the "
            "embedded one, at a newer server"
        )
