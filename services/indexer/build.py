"""Incremental indexing of course packs: LlamaIndex ingestion into Chroma, plus a BM25 index per course.

Only files whose content hash changed are parsed, chunked and embedded again (embedding is the slow
step, ~8 chunks/s on 2 cores); removed files leave both indexes; every build records what changed.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import time
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import msgspec
import structlog
from llama_index.core import Document
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.node_parser import MarkdownNodeParser, SentenceSplitter
from llama_index.core.schema import BaseNode, TransformComponent
from llama_index.retrievers.bm25 import BM25Retriever
from llama_index.vector_stores.chroma import ChromaVectorStore

from services.coursepack import Catalog, Course, load_catalog
from services.indexer.embedding import load_minilm
from services.indexer.materials import EMBED_KEYS, read_materials
from services.indexer.status import CourseStatus, CourseVersion, StatusBoard, now_iso
from services.indexer.stores import (
    ChromaUnavailable,
    CourseFiles,
    all_nodes,
    collection_name,
    configure_llama_index,
    connect_chroma,
    get_collection,
)
from services.settings import Settings

log = structlog.get_logger("indexer")

BM25_CANDIDATES = 10
ADD_BATCH = 1000
EMBED_BATCH = 32  # chunks per progress report: about 4 s of embedding on 2 cores
_SECTION = re.compile(r"\A(#{1,6})\s+(.+?)\s*#*\s*$", re.MULTILINE)
_SENTENCE = re.compile(r".+?(?:[.!?]+[\"')\]]*(?:\s+|$)|\n\s*|$)", re.DOTALL)


class FileEntry(msgspec.Struct):
    hash: str
    chunks: int


class Manifest(msgspec.Struct):
    """What is in Chroma for a course, per file; compared with the folder to find what changed."""

    pipeline: str = ""
    files: dict[str, FileEntry] = {}


class BuildReport(msgspec.Struct):
    courses: list[CourseVersion]
    problems: list[str]


class _Sections(TransformComponent):
    """Name each Markdown section's chunks after its heading, and keep bookkeeping out of embeddings."""

    def __call__(self, nodes: Sequence[BaseNode], **kwargs: Any) -> Sequence[BaseNode]:
        kept = []
        for node in nodes:
            text = node.get_content().strip()
            match = _SECTION.match(text)
            if match and not text[match.end() :].strip():
                continue  # a heading with nothing under it (the title line) says nothing on its own
            node.metadata.pop("header_path", None)
            if match and len(match.group(1)) > 1:
                node.metadata["section"] = match.group(2)
            hidden = [k for k in node.metadata if k not in EMBED_KEYS]
            node.excluded_embed_metadata_keys = hidden
            node.excluded_llm_metadata_keys = hidden
            kept.append(node)
        return kept


def pipeline_signature(settings: Settings) -> str:
    """Anything that changes chunk text or vectors; a different signature re-indexes everything."""
    return f"minilm-l6-v2/md-sections/split-{settings.index_chunk_tokens}-{settings.index_chunk_overlap}/v1"


def make_pipeline(settings: Settings) -> IngestionPipeline:
    """Heading-aware split, then ~200-word-piece chunks (MiniLM reads at most 256) with a small overlap.

    Embedding is not part of it: ``Indexer`` embeds the chunks in batches and reports its progress."""
    splitter = SentenceSplitter(
        chunk_size=settings.index_chunk_tokens,
        chunk_overlap=settings.index_chunk_overlap,
        tokenizer=load_minilm().count_tokens,
        chunking_tokenizer_fn=split_sentences,
    )
    return IngestionPipeline(transformations=[MarkdownNodeParser(), _Sections(), splitter])


def split_sentences(text: str) -> list[str]:
    """Sentences with their trailing space, so joining them gives the text back.

    A regex instead of LlamaIndex's default NLTK punkt: NLTK 3.10 refuses to open its data files when
    uv installed them as hard links, and sentence ends in course notes are plain enough for this.
    """
    return [piece for piece in _SENTENCE.findall(text) if piece]


