"""Responses tools as the model sees them, and the way back from a model's tool call.

A chat model knows only flat function tools, so:

* ``function`` tools pass through (``parameters`` defaults to an empty object schema);
* ``namespace`` tools (Codex groups MCP servers' tools this way) are flattened: each nested
  function becomes ``<namespace>__<name>`` (no doubled underscores when the namespace already ends
  in one), made unique with a numeric suffix when two tools would collide. Top-level names are
  claimed first, so they are never renamed. A call to a flattened name comes back as a
  ``function_call`` with its ``namespace`` and original ``name`` restored;
* ``custom`` tools (free-text input, optionally constrained by a grammar) become a function with
  one string argument, ``input``; the grammar, when there is one, is quoted in the description,
  since a neuron cannot enforce it. A call comes back as a ``custom_tool_call`` with ``input``;
* hosted tools (``web_search``, ``file_search``, ``tool_search``, ``code_interpreter``,
  ``image_generation``, ``mcp``, ``computer_use``, ``local_shell``, …) run inside OpenAI's
  platform and cannot run here: they are dropped and logged, never rejected, so a client that
  always offers them still works.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

from cortex_anthropic.chat_protocol import FunctionDef, FunctionTool, NamedFunction, NamedToolChoice
from cortex_kernel.errors import BadRequest
from cortex_responses.protocol import CustomToolParam, FunctionToolParam, NamespaceToolParam

log = logging.getLogger(__name__)

CUSTOM_ARGUMENT = "input"
EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}


def convert(value: Any, kind: type[Any], path: str) -> Any:
    """``msgspec.convert`` with a 400 that names the field on failure."""
    try:
        return msgspec.convert(value, kind)
    except msgspec.ValidationError as exc:
        problem, _, where = str(exc).partition(" - at `$")
        field = f"{path}{where.rstrip('`')}"
        raise BadRequest(f"{field}: {problem}", param=field) from None


@dataclass(frozen=True)
class Origin:
    """Where a model-facing tool name came from."""

    name: str
    namespace: str | None = None
    custom: bool = False


def flat_name(namespace: str | None, name: str) -> str:
    if namespace is None:
        return name
    return f"{namespace}{'' if namespace.endswith('_') else '__'}{name}"


class ToolNames:
    """The two-way map between the client's tools and the names the model sees."""

    def __init__(self) -> None:
        self._origins: dict[str, Origin] = {}
        self._flat: dict[tuple[str | None, str], str] = {}

    def add(self, origin: Origin) -> str:
        base = flat_name(origin.namespace, origin.name)
        flat, suffix = base, 2
        while flat in self._origins:
            flat, suffix = f"{base}_{suffix}", suffix + 1
        self._origins[flat] = origin
        self._flat.setdefault((origin.namespace, origin.name), flat)
        return flat

    def model_name(self, namespace: str | None, name: str) -> str:
        """The model-facing name of a tool (also for a call in the history whose tool is gone)."""
        return self._flat.get((namespace, name)) or flat_name(namespace, name)

    def origin(self, model_name: str) -> Origin:
        """Who a model's call is for; an unknown name is taken as a plain function."""
        return self._origins.get(model_name) or Origin(name=model_name)


def _function(name: str, raw: FunctionToolParam) -> FunctionTool:
    return FunctionTool(
        function=FunctionDef(
            name=name,
            parameters=raw.parameters if raw.parameters is not None else EMPTY_SCHEMA,
            description=raw.description if raw.description is not None else UNSET,
            strict=raw.strict if raw.strict is not None else UNSET,
        )
    )


def _custom(name: str, raw: CustomToolParam) -> FunctionTool:
    described = raw.description or f"The {raw.name} tool."
    fmt = raw.format or {}
    if fmt.get("type") == "grammar" and isinstance(fmt.get("definition"), str):
        described += f"\n\nThe input must match this {fmt.get('syntax', '')} grammar:\n{fmt['definition']}"
    schema = {
        "type": "object",
        "properties": {CUSTOM_ARGUMENT: {"type": "string", "description": "The tool's free-text input."}},
        "required": [CUSTOM_ARGUMENT],
    }
    return FunctionTool(function=FunctionDef(name=name, parameters=schema, description=described))


def model_tools(tools: list[dict[str, Any]] | None) -> tuple[list[FunctionTool], ToolNames]:
    """The chat tools for ``tools``, and the name map to read the model's calls with."""
    names = ToolNames()
    converted: list[FunctionTool] = []
    namespaces: list[tuple[int, NamespaceToolParam]] = []
    for index, raw in enumerate(tools or []):
        path = f"tools[{index}]"
        if not isinstance(raw, dict):
            raise BadRequest(f"{path}: a tool must be an object", param=path)
        kind = raw.get("type")
        if kind == "function":
            function = convert(raw, FunctionToolParam, path)
            converted.append(_function(names.add(Origin(name=function.name)), function))
        elif kind == "custom":
            custom = convert(raw, CustomToolParam, path)
            converted.append(_custom(names.add(Origin(name=custom.name, custom=True)), custom))
        elif kind == "namespace":
            namespaces.append((index, convert(raw, NamespaceToolParam, path)))
        elif isinstance(kind, str):
            log.info("dropping hosted tool %r at %s: it cannot run on a local model", kind, path)
        else:
            raise BadRequest(f"{path}.type: every tool needs a string 'type'", param=f"{path}.type")
    for index, namespace in namespaces:
        for inner, raw in enumerate(namespace.tools):
            path = f"tools[{index}].tools[{inner}]"
            kind = raw.get("type") if isinstance(raw, dict) else None
            if kind == "function":
                function = convert(raw, FunctionToolParam, path)
                origin = Origin(name=function.name, namespace=namespace.name)
                converted.append(_function(names.add(origin), function))
            elif kind == "custom":
                custom = convert(raw, CustomToolParam, path)
                origin = Origin(name=custom.name, namespace=namespace.name, custom=True)
                converted.append(_custom(names.add(origin), custom))
            else:
                log.info("dropping %r inside namespace %r: only functions can run here", kind, namespace.name)
    return converted, names


def tool_choice(choice: str | dict[str, Any] | None, names: ToolNames) -> str | NamedToolChoice | UnsetType:
    """The chat ``tool_choice`` for a Responses one (hosted-tool choices fall back to the default)."""
    if choice is None:
        return UNSET
    if isinstance(choice, str):
        if choice not in ("auto", "none", "required"):
            raise BadRequest(
                f"tool_choice: {choice!r} is not one of 'auto', 'none', 'required'", param="tool_choice"
            )
        return choice
    kind = choice.get("type")
    name = choice.get("name")
    if kind in ("function", "custom") and isinstance(name, str):
        namespace = choice.get("namespace")
        return NamedToolChoice(
            function=NamedFunction(
                name=names.model_name(namespace if isinstance(namespace, str) else None, name)
            )
        )
    if kind == "allowed_tools":
        mode = choice.get("mode")
        return mode if mode in ("auto", "required") else UNSET
    log.info("ignoring tool_choice of type %r: the model chooses", kind)
    return UNSET
