"""Properties over random inputs.

* Anthropic → OpenAI → Anthropic keeps every piece of content (text, images, reasoning, tool
  calls and results, system text, tools), up to the documented normalisations: system text is
  gathered into one, consecutive user turns merge (the API merges them too), tool results come
  first in their turn, and adjacent text blocks join with a blank line.
* Any chunking of an OpenAI stream yields a well-formed Anthropic event sequence that the SDK's
  own accumulator folds into the same message as the gateway's non-streaming fold, with the text
  cut exactly at the first stop sequence.
* Any invalid body gets a 4xx in Anthropic's envelope, never a 5xx.
"""

from __future__ import annotations

import json
import string
from typing import Any

import anthropic
import msgspec
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import ParsedMessage
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cortex_anthropic.chat_protocol import ChatChunk
from cortex_anthropic.events import EventTranslator
from cortex_anthropic.fold import MessageBuilder
from cortex_anthropic.protocol import MessagesRequest
from cortex_anthropic.translate import (
    BILLING_PREFIX,
    IMAGE_PLACEHOLDER,
    JOIN,
    TOOL_ERROR_PREFIX,
    generation_request,
)
from tests import request_strategies
from tests.anthropic.inverse import to_anthropic
from tests.dialect_gateway import Gateway

PROPERTY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------------------------------------
# Random valid conversations

_alphabet = st.characters(codec="utf-8", exclude_categories=["Cs"])
text = st.text(_alphabet, min_size=1, max_size=40).filter(
    lambda t: (
        t.strip()
        and t == t.strip("\n")
        and IMAGE_PLACEHOLDER not in t
        and not t.startswith((TOOL_ERROR_PREFIX, BILLING_PREFIX))
    )
)
ids = st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=24)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
images = st.one_of(
    st.builds(
        lambda data, kind: {
            "type": "image",
            "source": {"type": "base64", "media_type": f"image/{kind}", "data": data},
        },
        st.text(string.ascii_letters + string.digits + "+/=", min_size=4, max_size=16),
        st.sampled_from(["png", "jpeg", "gif", "webp"]),
    ),
    st.builds(
        lambda path: {"type": "image", "source": {"type": "url", "url": f"https://example.com/{path}"}}, ids
    ),
)
text_blocks = st.builds(lambda t: {"type": "text", "text": t}, text)
tool_results = st.builds(
    lambda tool_id, content, is_error: {
        "type": "tool_result",
        "tool_use_id": tool_id,
        "content": content,
        "is_error": is_error,
    },
    ids,
    text | st.lists(text_blocks | images, max_size=3),
    st.booleans(),
)
user_turns = st.builds(
    lambda content: {"role": "user", "content": content},
    text | st.lists(text_blocks | images | tool_results, min_size=1, max_size=4),
)
assistant_turns = st.builds(
    lambda content: {"role": "assistant", "content": content},
    text
    | st.lists(
        text_blocks
        | st.builds(lambda t, sig: {"type": "thinking", "thinking": t, "signature": sig}, text, ids)
        | st.builds(
            lambda tool_id, name, args: {"type": "tool_use", "id": tool_id, "name": name, "input": args},
            ids,
            ids,
            st.dictionaries(text, json_values, max_size=3),
        ),
        min_size=1,
        max_size=4,
    ),
)
system_turns = st.builds(lambda t: {"role": "system", "content": t}, text)
tools = st.lists(
    st.builds(
        lambda name, description: {
            "name": name,
            "input_schema": {"type": "object", "properties": {name: {"type": "string"}}},
            **({"description": description} if description else {}),
        },
        ids,
        st.none() | text,
    ),
    max_size=3,
)
conversations = st.fixed_dictionaries(
    {
        "model": st.just("m"),
        "max_tokens": st.integers(1, 1000),
        "messages": st.lists(user_turns | assistant_turns | system_turns, min_size=1, max_size=6),
        "system": st.none() | text | st.lists(text_blocks, min_size=1, max_size=3),
        "tools": tools,
    }
)


