"""``MessageReader`` on the MiniLM embeddings we ship: the message classifier plus a course map.

The course map is one embedding per topic (title and keywords) plus one per section of the notes file the
topic owns (a pack keeps one notes file per topic: its sections say in the course's own words what the
topic covers, e.g. a "boundary values" section under conditionals), and one per assignment (title,
keywords and the opening of its sheet), computed once per course and process, so a student's stuck point
can be compared with every part of the course in one matrix product; a topic's similarity is its best
vector's. CPU-bound: call from a worker thread.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import msgspec
import numpy as np

from services.coursepack import Course
from services.gateway.intake.matching import topic_of_source
from services.gateway.ports import CourseSimilarity
from services.indexer.embedding import load_minilm
from services.understanding.classifier import MessageClassifier, MessageUnderstanding, load_classifier

SHEET_WORDS = 80  # how much of an assignment sheet describes it (titles alone are too short to embed well)
SECTION_WORDS = 120  # how much of a notes section is embedded (the model reads 256 tokens at most)
MAX_FILE_BYTES = 2 * 1024 * 1024
_HEADING = re.compile(r"\n(?=#{2,3} )")


class _CourseMap:
    def __init__(
        self,
        topics: list[str],
        topic_vectors: np.ndarray,
        owners: np.ndarray,
        assignments: list[str],
        vectors: np.ndarray,
    ):
        self.topics, self.topic_vectors, self.owners = topics, topic_vectors, owners  # owners: row -> topic
        self.assignments, self.assignment_vectors = assignments, vectors

    def topic_similarity(self, vector: np.ndarray) -> np.ndarray:
        """Per topic, the best cosine over its title vector and its notes sections."""
        best = np.full(len(self.topics), -1.0, dtype=np.float32)
        if len(self.topic_vectors):
            np.maximum.at(best, self.owners, self.topic_vectors @ vector)
        return best


class EmbeddingReader:
    """The learned half of reading a message (see ``services.gateway.ports.MessageReader``)."""

    def __init__(self, classifier: MessageClassifier | None = None) -> None:
        self._classifier = classifier
        self._maps: dict[str, tuple[bytes, _CourseMap]] = {}
        self._lock = threading.Lock()

    @property
    def classifier(self) -> MessageClassifier:
        if self._classifier is None:
            self._classifier = load_classifier()
        return self._classifier

    def understand(self, text: str) -> MessageUnderstanding:
        return self.classifier.understand(text)

    def similarity(self, course: Course, text: str) -> CourseSimilarity:
        course_map = self._map(course)
        vector = load_minilm().embed([text])[0]
        topics = course_map.topic_similarity(vector) if course_map.topics else np.zeros(0)
        assignments = course_map.assignment_vectors @ vector if course_map.assignments else np.zeros(0)
        return CourseSimilarity(
            topics={t: round(float(s), 4) for t, s in zip(course_map.topics, topics, strict=True)},
            assignments={
                a: round(float(s), 4) for a, s in zip(course_map.assignments, assignments, strict=True)
            },
        )

    def _map(self, course: Course) -> _CourseMap:
        # the course's encoded topics and assignments and its files' sizes and times: a reloaded course
        # pack or an edited notes file gets a new map (the Structs themselves cannot be hashed: they hold
        # lists); one map per course is kept
        key = msgspec.json.encode([course.topics, course.assignments, _files_fingerprint(course)])
        with self._lock:
            cached = self._maps.get(course.slug)
            if cached is None or cached[0] != key:
                cached = self._maps[course.slug] = (key, _build_map(course))
            return cached[1]


def _files_fingerprint(course: Course) -> list[tuple[str, int, int]]:
    """(path, size, modification time) of every file in the course folder: a few dozen stat calls."""
    if not course.path or not Path(course.path).is_dir():
        return []
    out = []
    for path in sorted(Path(course.path).rglob("*")):
        try:
            info = path.stat()
        except OSError:
            continue
        if path.is_file():
            out.append((str(path), info.st_size, info.st_mtime_ns))
    return out


def _build_map(course: Course) -> _CourseMap:
    topic_texts = [f"{t.title}. {', '.join(t.keywords)}" for t in course.topics]
    owners = list(range(len(topic_texts)))
    for owner, text in _notes_sections(course):
        topic_texts.append(text)
        owners.append(owner)
    assignment_texts = [
        f"{a.title}. {', '.join(a.keywords)}. {_sheet_opening(course, a.file)}" for a in course.assignments
    ]
    vectors = load_minilm().embed(topic_texts + assignment_texts) if topic_texts or assignment_texts else None
    n = len(topic_texts)
    empty = np.zeros((0, 384), dtype=np.float32)
    return _CourseMap(
        [t.id for t in course.topics],
        vectors[:n] if vectors is not None else empty,
        np.array(owners, dtype=np.intp),
        [a.id for a in course.assignments],
        vectors[n:] if vectors is not None else empty,
    )


def _notes_sections(course: Course) -> list[tuple[int, str]]:
    """(topic index, "file title. heading and opening words") for each section of a file one topic owns."""
    if not course.path or not Path(course.path).is_dir():
        return []
    from services.indexer.materials import read_materials  # the indexer's own reader: every file format

    index = {t.id: i for i, t in enumerate(course.topics)}
    out: list[tuple[int, str]] = []
    for doc in read_materials(course, MAX_FILE_BYTES).documents:
        title = str(doc.metadata.get("title", ""))
        owner = topic_of_source(course, str(doc.metadata.get("source", "")), title)
        if owner is None:
            continue
        for part in _HEADING.split(doc.text):
            words = part.replace("#", " ").split()[:SECTION_WORDS]
            if len(words) >= 8:
                out.append((index[owner], f"{title}. {' '.join(words)}"))
    return out


def _sheet_opening(course: Course, file: str | None) -> str:
    if not file or not course.path:
        return ""
    try:
        text = (Path(course.path) / file).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    words = [w for w in text.replace("#", " ").split() if not w.startswith(("---", "assignment:"))]
    return " ".join(words[:SHEET_WORDS])
