"""Hybrid retrieval as the gateway uses it: right passages, caching, reloads, and failure modes."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from services.gateway.ports import CourseRetriever, Passage
from services.indexer.build import Indexer
from services.indexer.retrieval import HybridRetriever, UnknownCourse, open_retriever
from services.settings import Settings
from tests.fixtures.ports import free_port
from tests.indexer.conftest import FIXTURE_COURSE, settings_for


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, chroma_url: str) -> Settings:
    """One build of the fixture course shared by the read-only tests of this module (embedding is slow)."""
    folder = tmp_path_factory.mktemp("retrieval")
    shutil.copytree(FIXTURE_COURSE, folder / "corpus" / "bio110")
    settings = settings_for(folder / "corpus", folder / "data", chroma_url=chroma_url)
    Indexer(settings).build()
    return settings


@pytest.mark.parametrize(
    ("query", "source"),
    [
        ("when are office hours and where", "syllabus.md"),
        ("my Lineweaver-Burk plot and Km estimate look wrong", "assignments/lab-report-1.md"),
        ("how does the sodium potassium pump use ATP", "assignments/problem-set-2.md"),
        ("what happens in the Calvin cycle", "notes/photosynthesis.txt"),
        ("chromatids separate in anaphase", "readings/mitosis.html"),
        ("water moving across a membrane", "readings/osmosis.pdf"),
    ],
)
def test_known_questions_find_the_right_document(built: Settings, query: str, source: str) -> None:
    """The top passage for a question comes from the document that answers it."""
    passages = open_retriever(built, warm=False).retrieve("bio110", query, k=3)
    assert passages[0].source == source


def test_passages_carry_what_the_interview_needs(built: Settings) -> None:
    """Passages have text, relative source, title, section, assignment id and a descending score."""
    retriever: CourseRetriever = open_retriever(built, warm=False)
    passages = retriever.retrieve("bio110", "common mistakes in the enzyme lab report", k=3)
    assert len(passages) == 3 and all(isinstance(p, Passage) for p in passages)
    top = passages[0]
    assert (top.source, top.title, top.assignment_id) == (
        "assignments/lab-report-1.md",
        "Lab Report 1: Enzyme Kinetics",
        "lab-1",
    )
    assert top.section == "Common mistakes" and "blank" in top.text
    assert [p.score for p in passages] == sorted((p.score for p in passages), reverse=True)
    many = open_retriever(built, warm=False).retrieve("bio110", "membrane transport", k=10)
    assert len({(p.source, p.text) for p in many}) == len(many)  # a chunk found by both halves appears once
    assert passages[-1].score > 0


def test_k_limits_the_number_of_passages(built: Settings) -> None:
    """``k`` caps the answer; a course with fewer chunks returns what it has."""
    retriever = open_retriever(built, warm=False)
    assert len(retriever.retrieve("bio110", "cells", k=1)) == 1
    assert len(retriever.retrieve("bio110", "cells", k=50)) <= 20


def test_unknown_course_is_a_clear_error(built: Settings) -> None:
    """A slug with no index raises UnknownCourse naming it; path tricks are not slugs."""
    retriever = open_retriever(built, warm=False)
    with pytest.raises(UnknownCourse, match="no index for course 'phys999'"):
        retriever.retrieve("phys999", "anything")
    with pytest.raises(UnknownCourse):
        retriever.retrieve("../bio110", "anything")
    assert isinstance(UnknownCourse("x"), LookupError)


def test_open_retriever_does_not_need_chroma(built: Settings) -> None:
    """Opening never fails; with Chroma down, queries are answered from BM25 alone."""
    dead = Settings(**{**_fields(built), "chroma_url": f"http://127.0.0.1:{free_port()}"})
    retriever = open_retriever(dead, warm=False)
    passages = retriever.retrieve("bio110", "Calvin cycle rubisco carbon dioxide", k=2)
    assert passages and passages[0].source == "notes/photosynthesis.txt"
    assert retriever._cache["bio110"].vector is None
    assert retriever.search_state("bio110") == "keyword_only"  # the summary says so
    assert open_retriever(built, warm=False).search_state("bio110") == "ok"
    assert retriever.search_state("no-such-course") == "unavailable"


def test_chroma_coming_back_restores_the_vector_half(
    built: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After Chroma was unreachable, a later query reconnects (lazy, retried) and uses vectors again."""
    monkeypatch.setattr("services.indexer.retrieval._RECONNECT_S", 0.0)
    retriever = HybridRetriever(
        Settings(**{**_fields(built), "chroma_url": f"http://127.0.0.1:{free_port()}"})
    )
    retriever.retrieve("bio110", "cells")
    assert retriever._cache["bio110"].vector is None
    retriever.settings = built  # the operator fixed the URL / the server came back
    retriever.retrieve("bio110", "cells")
    assert retriever._cache["bio110"].vector is not None


def test_empty_query_returns_nothing(built: Settings) -> None:
    """A blank query is not an error, just no passages."""
    assert open_retriever(built, warm=False).retrieve("bio110", "   ") == []


def test_warm_up_loads_courses_in_the_background(built: Settings) -> None:
    """``warm`` loads the model and every indexed course so the first intake does not wait."""
    retriever = open_retriever(built, warm=False)
    retriever.warm()
    assert retriever.versions() == {"bio110": 1}


# Last in the module: it rebuilds the shared collection name from its own copy of the course.
def test_retriever_is_cached_and_reloads_after_a_rebuild(
    make_settings: Callable[..., Settings], corpus: Path
) -> None:
    """Repeated queries reuse the loaded course; a new indexed version is picked up without restart."""
    settings = make_settings()
    Indexer(settings).build()
    retriever = open_retriever(settings, warm=False)
    retriever.retrieve("bio110", "meiosis")
    loaded = retriever._cache["bio110"]
    retriever.retrieve("bio110", "meiosis")
    assert retriever._cache["bio110"] is loaded
    (corpus / "bio110" / "notes" / "meiosis.md").write_text(
        "# Meiosis\n\nMeiosis makes four haploid gametes through crossing over and two divisions.\n"
    )
    Indexer(settings).build()
    passages = retriever.retrieve("bio110", "how many gametes does meiosis make", k=1)
    assert passages[0].source == "notes/meiosis.md"
    assert retriever.versions() == {"bio110": 2}


def _fields(settings: Settings) -> dict[str, object]:
    import msgspec

    return msgspec.structs.asdict(settings)
