"""The audit log of staff actions: who did what to which intake, and when; the operator reads it.

One Redis stream, ``staff:audit``, bounded twice on every write: at most ``MAX_ENTRIES`` entries, and
nothing older than the retention period (``INTAKE_RETENTION_DAYS``). An entry names the actor (a staff
email, or ``operator``), the action, the target (an intake's ``staff_id``, a job id, or a digest of a
student's address for privacy operations: never the address itself) and the course.

Any staff handler records its action with one call::

    await audit(services, principal.actor, "takeover", staff_intake.staff_id, course=record.course_slug)
"""

from __future__ import annotations

import time
from typing import Any, Literal

import msgspec

from services.gateway.container import Services
from services.gateway.intake.store import now_iso

STREAM = "staff:audit"
MAX_ENTRIES = 20_000
Action = Literal[
    "login",
    "logout",
    "view",
    "takeover",
    "hand_back",
    "message",
    "rate",
    "broadcast",
    "acknowledge",
    "export",
    "delete",
    "retry",
]


class AuditEntry(msgspec.Struct, frozen=True, kw_only=True):
    id: str  # the stream id (milliseconds-sequence): the order of entries
    at: str  # RFC 3339
    actor: str
    action: str
    target: str
    course: str = ""


async def audit(
    services: Services, actor: str, action: Action, target: str = "", *, course: str = ""
) -> None:
    """Append one entry (and trim what is past the retention or the cap)."""
    entry = {
        "at": now_iso(),
        "actor": actor[:254],
        "action": action,
        "target": target[:200],
        "course": course,
    }
    oldest = f"{_cutoff_ms(services)}-0"
    async with services.redis.pipeline(transaction=False) as pipe:
        pipe.xadd(STREAM, entry, maxlen=MAX_ENTRIES, approximate=True)  # type: ignore[arg-type]
        pipe.xtrim(STREAM, minid=oldest, approximate=False)
        await pipe.execute()


async def entries(services: Services, *, limit: int = 200, actor: str | None = None) -> list[AuditEntry]:
    """The newest entries first (optionally one actor's)."""
    raw: Any = await services.redis.xrevrange(
        STREAM, count=min(max(limit, 1), 1000) if actor is None else 5000
    )
    found = [_entry(entry_id, fields) for entry_id, fields in raw or []]
    if actor is not None:
        found = [e for e in found if e.actor == actor]
    return found[:limit]


async def prune(services: Services) -> int:
    """Drop entries past the retention period (the scheduled retention job calls this too)."""
    return int(await services.redis.xtrim(STREAM, minid=f"{_cutoff_ms(services)}-0"))


def _cutoff_ms(services: Services) -> int:
    return int((time.time() - max(1, services.settings.retention_days) * 86400) * 1000)


def _entry(entry_id: bytes | str, fields: dict[bytes, bytes]) -> AuditEntry:
    text = {k.decode(): v.decode() for k, v in fields.items()}
    return AuditEntry(
        id=entry_id.decode() if isinstance(entry_id, bytes) else entry_id,
        at=text.get("at", ""),
        actor=text.get("actor", ""),
        action=text.get("action", ""),
        target=text.get("target", ""),
        course=text.get("course", ""),
    )
