"""Where a course index lives: a Chroma collection on the server plus files in ``<data_dir>/index/<slug>/``.

Also the one place that sets LlamaIndex's global defaults, so nothing ever falls back to OpenAI.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

import chromadb
import msgspec
from chromadb.config import Settings as ChromaSettings
from llama_index.core import Settings as LlamaSettings
from llama_index.core.llms import MockLLM
from llama_index.core.schema import BaseNode
from llama_index.core.vector_stores.utils import metadata_dict_to_node

from services.indexer.embedding import MiniLMEmbedding

_PAGE = 1000


class ChromaUnavailable(RuntimeError):
    """The Chroma server did not answer; the message names the URL and what to do."""


def configure_llama_index() -> MiniLMEmbedding:
    """Local embeddings and no LLM: LlamaIndex's defaults would silently call OpenAI."""
    embed = MiniLMEmbedding()
    LlamaSettings.embed_model = embed
    LlamaSettings.llm = MockLLM()
    return embed


def collection_name(slug: str) -> str:
    return f"course-{slug}"


def connect_chroma(url: str) -> Any:
    """An ``HttpClient`` that has answered a heartbeat, or ``ChromaUnavailable``."""
    parsed = urlparse(url)
    try:
        client = chromadb.HttpClient(
            host=parsed.hostname or "127.0.0.1",
            port=parsed.port or (443 if parsed.scheme == "https" else 8000),
            ssl=parsed.scheme == "https",
            settings=ChromaSettings(anonymized_telemetry=False),
        )
        client.heartbeat()
    except Exception as exc:  # chromadb wraps connection errors in several types
        raise ChromaUnavailable(
            f"Chroma is not reachable at {url} ({type(exc).__name__}); start it (supervisorctl start chroma) "
            "or set INTAKE_CHROMA_URL"
        ) from exc
    return client


def get_collection(client: Any, slug: str, *, create: bool) -> Any:
    """The course's collection; cosine space because MiniLM vectors are compared by angle.

    ``embedding_function=None``: we always pass vectors, and Chroma's default function would
    download a model the first time anything asked it to embed.
    """
    if create:
        return client.get_or_create_collection(
            collection_name(slug), embedding_function=None, metadata={"hnsw:space": "cosine"}
        )
    return client.get_collection(collection_name(slug), embedding_function=None)


def all_nodes(collection: Any) -> list[BaseNode]:
    """Every chunk stored for a course, as LlamaIndex nodes (the BM25 index is built from these)."""
    nodes: list[BaseNode] = []
    offset = 0
    while True:
        page = collection.get(include=["documents", "metadatas"], limit=_PAGE, offset=offset)
        for text, meta in zip(page["documents"], page["metadatas"], strict=True):
            nodes.append(metadata_dict_to_node(meta, text=text))
        if len(page["ids"]) < _PAGE:
            return sorted(
                nodes, key=lambda n: (n.metadata.get("source", ""), getattr(n, "start_char_idx", 0) or 0)
            )
        offset += _PAGE


class CourseFiles:
    """The files beside Chroma for one course: manifest, version record and the BM25 index."""

    def __init__(self, data_dir: Path, slug: str) -> None:
        self.dir = data_dir / "index" / slug
        self.manifest = self.dir / "manifest.json"
        self.version = self.dir / "version.json"
        self.bm25 = self.dir / "bm25"
        self.history = self.dir / "history.jsonl"

    def read(self, path: Path, kind: type[Any], default: Any) -> Any:
        try:
            return msgspec.json.decode(path.read_bytes(), type=kind)
        except (FileNotFoundError, msgspec.DecodeError, msgspec.ValidationError):
            return default

    def write(self, path: Path, value: Any) -> None:
        """Write-then-rename, so a reader in the gateway never sees half a file."""
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(msgspec.json.format(msgspec.json.encode(value)))
        tmp.replace(path)

    def append_history(self, value: Any) -> None:
        """One JSON line per new version: what changed and when, kept for the operator."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with self.history.open("ab") as out:
            out.write(msgspec.json.encode(value) + b"\n")

    def replace_bm25(self, fill: Any) -> None:
        """Build the new BM25 folder aside, then swap it in (``fill(path)`` persists into it)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        fresh = Path(tempfile.mkdtemp(prefix="bm25-", dir=self.dir))
        fill(str(fresh))
        old = self.dir / f".old-{fresh.name}"
        if self.bm25.exists():
            self.bm25.rename(old)
        fresh.rename(self.bm25)
        shutil.rmtree(old, ignore_errors=True)

    def drop_bm25(self) -> None:
        shutil.rmtree(self.bm25, ignore_errors=True)
