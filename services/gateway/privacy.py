"""Privacy operations: everything held about one student, exported as one JSON document or deleted,
and the retention sweep that keeps every Redis key and mail file bounded.

``python -m services.gateway.privacy export EMAIL [--out FILE]`` and
``python -m services.gateway.privacy delete EMAIL --yes`` (the operator can do both from ``/staff/privacy``).

What belongs to a student: every intake whose booking names their address, and everything that names one
of those intakes (its token, staff id or booking uid) or the address itself. Records, the booking and
staff-link indexes, SAQ jobs with their summary snapshots, done markers, webhook tombstones, entries of
the event and model-call streams, and ``.data/mail`` files are found by one scan of Redis and of the mail
folder, so a key some feature adds later is found as well. Anonymous counts stay (they name nobody). The
audit log stays too: its entries name intakes by staff id only, which leads nowhere once the intake is
gone, and a deletion must itself stay on record.

Retention (``enforce_retention``, the worker's hourly cron): streams trimmed to the retention period,
sorted-set indexes pruned of expired intakes, mail files older than the retention period deleted, and a
warning naming the key families that have no TTL and no pruning here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import structlog

from services.gateway.container import Services
from services.gateway.intake.models import IntakeRecord
from services.gateway.intake.store import now_iso
from services.gateway.staff import audit

log = structlog.get_logger()
KEEP = {audit.STREAM}  # never swept (see the module docstring)
# keys without a TTL by design: pruned by ``enforce_retention`` (or by SAQ, or by their own feature's
# trimming), or fixed-size counters that name nobody (``metrics:``)
PRUNED_PREFIXES = (
    "intake:all",
    "intake:setup",
    "intake:events",
    "staff:audit",
    "saq:",
    "quality:",
    "analytics:",
    "metrics:",
)
RETENTION_CRON = "17 * * * *"  # hourly, off the hour
_SCAN_COUNT = 500
_MAX_VALUE = 1 << 20  # a string bigger than this is not opened (nothing of ours is)


class PrivacyReport(msgspec.Struct, frozen=True, kw_only=True):
    """What a deletion removed (counts only: the report is shown and logged)."""

    intakes: int
    redis_keys: int
    redis_entries: int
    mail_files: int


class _Found(msgspec.Struct, kw_only=True):
    key: str
    type: str
    whole: bool  # the key itself belongs to the student (else only some of its entries)
    entries: list[Any] = []


# --- finding ----------------------------------------------------------------------------------------


async def intakes_of(services: Services, email: str) -> list[IntakeRecord]:
    """Every stored intake whose student is ``email`` (case-insensitive), found by a scan of the records."""
    wanted = email.strip().lower()
    found: list[IntakeRecord] = []
    async for key in services.redis.scan_iter(match="intake:tok:*", count=_SCAN_COUNT):
        token = _text(key).removeprefix("intake:tok:")
        record = await services.intakes.get(token)
        if record is not None and record.booking.student.email.strip().lower() == wanted:
            found.append(record)
    return found


def identifiers(email: str, records: list[IntakeRecord]) -> list[bytes]:
    """What marks a key or an entry as the student's: the address, and each intake's token, staff id and
    booking uid (lower case: matching is case-insensitive)."""
    ids = {email.strip().lower()}
    for record in records:
        ids |= {record.token, record.staff_id, record.booking.uid}
    return sorted(i.lower().encode() for i in ids if i and len(i) >= 6)


async def _scan(services: Services, ids: list[bytes], *, delete: bool) -> list[_Found]:
    redis = services.redis
    found: list[_Found] = []
    async for raw_key in redis.scan_iter(count=_SCAN_COUNT):
        key = _text(raw_key)
        if key in KEEP:
            continue
        if _mentions(key.encode(), ids):
            kind = _text(await redis.type(key))
            found.append(_Found(key=key, type=kind, whole=True, entries=await _dump(services, key, kind)))
            if delete:
                await redis.delete(key)
            continue
        hit = await _entries(services, key, ids, delete=delete)
        if hit is not None:
            found.append(hit)
    return found


async def _entries(services: Services, key: str, ids: list[bytes], *, delete: bool) -> _Found | None:
    """The key's entries that name the student (removed when ``delete``); None when none do."""
    redis = services.redis
    kind = _text(await redis.type(key))
    if kind == "string":
        value = await redis.getrange(key, 0, _MAX_VALUE)
        if not _mentions(value, ids):
            return None
        if delete:
            await redis.delete(key)
        return _Found(key=key, type=kind, whole=True, entries=[_decode(value)])
    if kind == "hash":
        pairs: Any = await redis.hgetall(key)
        hits = {f: v for f, v in pairs.items() if _mentions(f, ids) or _mentions(v, ids)}
        if hits and delete:
            await redis.hdel(key, *hits)
        entries = [{_text(f): _decode(v)} for f, v in hits.items()]
    elif kind in ("list", "set", "zset"):
        members = await _members(services, key, kind)
        hits_list = [m for m in members if _mentions(m, ids)]
        if hits_list and delete:
            await _remove_members(services, key, kind, hits_list)
        entries = [_decode(m) for m in hits_list]
    elif kind == "stream":
        rows: list[Any] = await redis.xrange(key) or []
        hits_rows = [
            (i, f) for i, f in rows if any(_mentions(v, ids) or _mentions(k, ids) for k, v in f.items())
        ]
        if hits_rows and delete:
            await redis.xdel(key, *[i for i, _ in hits_rows])
        entries = [{_text(k): _decode(v) for k, v in f.items()} for _, f in hits_rows]
    else:
        return None
    return _Found(key=key, type=kind, whole=False, entries=entries) if entries else None


