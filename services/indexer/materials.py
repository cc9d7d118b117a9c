"""Read a course folder's materials into LlamaIndex ``Document``s, one per file.

Every file becomes either a document or a warning a professor can act on (too big, not text, an
unreadable PDF); one bad file never stops the rest of the course from being indexed.
"""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path

import msgspec
import yaml
from bs4 import BeautifulSoup
from llama_index.core import Document
from pypdf import PdfReader

from services.coursepack import Course

SUFFIXES = (".md", ".markdown", ".txt", ".pdf", ".html", ".htm")
# Only these travel into the embedded text and the BM25 corpus; the rest is bookkeeping.
EMBED_KEYS = ("title", "section")
_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*(?:\n|\Z)", re.DOTALL)
_HEADING = re.compile(r"^#\s+(.+?)\s*#*\s*$", re.MULTILINE)


class FileWarning(msgspec.Struct, frozen=True):
    """A file that was skipped or only partly understood, with the reason."""

    path: str  # relative to the course folder
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class Materials(msgspec.Struct):
    documents: list[Document]
    warnings: list[FileWarning]


def read_materials(course: Course, max_bytes: int) -> Materials:
    """Every indexable file of ``course``, sorted by path so builds are reproducible."""
    root = Path(course.path)
    assignment_files = {a.file: a.id for a in course.assignments if a.file}
    known_assignments = {a.id for a in course.assignments}
    documents: list[Document] = []
    warnings: list[FileWarning] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES):
        rel = path.relative_to(root).as_posix()
        if any(part.startswith(".") for part in Path(rel).parts):
            continue
        try:
            doc = _read_one(path, rel, max_bytes)
        except _Skip as exc:
            warnings.append(FileWarning(rel, str(exc)))
            continue
        assignment = doc.metadata.pop("front_matter_assignment", None) or assignment_files.get(rel)
        if assignment and assignment not in known_assignments:
            warnings.append(FileWarning(rel, f"front matter names unknown assignment '{assignment}'"))
            assignment = assignment_files.get(rel)
        if assignment:
            doc.metadata["assignment_id"] = assignment
        doc.metadata["course"] = course.slug
        doc.metadata["file_hash"] = _hash(doc)
        documents.append(doc)
    return Materials(documents, warnings)


class _Skip(Exception):
    """The file cannot be indexed; the message says why."""


def _read_one(path: Path, rel: str, max_bytes: int) -> Document:
    size = path.stat().st_size
    if size > max_bytes:
        raise _Skip(
            f"skipped: {size:,} bytes is above the {max_bytes:,}-byte cap (INTAKE_INDEX_MAX_FILE_BYTES)"
        )
    raw = path.read_bytes()
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        title, text, extra = _read_pdf(raw, path.stem)
    else:
        source = _decode(raw)
        if suffix in (".html", ".htm"):
            title, text, extra = _read_html(source, path.stem)
        elif suffix == ".txt":
            title, text, extra = _first_line_title(source, path.stem), source.strip(), {}
        else:
            title, text, extra = _read_markdown(source, path.stem)
    if not text.strip():
        raise _Skip("skipped: no text in the file")
    return Document(
        id_=rel,
        text=text,
        metadata={"source": rel, "title": title, **extra},
        excluded_embed_metadata_keys=[],  # filled per chunk by the pipeline (only EMBED_KEYS remain)
    )


def _decode(raw: bytes) -> str:
    """Text or nothing: a NUL byte or invalid UTF-8 means a binary file wearing a text name."""
    if b"\x00" in raw[:8192]:
        raise _Skip("skipped: binary content (NUL bytes), not a text file")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _Skip(f"skipped: not valid UTF-8 text (byte {exc.start})") from None


def _read_markdown(source: str, stem: str) -> tuple[str, str, dict[str, str]]:
    extra: dict[str, str] = {}
    match = _FRONT_MATTER.match(source)
    if match:
        try:
            front = yaml.safe_load(match.group(1)) or {}
        except yaml.YAMLError:
            front = {}
        if isinstance(front, dict):
            if front.get("assignment"):
                extra["front_matter_assignment"] = str(front["assignment"])
            if front.get("title"):
                extra["title"] = str(front["title"])
        source = source[match.end() :]
    heading = _HEADING.search(source)
    title = extra.pop("title", None) or (heading.group(1) if heading else _title_from_stem(stem))
    return title, source.strip(), extra


def _read_html(source: str, stem: str) -> tuple[str, str, dict[str, str]]:
    """HTML to Markdown-like text so the same heading-aware splitter applies."""
    soup = BeautifulSoup(source, "html.parser")
    for tag in soup(["script", "style", "nav", "footer"]):
        tag.decompose()
    title_tag = soup.find("title")
    named = title_tag or soup.find("h1")
    title = named.get_text(" ", strip=True) if named is not None else _title_from_stem(stem)
    if title_tag:
        title_tag.decompose()
    for tag in soup.find_all(re.compile(r"^h[1-6]$")):
        level = int(tag.name[1])
        tag.replace_with(f"\n\n{'#' * level} {tag.get_text(' ', strip=True)}\n\n")
    for tag in soup.find_all(["p", "li", "tr", "pre", "div", "br"]):
        tag.insert_after("\n")
    text = re.sub(r"\n\s*\n+", "\n\n", soup.get_text()).strip()
    return title or _title_from_stem(stem), text, {}


def _read_pdf(raw: bytes, stem: str) -> tuple[str, str, dict[str, str]]:
    try:
        reader = PdfReader(io.BytesIO(raw))
        pages = [page.extract_text() or "" for page in reader.pages]
        info_title = (reader.metadata.title if reader.metadata else None) or ""
    except Exception as exc:  # pypdf raises many types for broken files; all mean "cannot parse"
        raise _Skip(f"skipped: PDF could not be parsed ({type(exc).__name__}: {exc})"[:300]) from None
    text = "\n\n".join(p.strip() for p in pages if p.strip())
    if not text:
        raise _Skip("skipped: PDF has no extractable text (scanned images?)")
    return info_title.strip() or _first_line_title(text, stem), text, {}


def _first_line_title(text: str, stem: str) -> str:
    """A short first line reads like a title; a long one is prose, so fall back to the file name."""
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first if 0 < len(first) <= 80 else _title_from_stem(stem)


def _title_from_stem(stem: str) -> str:
    return re.sub(r"[-_]+", " ", stem).strip().capitalize() or stem


def _hash(doc: Document) -> str:
    """Content plus the metadata that reaches the index: a changed assignment link also re-indexes."""
    digest = hashlib.sha256(doc.text.encode("utf-8"))
    digest.update(repr(sorted(doc.metadata.items())).encode("utf-8"))
    return digest.hexdigest()
