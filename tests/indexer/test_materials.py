"""Reading course materials: titles, sections, assignment links, and files that must be skipped."""

from __future__ import annotations

from pathlib import Path

from services.coursepack import load_course
from services.indexer.materials import read_materials

CAP = 2 * 1024 * 1024


def _read(folder: Path, cap: int = CAP):  # type: ignore[no-untyped-def]
    return read_materials(load_course(folder), cap)


def test_every_format_becomes_one_document_with_metadata(corpus: Path) -> None:
    """md, txt, html and pdf each give one document with title, relative source and course."""
    materials = _read(corpus / "bio110")
    docs = {d.doc_id: d for d in materials.documents}
    assert materials.warnings == []
    assert set(docs) == {
        "syllabus.md",
        "assignments/lab-report-1.md",
        "assignments/problem-set-2.md",
        "notes/photosynthesis.txt",
        "readings/mitosis.html",
        "readings/osmosis.pdf",
    }
    assert docs["syllabus.md"].metadata["title"] == "BIO 110 Syllabus"
    assert docs["notes/photosynthesis.txt"].metadata["title"] == "Photosynthesis notes"
    assert docs["readings/mitosis.html"].metadata["title"] == "Mitosis and the Cell Cycle"
    assert "console.log" not in docs["readings/mitosis.html"].text  # scripts are not course text
    assert "## Phases" in docs["readings/mitosis.html"].text  # HTML headings become sections
    assert "semipermeable membrane" in docs["readings/osmosis.pdf"].text
    assert all(d.metadata["course"] == "bio110" for d in docs.values())


def test_assignment_ids_come_from_course_toml_and_front_matter(corpus: Path) -> None:
    """``file =`` in course.toml and ``assignment:`` front matter both link a sheet to its assignment."""
    docs = {d.doc_id: d for d in _read(corpus / "bio110").documents}
    assert docs["assignments/lab-report-1.md"].metadata["assignment_id"] == "lab-1"
    assert docs["assignments/problem-set-2.md"].metadata["assignment_id"] == "ps-2"
    assert not docs["assignments/problem-set-2.md"].text.startswith("---")  # front matter stripped
    assert "assignment_id" not in docs["syllabus.md"].metadata


def test_unknown_front_matter_assignment_is_a_warning(corpus: Path) -> None:
    """Front matter naming an assignment the course does not have is reported and not used."""
    (corpus / "bio110" / "notes" / "extra.md").write_text("---\nassignment: essay-9\n---\n# Extra\n\nText.\n")
    materials = _read(corpus / "bio110")
    extra = next(d for d in materials.documents if d.doc_id == "notes/extra.md")
    assert "assignment_id" not in extra.metadata
    assert any("essay-9" in str(w) for w in materials.warnings)


def test_binary_file_with_markdown_name_is_skipped(corpus: Path) -> None:
    """A binary file named .md is skipped with a warning; the rest of the course still reads."""
    (corpus / "bio110" / "notes" / "image.md").write_bytes(
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200)
    )
    materials = _read(corpus / "bio110")
    assert [w.path for w in materials.warnings] == ["notes/image.md"]
    assert "binary" in materials.warnings[0].message
    assert len(materials.documents) == 6


def test_invalid_utf8_text_is_skipped(corpus: Path) -> None:
    """Latin-1 bytes in a .txt file are reported rather than indexed as mojibake."""
    (corpus / "bio110" / "notes" / "old.txt").write_bytes("caf\xe9 notes".encode("latin-1"))
    materials = _read(corpus / "bio110")
    assert [w.path for w in materials.warnings] == ["notes/old.txt"]
    assert "UTF-8" in materials.warnings[0].message


def test_file_above_the_size_cap_is_skipped_with_a_warning(corpus: Path) -> None:
    """A file larger than INTAKE_INDEX_MAX_FILE_BYTES is skipped and the warning names the cap."""
    (corpus / "bio110" / "notes" / "huge.md").write_text("# Huge\n\n" + "words " * 5000)
    materials = _read(corpus / "bio110", cap=20_000)
    assert [w.path for w in materials.warnings] == ["notes/huge.md"]
    assert "20,000-byte cap" in materials.warnings[0].message
    assert "INTAKE_INDEX_MAX_FILE_BYTES" in materials.warnings[0].message


def test_unparseable_pdf_is_skipped_with_a_warning(corpus: Path) -> None:
    """A PDF that pypdf cannot open is reported; the other files are still read."""
    (corpus / "bio110" / "readings" / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Cat")
    materials = _read(corpus / "bio110")
    assert [w.path for w in materials.warnings] == ["readings/broken.pdf"]
    assert "PDF" in materials.warnings[0].message
    assert len(materials.documents) == 6


def test_hidden_and_unsupported_files_are_ignored(corpus: Path) -> None:
    """Editor backups, dot-folders and other extensions are not course materials."""
    (corpus / "bio110" / ".git").mkdir()
    (corpus / "bio110" / ".git" / "notes.md").write_text("# secret\n\ntext")
    (corpus / "bio110" / "data.csv").write_text("a,b\n1,2\n")
    assert len(_read(corpus / "bio110").documents) == 6
