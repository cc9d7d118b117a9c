"""Hybrid retrieval for the gateway: Chroma vectors and BM25 fused by LlamaIndex's reciprocal-rank fusion.

The gateway calls ``retrieve`` in a worker thread at the start of an intake, so per-course retrievers are
cached and reloaded only when the indexer writes a new ``version.json``. Chroma is connected lazily and
re-tried; while it is down, answers come from BM25 alone rather than failing the intake. How a course can
be searched (``search_state``, asked at every consent) costs at most one Chroma heartbeat per
``HEARTBEAT_TTL_S``: concurrent callers wait for the one in flight, and a failed one is remembered too.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from pathlib import Path
from typing import Any

import structlog
from cachetools import TTLCache, cached
from llama_index.core import VectorStoreIndex
from llama_index.core.llms import MockLLM
from llama_index.core.retrievers import BaseRetriever, QueryFusionRetriever
from llama_index.core.retrievers.fusion_retriever import FUSION_MODES
from llama_index.core.schema import NodeWithScore
from llama_index.retrievers.bm25 import BM25Retriever
from llama_index.vector_stores.chroma import ChromaVectorStore

from services.gateway.ports import Passage, SearchState
from services.indexer.status import CourseVersion
from services.indexer.stores import (
    ChromaUnavailable,
    CourseFiles,
    configure_llama_index,
    connect_chroma,
    get_collection,
)
from services.settings import Settings

log = structlog.get_logger("indexer")

# Each half of the hybrid proposes this many before reciprocal-rank fusion keeps k. Chosen with
# bench/retrieval.py on the sample courses: 5 beat 10 and 20 on hit@3 (0.98 vs 0.96) at equal MRR;
# deeper lists let weak BM25 matches outvote good vector hits.
CANDIDATES = 5
_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_RECONNECT_S = 5.0  # while Chroma is down, try again at most this often (BM25 answers meanwhile)
HEARTBEAT_TTL_S = 3.0  # a heartbeat's outcome (up or down) stands this long for every caller


class UnknownCourse(LookupError):
    """No index exists for this course slug (never built, or not a course)."""


@dataclasses.dataclass(frozen=True)
class _CourseIndex:
    stamp: tuple[int, int]  # version.json's (mtime, size): a new build changes it
    version: int
    chunks: int
    bm25: BM25Retriever | None
    vector: BaseRetriever | None


class HybridRetriever:
    """``services.gateway.ports.CourseRetriever`` over the indexer's Chroma collections and BM25 folders."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._data_dir = Path(settings.data_dir)
        self._embed: Any = None
        self._llm = MockLLM()
        self._client: Any = None
        self._next_connect = 0.0
        self._cache: dict[str, _CourseIndex] = {}
        self._lock = threading.Lock()
        # per client object (a reconnect asks afresh); the condition makes concurrent callers share one call
        self._heartbeats: TTLCache[Any, bool] = TTLCache(maxsize=4, ttl=HEARTBEAT_TTL_S)
        self._heartbeat = cached(self._heartbeats, condition=threading.Condition())(_heartbeat)

    def retrieve(self, course_slug: str, query: str, k: int = 3) -> list[Passage]:
        """The ``k`` best passages for ``query``; ``UnknownCourse`` if the course has no index."""
        index = self._course(course_slug)
        halves = [r for r in (index.vector, index.bm25) if r is not None]
        if not halves or not query.strip():
            return []
        fusion = QueryFusionRetriever(
            halves,
            llm=self._llm,
            mode=FUSION_MODES.RECIPROCAL_RANK,
            num_queries=1,  # no query rewriting, so no LLM is ever called
            similarity_top_k=k,
            use_async=False,
        )
        try:
            hits = fusion.retrieve(query)
        except Exception as exc:  # Chroma went away mid-query: drop the vector half until reconnect
            if index.vector is None or index.bm25 is None:
                raise
            log.warning("vector_search_failed", course=course_slug, error=f"{type(exc).__name__}"[:100])
            self._forget_chroma(course_slug)
            hits = index.bm25.retrieve(query)[:k]
        return [_passage(hit) for hit in hits[:k]]

    def warm(self) -> None:
        """Load the embedding model and every indexed course now, so the first intake does not wait."""
        self._embedding().get_query_embedding("warm up")
        index_dir = self._data_dir / "index"
        for folder in sorted(index_dir.iterdir()) if index_dir.is_dir() else []:
            try:
                self._course(folder.name)
            except Exception as exc:  # a broken course must not stop the others from warming
                log.warning("course_warm_failed", course=folder.name, error=f"{type(exc).__name__}"[:100])

    def search_state(self, course_slug: str) -> SearchState:
        """How this course is searched now (``services.gateway.ports.SearchHealth``): "ok" with both
        halves, "keyword_only" while Chroma is unreachable, "unavailable" without a usable index."""
        try:
            index = self._course(course_slug)
        except Exception:
            return "unavailable"
        if index.vector is not None and self._alive():
            return "ok"
        if index.vector is not None:
            self._forget_chroma(course_slug)
        return "keyword_only" if index.bm25 is not None else "unavailable"

    def _alive(self) -> bool:
        """A heartbeat to the Chroma server (a cached connection says nothing about a stopped server), or
        the outcome of one made less than ``HEARTBEAT_TTL_S`` ago."""
        client = self._client
        return client is not None and bool(self._heartbeat(client))

    def versions(self) -> dict[str, int]:
        """Course slug -> indexed version, for status pages."""
        return {slug: index.version for slug, index in self._cache.items()}

    def _course(self, slug: str) -> _CourseIndex:
        files = self._files(slug)
        try:
            stat = files.version.stat()
        except FileNotFoundError:
            raise UnknownCourse(
                f"no index for course '{slug}': run `python -m services.indexer build --course {slug}`"
            ) from None
        stamp = (stat.st_mtime_ns, stat.st_size)
        cached = self._cache.get(slug)
        if self._fresh(cached, stamp):
            return cached  # type: ignore[return-value]
        with self._lock:
            cached = self._cache.get(slug)
            if not self._fresh(cached, stamp):
                cached = self._load(slug, files, stamp)
                self._cache[slug] = cached
            return cached  # type: ignore[return-value]

    def _fresh(self, cached: _CourseIndex | None, stamp: tuple[int, int]) -> bool:
        """Same build, and no vector half missing that a reconnect might bring back."""
        if cached is None or cached.stamp != stamp:
            return False
        return cached.vector is not None or not cached.chunks or not self._may_connect()

    def _files(self, slug: str) -> CourseFiles:
        if not _SLUG.match(slug or ""):
            raise UnknownCourse(f"'{slug}' is not a course slug")
        return CourseFiles(self._data_dir, slug)

    def _load(self, slug: str, files: CourseFiles, stamp: tuple[int, int]) -> _CourseIndex:
        version = files.read(files.version, CourseVersion, CourseVersion(slug=slug))
        bm25 = None
        if files.bm25.exists():
            bm25 = BM25Retriever.from_persist_dir(str(files.bm25), show_progress=False)
            bm25.similarity_top_k = min(CANDIDATES, int(bm25.bm25.scores.get("num_docs", CANDIDATES)))
        vector = self._vector(slug) if version.chunks else None
        log.info("course_retriever_loaded", course=slug, version=version.version, vector=vector is not None)
        return _CourseIndex(stamp, version.version, version.chunks, bm25, vector)

    def _vector(self, slug: str) -> BaseRetriever | None:
        client = self._connect()
        if client is None:
            return None
        try:
            store = ChromaVectorStore(chroma_collection=get_collection(client, slug, create=False))
        except Exception as exc:  # collection missing or server gone: BM25 still answers
            log.warning("vector_index_unavailable", course=slug, error=f"{type(exc).__name__}: {exc}"[:200])
            self._client = None
            return None
        index = VectorStoreIndex.from_vector_store(store, embed_model=self._embedding())
        return index.as_retriever(similarity_top_k=CANDIDATES)

    def _embedding(self) -> Any:
        if self._embed is None:
            self._embed = configure_llama_index()
        return self._embed

    def _may_connect(self) -> bool:
        return time.monotonic() >= self._next_connect

    def _connect(self) -> Any:
        if self._client is not None:
            return self._client
        if not self._may_connect():
            return None
        try:
            self._client = connect_chroma(self.settings.chroma_url)
        except ChromaUnavailable as exc:
            self._next_connect = time.monotonic() + _RECONNECT_S
            log.warning("chroma_unavailable", error=str(exc)[:200])
        return self._client

    def _forget_chroma(self, slug: str) -> None:
        with self._lock:
            self._client = None
            self._next_connect = time.monotonic() + _RECONNECT_S
            cached = self._cache.get(slug)
            if cached:
                self._cache[slug] = dataclasses.replace(cached, vector=None)


def _heartbeat(client: Any) -> bool:
    try:
        return bool(client.heartbeat())
    except Exception:
        return False


def open_retriever(settings: Settings, *, warm: bool = True) -> HybridRetriever:
    """The gateway's retriever. Never fails: Chroma is connected lazily (and re-tried), and the model
    and course indexes load in a background thread so the first intake does not pay for them."""
    retriever = HybridRetriever(settings)
    if warm:
        threading.Thread(target=_warm_quietly, args=(retriever,), name="retriever-warm", daemon=True).start()
    return retriever


def _warm_quietly(retriever: HybridRetriever) -> None:
    try:
        retriever.warm()
    except Exception as exc:  # warming is an optimisation; the first real call will report problems
        log.warning("retriever_warm_failed", error=f"{type(exc).__name__}: {exc}"[:200])


def _passage(hit: NodeWithScore) -> Passage:
    meta = hit.node.metadata
    return Passage(
        text=hit.node.get_content(),
        source=str(meta.get("source", "")),
        title=str(meta.get("title", "")),
        section=meta.get("section") or None,
        assignment_id=meta.get("assignment_id") or None,
        score=round(float(hit.score or 0.0), 6),
    )
