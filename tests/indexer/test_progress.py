"""The indexer reports how far a build got (n of N chunks per course) while it embeds, for ``make run``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import msgspec

from services.indexer.build import Indexer
from services.indexer.status import IndexerStatus, StatusBoard
from services.settings import Settings


class RecordingBoard(StatusBoard):
    """The real status board, without Redis, keeping every status it would have published."""

    def __init__(self) -> None:
        super().__init__(None)
        self.published: list[IndexerStatus] = []

    def _publish(self) -> None:
        self.published.append(msgspec.structs.replace(self.status))


def test_progress_counts_up_to_the_chunks_and_is_cleared_when_the_course_is_done(
    make_settings: Callable[..., Settings], corpus: Path
) -> None:
    """A long file in small chunks makes several batches: the reports grow to the course's chunk count,
    then the finished course leaves the progress map (its version and chunks are in ``courses``)."""
    sentences = (
        f"Sentence {i} says that the cell membrane controls what enters the cell." for i in range(80)
    )
    (corpus / "bio110" / "notes" / "long.md").write_text("# Long notes\n\n## Cells\n\n" + " ".join(sentences))
    board = RecordingBoard()
    version = Indexer(make_settings(index_chunk_tokens=40, index_chunk_overlap=0), board).build().courses[0]
    reports = [s.progress["bio110"] for s in board.published if "bio110" in s.progress]
    assert len(reports) >= 2
    assert [r.done for r in reports] == sorted(r.done for r in reports)
    assert {r.total for r in reports} == {version.chunks} and reports[-1].done == version.chunks
    assert board.status.progress == {} and board.status.courses["bio110"].chunks == version.chunks
