"""The fold of streamed tool-call fragments both dialect translators share."""

from __future__ import annotations

from cortex_anthropic.chat_protocol import FunctionFragment, ToolCallFragment
from cortex_anthropic.tool_calls import ToolCallParts


def test_arguments_before_the_name_are_held_until_the_call_can_open() -> None:
    call = ToolCallParts()
    arguments = call.absorb(ToolCallFragment(function=FunctionFragment(arguments='{"a":')))
    assert arguments == '{"a":' and not call.hold(arguments)
    arguments = call.absorb(ToolCallFragment(id="call_1", function=FunctionFragment(name="f", arguments="1")))
    assert call.hold(arguments)
    assert (call.id, call.name, call.pending) == ("call_1", "f", ['{"a":', "1"])


def test_the_first_id_and_name_win_and_an_empty_fragment_adds_nothing() -> None:
    call = ToolCallParts()
    call.absorb(ToolCallFragment(id="call_1", function=FunctionFragment(name="f")))
    assert call.absorb(ToolCallFragment(id="call_2", function=FunctionFragment(name="g"))) == ""
    assert call.absorb(ToolCallFragment()) == ""
    assert (call.id, call.name) == ("call_1", "f")