class Indexer:
    """Builds courses into one Chroma server; reuse it across builds (the watcher does)."""

    def __init__(self, settings: Settings, board: StatusBoard | None = None) -> None:
        self.settings = settings
        self.board = board or StatusBoard(settings.redis_url or None)
        self.embed = configure_llama_index()
        self._client: Any = None

    def build(self, only: Collection[str] | None = None) -> BuildReport:
        """Build every course (or those in ``only``); raises ``ChromaUnavailable`` before touching anything.

        A full build also drops the index of any course whose folder was deleted. A course whose
        ``course.toml`` is broken keeps its last good index and is listed under ``problems``.
        """
        catalog = load_catalog(Path(self.settings.corpus_dir))
        problems = [str(p) for p in catalog.problems]
        try:
            client = self._connect()
        except ChromaUnavailable as exc:
            self.board.update(state="waiting_for_chroma", error=str(exc))
            raise
        # only once Chroma answers: a retry loop must not flicker the status between waiting and building
        self.board.update(state="building", error=None, problems=problems, courses=self._known())
        if only is None:
            self._prune(client)
        versions = []
        for slug, course in catalog.courses.items():
            if only is not None and slug not in only:
                continue
            version = self.build_course(course, client)
            problems += [f"{course.slug}/{w}" for w in version.warnings]
            versions.append(version)
            self.board.record(version)
        self.board.update(state="ready", problems=problems, courses=self._known())
        return BuildReport(versions, problems)

    def _known(self) -> dict[str, CourseStatus]:
        """What is indexed now, read back from each course's ``version.json``."""
        index_dir = Path(self.settings.data_dir) / "index"
        known = {}
        for folder in sorted(index_dir.iterdir()) if index_dir.is_dir() else []:
            files = CourseFiles(Path(self.settings.data_dir), folder.name)
            v = files.read(files.version, CourseVersion, None)
            if v is not None:
                known[v.slug] = CourseStatus(v.version, v.chunks, v.built_at)
        return known

    def _prune(self, client: Any) -> None:
        """A course folder that is gone takes its collection and BM25 index with it."""
        index_dir = Path(self.settings.data_dir) / "index"
        for folder in sorted(index_dir.iterdir()) if index_dir.is_dir() else []:
            if (Path(self.settings.corpus_dir) / folder.name).is_dir():
                continue
            with contextlib.suppress(Exception):  # the collection may never have been created
                client.delete_collection(collection_name(folder.name))
            shutil.rmtree(folder, ignore_errors=True)
            log.info("course_index_removed", course=folder.name)

    def _connect(self) -> Any:
        if self._client is not None:
            try:
                self._client.heartbeat()
                return self._client
            except Exception:
                self._client = None
        self._client = connect_chroma(self.settings.chroma_url)
        return self._client

    def build_course(self, course: Course, client: Any) -> CourseVersion:
        """Re-index what changed in one course and record a new version if anything did."""
        started = time.perf_counter()
        files = CourseFiles(Path(self.settings.data_dir), course.slug)
        previous = files.read(files.version, CourseVersion, CourseVersion(slug=course.slug))
        manifest = files.read(files.manifest, Manifest, Manifest())
        materials = read_materials(course, self.settings.index_max_file_bytes)
        for warning in materials.warnings:
            log.warning("file_skipped", course=course.slug, path=warning.path, reason=warning.message)
        collection = get_collection(client, course.slug, create=True)
        if manifest.pipeline != pipeline_signature(self.settings) or collection.count() != sum(
            f.chunks for f in manifest.files.values()
        ):
            # Settings changed, or Chroma lost or gained data behind our back: start this course afresh.
            client.delete_collection(collection.name)
            collection = get_collection(client, course.slug, create=True)
            manifest = Manifest(pipeline=pipeline_signature(self.settings))
        store = ChromaVectorStore(chroma_collection=collection)
        docs = {d.doc_id: d for d in materials.documents}
        added = [p for p in docs if p not in manifest.files]
        changed = [p for p in docs if p in manifest.files and manifest.files[p].hash != _hash(docs[p])]
        removed = [p for p in manifest.files if p not in docs]
        for path in changed + removed:
            store.delete(path)
            manifest.files.pop(path)
        todo = [docs[p] for p in added + changed]
        if todo:
            nodes = self._embed(course.slug, make_pipeline(self.settings).run(documents=todo))
            add_nodes(store, list(nodes))
            for doc in todo:
                count = sum(1 for n in nodes if n.ref_doc_id == doc.doc_id)
                manifest.files[doc.doc_id] = FileEntry(_hash(doc), count)
        content_changed = bool(todo or removed) or (not files.bm25.exists() and bool(manifest.files))
        if content_changed or previous.version == 0:
            self._rebuild_bm25(files, collection)
        version = CourseVersion(
            slug=course.slug,
            version=previous.version + 1 if content_changed or previous.version == 0 else previous.version,
            built_at=now_iso() if content_changed or previous.version == 0 else previous.built_at,
            checked_at=now_iso(),
            documents=len(docs),
            chunks=sum(f.chunks for f in manifest.files.values()),
            added=added,
            changed=changed,
            removed=removed,
            unchanged=len(docs) - len(added) - len(changed),
            warnings=[str(w) for w in materials.warnings],
            seconds=round(time.perf_counter() - started, 2),
            pipeline=manifest.pipeline,
        )
        files.write(files.manifest, manifest)
        if version.version != previous.version:
            files.append_history(version)
        files.write(files.version, version)  # last: the retriever reloads when this changes
        log.info(
            "course_indexed",
            course=course.slug,
            version=version.version,
            chunks=version.chunks,
            added=len(added),
            changed=len(changed),
            removed=len(removed),
            seconds=version.seconds,
        )
        return version

    def _embed(self, slug: str, nodes: Sequence[BaseNode]) -> Sequence[BaseNode]:
        """Embed in batches, publishing how far the course got (a first build takes minutes)."""
        for start in range(0, len(nodes), EMBED_BATCH):
            self.embed(nodes[start : start + EMBED_BATCH])
            self.board.embedding(slug, min(start + EMBED_BATCH, len(nodes)), len(nodes))
        return nodes

    def _rebuild_bm25(self, files: CourseFiles, collection: Any) -> None:
        """BM25 over exactly what Chroma holds, so the two halves of the hybrid never disagree."""
        nodes = all_nodes(collection)
        if not nodes:
            files.drop_bm25()
            return
        bm25 = BM25Retriever.from_defaults(nodes=nodes, similarity_top_k=min(BM25_CANDIDATES, len(nodes)))
        files.replace_bm25(lambda path: bm25.persist(path, show_progress=False))


def add_nodes(store: ChromaVectorStore, nodes: list[BaseNode]) -> None:
    """In batches: the Chroma server rejects more than ~5.4k records per call, and the LlamaIndex
    store's own batching (41k) does not know that."""
    for start in range(0, len(nodes), ADD_BATCH):
        store.add(nodes[start : start + ADD_BATCH])


def _hash(doc: Document) -> str:
    return str(doc.metadata["file_hash"])


def describe_unknown(slug: str, catalog: Catalog) -> str:
    """Why ``slug`` cannot be built: its course.toml problem if it has one, else the known courses."""
    known = ", ".join(sorted(catalog.courses)) or "none"
    bad = next((str(p) for p in catalog.problems if p.slug == slug), None)
    return f"course '{slug}' could not be loaded: {bad}" if bad else f"no course '{slug}' (known: {known})"
