"""An offline keyword retriever over the course packs, for generating training data without the stack.

The gateway retrieves with Chroma + BM25 from the running indexer; generation must not need those
servers, so this reads the same files with the indexer's own reader (``read_materials``), cuts them at
``## `` sections and ranks sections by shared content words with the policy's own stemmer. The passages
differ slightly from what the live hybrid retriever returns, but have the same shape and size, which is
what the model has to get used to in its system prompt. Synthetic skeleton courses (no folder) are served
their in-memory passages (``finetune.skeletons.passages_of``).
"""

from __future__ import annotations

import re
from pathlib import Path

from finetune.skeletons import load_skeletons, passages_of
from services.coursepack import Catalog
from services.gateway.intake.text import content_words
from services.gateway.ports import Passage
from services.indexer.materials import read_materials

MAX_FILE_BYTES = 2 * 1024 * 1024


class LocalRetriever:
    """``CourseRetriever`` over the files of each course pack, kept in memory."""

    def __init__(self, catalog: Catalog) -> None:
        self._sections: dict[str, list[tuple[Passage, set[str]]]] = {}
        skeletons = {s.slug: s for s in load_skeletons()}
        for slug, course in catalog.courses.items():
            if Path(course.path).is_dir():
                materials = read_materials(course, MAX_FILE_BYTES)
                passages = [p for doc in materials.documents for p in _sections(doc.text, doc.metadata)]
            else:
                passages = passages_of(skeletons[slug]) if slug in skeletons else []
            self._sections[slug] = [
                (passage, content_words(f"{passage.title} {passage.section or ''} {passage.text}"))
                for passage in passages
            ]

    def retrieve(self, course_slug: str, query: str, k: int = 3) -> list[Passage]:
        wanted = content_words(query)
        scored = [
            (len(wanted & words) / (1 + len(words)) ** 0.5, i, passage)
            for i, (passage, words) in enumerate(self._sections.get(course_slug, []))
            if wanted & words
        ]
        scored.sort(key=lambda row: (-row[0], row[1]))
        return [
            Passage(
                text=p.text,
                source=p.source,
                title=p.title,
                section=p.section,
                assignment_id=p.assignment_id,
                score=round(s, 4),
            )
            for s, _, p in scored[:k]
        ]


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _sections(text: str, metadata: dict[str, object]) -> list[Passage]:
    parts = re.split(r"(?m)^##\s+", text)
    out = []
    for i, part in enumerate(parts):
        lines = part.strip().splitlines()
        if not lines:
            continue
        section = lines[0].strip() if i else None
        body = "\n".join(lines[1:] if i else lines).strip()
        if body:
            out.append(
                Passage(
                    text=body[:1200],
                    source=str(metadata.get("source", "")),
                    title=str(metadata.get("title", Path(str(metadata.get("source", ""))).stem)),
                    section=section,
                    assignment_id=_text_or_none(metadata.get("assignment_id")),
                )
            )
    return out
