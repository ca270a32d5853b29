"""Tiny random models built locally, so tests and demos never download weights.

The models are real: a byte-level BPE tokenizer trained with ``tokenizers`` on a synthetic corpus,
a Jinja chat template with tools and thinking, and random Llama / BERT weights saved with
``save_pretrained``. They load through exactly the same ``from_pretrained`` path as a downloaded
model, which is the point: the harness under test is the harness in production. Everything is
seeded, so two builds are byte-identical and generation is reproducible.

Profiles reach these models through ``source = "synthetic:NAME"``; :func:`resolve_synthetic`
builds NAME into ``<cache_dir>/synthetic/NAME`` on first use.
"""

from __future__ import annotations

import functools
import json
import os
import random
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from cortex_transformers.process_state import PROCESS_STATE_LOCK

SYNTHETIC_PREFIX = "synthetic:"

# Bump when a builder's output changes, so caches built by an older version are rebuilt.
BUILD_VERSION = 2
_MARKER = ".cortex-synthetic.json"

PoolingMode = Literal["mean", "cls", "max", "lasttoken"]

# Chat markers. The first three are special (skipped when decoding); the thinking and tool-call
# markers are ordinary added tokens, as in Qwen, so they survive decoding and the output parser
# can see them.
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "[CLS]", "[SEP]"]
MARKER_TOKENS = ["<think>", "</think>", "<tool_call>", "</tool_call>"]

CHAT_TEMPLATE = r"""
{%- macro text(content) -%}
    {%- if content is string -%}
        {{- content -}}
    {%- elif content is not none -%}
        {%- for part in content if part.type == 'text' -%}{{- part.text -}}{%- endfor -%}
    {%- endif -%}
{%- endmacro -%}
{%- set has_system = messages and messages[0].role == 'system' -%}
{%- if has_system or tools -%}
    {{- '<|im_start|>system\n' -}}
    {%- if has_system -%}{{- text(messages[0].content) -}}{%- endif -%}
    {%- if tools -%}
        {%- if has_system -%}{{- '\n\n' -}}{%- endif -%}
        {{- '# Tools\n\nYou may call one or more functions. ' -}}
        {{- 'Their signatures are within <tools></tools>:\n<tools>' -}}
        {%- for tool in tools -%}{{- '\n' + tool | tojson -}}{%- endfor -%}
        {{- '\n</tools>\n\nFor each call, return a JSON object within <tool_call></tool_call>:\n' -}}
        {{- '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>' -}}
    {%- endif -%}
    {{- '<|im_end|>\n' -}}
{%- endif -%}
{%- for message in messages -%}
    {%- if message.role == 'system' -%}
        {%- if not loop.first -%}
            {{- '<|im_start|>system\n' + text(message.content) + '<|im_end|>\n' -}}
        {%- endif -%}
    {%- elif message.role == 'user' or message.role == 'tool' -%}
        {{- '<|im_start|>' + message.role + '\n' + text(message.content) + '<|im_end|>\n' -}}
    {%- elif message.role == 'assistant' -%}
        {{- '<|im_start|>assistant\n' -}}
        {%- if message.reasoning_content -%}
            {{- '<think>\n' + message.reasoning_content + '\n</think>\n\n' -}}
        {%- endif -%}
        {{- text(message.content) -}}
        {%- for call in message.tool_calls or [] -%}
            {%- set fn = call.function if call.function is defined else call -%}
            {%- if not loop.first or message.content -%}{{- '\n' -}}{%- endif -%}
            {{- '<tool_call>\n{"name": ' + fn.name | tojson + ', "arguments": ' -}}
            {%- if fn.arguments is string -%}{{- fn.arguments -}}
            {%- else -%}{{- fn.arguments | tojson -}}{%- endif -%}
            {{- '}\n</tool_call>' -}}
        {%- endfor -%}
        {{- '<|im_end|>\n' -}}
    {%- else -%}
        {{- raise_exception('unknown role: ' + message.role) -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|im_start|>assistant\n' -}}
    {%- if enable_thinking is defined and enable_thinking -%}{{- '<think>\n' -}}{%- endif -%}
{%- endif -%}
"""

_WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "you",
    "that",
    "it",
    "he",
    "was",
    "for",
    "on",
    "are",
    "as",
    "with",
    "his",
    "they",
    "at",
    "be",
    "this",
    "have",
    "from",
    "or",
    "one",
    "had",
    "by",
    "word",
    "but",
    "not",
    "what",
    "all",
    "were",
    "we",
    "when",
    "your",
    "can",
    "said",
    "there",
    "use",
    "an",
    "each",
    "which",
    "she",
    "do",
    "how",
    "their",
    "if",
    "will",
    "up",
    "other",
    "about",
    "out",
    "many",
    "then",
    "them",
    "these",
    "so",
    "some",
    "her",
    "would",
    "make",
    "like",
    "him",
    "into",
    "time",
    "has",
    "look",
    "two",
    "more",
    "write",
    "go",
    "see",
    "number",
    "no",
    "way",
    "could",
    "people",
    "my",
    "than",
    "first",
    "water",
    "been",
    "call",
    "who",
    "its",
    "now",
    "find",
    "long",
    "down",
    "day",
    "did",
    "get",
    "come",
    "made",
    "may",
    "part",
    "hello",
    "world",
    "weather",
    "city",
    "model",
    "token",
    "paris",
    "london",
    "tool",
]
_SNIPPETS = [
    '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}',
    '{"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}',
    "def main():\n    return {'answer': 42}\n",
    "<think>\nLet me think about it.\n</think>\n\nThe answer is 42.",
]


