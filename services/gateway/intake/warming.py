"""Each course's system prompt kept in the model server's prompt cache: at start-up, after a re-index
(the retrieved materials, hence the prompt, changed) and every ``REFRESH_S`` (the server may have been
restarted, or evicted it). A new student's first answer then reads only their own part. With a second
model (``INTAKE_MODEL_B_*``) its server gets the same warm-up: its share of students would otherwise pay
for the whole prompt on their first answer.

Every gateway runs the loop; a Redis key per course, prompt and model (``SET NX EX``) lets one of them do
each warm-up. Only with a retriever: that is what a re-index changes (tests and a stack without an index have
nothing to keep warm). Once the course maps are built, what start-up made is frozen out of the garbage
collector's sight (``settle_heap``).
"""

from __future__ import annotations

import asyncio
import gc
import hashlib

import redis.exceptions
import structlog

from services.gateway.container import Services
from services.gateway.intake import chat, guardrails
from services.gateway.quality.assignment import default_model_id, model_b_id

log = structlog.get_logger()

CHECK_S = 30.0
REFRESH_S = 600.0
_KEY = "intake:gen:warm:{}:{}:{}"  # course slug, prompt digest, model id digest


async def keep_courses_warm(services: Services, check_s: float = CHECK_S) -> None:
    """Runs until cancelled (the gateway's lifespan starts it)."""
    if services.reader is not None:  # each course's map (embedded notes sections) now, not on a chat turn
        try:
            await asyncio.to_thread(guardrails.english_words)  # the reply check's dictionary, likewise
        except Exception as exc:  # the first reply builds it then
            log.warning("english_words_warm_failed", error=type(exc).__name__)
        for course in list(services.catalog.courses.values()):
            try:
                await asyncio.to_thread(services.reader.similarity, course, course.title)
            except Exception as exc:
                log.warning("course_map_warm_failed", course=course.slug, error=type(exc).__name__)
    settle_heap()
    if services.retriever is None:
        return
    while True:
        for course in list(services.catalog.courses.values()):
            try:
                await warm_course_once(services, course.slug)
            except Exception as exc:  # one course's trouble never stops the others
                log.warning("course_warm_failed", course=course.slug, error=type(exc).__name__)
        await asyncio.sleep(check_s)


def settle_heap() -> None:
    """Move what start-up built (the app, the course maps, the models' weights, some 300,000 objects) out
    of the cyclic garbage collector's sight: they live as long as the process, and every full collection
    walked all of them (0.2 s each, a fifth of the gateway's CPU under a flood of webhooks)."""
    gc.collect()
    gc.freeze()


def warm_model_ids(services: Services) -> list[str]:
    """The default model, and the second one when it is set up (``INTAKE_MODEL_B_URL``)."""
    ids = [default_model_id(services.settings)]
    second = model_b_id(services.settings)
    if second and services.model_b is not None and second not in ids:
        ids.append(second)
    return ids


async def warm_course_once(services: Services, slug: str) -> bool:
    """Warm one course's current system prompt on each model unless a gateway did so within
    ``REFRESH_S``; True if any model was warmed now."""
    course = services.catalog.courses[slug]
    system, _ = await chat.interviewer(services).course_prompt(course)
    digest = hashlib.sha256(system.encode()).hexdigest()[:16]
    warmed_any = False
    for model_id in warm_model_ids(services):
        key = _KEY.format(slug, digest, hashlib.sha256(model_id.encode()).hexdigest()[:8])
        try:
            if not await services.redis.set(key, b"1", nx=True, ex=int(REFRESH_S)):
                continue
        except redis.exceptions.RedisError:
            pass  # without Redis every gateway warms: harmless, only repeated work
        iv = chat.interviewer(services, model=services.model_by_id(model_id))
        warmed = await iv.warm_course(system)
        if not warmed:
            await services.redis.delete(key)  # try again at the next check
        log.info(
            "course_warmed" if warmed else "course_warm_skipped", course=slug, prompt=digest, model=model_id
        )
        warmed_any = warmed_any or warmed
    return warmed_any
