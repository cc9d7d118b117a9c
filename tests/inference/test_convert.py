"""The torch-free GGUF -> MLX conversion of the embedded SmolLM2 model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.inference.convert import convert, find_packaged_gguf, main

pytestmark = pytest.mark.slow

# Computed once with the converted tokenizer and checked against a from-scratch reimplementation of
# llama.cpp's SmolLM tokenization (regex "\p{N}" then the GPT-2 split, byte-level BPE over the GGUF's
# merges, control tokens matched whole). "\n\n" stays two tokens and indentation keeps its own token:
# the places where the gguf2mlx tokenizer differed from llama.cpp.
TOKEN_IDS = [
    ("Hello world", [19556, 905]),
    ("Hello, world!\n\nHow are you?", [19556, 28, 905, 17, 198, 198, 2020, 359, 346, 47]),
    ("def f(x):\n    return x + 1\n", [1604, 275, 24, 104, 727, 472, 1003, 1792, 1232, 216, 33, 198]),
    ("    if x:\n        y = 2\n", [333, 585, 1792, 42, 448, 329, 446, 216, 34, 198]),
    (
        "Assignment 3 is due 2024-10-15 at 11:59pm.",
        [
            9519,
            12766,
            216,
            35,
            314,
            1568,
            216,
            34,
            32,
            34,
            36,
            29,
            33,
            32,
            29,
            33,
            37,
            418,
            216,
            33,
            33,
            42,
            37,
            41,
            11043,
            30,
        ],
    ),
    ("<|im_start|>user\nHi<|im_end|>\n", [1, 4093, 198, 26843, 2, 198]),
]


def test_config_sets_rope_theta(converted_model: Path) -> None:
    """config.json carries rope_theta=100000 flat: mlx-lm ignores transformers 5's rope_parameters and
    falls back to 10000, after which the model talks nonsense."""
    config = json.loads((converted_model / "config.json").read_text())
    assert config["rope_theta"] == 100000
    assert config["model_type"] == "llama"
    assert config["tie_word_embeddings"] is True
    assert (config["num_attention_heads"], config["num_key_value_heads"], config["head_dim"]) == (9, 3, 64)


def test_second_conversion_is_skipped(converted_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A folder already converted from the same GGUF (marker sha256 matches) is left as it is."""
    mtime = (converted_model / "model.safetensors").stat().st_mtime_ns
    assert convert(find_packaged_gguf(), converted_model) is False
    main(["--out", str(converted_model)])
    assert capsys.readouterr().out.startswith("skipped")
    assert (converted_model / "model.safetensors").stat().st_mtime_ns == mtime


@pytest.mark.parametrize(("text", "ids"), TOKEN_IDS)
def test_tokenizer_matches_llama_cpp(converted_model: Path, text: str, ids: list[int]) -> None:
    """The tokenizer mlx-lm loads splits text as llama.cpp does with the same GGUF, and adds no BOS."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(converted_model)
    assert tokenizer.encode(text) == ids
    assert tokenizer.decode(ids) == text


def test_chat_template_is_chatml(converted_model: Path) -> None:
    """The GGUF's chat template survives, so mlx_lm.server formats chats the way the model was tuned."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(converted_model)
    prompt = tokenizer.apply_chat_template(
        [{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert (
        prompt == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_greedy_generation(converted_model: Path) -> None:
    """Greedy decoding through mlx_lm gives fixed, sensible English. With rope_theta missing the same
    prompt drifts by token 12 ("...calls itself until a base case")."""
    from mlx_lm import generate, load
    from mlx_lm.sample_utils import make_sampler

    model, tokenizer, *_ = load(str(converted_model))
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Explain recursion in one sentence."}], add_generation_prompt=True
    )
    text = generate(model, tokenizer, prompt, max_tokens=16, sampler=make_sampler(0.0))
    assert text == "Recursion is a programming technique where a function calls itself until it reaches a"
