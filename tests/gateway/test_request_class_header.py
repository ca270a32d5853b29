"""Which request class the gateway hands to a neuron, from which header, and what it ignores."""

from __future__ import annotations

import pytest

from cortex_gateway.request_class import class_header_line, request_class_of


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"x-claude-code-request-class": "subagent"}, "subagent"),
        ({"x-cortex-request-class": " Compaction "}, "compaction"),
        ({"x-cortex-request-class": "auxiliary", "x-claude-code-request-class": "main"}, "auxiliary"),
        ({"x-cortex-request-class": "bad value!", "x-claude-code-request-class": "main"}, "main"),
        ({"x-claude-code-request-class": "x" * 500}, None),
        ({"x-claude-code-request-class": ""}, None),
    ],
)
def test_request_class_of(headers, expected):
    assert request_class_of(headers) == expected


def test_the_header_line_never_carries_anything_but_a_token():
    assert class_header_line("main") == b"x-cortex-request-class: main\r\n"
    assert class_header_line(None) == b""
    assert class_header_line("main\r\nx-evil: 1") == b""
