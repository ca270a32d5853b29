"""Incremental detokenization equals one-shot decoding; stop strings cut exactly and never leak."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from cortex_kernel.stop_sequences import StopMatcher
from cortex_transformers.detokenizer import IncrementalDetokenizer, decoder_for

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@pytest.fixture(scope="module")
def tokenizer(tiny_chat_model: Path) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_chat_model)


def stream_decode(tokenizer: PreTrainedTokenizerBase, prompt_ids: Sequence[int], ids: list[int]) -> list[str]:
    detokenizer = IncrementalDetokenizer(decoder_for(tokenizer), prompt_ids)
    pieces = [detokenizer.step(token) for token in ids]
    pieces.append(detokenizer.flush())
    return pieces


@pytest.mark.parametrize(
    "text",
    [
        "Hello world, this is plain ASCII.",
        "héllo wörld — ça va? 世界 你好 🎉🚀 ok",
        "<think>reasoning</think><tool_call>{}</tool_call> after",
    ],
)
def test_incremental_equals_one_shot(tokenizer: PreTrainedTokenizerBase, text: str) -> None:
    prompt_ids = tokenizer.encode("<|im_start|>assistant\n", add_special_tokens=False)
    ids = tokenizer.encode(text, add_special_tokens=False)
    pieces = stream_decode(tokenizer, prompt_ids, ids)
    assert "".join(pieces) == tokenizer.decode(ids, skip_special_tokens=True) == text
    assert not any("\ufffd" in piece for piece in pieces), "a multi-byte character was split"


def test_multibyte_characters_are_held_until_complete(tokenizer: PreTrainedTokenizerBase) -> None:
    ids = tokenizer.encode("🎉", add_special_tokens=False)
    assert len(ids) > 1  # byte-level BPE spreads the emoji over several tokens
    pieces = stream_decode(tokenizer, [], ids)
    assert [p for p in pieces if p] == ["🎉"]


def test_random_token_streams_match_one_shot(tokenizer: PreTrainedTokenizerBase) -> None:
    rng = random.Random(7)
    vocab = len(tokenizer)
    for _ in range(50):
        ids = [rng.randrange(vocab) for _ in range(rng.randint(1, 40))]
        assert "".join(stream_decode(tokenizer, [], ids)) == tokenizer.decode(ids, skip_special_tokens=True)


def test_special_tokens_are_skipped(tokenizer: PreTrainedTokenizerBase) -> None:
    ids = tokenizer.encode("a<|im_end|>b<|endoftext|>", add_special_tokens=False)
    assert "".join(stream_decode(tokenizer, [], ids)) == "ab"


def run_stops(stops: list[str], chunks: list[str]) -> tuple[str, str | None]:
    matcher = StopMatcher(stops)
    shown = [matcher.push(chunk) for chunk in chunks]
    shown.append(matcher.flush())
    return "".join(shown), matcher.matched


@pytest.mark.parametrize(
    ("text", "stops", "shown", "matched"),
    [
        ("Hello END world", ["END"], "Hello ", "END"),
        ("abcabd", ["abd"], "abc", "abd"),
        ("x STOP y END z", ["END", "STOP"], "x ", "STOP"),  # the earliest match wins
        ("no stop here EN", ["END"], "no stop here EN", None),  # a held tail is released at the end
        ("aaa", ["aab", "b"], "aaa", None),
        ("line1\n\nline2", ["\n\n"], "line1", "\n\n"),
    ],
)
def test_stop_strings_at_every_boundary(text: str, stops: list[str], shown: str, matched: str | None) -> None:
    for cut_a, cut_b in itertools.combinations_with_replacement(range(len(text) + 1), 2):
        chunks = [text[:cut_a], text[cut_a:cut_b], text[cut_b:]]
        assert run_stops(stops, chunks) == (shown, matched), chunks


def test_text_that_may_start_a_stop_is_held_back() -> None:
    matcher = StopMatcher(["</answer>"])
    assert matcher.push("The result </ans") == "The result "
    assert matcher.push("wer> trailing") == ""
    assert matcher.matched == "</answer>"
    assert matcher.push("more") == ""


def test_no_stops_passes_everything_through() -> None:
    matcher = StopMatcher(["", ""])
    assert matcher.push("abc") == "abc"
    assert matcher.flush() == ""
