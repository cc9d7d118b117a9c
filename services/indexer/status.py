"""What the indexer tells the rest of the stack: ``version.json`` per course and a Redis status key.

The gateway's ``/readyz`` shows the Redis value (``services.gateway.health.routes.INDEXER_STATUS_KEY``).
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

import msgspec
import redis
import structlog

INDEXER_STATUS_KEY = "intake:indexer:status"  # same literal as services.gateway.health.routes

log = structlog.get_logger("indexer")

State = Literal["starting", "building", "ready", "waiting_for_chroma", "error"]


class CourseVersion(msgspec.Struct, kw_only=True):
    """One build of one course: ``version`` grows by one whenever the indexed content changes."""

    slug: str
    version: int = 0
    built_at: str = ""  # when the content last changed
    checked_at: str = ""  # when a build last looked (also when nothing changed)
    documents: int = 0
    chunks: int = 0
    added: list[str] = []
    changed: list[str] = []
    removed: list[str] = []
    unchanged: int = 0
    warnings: list[str] = []
    seconds: float = 0.0
    pipeline: str = ""


class CourseStatus(msgspec.Struct):
    version: int
    chunks: int
    updated_at: str


class Progress(msgspec.Struct):
    """Chunks embedded so far in a course's running build (embedding is the slow step)."""

    done: int
    total: int


class IndexerStatus(msgspec.Struct, kw_only=True):
    state: State
    courses: dict[str, CourseStatus] = {}
    progress: dict[str, Progress] = {}  # courses being embedded right now
    problems: list[str] = []
    error: str | None = None
    updated_at: str = ""


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class StatusBoard:
    """Publishes ``IndexerStatus`` to Redis when a URL is configured; Redis trouble never stops a build."""

    def __init__(self, redis_url: str | None) -> None:
        self.status = IndexerStatus(state="starting")
        self._redis = (
            redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2) if redis_url else None
        )
        self._redis_down = False  # log an outage once, not on every update

    def update(self, **changes: object) -> IndexerStatus:
        self.status = msgspec.structs.replace(self.status, updated_at=now_iso(), **changes)
        self._publish()
        return self.status

    def record(self, version: CourseVersion) -> None:
        courses = dict(self.status.courses)
        courses[version.slug] = CourseStatus(version.version, version.chunks, version.built_at)
        progress = {slug: p for slug, p in self.status.progress.items() if slug != version.slug}
        self.update(courses=courses, progress=progress)

    def embedding(self, slug: str, done: int, total: int) -> None:
        """``make run`` shows this while it waits: indexing n of N chunks per course."""
        self.update(progress={**self.status.progress, slug: Progress(done, total)})

    def _publish(self) -> None:
        if self._redis is None:
            return
        try:
            self._redis.set(INDEXER_STATUS_KEY, msgspec.json.encode(self.status))
        except redis.RedisError as exc:
            if not self._redis_down:
                log.warning("indexer_status_not_published", error=f"{type(exc).__name__}: {exc}"[:200])
            self._redis_down = True
        else:
            self._redis_down = False
