"""Which model serves an intake: the default (A) or, for a share of new intakes, a second one (B).

The choice is a pure function of the intake's token (a SHA-256 of it read as a number in [0, 1)), so every
gateway and the worker agree without asking each other; it is written on the record when the intake is
set up (``delivery/queue.py``'s ``finish_setup``) and read back from there for the rest of the
conversation, so a change of ``INTAKE_MODEL_B_SHARE`` only moves intakes created after it.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from urllib.parse import urlparse

from services.inference.server import adapter_for
from services.settings import Settings

_FOUND_FOR_S = 10.0  # how long a looked-up default id stands (looking is a file check; every intake asks)
_found: dict[tuple[str, ...], tuple[float, str]] = {}


def default_model_id(settings: Settings) -> str:
    """``INTAKE_MODEL_ID``, else the served model folder's name and the adapter's (``+adapter``); what the
    adapter's file check finds stands for ``_FOUND_FOR_S`` (the model server reads it once, at its start)."""
    if settings.model_id:
        return settings.model_id
    # what ``model_path`` is made of, not ``model_path`` itself (it builds a Path on every call)
    key = (settings.model, settings.data_dir, settings.model_name, settings.adapter_path)
    now = time.monotonic()
    found = _found.get(key)
    if found is not None and now - found[0] < _FOUND_FOR_S:
        return found[1]
    name = Path(settings.model_path).name or settings.model_name
    adapter = adapter_for(settings)
    model_id = f"{name}+{Path(adapter).name}" if adapter else name
    _found[key] = (now, model_id)
    return model_id


def model_b_id(settings: Settings) -> str:
    """``INTAKE_MODEL_B_ID``, else ``b:<host:port>/<name>``; empty when no second model is set."""
    if not settings.model_b_url:
        return ""
    return settings.model_b_id or f"b:{urlparse(settings.model_b_url).netloc}/{settings.model_b_name}"


def share_point(token: str) -> float:
    """Where the token falls in [0, 1): uniform over tokens, the same in every process."""
    digest = hashlib.sha256(token.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_model(settings: Settings, token: str) -> str:
    """The model id a new intake gets: B for the share of tokens below ``INTAKE_MODEL_B_SHARE``."""
    b = model_b_id(settings)
    if b and share_point(token) < settings.model_b_share:
        return b
    return default_model_id(settings)