@functools.cache
def _tokenizer_json() -> str:
    """Train the byte-level BPE once per process; training is deterministic for a fixed corpus."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    rng = random.Random(1234)
    syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"] + ["th", "sh", "ch", "qu", "st"]
    pseudo = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(1200)]
    lexicon = _WORDS + pseudo
    lines = []
    for _ in range(2500):
        words = [rng.choice(lexicon) for _ in range(rng.randint(3, 14))]
        if rng.random() < 0.3:
            words[0] = words[0].capitalize()
        lines.append(" ".join(words) + rng.choice([".", "?", "!", ",", "", ":"]))
    lines.extend(_SNIPPETS * 10)

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=2000,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(lines, trainer)
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in MARKER_TOKENS])
    return tokenizer.to_str()


def build_tokenizer(*, for_embedding: bool = False) -> Any:
    """The synthetic fast tokenizer: ChatML markers and a chat template, or [CLS]/[SEP] framing."""
    from tokenizers import Tokenizer, processors
    from transformers import PreTrainedTokenizerFast

    fast_tokenizer: Any = PreTrainedTokenizerFast  # untyped constructor

    backend = Tokenizer.from_str(_tokenizer_json())
    if for_embedding:
        cls_id, sep_id = backend.token_to_id("[CLS]"), backend.token_to_id("[SEP]")
        backend.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
        )
        return fast_tokenizer(
            tokenizer_object=backend,
            cls_token="[CLS]",
            sep_token="[SEP]",
            pad_token="<|endoftext|>",
            model_max_length=512,
        )
    tokenizer = fast_tokenizer(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_chat_model(
    dest: Path,
    *,
    layers: int = 2,
    hidden_size: int = 64,
    heads: int = 4,
    context_length: int = 40960,
    seed: int = 0,
) -> Path:
    """Write a random Llama chat model (tokenizer, template, weights, generation config) to ``dest``.

    The defaults (2 layers, 64 wide) build in well under a second and fit a ~33k-token prompt.
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    generation_config: Any = GenerationConfig  # untyped constructor

    tokenizer = build_tokenizer()
    eos_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 2),
        max_position_embeddings=context_length,
        bos_token_id=None,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    # A random model rarely samples EOS; max_new_tokens bounds requests that set no limit.
    model.generation_config = generation_config(
        eos_token_id=[eos_id, pad_id],
        pad_token_id=pad_id,
        do_sample=True,
        temperature=0.8,
        top_p=0.95,
        max_new_tokens=512,
    )
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return dest


def build_tiny_embedding_model(
    dest: Path,
    *,
    pooling: PoolingMode = "mean",
    normalize: bool = True,
    seed: int = 0,
) -> Path:
    """Write a random 2-layer BERT encoder with a sentence-transformers pooling declaration to ``dest``.

    ``modules.json`` and ``1_Pooling/config.json`` follow sentence-transformers' layout, which is
    how real embedding checkpoints tell a server how to pool.
    """
    import torch
    from transformers import BertConfig, BertModel

    tokenizer = build_tokenizer(for_embedding=True)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertModel(config)
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    modules: list[dict[str, Any]] = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append(
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
        )
        (dest / "2_Normalize").mkdir(exist_ok=True)
    (dest / "modules.json").write_text(json.dumps(modules, indent=2))
    (dest / "1_Pooling").mkdir(exist_ok=True)
    pooling_config = {
        "word_embedding_dimension": config.hidden_size,
        "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean",
        "pooling_mode_max_tokens": pooling == "max",
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": pooling == "lasttoken",
    }
    (dest / "1_Pooling" / "config.json").write_text(json.dumps(pooling_config, indent=2))
    return dest


SYNTHETIC_MODELS: dict[str, Callable[[Path], Path]] = {
    "tiny-chat": build_tiny_chat_model,
    "tiny-embed": build_tiny_embedding_model,
    "tiny-embed-cls": functools.partial(build_tiny_embedding_model, pooling="cls"),
    # Big enough that decode time is dominated by the model rather than Python (benchmarks).
    "small-chat": functools.partial(build_tiny_chat_model, layers=4, hidden_size=256, heads=8),
}


def resolve_synthetic(source: str, cache_dir: Path) -> Path:
    """Return the directory of ``synthetic:NAME``, building it into ``cache_dir`` on first use.

    The build goes to a private temporary directory that is renamed into place, so a reader never
    sees a half-written model and two racing loads both end up with one complete copy.

    :raises KeyError: NAME is not one of :data:`SYNTHETIC_MODELS`.
    """
    name = source.removeprefix(SYNTHETIC_PREFIX)
    builder = SYNTHETIC_MODELS[name]
    final = cache_dir / "synthetic" / name
    if _is_current(final):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.parent / f".{name}.{uuid.uuid4().hex}.tmp"
    try:
        with PROCESS_STATE_LOCK:  # building forks torch's global RNG and patches transformers
            builder(staging)
        (staging / _MARKER).write_text(json.dumps({"name": name, "version": BUILD_VERSION}))
        if final.exists() and not _is_current(final):
            stale = final.parent / f".{name}.{uuid.uuid4().hex}.stale"
            os.replace(final, stale)
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.rename(staging, final)
        except OSError:
            if not _is_current(final):  # lost the race to a writer that did not finish
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _is_current(path: Path) -> bool:
    try:
        marker = json.loads((path / _MARKER).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("version") == BUILD_VERSION
