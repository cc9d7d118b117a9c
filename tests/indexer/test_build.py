"""Building course indexes into a real Chroma server: chunking, metadata, incremental rebuilds, bad input."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
import redis

from services.coursepack import load_catalog
from services.gateway.health.routes import INDEXER_STATUS_KEY as GATEWAY_KEY
from services.indexer.__main__ import main
from services.indexer.build import Indexer
from services.indexer.embedding import load_minilm
from services.indexer.status import INDEXER_STATUS_KEY, CourseVersion, IndexerStatus
from services.indexer.stores import CourseFiles, all_nodes, connect_chroma, get_collection
from services.settings import Settings

SettingsFactory = Callable[..., Settings]


def _chunks(settings: Settings, slug: str = "bio110") -> list:  # type: ignore[type-arg]
    return all_nodes(get_collection(connect_chroma(settings.chroma_url), slug, create=False))


def _bm25_sources(settings: Settings, slug: str = "bio110") -> set[str]:
    corpus = (CourseFiles(Path(settings.data_dir), slug).bm25 / "corpus.jsonl").read_text().splitlines()
    return {msgspec.json.decode(line)["source"] for line in corpus}


def test_full_build_indexes_every_file_with_metadata(make_settings: SettingsFactory) -> None:
    """Each file lands in Chroma and BM25 as chunks carrying course, title, source, section, assignment."""
    settings = make_settings()
    report = Indexer(settings).build()
    (version,) = report.courses
    assert (version.slug, version.version, version.documents) == ("bio110", 1, 6)
    chunks = _chunks(settings)
    assert len(chunks) == version.chunks > 0
    by_source = {c.metadata["source"]: c for c in chunks}
    assert set(by_source) == set(version.added)
    assert _bm25_sources(settings) == set(version.added)
    lab = [c for c in chunks if c.metadata["source"] == "assignments/lab-report-1.md"]
    assert {c.metadata["section"] for c in lab} == {"Task", "Common mistakes"}
    assert all(c.metadata["assignment_id"] == "lab-1" for c in lab)
    assert all(c.metadata["course"] == "bio110" and c.metadata["title"] for c in chunks)
    assert not any(re.fullmatch(r"#+ [^\n]*", c.get_content().strip()) for c in chunks)  # no bare headings


def test_chunks_fit_the_embedding_window(make_settings: SettingsFactory, corpus: Path) -> None:
    """A long file is cut into chunks of at most the configured size, overlapping a little."""
    text = "# Long notes\n\n## Cells\n\n" + " ".join(
        f"Sentence {i} says that the cell membrane controls what enters the cell." for i in range(60)
    )
    (corpus / "bio110" / "notes" / "long.md").write_text(text)
    settings = make_settings(index_chunk_tokens=120, index_chunk_overlap=16)
    Indexer(settings).build()
    long_chunks = [c for c in _chunks(settings) if c.metadata["source"] == "notes/long.md"]
    assert len(long_chunks) >= 5
    sizes = [len(load_minilm().count_tokens(c.get_content())) for c in long_chunks]
    assert max(sizes) <= 120
    assert all(c.metadata["section"] == "Cells" for c in long_chunks)


def test_unchanged_rebuild_embeds_nothing_and_keeps_the_version(make_settings: SettingsFactory) -> None:
    """A second build of an unchanged course skips every file by hash and records no new version."""
    settings = make_settings()
    indexer = Indexer(settings)
    first = indexer.build().courses[0]
    ids_before = sorted(c.node_id for c in _chunks(settings))
    second = indexer.build().courses[0]
    assert (second.version, second.added, second.changed, second.removed) == (1, [], [], [])
    assert second.unchanged == 6
    assert second.built_at == first.built_at
    assert sorted(c.node_id for c in _chunks(settings)) == ids_before  # nothing re-embedded


def test_incremental_rebuild_touches_only_what_changed(make_settings: SettingsFactory, corpus: Path) -> None:
    """Edited, added and deleted files are the only ones re-indexed; deleted ones leave both indexes."""
    settings = make_settings()
    indexer = Indexer(settings)
    indexer.build()
    untouched = {c.node_id for c in _chunks(settings) if c.metadata["source"] == "syllabus.md"}
    course = corpus / "bio110"
    (course / "notes" / "photosynthesis.txt").write_text("Photosynthesis notes\n\nRubisco is slow.\n")
    (course / "readings" / "mitosis.html").unlink()
    (course / "notes" / "meiosis.md").write_text("# Meiosis\n\nMeiosis halves the chromosome number.\n")
    version = indexer.build().courses[0]
    assert version.version == 2
    assert (version.added, version.changed, version.removed) == (
        ["notes/meiosis.md"],
        ["notes/photosynthesis.txt"],
        ["readings/mitosis.html"],
    )
    assert version.unchanged == 4
    chunks = _chunks(settings)
    sources = {c.metadata["source"] for c in chunks}
    assert "readings/mitosis.html" not in sources and "notes/meiosis.md" in sources
    assert "readings/mitosis.html" not in _bm25_sources(settings)
    assert {c.node_id for c in chunks if c.metadata["source"] == "syllabus.md"} == untouched
    photo = [c.get_content() for c in chunks if c.metadata["source"] == "notes/photosynthesis.txt"]
    assert photo == ["Photosynthesis notes\n\nRubisco is slow."]
    saved = msgspec.json.decode(
        CourseFiles(Path(settings.data_dir), "bio110").version.read_bytes(), type=CourseVersion
    )
    assert saved.version == 2 and saved.removed == ["readings/mitosis.html"]
    history = CourseFiles(Path(settings.data_dir), "bio110").history.read_text().splitlines()
    assert [msgspec.json.decode(line, type=CourseVersion).version for line in history] == [1, 2]


def test_changing_an_assignment_link_reindexes_the_file(make_settings: SettingsFactory, corpus: Path) -> None:
    """Metadata from course.toml is part of the hash: unlinking a sheet re-indexes it without the id."""
    settings = make_settings()
    indexer = Indexer(settings)
    indexer.build()
    toml = corpus / "bio110" / "course.toml"
    toml.write_text(toml.read_text().replace('file = "assignments/lab-report-1.md"\n', ""))
    version = indexer.build().courses[0]
    assert version.changed == ["assignments/lab-report-1.md"]
    lab = [c for c in _chunks(settings) if c.metadata["source"] == "assignments/lab-report-1.md"]
    assert all(not c.metadata.get("assignment_id") for c in lab)


def test_bad_files_are_skipped_and_reported(make_settings: SettingsFactory, corpus: Path) -> None:
    """Binary .md, an oversized file and a broken PDF become warnings; the rest of the course is indexed."""
    course = corpus / "bio110"
    (course / "notes" / "image.md").write_bytes(b"\x89PNG\r\n\x00\x00" + bytes(100))
    (course / "notes" / "huge.md").write_text("# Huge\n\n" + "cell " * 5000)
    (course / "readings" / "broken.pdf").write_bytes(b"%PDF-1.4\ngarbage")
    settings = make_settings(index_max_file_bytes=10_000)
    report = Indexer(settings).build()
    version = report.courses[0]
    assert version.documents == 6
    assert sorted(w.split(":")[0] for w in version.warnings) == [
        "notes/huge.md",
        "notes/image.md",
        "readings/broken.pdf",
    ]
    assert len(report.problems) == 3
    assert all(p.startswith("bio110/") for p in report.problems)


def test_bad_course_toml_is_reported_and_other_courses_still_build(
    make_settings: SettingsFactory, corpus: Path
) -> None:
    """A broken course.toml is a problem naming file and line; the good course is indexed anyway."""
    bad = corpus / "chem101"
    bad.mkdir()
    (bad / "course.toml").write_text('code = "CHEM 101"\ntitle = "Chemistry"\ninstructor_name = [unclosed\n')
    (bad / "notes.md").write_text("# Notes\n\nAtoms.\n")
    settings = make_settings()
    report = Indexer(settings).build()
    assert [v.slug for v in report.courses] == ["bio110"]
    (problem,) = report.problems
    assert "chem101/course.toml:3" in problem


def test_empty_course_folder_is_a_problem_not_a_crash(make_settings: SettingsFactory, corpus: Path) -> None:
    """A folder without course.toml is reported as such; the other course builds."""
    (corpus / "empty").mkdir()
    report = Indexer(make_settings()).build()
    assert [v.slug for v in report.courses] == ["bio110"]
    assert any("empty" in p and "course.toml is missing" in p for p in report.problems)


def test_course_without_materials_builds_empty(make_settings: SettingsFactory, corpus: Path) -> None:
    """A valid course.toml with no materials yet gives version 1 with zero chunks and no BM25 index."""
    for path in sorted((corpus / "bio110").iterdir()):
        if path.name != "course.toml":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    toml = corpus / "bio110" / "course.toml"
    toml.write_text(toml.read_text().replace('file = "assignments/lab-report-1.md"\n', ""))
    settings = make_settings()
    version = Indexer(settings).build().courses[0]
    assert (version.version, version.documents, version.chunks) == (1, 0, 0)
    assert not CourseFiles(Path(settings.data_dir), "bio110").bm25.exists()


def test_event_type_collision_rejects_the_second_course(make_settings: SettingsFactory, corpus: Path) -> None:
    """A course reusing another's Cal.com event type is not loaded (nor indexed); the first still is."""
    clone = corpus / "bio111"
    shutil.copytree(corpus / "bio110", clone)
    toml = clone / "course.toml"
    toml.write_text(toml.read_text().replace("event_type_ids = [9110]", "event_type_ids = [9111]"))
    catalog = load_catalog(corpus)
    assert set(catalog.courses) == {"bio110"}
    (problem,) = catalog.problems
    assert problem.slug == "bio111" and "slug bio110-office-hours" in problem.message
    report = Indexer(make_settings()).build()
    assert [v.slug for v in report.courses] == ["bio110"]


