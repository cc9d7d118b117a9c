"""The command line (``python -m services.indexer``) and the watcher that runs under supervisord."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest
import redis

from services.indexer.__main__ import main, watch
from services.indexer.status import INDEXER_STATUS_KEY, CourseVersion, IndexerStatus
from services.indexer.stores import CourseFiles
from services.settings import Settings
from tests.fixtures.ports import free_port, wait_until


def _env(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    for name in ("corpus_dir", "data_dir", "chroma_url", "redis_url"):
        monkeypatch.setenv(f"INTAKE_{name.upper()}", str(getattr(settings, name)))


def test_build_query_and_stats(
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`build` reports what changed, `query` ranks passages with scores and sources, `stats` summarises."""
    _env(monkeypatch, make_settings())
    assert main(["build"]) == 0
    assert "bio110: version 1, 6 documents" in capsys.readouterr().out
    assert main(["query", "Calvin cycle", "--course", "bio110", "-k", "2"]) == 0
    out = capsys.readouterr().out
    assert "1. 0.0" in out and "notes/photosynthesis.txt" in out
    assert main(["stats"]) == 0
    assert "bio110" in capsys.readouterr().out
    assert main(["build", "--course", "bio110"]) == 0
    assert "(+0 ~0 -0 =6)" in capsys.readouterr().out


def test_unknown_course_exits_1(
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`query` and `build --course` for a course that does not exist exit 1 with a readable message."""
    _env(monkeypatch, make_settings())
    assert main(["query", "x", "--course", "nope"]) == 1
    assert "no index for course 'nope'" in capsys.readouterr().err
    assert main(["build", "--course", "nope"]) == 1
    assert "no course 'nope' (known: bio110)" in capsys.readouterr().err


@pytest.fixture
def stop() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def _status(redis_url: str) -> IndexerStatus | None:
    raw = redis.Redis.from_url(redis_url).get(INDEXER_STATUS_KEY)
    return msgspec.json.decode(raw, type=IndexerStatus) if raw else None


def test_watcher_waits_for_chroma_and_reports_it(
    make_settings: Callable[..., Settings], redis_url: str, stop: threading.Event
) -> None:
    """With Chroma down the watcher keeps retrying (no crash) and the Redis status says why."""
    redis.Redis.from_url(redis_url).delete(INDEXER_STATUS_KEY)
    settings = make_settings(chroma_url=f"http://127.0.0.1:{free_port()}", redis_url=redis_url)
    thread = threading.Thread(target=watch, args=(settings, stop), daemon=True)
    thread.start()
    wait_until(
        lambda: (s := _status(redis_url)) is not None and s.state == "waiting_for_chroma", 30, "status"
    )
    time.sleep(1.5)
    assert thread.is_alive()  # still retrying
    assert settings.chroma_url in (_status(redis_url).error or "")  # type: ignore[union-attr]
    stop.set()
    thread.join(10)
    assert not thread.is_alive()


def test_watcher_builds_at_start_and_reindexes_edits(
    make_settings: Callable[..., Settings], corpus: Path, redis_url: str, stop: threading.Event
) -> None:
    """The watcher builds on start, then picks up a new file without a restart; the status follows."""
    settings = make_settings(redis_url=redis_url)
    thread = threading.Thread(target=watch, args=(settings, stop), daemon=True)
    thread.start()
    files = CourseFiles(Path(settings.data_dir), "bio110")

    def version() -> int:
        v = files.read(files.version, CourseVersion, None)
        return v.version if v else 0

    wait_until(lambda: version() == 1, 90, "first build")
    (corpus / "bio110" / "notes" / "meiosis.md").write_text("# Meiosis\n\nFour haploid cells.\n")
    wait_until(lambda: version() == 2, 90, "rebuild after edit")
    status = _status(redis_url)
    assert status is not None and status.state == "ready" and status.courses["bio110"].version == 2
    stop.set()
    thread.join(20)
    assert not thread.is_alive()
