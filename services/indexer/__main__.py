"""The indexer's one entry point: ``python -m services.indexer {build,watch,query,stats}``.

    build [--course SLUG]        index every course (or one); unchanged files are skipped by hash
    watch                        build, then re-index courses as their folders change (supervisord: indexer)
    query "TEXT" --course SLUG   ranked passages with scores and sources, as the gateway sees them
    stats                        what is indexed: version, documents, chunks, last change, warnings

Settings come from ``INTAKE_*`` variables (services/settings.py): corpus_dir, data_dir, chroma_url,
redis_url (status key ``intake:indexer:status``), index_max_file_bytes, index_chunk_tokens/overlap.
Exit codes: 0 ok, 1 bad input (unknown course), 2 Chroma unreachable.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import structlog

from services.coursepack import load_catalog
from services.indexer.build import Indexer, describe_unknown
from services.indexer.status import CourseVersion
from services.indexer.stores import ChromaUnavailable, CourseFiles
from services.settings import Settings, load_settings

log = structlog.get_logger("indexer")

BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 30.0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = load_settings()
    return int(args.run(settings, args))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m services.indexer", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    build = sub.add_parser("build", help="index every course, or one with --course")
    build.add_argument("--course", help="course slug (folder name under the corpus)")
    build.set_defaults(run=cmd_build)
    watch = sub.add_parser("watch", help="build, then re-index on changes under the corpus folder")
    watch.set_defaults(run=cmd_watch)
    query = sub.add_parser("query", help="show the passages retrieval returns for a question")
    query.add_argument("text")
    query.add_argument("--course", required=True)
    query.add_argument("-k", type=int, default=3)
    query.set_defaults(run=cmd_query)
    stats = sub.add_parser("stats", help="what is indexed per course")
    stats.set_defaults(run=cmd_stats)
    return parser


def cmd_build(settings: Settings, args: argparse.Namespace) -> int:
    if args.course:
        catalog = load_catalog(Path(settings.corpus_dir))
        if args.course not in catalog.courses:
            print(f"error: {describe_unknown(args.course, catalog)}", file=sys.stderr)
            return 1
    try:
        report = Indexer(settings).build(only={args.course} if args.course else None)
    except ChromaUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for v in report.courses:
        print(
            f"{v.slug}: version {v.version}, {v.documents} documents, {v.chunks} chunks "
            f"(+{len(v.added)} ~{len(v.changed)} -{len(v.removed)} ={v.unchanged}) in {v.seconds:.1f}s"
        )
    for problem in report.problems:
        print(f"warning: {problem}", file=sys.stderr)
    return 0


def cmd_watch(settings: Settings, args: argparse.Namespace) -> int:
    watch(settings)
    return 0


def watch(settings: Settings, stop: threading.Event | None = None) -> None:
    """Build everything, then rebuild the courses whose folders change, until ``stop`` is set.

    Chroma being down is expected during start-up and restarts: the watcher waits with exponential
    backoff (reported in the Redis status as ``waiting_for_chroma``) instead of exiting.
    """
    from watchfiles import watch as watch_changes

    stop = stop or threading.Event()
    indexer = Indexer(settings)
    corpus = Path(settings.corpus_dir).resolve()
    pending: set[str] | None = None  # None: everything
    delay = BACKOFF_START_S
    while not stop.is_set():
        started = time.time()
        try:
            indexer.build(only=pending)
            pending, delay = set(), BACKOFF_START_S
        except ChromaUnavailable as exc:
            log.warning("chroma_unavailable", retry_in_s=delay, error=str(exc)[:200])
            stop.wait(delay)
            delay = min(delay * 2, BACKOFF_MAX_S)
            continue
        except Exception as exc:  # keep watching: the next change may fix it; the status says what broke
            log.exception("index_build_failed")
            indexer.board.update(state="error", error=f"{type(exc).__name__}: {exc}"[:500])
            stop.wait(delay)
            delay = min(delay * 2, BACKOFF_MAX_S)
            continue
        if _changed_since(corpus, started):  # edited during the build, before watching began
            pending = None
            continue
        for changes in watch_changes(corpus, stop_event=stop, debounce=1000, raise_interrupt=False):
            pending = {_course_of(Path(path), corpus) for _, path in changes} - {""}
            if pending:
                log.info("corpus_changed", courses=sorted(pending))
                break


def _changed_since(corpus: Path, since: float) -> bool:
    """Whether any file or folder under ``corpus`` changed at or after ``since`` (a cheap stat walk).

    Times in the future (a copied file, clock skew) do not count, or every build would trigger another.
    """
    now = time.time()
    for path in corpus.rglob("*"):
        try:
            if since <= path.stat().st_mtime <= now:
                return True
        except OSError:  # vanished while walking: that is a change too
            return True
    return False


def _course_of(path: Path, corpus: Path) -> str:
    try:
        return path.resolve().relative_to(corpus).parts[0]
    except (ValueError, IndexError):
        return ""


def cmd_query(settings: Settings, args: argparse.Namespace) -> int:
    from services.indexer.retrieval import UnknownCourse, open_retriever

    retriever = open_retriever(settings, warm=False)
    started = time.perf_counter()
    try:
        passages = retriever.retrieve(args.course, args.text, args.k)
    except UnknownCourse as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"{len(passages)} passages in {(time.perf_counter() - started) * 1000:.0f} ms (includes model load)"
    )
    for rank, p in enumerate(passages, start=1):
        where = p.source + (f" § {p.section}" if p.section else "")
        extra = f"  [assignment {p.assignment_id}]" if p.assignment_id else ""
        print(f"{rank}. {p.score:.4f}  {where}{extra}\n   {p.title}\n   {_clip(p.text)}")
    return 0


def cmd_stats(settings: Settings, args: argparse.Namespace) -> int:
    catalog = load_catalog(Path(settings.corpus_dir))
    index_dir = Path(settings.data_dir) / "index"
    slugs = sorted(
        set(catalog.courses) | {p.name for p in index_dir.iterdir()} if index_dir.is_dir() else set()
    )
    print(f"{'course':<16}{'version':>8}{'docs':>6}{'chunks':>8}  last change")
    for slug in slugs:
        files = CourseFiles(Path(settings.data_dir), slug)
        v = files.read(files.version, CourseVersion, None)
        if v is None:
            print(f"{slug:<16}{'-':>8}{'-':>6}{'-':>8}  not indexed yet")
            continue
        print(f"{slug:<16}{v.version:>8}{v.documents:>6}{v.chunks:>8}  {v.built_at}")
        for warning in v.warnings:
            print(f"{'':<16}warning: {warning}")
    for problem in catalog.problems:
        print(f"problem: {problem}")
    return 0


def _clip(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


if __name__ == "__main__":
    sys.exit(main())
