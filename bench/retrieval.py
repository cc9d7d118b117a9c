"""Retrieval quality and indexer speed on the sample courses, printed as one table.

    .venv/bin/python -m bench.retrieval                  # own Chroma server, temp copy of corpus/, ~5 min
    .venv/bin/python -m bench.retrieval --reuse DIR --chroma-url URL   # skip the builds, reuse an index

Quality: labelled queries in ``bench/queries/<slug>.jsonl`` ({"query", "relevant": [paths]}); a hit is a
passage whose source is one of the relevant paths. hit@3 = a relevant passage in the top 3 (what the
gateway asks for); MRR = mean of 1/rank of the first relevant passage in the top 10 (0 if none).
Speed: full build (chunks/s, embedding dominates), a no-op rebuild and a one-file incremental rebuild,
and query latency of the gateway's call (fused, k=3) at sample size and over 10k synthetic chunks.
The corpus is copied to a temp folder first: the benchmark never edits corpus/.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
from llama_index.core.schema import BaseNode, TextNode
from llama_index.vector_stores.chroma import ChromaVectorStore

import services.indexer  # noqa: F401  (sets OPENBLAS_NUM_THREADS before NumPy loads)
from services.indexer.build import Indexer, add_nodes, pipeline_signature
from services.indexer.retrieval import CANDIDATES, HybridRetriever
from services.indexer.status import CourseVersion, StatusBoard, now_iso
from services.indexer.stores import CourseFiles, all_nodes, connect_chroma, get_collection
from services.settings import REPO_ROOT, Settings

QUERIES = REPO_ROOT / "bench" / "queries"
SYNTHETIC = "synth10k"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--courses", nargs="+", default=["writ101", "stat200"])
    parser.add_argument("--chroma-url", help="use this Chroma server instead of starting one")
    parser.add_argument("--reuse", help="data dir with an existing index: skip the build timings")
    parser.add_argument("--synthetic", type=int, default=10_000, help="chunks for the latency test (0: skip)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-retrieval-"))
    server = None
    try:
        url = args.chroma_url
        if not url:
            url, server = _start_chroma(work / "chroma")
        corpus = work / "corpus"
        for slug in args.courses:
            shutil.copytree(REPO_ROOT / "corpus" / slug, corpus / slug)
        data = Path(args.reuse) if args.reuse else work / "data"
        settings = Settings(corpus_dir=str(corpus), data_dir=str(data), chroma_url=url, redis_url="")
        figures: dict[str, object] = {}

        def report(key: str, value: object) -> None:
            """Print and save each part as soon as it is measured (a later failure loses nothing)."""
            figures[key] = value
            _print({key: value})
            if args.json:
                Path(args.json).write_text(json.dumps(figures, indent=2))

        if not args.reuse:
            report("build", _time_builds(settings, args.courses))
        report("quality", {slug: _quality(settings, slug) for slug in args.courses})
        latency = {"sample": _latency(settings, args.courses)}
        if args.synthetic:
            latency[f"{args.synthetic} chunks"] = _synthetic_latency(settings, args.courses, args.synthetic)
        report("latency", latency)
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        shutil.rmtree(work, ignore_errors=True)


def _start_chroma(folder: Path) -> tuple[str, subprocess.Popen[bytes]]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    chroma = Path(sys.executable).parent / "chroma"
    proc = subprocess.Popen(
        [str(chroma), "run", "--path", str(folder), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={"ANONYMIZED_TELEMETRY": "False", "PATH": "/usr/bin:/bin"},
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/api/v2/heartbeat", timeout=1).status_code == 200:
                return url, proc
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("chroma did not start")


def _time_builds(settings: Settings, courses: list[str]) -> dict[str, float]:
    """Full build, a no-op rebuild, and a rebuild after appending a sentence to one file per course."""
    indexer = Indexer(settings, StatusBoard(None))
    started, cpu_started = time.perf_counter(), time.process_time()
    report = indexer.build()
    full, full_cpu = time.perf_counter() - started, time.process_time() - cpu_started
    chunks = sum(v.chunks for v in report.courses)
    started = time.perf_counter()
    indexer.build()
    noop = time.perf_counter() - started
    for slug in courses:
        target = sorted((Path(settings.corpus_dir) / slug).rglob("*.md"))[0]
        target.write_text(target.read_text() + "\n\nOne more sentence for the incremental benchmark.\n")
    started = time.perf_counter()
    report = indexer.build()
    incremental = time.perf_counter() - started
    touched = sum(sum(1 for _ in v.changed) for v in report.courses)
    return {
        "chunks": chunks,
        "full_s": round(full, 1),
        "chunks_per_s": round(chunks / full, 2),
        # CPU seconds of this process: the figure an idle machine would give (the build is single-threaded)
        "full_cpu_s": round(full_cpu, 1),
        "chunks_per_cpu_s": round(chunks / full_cpu, 2),
        "noop_rebuild_s": round(noop, 2),
        "incremental_rebuild_s": round(incremental, 1),
        "incremental_files": touched,
    }


def _rank_of_first_hit(sources: list[str], relevant: set[str]) -> int | None:
    return next((i for i, source in enumerate(sources, start=1) if source in relevant), None)


def _quality(settings: Settings, slug: str) -> dict[str, dict[str, float]]:
    """hit@3 and MRR@10 for the vector half, the BM25 half and the fused retriever the gateway uses."""
    retriever = HybridRetriever(settings)
    index = retriever._course(slug)
    queries = [
        json.loads(line) for line in (QUERIES / f"{slug}.jsonl").read_text().splitlines() if line.strip()
    ]
    methods: dict[str, Callable[[str], list[str]]] = {
        "vector": lambda q: [n.node.metadata["source"] for n in index.vector.retrieve(q)],  # type: ignore[union-attr]
        "bm25": lambda q: [n.node.metadata["source"] for n in index.bm25.retrieve(q)],  # type: ignore[union-attr]
        "fused": lambda q: [p.source for p in retriever.retrieve(slug, q, k=10)],
    }
    results = {}
    for name, run in methods.items():
        depth = 10 if name != "fused" else CANDIDATES  # each half alone is judged on its own top 10
        index.vector.similarity_top_k = depth  # type: ignore[union-attr]
        index.bm25.similarity_top_k = depth  # type: ignore[union-attr]
        ranks = [_rank_of_first_hit(run(q["query"])[:10], set(q["relevant"])) for q in queries]
        results[name] = {
            "hit@3": round(sum(1 for r in ranks if r and r <= 3) / len(ranks), 3),
            "mrr": round(sum(1 / r for r in ranks if r) / len(ranks), 3),
            "queries": len(ranks),
        }
    return results


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] * 1000, 1),
        "n": len(ordered),
    }


def _latency(settings: Settings, courses: list[str], slug_override: str | None = None) -> dict[str, float]:
    """The gateway's call, warm: ``retrieve(course, query, k=3)`` over every labelled query, 3 rounds."""
    retriever = HybridRetriever(settings)
    pairs = [
        (slug, json.loads(line)["query"])
        for slug in courses
        for line in (QUERIES / f"{slug}.jsonl").read_text().splitlines()
        if line.strip()
    ]
    for slug, query in pairs[:3]:
        retriever.retrieve(slug_override or slug, query)  # load model and indexes
    samples = []
    for _ in range(3):
        for slug, query in pairs:
            started = time.perf_counter()
            retriever.retrieve(slug_override or slug, query, k=3)
            samples.append(time.perf_counter() - started)
    return _percentiles(samples)


