"""Tool definitions in the Responses API's three kinds (a function, a namespace of functions, a
custom tool with a grammar), for the scripted-neuron tests and the real-neuron ones alike."""

from __future__ import annotations

from openai.types.responses import CustomToolParam, FunctionToolParam, NamespaceToolParam

WEATHER: FunctionToolParam = {  # type: ignore[typeddict-item]  # sent without "strict", as clients do
    "type": "function",
    "name": "get_weather",
    "description": "Current weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
GITHUB: NamespaceToolParam = {
    "type": "namespace",
    "name": "mcp__github__",
    "description": "GitHub tools",
    "tools": [
        {"type": "function", "name": "create_issue", "parameters": {"type": "object", "properties": {}}},
        {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}},
    ],
}
APPLY_PATCH: CustomToolParam = {
    "type": "custom",
    "name": "apply_patch",
    "description": "Apply a patch",
    "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"},
}
