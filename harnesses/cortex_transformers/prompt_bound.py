"""The largest prompt, in bytes, that a model's context could hold: refuse bigger ones untokenized.

Tokenizing costs time and memory in proportion to the text (a 20 MB prompt took half a minute
and about 2.5 GB in the fast tokenizer), yet a prompt many times the context is refused anyway.
The bound here lets the harness refuse such a prompt by its size alone.

**Why the bound never refuses a prompt that fits.** A prompt fits when it has fewer tokens than
the context length ``C``. Let ``L`` be the longest entry of the vocabulary (added tokens
included) in UTF-8 bytes, and ``F`` the most the tokenizer's normalizer can shrink a text (the
product of each step's factor below). The normalized text then has at least ``bytes / F``
bytes, and every token stands for at most ``L`` of them, so the prompt has at least
``bytes / (F * L)`` tokens; a prompt of more than ``C * F * L`` bytes has more than ``C`` tokens
and could never fit. Two conditions make "every token stands for at most ``L`` bytes" true, and
the bound is given only where the tokenizer's own description proves both:

* every byte of the text is covered by some token: a BPE model behind a byte-level
  pre-tokenizer with all 256 byte symbols in its vocabulary, or with byte fallback and all 256
  ``<0xNN>`` tokens (an unknown-token that swallows a run of text, or a character silently
  dropped, would break the bound);
* nothing is swallowed or dropped on the way: no added token that strips the whitespace beside
  it (it would take a whole run of spaces into one token), only pre-tokenizers that keep every character, and
  normalizers from a short list whose worst shrink is known (Unicode normal forms and
  lowercasing turn one character into no fewer than a quarter of its bytes; replacements count
  only when the replacement is no shorter than what it replaces).

A byte-level vocabulary spells each byte as one character of one or two UTF-8 bytes, and a
SentencePiece one spells a space as ``▁`` (three bytes), so ``L`` measured on the vocabulary's
strings over-counts, which only loosens the bound. Slow (Python) tokenizers, WordPiece,
Unigram and anything not on these lists get no bound: such prompts are tokenized in full, as
before, and the neuron's body limit and admission still bound their cost.
"""

from __future__ import annotations

import json
from typing import Any

_BYTE_FALLBACK = [f"<0x{byte:02X}>" for byte in range(256)]
# The most one step can shrink a text (bytes in / bytes out). A character is 1 to 4 UTF-8 bytes
# and these steps never map one to nothing, nor several base characters to fewer than one each,
# except canonical composition, which folds at most three 3-byte jamo into one 3-byte syllable.
_NORMALIZER_SHRINK = {
    "NFC": 4,
    "NFD": 4,
    "NFKC": 4,
    "NFKD": 4,
    "Lowercase": 4,
    "Prepend": 1,
}
_KEEPING_PRE_TOKENIZERS = {"ByteLevel", "Metaspace", "Digits", "UnicodeScripts", "Split", "Punctuation"}


def max_prompt_bytes(tokenizer: Any, context_length: int | None) -> int | None:
    """``C * F * L`` for ``tokenizer`` (see the module's docstring), or None when it is unproven."""
    if context_length is None:
        return None
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    try:
        spec = json.loads(backend.to_str())
        vocab: dict[str, int] = tokenizer.get_vocab()
    except (AttributeError, TypeError, ValueError):
        return None
    shrink = _normalizer_shrink(spec.get("normalizer"))
    if shrink is None or not _keeps_every_character(spec.get("pre_tokenizer")):
        return None
    if any(added.get("lstrip") or added.get("rstrip") for added in spec.get("added_tokens") or []):
        return None
    if not _covers_every_byte(spec.get("model") or {}, spec.get("pre_tokenizer"), vocab):
        return None
    longest = max((len(token.encode("utf-8", "surrogatepass")) for token in vocab), default=0)
    return context_length * shrink * longest if longest > 0 else None


def _steps(component: Any) -> list[dict[str, Any]]:
    """A normalizer or pre-tokenizer as its list of steps (a ``Sequence`` is flattened)."""
    if component is None:
        return []
    if component.get("type") == "Sequence":
        inner = component.get("normalizers") or component.get("pretokenizers") or []
        return [step for part in inner for step in _steps(part)]
    return [component]


def _normalizer_shrink(normalizer: Any) -> int | None:
    factor = 1
    for step in _steps(normalizer):
        kind = step.get("type")
        if kind == "Replace":
            pattern, content = step.get("pattern") or {}, step.get("content")
            literal = pattern.get("String") if isinstance(pattern, dict) else None
            if not isinstance(literal, str) or not isinstance(content, str):
                return None
            if len(content.encode()) < len(literal.encode()):
                return None
            continue
        if kind not in _NORMALIZER_SHRINK:
            return None
        factor *= _NORMALIZER_SHRINK[kind]
    return factor


def _keeps_every_character(pre_tokenizer: Any) -> bool:
    for step in _steps(pre_tokenizer):
        if step.get("type") not in _KEEPING_PRE_TOKENIZERS:
            return False
        if str(step.get("behavior", "Isolated")).lower() == "removed":
            return False
    return True


def _covers_every_byte(model: dict[str, Any], pre_tokenizer: Any, vocab: dict[str, int]) -> bool:
    if model.get("type") != "BPE":
        return False
    if model.get("byte_fallback") and all(token in vocab for token in _BYTE_FALLBACK):
        return True
    byte_level = any(step.get("type") == "ByteLevel" for step in _steps(pre_tokenizer))
    return byte_level and all(symbol in vocab for symbol in _byte_level_alphabet())


def _byte_level_alphabet() -> list[str]:
    """The 256 characters a byte-level BPE spells bytes with (GPT-2's ``bytes_to_unicode``)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    symbols = {byte: chr(byte) for byte in printable}
    extra = 0
    for byte in range(256):
        if byte not in symbols:
            symbols[byte] = chr(256 + extra)
            extra += 1
    return list(symbols.values())
