"""The workflows view: ``workflow:<id>`` records and the ``workflows`` index."""

from __future__ import annotations

from projections.batch import Record, ViewBatch
from service.store.eventstore import StoredEvent, parse_position

EVENTS = frozenset({"WorkflowCreated", "WorkflowUpdated", "WorkflowDeleted"})


def record_name(workflow_id: str) -> str:
    return f"workflow:{workflow_id}"


def reads(event: StoredEvent) -> list[str]:
    """The records ``apply`` reads for ``event``."""
    return [record_name(event.sid)] if event.type in EVENTS else []


async def apply(batch: ViewBatch, event: StoredEvent) -> None:
    if event.type not in EVENTS:
        return
    name = record_name(event.sid)
    old = await batch.get(name)
    if old is not None and parse_position(old["position"]) >= parse_position(event.position):
        return  # already applied
    new: Record
    if event.type == "WorkflowDeleted":
        if old is None:
            return
        new = {**old, "deleted": True}
    else:
        created = event.type == "WorkflowCreated"
        new = {
            "id": event.sid,
            **event.data["workflow"],
            "created_at": event.at if created or old is None else old["created_at"],
            "deleted": False,
        }
    new.update(
        version=(old["version"] if old else 0) + 1, updated_at=event.at, position=event.position
    )
    batch.index("workflows", event.sid, present=not new["deleted"])
    batch.put(name, new)
