"""Waiting briefly for an intake's turn lock, for background changes that must not clobber a live turn."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from services.gateway.errors import Conflict
from services.gateway.intake.store import IntakeStore


async def try_turn_lock(
    store: IntakeStore, token: str, wait_s: float
) -> AbstractAsyncContextManager[None] | None:
    """The entered turn lock, or None if a turn still holds it after ``wait_s`` (the caller decides).

    Release it with ``await lock.__aexit__(None, None, None)``.
    """
    lock = store.turn_lock(token, ttl_s=30, wait_s=wait_s)
    try:
        await lock.__aenter__()
    except Conflict:
        return None
    return lock
