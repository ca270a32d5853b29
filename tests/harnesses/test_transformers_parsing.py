"""The output parser gives the same result however the model's text is chunked."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cortex_transformers.parsing import OutputParser, prompt_opens_reasoning


@dataclass(frozen=True)
class Parsed:
    text: str
    reasoning: str
    calls: tuple[tuple[int, str | None, str | None, str], ...]  # index, id, name, arguments
    kinds: tuple[str, ...]  # the order of channels, consecutive duplicates collapsed


def parse(chunks: list[str], **options: Any) -> Parsed:
    counter = itertools.count()
    parser = OutputParser(id_factory=lambda: f"call_{next(counter)}", **options)
    deltas = [delta for chunk in chunks for delta in parser.feed(chunk)] + parser.finish()
    kinds: list[str] = []
    calls: list[tuple[int, str | None, str | None, str]] = []
    for delta in deltas:
        assert delta.finish_reason is None and delta.usage is None
        present = [k for k in ("reasoning", "text") if getattr(delta, k)] + (
            ["tool"] if delta.tool_calls else []
        )
        assert len(present) == 1, f"a delta carries one channel: {delta}"
        if not kinds or kinds[-1] != present[0]:
            kinds.append(present[0])
        for call in delta.tool_calls:
            calls.append((call.index, call.id, call.name, call.arguments))
    return Parsed(
        text="".join(d.text for d in deltas),
        reasoning="".join(d.reasoning for d in deltas),
        calls=tuple(calls),
        kinds=tuple(kinds),
    )


def every_split(script: str, pieces: int) -> Iterator[list[str]]:
    """Every way of cutting ``script`` into ``pieces`` chunks (empty chunks included)."""
    for cuts in itertools.combinations_with_replacement(range(len(script) + 1), pieces - 1):
        bounds = (0, *cuts, len(script))
        yield [script[a:b] for a, b in itertools.pairwise(bounds)]


REASONING = "<think>\nThe user wants 42.\n</think>\n\nThe answer is 42."
PARALLEL_CALLS = (
    "Let me check.\n"
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
    '<tool_call>\n{"name": "get_time", "arguments": {"tz": "CET", "fmt": "24h"}}\n</tool_call>'
)
THINK_THEN_CALL = '<think>need the weather</think>\n<tool_call>{"name": "w", "arguments": {}}</tool_call>\n'
PLAIN = "a < b, <b>bold</b>, <thinking> and </tool_call are not markers; a trailing <"
OPENED = "still thinking</think>\n\nDone."

SCRIPTS = {
    "reasoning": (
        REASONING,
        {},
        Parsed("The answer is 42.", "The user wants 42.\n", (), ("reasoning", "text")),
    ),
    "parallel_calls": (
        PARALLEL_CALLS,
        {"tools": True},
        Parsed(
            "Let me check.\n",
            "",
            (
                (0, "call_0", "get_weather", '{"city": "Paris"}'),
                (1, "call_1", "get_time", '{"tz": "CET", "fmt": "24h"}'),
            ),
            ("text", "tool"),
        ),
    ),
    "think_then_call": (
        THINK_THEN_CALL,
        {"tools": True},
        Parsed("", "need the weather", ((0, "call_0", "w", "{}"),), ("reasoning", "tool")),
    ),
    "plain": (PLAIN, {"tools": False}, Parsed(PLAIN, "", (), ("text",))),
    "opened_by_prompt": (
        OPENED,
        {"in_reasoning": True},
        Parsed("Done.", "still thinking", (), ("reasoning", "text")),
    ),
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_single_chunk(name: str) -> None:
    script, options, expected = SCRIPTS[name]
    assert parse([script], **options) == expected


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_every_two_chunk_split(name: str) -> None:
    script, options, expected = SCRIPTS[name]
    for chunks in every_split(script, 2):
        assert parse(chunks, **options) == expected, chunks


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_one_character_at_a_time(name: str) -> None:
    script, options, expected = SCRIPTS[name]
    assert parse(list(script), **options) == expected


@pytest.mark.parametrize("name", ["reasoning", "think_then_call", "opened_by_prompt"])
def test_every_three_chunk_split(name: str) -> None:
    script, options, expected = SCRIPTS[name]
    for chunks in every_split(script, 3):
        assert parse(chunks, **options) == expected, chunks


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_random_chunkings(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(SCRIPTS)))
    script, options, expected = SCRIPTS[name]
    cuts = sorted(data.draw(st.lists(st.integers(0, len(script)), max_size=12)))
    bounds = [0, *cuts, len(script)]
    assert parse([script[a:b] for a, b in itertools.pairwise(bounds)], **options) == expected


def test_text_streams_without_waiting_for_the_end() -> None:
    parser = OutputParser(tools=True)
    assert [d.text for d in parser.feed("Hello wor")] == ["Hello wor"]
    assert parser.feed("ld <tool")[0].text == "ld "  # "<tool" might open a call: held back
    assert [d.text for d in parser.feed("s>")] == ["<tools>"]


def test_tool_markers_are_text_without_tools() -> None:
    script = '<tool_call>{"name": "f", "arguments": {}}</tool_call>'
    assert parse([script], tools=False) == Parsed(script, "", (), ("text",))


def test_reasoning_switch_off_leaves_think_markers_as_text() -> None:
    assert parse([REASONING], reasoning=False).text == REASONING


def test_malformed_tool_call_stays_visible() -> None:
    script = "<tool_call>{not json}</tool_call>"
    assert parse([script], tools=True) == Parsed(script, "", (), ("text",))


def test_unterminated_blocks_are_flushed() -> None:
    assert parse(["<think>cut o", "ff"]) == Parsed("", "cut off", (), ("reasoning",))
    cut = '<tool_call>{"name": "f", "argu'
    assert parse([cut], tools=True).text == cut
    assert parse(["ends with <thi"]).text == "ends with <thi"


def test_text_after_tool_calls_is_kept_but_whitespace_is_dropped() -> None:
    script = '<tool_call>{"name": "f", "arguments": {"a": 1}}</tool_call>\n\nAnything else?\n'
    parsed = parse([script], tools=True)
    assert parsed.calls == ((0, "call_0", "f", '{"a": 1}'),)
    assert parsed.text == "\n\nAnything else?\n"


def test_arguments_given_as_a_string_or_under_parameters() -> None:
    as_string = json.dumps({"name": "f", "arguments": '{"x": 2}'})
    as_parameters = json.dumps({"name": "g", "parameters": {"y": [1, 2]}})
    parsed = parse([f"<tool_call>{as_string}</tool_call><tool_call>{as_parameters}</tool_call>"], tools=True)
    assert [(c[2], json.loads(c[3])) for c in parsed.calls] == [("f", {"x": 2}), ("g", {"y": [1, 2]})]


def test_tool_call_ids_are_unique_and_openai_shaped() -> None:
    parser = OutputParser(tools=True)
    deltas = parser.feed('<tool_call>{"name": "f"}</tool_call>' * 3) + parser.finish()
    ids = [call.id for delta in deltas for call in delta.tool_calls]
    assert len(set(ids)) == 3 and all(i and i.startswith("call_") for i in ids)
    assert parser.tool_calls == 3


def test_prompt_opens_reasoning() -> None:
    assert prompt_opens_reasoning("<|im_start|>assistant\n<think>\n")
    assert not prompt_opens_reasoning("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert not prompt_opens_reasoning("<|im_start|>assistant\n")
