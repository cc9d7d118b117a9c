"""The launcher's one change to ``mlx_lm server``: a prompt-cache entry no longer pins the batch buffer.

Real MLX and mlx-lm, no server: a batch KV cache as the server holds it while replies are in flight, one
conversation extracted from it as the server does when a reply finishes, stored in the real
``LRUPromptCache``. Unpatched, the stored entry keeps the whole batch buffer alive after the batch is
gone; patched, only the entry's own bytes stay.
"""

from __future__ import annotations

import gc

import mlx.core as mx
import pytest
from mlx_lm.models.cache import BatchKVCache, LRUPromptCache

from services.inference.mlx_server import evaluate_on_insert

BATCH, HEADS, STEPS, DIM, LAYERS = 8, 3, 1024, 64, 4  # 8 replies in flight, 1,024 padded positions


def _held_after_storing(cache_class: type[LRUPromptCache]) -> tuple[int, int]:
    """(bytes MLX still holds once the batch is dropped, bytes the prompt cache says it holds)."""
    gc.collect()
    before = mx.get_active_memory()
    prompt_cache = cache_class(max_size=8)
    layers = []
    for _ in range(LAYERS):
        batch = BatchKVCache(left_padding=[0] * BATCH)
        keys = mx.random.normal((BATCH, HEADS, STEPS, DIM))
        values = mx.random.normal((BATCH, HEADS, STEPS, DIM))
        batch.update_and_fetch(keys, values)
        mx.eval(batch.keys, batch.values)
        layers.append(batch.extract(3))  # one conversation, as the server stores it when a reply ends
        del batch, keys, values
    prompt_cache.insert_cache("model", list(range(STEPS)), layers)
    del layers
    gc.collect()
    held = mx.get_active_memory() - before
    counted = prompt_cache.nbytes
    del prompt_cache
    gc.collect()
    return held, counted


class _Patched(LRUPromptCache):
    pass


@pytest.fixture(scope="module", autouse=True)
def _patch() -> None:
    assert evaluate_on_insert(_Patched)
    assert evaluate_on_insert(_Patched)  # a second call neither fails nor wraps twice


def test_a_stored_entry_pins_the_whole_batch_unless_evaluated_on_insert() -> None:
    held, counted = _held_after_storing(LRUPromptCache)
    batch_bytes = LAYERS * 2 * BATCH * HEADS * STEPS * DIM * 4
    assert held >= batch_bytes * 0.9, "mlx-lm no longer pins the batch: the launcher's patch may be moot"
    assert counted <= batch_bytes / BATCH * 1.1  # what --prompt-cache-bytes sees: one conversation

    held, counted = _held_after_storing(_Patched)
    assert held <= counted * 1.1, (held, counted)  # patched: MLX holds what the cache counts, no more


def test_a_cache_class_without_insert_is_left_alone() -> None:
    class Other:
        pass

    assert evaluate_on_insert(Other) is False
    assert not hasattr(Other, "insert_cache")