def _blocks(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def _merge_text(parts: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    merged: list[tuple[str, Any]] = []
    for kind, value in parts:
        if kind == "text" and not value:
            continue
        if kind == "text" and merged and merged[-1][0] == "text":
            merged[-1] = ("text", merged[-1][1] + JOIN + value)
        else:
            merged.append((kind, value))
    return merged


def _image(block: dict[str, Any]) -> tuple[str, Any]:
    return ("image", json.dumps(block["source"], sort_keys=True))


def _result(block: dict[str, Any]) -> tuple[Any, ...]:
    texts = [b["text"] for b in _blocks(block["content"]) if b["type"] == "text" and b["text"]]
    found = [_image(b)[1] for b in _blocks(block["content"]) if b["type"] == "image"]
    return (block["tool_use_id"], JOIN.join(texts), tuple(found), bool(block.get("is_error")))


def normalise(body: dict[str, Any]) -> dict[str, Any]:
    """The content of an Anthropic request, in the shape that survives translation."""
    system_texts = [b["text"] for b in _blocks(body["system"] or [])]
    turns: list[dict[str, Any]] = []
    for message in body["messages"]:
        if message["role"] == "system":
            system_texts.append(message["content"])
            continue
        blocks = _blocks(message["content"])
        if message["role"] == "assistant":
            turn = {
                "role": "assistant",
                "text": JOIN.join(b["text"] for b in blocks if b["type"] == "text" and b["text"]),
                "thinking": JOIN.join(b["thinking"] for b in blocks if b["type"] == "thinking"),
                "calls": [(b["id"], b["name"], b["input"]) for b in blocks if b["type"] == "tool_use"],
            }
            turns.append(turn)
            continue
        results = [_result(b) for b in blocks if b["type"] == "tool_result"]
        parts = [
            ("text", b["text"]) if b["type"] == "text" else _image(b)
            for b in blocks
            if b["type"] != "tool_result"
        ]
        if turns and turns[-1]["role"] == "user":  # consecutive user turns merge
            turns[-1]["results"] += results
            turns[-1]["parts"] = _merge_text(turns[-1]["parts"] + parts)
        else:
            turns.append({"role": "user", "results": results, "parts": _merge_text(parts)})
    tool_list = [(t["name"], t.get("description"), t["input_schema"]) for t in body["tools"] or []]
    return {"system": JOIN.join(t for t in system_texts if t) or None, "turns": turns, "tools": tool_list}


@PROPERTY
@given(conversations)
def test_anthropic_to_openai_and_back_keeps_all_content(body: dict[str, Any]) -> None:
    chat = msgspec.to_builtins(generation_request(msgspec.convert(body, MessagesRequest), "m"))
    back = to_anthropic(chat)
    assert normalise(back) == normalise(body)


# ---------------------------------------------------------------------------------------------
# Random streams

# A small alphabet makes stop sequences match often, across chunks and across segments.
stream_text = st.text("ab \n", min_size=1, max_size=12) | text
segments = st.lists(
    st.one_of(
        st.tuples(st.just("text"), stream_text),
        st.tuples(st.just("reasoning"), stream_text),
        st.tuples(st.just("tool"), st.tuples(ids, st.dictionaries(text, json_values, max_size=3))),
    ),
    max_size=6,
)


def _split(value: str, cuts: list[int]) -> list[str]:
    points = sorted({cut % (len(value) + 1) for cut in cuts})
    pieces, start = [], 0
    for point in [*points, len(value)]:
        pieces.append(value[start:point])
        start = point
    return [piece for piece in pieces if piece] or [value]


def _chunks(script: list[tuple[str, Any]], cuts: list[int], finish: str) -> list[dict[str, Any]]:
    """OpenAI chunk payloads for ``script``, each text and argument string split at ``cuts``."""
    chunks: list[dict[str, Any]] = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
    ]
    calls = 0
    for kind, value in script:
        if kind == "tool":
            name, arguments = value
            encoded = json.dumps(arguments)
            call = {
                "index": calls,
                "id": f"call_{calls}",
                "type": "function",
                "function": {"name": name, "arguments": ""},
            }
            chunks.append({"choices": [{"index": 0, "delta": {"tool_calls": [call]}}]})
            for piece in _split(encoded, cuts):
                fragment = {"index": calls, "function": {"arguments": piece}}
                chunks.append({"choices": [{"index": 0, "delta": {"tool_calls": [fragment]}}]})
            calls += 1
        else:
            field = "content" if kind == "text" else "reasoning_content"
            chunks.extend(
                {"choices": [{"index": 0, "delta": {field: piece}}]} for piece in _split(value, cuts)
            )
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    chunks.append({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 9}})
    return chunks