def test_deleted_course_folder_drops_its_index(make_settings: SettingsFactory, corpus: Path) -> None:
    """When a course folder disappears, a full build removes its collection and BM25 files."""
    settings = make_settings()
    indexer = Indexer(settings)
    indexer.build()
    shutil.rmtree(corpus / "bio110")
    indexer.build()
    assert not (Path(settings.data_dir) / "index" / "bio110").exists()
    names = [c.name for c in connect_chroma(settings.chroma_url).list_collections()]
    assert "course-bio110" not in names


def test_status_is_published_to_redis(make_settings: SettingsFactory, redis_url: str, corpus: Path) -> None:
    """The gateway's /readyz key holds state, per-course version and chunks, and file problems."""
    (corpus / "bio110" / "notes" / "image.md").write_bytes(bytes(64))
    settings = make_settings(redis_url=redis_url)
    Indexer(settings).build()
    raw = redis.Redis.from_url(redis_url).get(GATEWAY_KEY)
    assert GATEWAY_KEY == INDEXER_STATUS_KEY
    status = msgspec.json.decode(raw, type=IndexerStatus)
    assert status.state == "ready" and status.error is None
    assert status.courses["bio110"].version == 1 and status.courses["bio110"].chunks > 0
    assert status.problems == ["bio110/notes/image.md: skipped: binary content (NUL bytes), not a text file"]


def test_chroma_unreachable_build_fails_clearly(
    make_settings: SettingsFactory,
    redis_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With no Chroma, `build` exits 2 naming the URL, and the status says it is waiting for Chroma."""
    from tests.fixtures.ports import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    settings = make_settings(chroma_url=dead, redis_url=redis_url)
    for name in ("corpus_dir", "data_dir", "chroma_url", "redis_url"):
        monkeypatch.setenv(f"INTAKE_{name.upper()}", str(getattr(settings, name)))
    assert main(["build"]) == 2
    assert f"Chroma is not reachable at {dead}" in capsys.readouterr().err
    status = msgspec.json.decode(redis.Redis.from_url(redis_url).get(INDEXER_STATUS_KEY), type=IndexerStatus)
    assert status.state == "waiting_for_chroma" and dead in (status.error or "")
    assert not (Path(settings.data_dir) / "index").exists()
