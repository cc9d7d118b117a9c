"""``python -m mlx_lm server`` with one change: a prompt-cache entry is evaluated when it is stored.

    python -m services.inference.mlx_server --model ... (the ``mlx_lm server`` flags)

Why: when a reply finishes (and at each prompt boundary) the server copies that conversation's KV cache
out of the running batch for its prompt cache. The copy is lazy: a slice of the whole batch buffer (every
sequence in flight, padded in 256-token steps, all layers), and ``LRUPromptCache.insert_cache`` stores it
unevaluated, so an entry that is never fetched again keeps the entire batch buffer alive while its byte
count (what ``--prompt-cache-bytes`` limits) is only the slice's. With eight replies in flight the
server's memory grew far beyond what the cache counted (4.0 GB after 60 requests from 8 clients, 15 GB
during a whole ``make eval``). Evaluating the entry on insert copies out just its own slice and frees the
batch buffer; then the byte cap means what it says (1.4 GB after the same 60 requests, no slower:
``python -m bench.inference_memory``).

Only ``insert_cache`` is wrapped, by the public method's own signature; if a future mlx-lm renames it,
the server runs as released (with a warning) rather than not at all.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import mlx.core as mx


def evaluate_on_insert(cache_class: Any) -> bool:
    """Wrap ``cache_class.insert_cache`` so the stored cache is evaluated first; False if it has none."""
    original: Callable[..., Any] | None = getattr(cache_class, "insert_cache", None)
    if original is None or getattr(original, "_evaluates_on_insert", False):
        return original is not None

    def insert_cache(self: Any, model: Any, tokens: Any, prompt_cache: list[Any], **kwargs: Any) -> Any:
        mx.eval([layer.state for layer in prompt_cache])
        return original(self, model, tokens, prompt_cache, **kwargs)

    insert_cache._evaluates_on_insert = True  # type: ignore[attr-defined]
    cache_class.insert_cache = insert_cache
    return True


def main() -> None:
    from mlx_lm.models.cache import LRUPromptCache
    from mlx_lm.server import main as serve

    if not evaluate_on_insert(LRUPromptCache):
        print("warning: mlx_lm has no LRUPromptCache.insert_cache; serving unpatched", file=sys.stderr)
    sys.argv[0] = "mlx_lm.server"
    serve()


if __name__ == "__main__":
    main()