def _expected(script: list[tuple[str, Any]], stop: str | None) -> list[tuple[str, Any]]:
    """The content blocks a faithful translation yields: same-kind runs merge; a stop string cuts
    the visible text and ends the reply."""
    blocks: list[tuple[str, Any]] = []
    for kind, value in script:
        if kind == "tool":
            blocks.append(("tool_use", value))
            continue
        if kind == "text" and stop is not None:
            joined = (blocks[-1][1] if blocks and blocks[-1][0] == "text" else "") + value
            if stop in joined:
                cut = joined[: joined.index(stop)]
                if blocks and blocks[-1][0] == "text":
                    blocks.pop()
                if cut:
                    blocks.append(("text", cut))
                return blocks
        name = "text" if kind == "text" else "thinking"
        if blocks and blocks[-1][0] == name:
            blocks[-1] = (name, blocks[-1][1] + value)
        else:
            blocks.append((name, value))
    return blocks


def _content(message: Any) -> list[tuple[str, Any]]:
    out = []
    for block in message.content:
        if block.type == "text":
            out.append(("text", block.text))
        elif block.type == "thinking":
            out.append(("thinking", block.thinking))
        else:
            out.append(("tool_use", (block.name, block.input)))
    return out


def _check_grammar(events: list[Any]) -> None:
    names = [type(event).__struct_config__.tag for event in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    open_index, next_index = None, 0
    for event, name in zip(events, names, strict=True):
        if name == "content_block_start":
            assert open_index is None and event.index == next_index
            open_index, next_index = event.index, next_index + 1
        elif name == "content_block_delta":
            assert event.index == open_index
        elif name == "content_block_stop":
            assert event.index == open_index
            open_index = None
    assert open_index is None


@PROPERTY
@given(
    segments,
    st.lists(st.integers(0, 60), max_size=4),
    st.sampled_from(["stop", "length", "tool_calls"]),
    st.none() | st.text("ab \n", min_size=1, max_size=3),
)
# Text held back as a possible start of the stop sequence, then reasoning: the text comes first,
# in its own block (it was once appended after the reasoning, merged into the thinking before).
@example(script=[("reasoning", "a"), ("text", "\n"), ("reasoning", "a")], cuts=[], finish="stop", stop="\na")
def test_any_chunking_gives_a_valid_stream_that_the_sdk_and_the_fold_agree_on(
    script: list[tuple[str, Any]], cuts: list[int], finish: str, stop: str | None
) -> None:
    translator = EventTranslator("m", stops=(stop,) if stop else ())
    events: list[Any] = [translator.start(7)]
    for payload in _chunks(script, cuts, finish):
        events.extend(translator.feed(msgspec.convert(payload, ChatChunk)))
        if translator.stopped:
            break
    events.extend(translator.finish())
    _check_grammar(events)

    snapshot: ParsedMessage[None] | None = None
    buffers: dict[int, bytes] = {}
    for event in events:
        snapshot = accumulate_event(
            event=msgspec.to_builtins(event), current_snapshot=snapshot, json_bufs=buffers
        )
    builder = MessageBuilder()
    for event in events:
        builder.apply(event)
    folded = anthropic.types.Message.model_validate(msgspec.to_builtins(builder.message))
    assert _content(snapshot) == _content(folded)
    assert snapshot is not None
    assert snapshot.stop_reason == folded.stop_reason and snapshot.usage.output_tokens >= 1

    expected = _expected(script, stop)
    assert _content(folded) == expected
    if translator.stopped:
        assert folded.stop_reason == "stop_sequence" and folded.stop_sequence == stop
    elif any(kind == "tool_use" for kind, _ in expected) or finish == "tool_calls":
        assert folded.stop_reason == "tool_use" or finish == "length"


# ---------------------------------------------------------------------------------------------
# Random invalid bodies

VALID = {"model": "scripted", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
not_a_string = st.integers() | st.booleans() | st.lists(st.integers(), max_size=2) | st.none()
not_an_int = (
    st.text(max_size=3)
    | st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer())
    | st.booleans()
    | st.none()
    | st.integers(max_value=-1)
)
bad_blocks = st.sampled_from(
    [
        {"type": "text"},
        {"text": "typeless"},
        {"type": "text", "text": 5},
        {"type": "image", "source": {"type": "base64"}},
        {"type": "image", "source": {"type": "ftp", "url": "x"}},
        {"type": "image", "source": {"type": "file", "file_id": "f"}},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBER"}},
        {"type": "tool_use", "name": "n", "input": {}},
        {"type": "tool_result"},
        {"type": "tool_result", "tool_use_id": "t", "content": 7},
    ]
)


def _with(field: str, value: Any) -> dict[str, Any]:
    return {**VALID, field: value}


def _without(field: str) -> dict[str, Any]:
    return {key: value for key, value in VALID.items() if key != field}


invalid_documents = st.one_of(
    st.sampled_from(["model", "max_tokens", "messages"]).map(_without),
    st.just(_with("messages", [])),
    not_a_string.map(lambda v: _with("model", v)),
    not_an_int.map(lambda v: _with("max_tokens", v)),
    (not_a_string | st.text(max_size=3)).map(
        lambda v: _with("messages", v) if not isinstance(v, list) else _with("messages", [v])
    ),
    st.sampled_from(["robot", "tool", "", "USER"]).map(
        lambda r: _with("messages", [{"role": r, "content": "x"}])
    ),
    (st.integers() | st.booleans()).map(lambda c: _with("messages", [{"role": "user", "content": c}])),
    bad_blocks.map(lambda b: _with("messages", [{"role": "user", "content": [b]}])),
    st.sampled_from(
        [
            ("temperature", "hot"),
            ("top_k", 1.5),
            ("stream", "yes"),
            ("stop_sequences", "END"),
            ("system", 42),
            ("system", [{"type": "text"}]),
            ("metadata", "user"),
            ("tools", {"name": "t"}),
            ("tools", [{"name": "t"}]),
            ("tools", [{"input_schema": {}}]),
            ("tool_choice", {"type": "whenever"}),
            ("tool_choice", "auto"),
            ("thinking", {"budget_tokens": 10}),
            ("output_config", []),
        ]
    ).map(lambda pair: _with(*pair)),
)
invalid_bodies = request_strategies.invalid_bodies(invalid_documents)


def test_invalid_bodies_always_get_a_4xx_anthropic_envelope(gateway: Gateway[anthropic.Anthropic]) -> None:
    @settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(invalid_bodies, st.sampled_from(["/v1/messages", "/v1/messages/count_tokens"]))
    def check(body: bytes, path: str) -> None:
        response = gateway.http.post(path, content=body, headers={"content-type": "application/json"})
        if path.endswith("count_tokens") and response.status_code == 200:
            return  # count_tokens has no max_tokens and no sampling fields to get wrong
        assert 400 <= response.status_code < 500, (body, response.status_code, response.text)
        payload = response.json()
        assert payload["type"] == "error" and payload["error"]["type"] == "invalid_request_error"
        assert isinstance(payload["error"]["message"], str) and payload["error"]["message"]

    check()