def _synthetic_latency(settings: Settings, courses: list[str], size: int) -> dict[str, float]:
    """A course of ``size`` chunks made from the real ones (words shuffled, vectors jittered), stored
    straight into Chroma and BM25 without embedding, so search cost at that size can be measured."""
    client = connect_chroma(settings.chroma_url)
    real = [n for slug in courses for n in all_nodes(get_collection(client, slug, create=False))]
    vectors = {
        id_: np.asarray(v, dtype=np.float32)
        for slug in courses
        for id_, v in zip(
            *(lambda g: (g["ids"], g["embeddings"]))(
                get_collection(client, slug, create=False).get(include=["embeddings"], limit=100_000)
            ),
            strict=True,
        )
    }
    rng = random.Random(7)
    nodes: list[BaseNode] = []
    for i in range(size):
        base = real[i % len(real)]
        words = base.get_content().split()
        rng.shuffle(words)
        vec = vectors[base.node_id] + np.random.default_rng(i).normal(0, 0.02, 384).astype(np.float32)
        node = TextNode(
            id_=f"synth-{i}",
            text=" ".join(words),
            metadata={**base.metadata, "source": f"synthetic/{i // 20}.md"},
            embedding=(vec / np.linalg.norm(vec)).tolist(),
            excluded_embed_metadata_keys=base.excluded_embed_metadata_keys,
            excluded_llm_metadata_keys=base.excluded_llm_metadata_keys,
        )
        nodes.append(node)
    collection = get_collection(client, SYNTHETIC, create=True)
    add_nodes(ChromaVectorStore(chroma_collection=collection), nodes)
    files = CourseFiles(Path(settings.data_dir), SYNTHETIC)
    indexer = Indexer(settings, StatusBoard(None))
    indexer._rebuild_bm25(files, collection)
    files.write(
        files.version,
        CourseVersion(
            slug=SYNTHETIC, version=1, built_at=now_iso(), chunks=size, pipeline=pipeline_signature(settings)
        ),
    )
    return _latency(settings, courses, slug_override=SYNTHETIC)


def _print(figures: dict[str, object]) -> None:
    if "quality" in figures:
        quality: dict[str, dict[str, dict[str, float]]] = figures["quality"]  # type: ignore[assignment]
        print("\nRetrieval quality (doc-level: a passage from a labelled relevant file)")
        print(f"{'course':<10}{'method':<8}{'queries':>8}{'hit@3':>8}{'MRR@10':>8}")
        for slug, methods in quality.items():
            for name, m in methods.items():
                print(f"{slug:<10}{name:<8}{m['queries']:>8}{m['hit@3']:>8.3f}{m['mrr']:>8.3f}")
    if "build" in figures:
        b: dict[str, float] = figures["build"]  # type: ignore[assignment]
        print("\nIndexing (all courses together)")
        print(
            f"  full build        {b['chunks']:.0f} chunks in {b['full_s']} s = {b['chunks_per_s']} chunks/s"
        )
        print(f"  same, CPU time    {b['full_cpu_s']} s = {b['chunks_per_cpu_s']} chunks per CPU-second")
        print(f"  no-op rebuild     {b['noop_rebuild_s']} s (every file skipped by hash)")
        print(
            f"  incremental       {b['incremental_rebuild_s']} s ({b['incremental_files']:.0f} edited files)"
        )
    if "latency" not in figures:
        return
    print("\nQuery latency, fused retrieve(k=3), warm")
    for label, lat in figures["latency"].items():  # type: ignore[attr-defined]
        print(f"  {label:<14} p50 {lat['p50_ms']:>6} ms   p95 {lat['p95_ms']:>6} ms   (n={lat['n']})")


if __name__ == "__main__":
    main()
