"""The tiny synthetic models: deterministic, real files, a template that renders the chat shapes."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from cortex_transformers.synthetic import (
    BUILD_VERSION,
    build_tiny_chat_model,
    build_tokenizer,
    resolve_synthetic,
)


def test_builds_are_byte_identical(tmp_path: Path) -> None:
    first = build_tiny_chat_model(tmp_path / "a")
    second = build_tiny_chat_model(tmp_path / "b")
    for name in ("model.safetensors", "tokenizer.json", "config.json", "generation_config.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_loads_back_with_the_auto_classes(tiny_chat_model: Path) -> None:
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(tiny_chat_model)
    assert (config.num_hidden_layers, config.hidden_size, config.max_position_embeddings) == (2, 64, 40960)
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_model)
    assert 2000 <= len(tokenizer) <= 2010
    for marker in ("<|im_start|>", "<|im_end|>", "<think>", "</think>", "<tool_call>", "</tool_call>"):
        assert len(tokenizer.encode(marker, add_special_tokens=False)) == 1, marker


def test_chat_template_renders_every_message_shape() -> None:
    tokenizer = build_tokenizer()
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "reasoning_content": "Need the tool.",
            "tool_calls": [
                {
                    "id": "a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
                },
                {
                    "id": "b",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": '{"tz": "CET"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "a", "content": "sunny"},
    ]
    text = tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True, tokenize=False)
    assert text.startswith("<|im_start|>system\nBe brief.\n\n# Tools")
    assert json.dumps(tools[0]) in text
    assert "<think>\nNeed the tool.\n</think>\n\n<tool_call>" in text
    assert '{"name": "get_weather", "arguments": {"city": "Paris"}}' in text
    assert '</tool_call>\n<tool_call>\n{"name": "get_time", "arguments": {"tz": "CET"}}' in text
    assert "<|im_start|>tool\nsunny<|im_end|>\n" in text
    assert text.endswith("<|im_start|>assistant\n")
    thinking = tokenizer.apply_chat_template(
        messages[1:2], add_generation_prompt=True, tokenize=False, enable_thinking=True
    )
    assert thinking.endswith("<|im_start|>assistant\n<think>\n")


def test_resolver_builds_once_even_when_racing(tmp_path: Path) -> None:
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(resolve_synthetic("synthetic:tiny-chat", tmp_path)))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1
    built = results[0]
    assert built == tmp_path / "synthetic" / "tiny-chat"
    assert (built / "model.safetensors").is_file()
    assert [p.name for p in built.parent.iterdir()] == ["tiny-chat"], "temporary build directories were left"
    stamp = built / ".cortex-synthetic.json"
    assert json.loads(stamp.read_text())["version"] == BUILD_VERSION
    before = (built / "model.safetensors").stat().st_mtime_ns
    assert resolve_synthetic("synthetic:tiny-chat", tmp_path) == built
    assert (built / "model.safetensors").stat().st_mtime_ns == before  # reused, not rebuilt


def test_resolver_rebuilds_an_outdated_cache(tmp_path: Path) -> None:
    built = resolve_synthetic("synthetic:tiny-embed", tmp_path)
    (built / ".cortex-synthetic.json").write_text(json.dumps({"version": -1}))
    (built / "modules.json").unlink()
    assert resolve_synthetic("synthetic:tiny-embed", tmp_path) == built
    assert (built / "modules.json").is_file()