async def _members(services: Services, key: str, kind: str) -> list[bytes]:
    redis = services.redis
    found: Any
    if kind == "list":
        found = await redis.lrange(key, 0, -1)
    elif kind == "set":
        found = await redis.smembers(key)
    else:
        found = await redis.zrange(key, 0, -1)
    return list(found)


async def _remove_members(services: Services, key: str, kind: str, members: list[bytes]) -> None:
    redis: Any = services.redis
    if kind == "list":
        for member in members:
            await redis.lrem(key, 0, member)
    elif kind == "set":
        await redis.srem(key, *members)
    else:
        await redis.zrem(key, *members)


async def _dump(services: Services, key: str, kind: str) -> list[Any]:
    """A whole key's content for the export."""
    redis = services.redis
    if kind == "string":
        return [_decode(await redis.getrange(key, 0, _MAX_VALUE))]
    if kind == "hash":
        pairs: Any = await redis.hgetall(key)
        return [{_text(f): _decode(v) for f, v in pairs.items()}]
    if kind in ("list", "set", "zset"):
        return [_decode(m) for m in await _members(services, key, kind)]
    if kind == "stream":
        rows: list[Any] = await redis.xrange(key) or []
        return [{_text(k): _decode(v) for k, v in f.items()} for _, f in rows]
    return []


def _mail_files(services: Services, ids: list[bytes]) -> list[Path]:
    folder = services.settings.data_path / "mail"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.eml") if p.is_file() and _mentions(p.read_bytes(), ids))


# --- the two operations -----------------------------------------------------------------------------


async def export_student(services: Services, email: str) -> dict[str, Any]:
    """One JSON-ready document with everything held about ``email``."""
    records = await intakes_of(services, email)
    ids = identifiers(email, records)
    found = await _scan(services, ids, delete=False)
    mail = _mail_files(services, ids)
    return {
        "email": email.strip().lower(),
        "exported_at": now_iso(),
        "intakes": [msgspec.to_builtins(r) for r in records],
        "redis": [msgspec.to_builtins(f) for f in found],
        "mail": [{"file": p.name, "message": p.read_text(encoding="utf-8", errors="replace")} for p in mail],
    }


async def delete_student(services: Services, email: str) -> PrivacyReport:
    """Delete everything held about ``email``: intakes, their jobs and snapshots, index and stream entries,
    mail files. Pending jobs are dropped first, so the worker does not write anything back."""
    records = await intakes_of(services, email)
    for record in records:
        await services.jobs.cancel_for(record.token)
    ids = identifiers(email, records)
    found = await _scan(services, ids, delete=True)
    mail = _mail_files(services, ids)
    for path in mail:
        path.unlink(missing_ok=True)
    report = PrivacyReport(
        intakes=len(records),
        redis_keys=sum(1 for f in found if f.whole),
        redis_entries=sum(len(f.entries) for f in found if not f.whole),
        mail_files=len(mail),
    )
    log.info("student_data_deleted", **msgspec.structs.asdict(report))
    return report


async def forget_intake(services: Services, record: IntakeRecord) -> int:
    """A cancellation: the intake's jobs (summary snapshots included, finished ones too) and its mail files
    go; returns the files removed. The record itself is emptied by the webhook handler, and its indexes
    and the booking's tombstone stay (they keep a late or repeated webhook from bringing it back)."""
    await services.jobs.cancel_for(record.token)
    ids = [i.lower().encode() for i in (record.token, record.staff_id, record.booking.uid) if i]
    async for key in services.redis.scan_iter(match="saq:job:*", count=_SCAN_COUNT):
        if _mentions(key, ids):
            await services.redis.delete(key)
    mail = _mail_files(services, ids)
    for path in mail:
        path.unlink(missing_ok=True)
    return len(mail)


