"""The size bound: given only where it is proven, and then never below a prompt's real token count."""

from __future__ import annotations

import random

import pytest
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from cortex_kernel.harness import EXACT_COUNT_BYTES, PromptTooLarge, check_prompt_size
from cortex_transformers.prompt_bound import max_prompt_bytes
from cortex_transformers.synthetic import build_tokenizer

CORPUS = ["the quick brown fox jumps over the lazy dog", "hello world", "ünïcödé text — 東京 🙂"] * 20


def _byte_level(normalizer: normalizers.Normalizer | None = None) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    if normalizer is not None:
        tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tokenizer.train_from_iterator(CORPUS, trainer)
    return tokenizer


def _wrap(tokenizer: Tokenizer) -> PreTrainedTokenizerFast:
    wrapper: type = PreTrainedTokenizerFast  # its __init__ is untyped
    wrapped: PreTrainedTokenizerFast = wrapper(tokenizer_object=tokenizer)
    return wrapped


def _samples() -> list[str]:
    rng = random.Random(7)
    alphabet = "ab \n\t.{}<>|_-ü東🙂\u0301\u1100\u1161\u11a8"
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 400))) for _ in range(200)]
    texts += [" " * 5000, "a" * 5000, "<|im_start|>" * 200, "🙂" * 1000, "\x00\x01\x7f" * 100]
    return texts


def test_the_synthetic_tokenizer_gets_context_times_its_longest_entry() -> None:
    tokenizer = build_tokenizer()
    longest = max(len(token.encode()) for token in tokenizer.get_vocab())
    assert longest == len("<|endoftext|>")
    assert max_prompt_bytes(tokenizer, 1000) == 1000 * longest
    assert max_prompt_bytes(tokenizer, None) is None


@pytest.mark.parametrize("normalizer", [None, normalizers.NFC(), normalizers.NFKC()])
def test_the_bound_never_refuses_a_text_whose_tokens_fit(normalizer: normalizers.Normalizer | None) -> None:
    tokenizer = _wrap(_byte_level(normalizer))
    per_token = max_prompt_bytes(tokenizer, 1)
    assert per_token is not None
    synthetic = build_tokenizer()
    synthetic_bound = max_prompt_bytes(synthetic, 1)
    assert synthetic_bound is not None
    for wrapped, bound in ((tokenizer, per_token), (synthetic, synthetic_bound)):
        for text in _samples():
            tokens = len(wrapped.encode(text, add_special_tokens=False))
            # With a context of exactly `tokens`, this text fits only if its bytes are within the bound.
            assert len(text.encode()) <= tokens * bound, (text[:40], tokens, bound)


def test_a_normalizer_that_can_shrink_a_text_loosens_the_bound_by_its_factor() -> None:
    for normalizer, factor in (
        (None, 1),
        (normalizers.NFC(), 4),
        (normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()]), 16),
    ):
        tokenizer = _wrap(_byte_level(normalizer))
        longest = max(len(token.encode()) for token in tokenizer.get_vocab())
        assert max_prompt_bytes(tokenizer, 10) == 10 * factor * longest


@pytest.mark.parametrize(
    "change",
    [
        "strip_accents",
        "wordpiece",
        "bpe_without_byte_coverage",
        "whitespace_removed",
        "rstrip_added_token",
    ],
)
def test_no_bound_where_a_token_could_stand_for_unbounded_text(change: str) -> None:
    if change == "wordpiece":
        tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
        tokenizer.train_from_iterator(
            CORPUS, trainers.WordPieceTrainer(vocab_size=200, special_tokens=["[UNK]"])
        )
    elif change == "bpe_without_byte_coverage":
        tokenizer = Tokenizer(models.BPE(unk_token="[UNK]", fuse_unk=True))
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
        tokenizer.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=200, special_tokens=["[UNK]"]))
    elif change == "strip_accents":
        tokenizer = _byte_level(normalizers.Sequence([normalizers.NFD(), normalizers.StripAccents()]))
    elif change == "whitespace_removed":
        tokenizer = _byte_level()
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(" ", behavior="removed"), pre_tokenizers.ByteLevel(add_prefix_space=False)]
        )
    else:
        tokenizer = _byte_level()
        tokenizer.add_special_tokens([AddedToken("<|end|>", rstrip=True)])
    assert max_prompt_bytes(_wrap(tokenizer), 1000) is None


def test_a_tokenizer_without_a_fast_backend_gets_no_bound() -> None:
    class Slow:
        def get_vocab(self) -> dict[str, int]:
            return {"a": 0}

    assert max_prompt_bytes(Slow(), 1000) is None


def test_check_prompt_size_counts_utf8_bytes_past_the_exact_count_floor() -> None:
    bound = EXACT_COUNT_BYTES + 99
    check_prompt_size("x" * bound, bound, 10)
    check_prompt_size("x" * 10**7, None, 10)
    check_prompt_size("東" * (bound // 3), bound, 10)
    with pytest.raises(PromptTooLarge) as raised:
        check_prompt_size("東" * (bound // 3 + 1), bound, 10)
    assert raised.value.code == "context_length_exceeded" and raised.value.status == 400
    assert (
        f"{(bound // 3 + 1) * 3} bytes" in raised.value.message
        and f"at most {bound} bytes" in raised.value.message
    )
    with pytest.raises(PromptTooLarge):
        check_prompt_size("x" * (bound + 1), bound, 10)


def test_small_prompts_are_always_counted_exactly() -> None:
    check_prompt_size("x" * EXACT_COUNT_BYTES, 100, 10)
    with pytest.raises(PromptTooLarge):
        check_prompt_size("x" * (EXACT_COUNT_BYTES + 1), 100, 10)
