"""``search_state`` at a burst of consents: one Chroma heartbeat per ``HEARTBEAT_TTL_S``, shared by the
callers that ask while it is in flight, and a failed one remembered as well (a down Chroma's timeout is
waited for once, not by every student)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from services.indexer import retrieval
from services.indexer.retrieval import HybridRetriever, _CourseIndex
from services.settings import Settings
from tests.indexer.conftest import settings_for


class SlowChroma:
    """A client whose heartbeat takes a while, and answers or fails as told."""

    def __init__(self, up: bool) -> None:
        self.up = up
        self.calls = 0
        self._lock = threading.Lock()

    def heartbeat(self) -> int:
        with self._lock:
            self.calls += 1
        time.sleep(0.2)
        if not self.up:
            raise ConnectionError("timed out")
        return 1


def _retriever(tmp_path: Path, client: SlowChroma) -> HybridRetriever:
    settings: Settings = settings_for(tmp_path / "corpus", tmp_path / "data")
    retriever = HybridRetriever(settings)
    index = _CourseIndex((1, 1), 1, 3, bm25=object(), vector=object())  # type: ignore[arg-type]
    retriever._course = lambda slug: index  # type: ignore[method-assign]
    retriever._forget_chroma = lambda slug: None  # type: ignore[method-assign]
    retriever._client = client
    return retriever


def _burst(retriever: HybridRetriever, n: int = 8) -> list[str]:
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(retriever.search_state, ["bio110"] * n))


def test_a_burst_shares_one_heartbeat(tmp_path: Path) -> None:
    chroma = SlowChroma(up=True)
    retriever = _retriever(tmp_path, chroma)
    assert _burst(retriever) == ["ok"] * 8
    assert retriever.search_state("bio110") == "ok"
    assert chroma.calls == 1


def test_a_failed_heartbeat_is_remembered(tmp_path: Path) -> None:
    chroma = SlowChroma(up=False)
    retriever = _retriever(tmp_path, chroma)
    started = time.monotonic()
    assert _burst(retriever) == ["keyword_only"] * 8
    assert retriever.search_state("bio110") == "keyword_only"
    assert chroma.calls == 1
    assert time.monotonic() - started < 1.0  # one wait on the timeout, not eight in turn


def test_the_outcome_expires(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chroma = SlowChroma(up=False)
    retriever = _retriever(tmp_path, chroma)
    assert retriever.search_state("bio110") == "keyword_only"
    chroma.up = True
    assert retriever.search_state("bio110") == "keyword_only"  # still the remembered outcome
    time.sleep(retrieval.HEARTBEAT_TTL_S + 0.05)
    assert retriever.search_state("bio110") == "ok"
    assert chroma.calls == 2
