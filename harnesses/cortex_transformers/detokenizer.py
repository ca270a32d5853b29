"""Turning generated token ids into text one token at a time, and cutting it at stop strings.

Decoding each token on its own is wrong: byte-level BPE splits a multi-byte character over
several tokens, and SentencePiece decodes a token's leading space differently at the start of a
string. :class:`IncrementalDetokenizer` therefore decodes a short sliding window and only emits
text once it no longer ends in an incomplete character (the technique of TGI and vLLM), so the
concatenated output equals a one-shot decode of all tokens.

:class:`StopMatcher` holds back the tail of the text that could still become a stop string, so a
client never sees the beginning of a stop sequence that is later cut off.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

_REPLACEMENT = "\ufffd"
# Tokens of prompt context kept in the window so the first generated token decodes as it would
# in the middle of the text (leading-space handling differs at the start of a string).
_PROMPT_CONTEXT = 5


def decoder_for(tokenizer: Any) -> Callable[[Sequence[int]], str]:
    """The cheapest correct ``ids -> text`` function for ``tokenizer``, skipping special tokens.

    A ``tokenizers`` backend decodes in Rust without transformers' per-call Python overhead; other
    tokenizers (remote-code, SentencePiece-only) go through ``tokenizer.decode``.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and not getattr(tokenizer, "clean_up_tokenization_spaces", False):

        def decode_backend(ids: Sequence[int]) -> str:
            return str(backend.decode(list(ids), skip_special_tokens=True))

        return decode_backend

    def decode_python(ids: Sequence[int]) -> str:
        return str(tokenizer.decode(list(ids), skip_special_tokens=True))

    return decode_python


class IncrementalDetokenizer:
    """Feeds on token ids, returns the text each one completes (often ``""`` mid-character)."""

    def __init__(self, decode: Callable[[Sequence[int]], str], prompt_ids: Sequence[int] = ()) -> None:
        self._decode = decode
        self._ids: list[int] = list(prompt_ids[-_PROMPT_CONTEXT:])
        self._prefix_offset = 0
        self._read_offset = len(self._ids)

    def step(self, token_id: int) -> str:
        """Add one generated token; return the newly complete text."""
        self._ids.append(token_id)
        prefix_text = self._decode(self._ids[self._prefix_offset : self._read_offset])
        new_text = self._decode(self._ids[self._prefix_offset :])
        if len(new_text) > len(prefix_text) and not new_text.endswith(_REPLACEMENT):
            self._prefix_offset = self._read_offset
            self._read_offset = len(self._ids)
            return new_text[len(prefix_text) :]
        return ""

    def flush(self) -> str:
        """Text still held back at the end (an incomplete character decodes as U+FFFD)."""
        prefix_text = self._decode(self._ids[self._prefix_offset : self._read_offset])
        new_text = self._decode(self._ids[self._prefix_offset :])
        self._prefix_offset = self._read_offset = len(self._ids)
        return new_text[len(prefix_text) :] if len(new_text) > len(prefix_text) else ""