# --- retention --------------------------------------------------------------------------------------


async def enforce_retention(services: Services) -> dict[str, int]:
    """The hourly sweep: trim what has no TTL of its own, delete old mail files, name unbounded keys."""
    settings = services.settings
    keep_s = max(1, settings.retention_days) * 86400
    cutoff_ms = int((time.time() - keep_s) * 1000)
    redis = services.redis
    done = {
        "audit": await audit.prune(services),
        "events": int(await redis.xtrim("intake:events", minid=f"{cutoff_ms}-0")),
        "index": int(await redis.zremrangebyscore("intake:all", "-inf", time.time() - keep_s - 2 * 86400)),
        "setup": int(await redis.zremrangebyscore("intake:setup", "-inf", time.time() - keep_s)),
        "mail_files": _old_mail(services, keep_s),
    }
    unbounded = await _unbounded_families(services)
    if unbounded:
        log.warning("retention_unbounded_keys", families=sorted(unbounded)[:20])
    log.info("retention_enforced", **done)
    return done


async def retention_cron(ctx: Any) -> None:
    """The worker's hourly cron (``RETENTION_CRON``); it logs what it did (``retention_enforced``)."""
    await enforce_retention(ctx["services"])


def _old_mail(services: Services, keep_s: int) -> int:
    folder = services.settings.data_path / "mail"
    if not folder.is_dir():
        return 0
    cutoff = time.time() - keep_s
    files = [*folder.glob("*.eml"), *folder.glob(".*.eml.part")]  # a .part a crash left half-written
    old = [p for p in files if p.is_file() and p.stat().st_mtime < cutoff]
    for path in old:
        path.unlink(missing_ok=True)
    return len(old)


async def _unbounded_families(services: Services) -> set[str]:
    """Key families (the first two name segments) with a key that neither expires nor is pruned."""
    families: set[str] = set()
    async for raw in services.redis.scan_iter(count=_SCAN_COUNT):
        key = _text(raw)
        if key.startswith(PRUNED_PREFIXES):
            continue
        if await services.redis.ttl(key) == -1:
            families.add(":".join(key.split(":")[:2]))
    return families


# --- helpers ----------------------------------------------------------------------------------------


def _mentions(value: bytes | str | None, ids: list[bytes]) -> bool:
    if value is None:
        return False
    data = (value.encode() if isinstance(value, str) else value).lower()
    return any(i in data for i in ids)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _decode(value: bytes | str) -> Any:
    text = _text(value)
    try:
        return json.loads(text)
    except ValueError:
        return text


# --- the command line -------------------------------------------------------------------------------


async def _run(command: str, email: str, out: str | None) -> int:
    from services.coursepack import load_catalog
    from services.gateway.container import build_services
    from services.settings import load_settings

    settings = load_settings()
    services = build_services(settings, catalog=load_catalog(Path(settings.corpus_dir)), retriever=None)
    try:
        if command == "export":
            document = await export_student(services, email)
            text = json.dumps(document, indent=2, ensure_ascii=False)
            if out:
                Path(out).write_text(text + "\n", encoding="utf-8")
                Path(out).chmod(0o600)
            else:
                print(text)
            await audit.audit(services, "cli", "export", audit_target(email))
            print(f"{len(document['intakes'])} intake(s) exported.", file=sys.stderr)
        else:
            report = await delete_student(services, email)
            await audit.audit(services, "cli", "delete", audit_target(email))
            print(json.dumps(msgspec.to_builtins(report)))
        return 0
    finally:
        await services.aclose()


def audit_target(email: str) -> str:
    """How the audit log names a student: a digest, never the address."""
    from services.gateway.staff.accounts import digest

    return "student:" + digest(email)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m services.gateway.privacy", description=__doc__.split("\n")[0]
    )
    parser.add_argument("command", choices=["export", "delete"])
    parser.add_argument("email")
    parser.add_argument("--out", help="export: write the JSON here (mode 0600) instead of stdout")
    parser.add_argument("--yes", action="store_true", help="delete: do not ask for confirmation")
    args = parser.parse_args(argv)
    if "@" not in args.email or len(args.email) > 254:
        raise SystemExit("Give the student's email address.")
    if args.command == "delete" and not args.yes:
        answer = input(f"Delete everything held about {args.email}? Type 'delete': ")
        if answer.strip() != "delete":
            raise SystemExit("Nothing deleted.")
    raise SystemExit(asyncio.run(_run(args.command, args.email, args.out)))


if __name__ == "__main__":
    main()
