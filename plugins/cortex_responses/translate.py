"""Responses requests → OpenAI chat requests for the neurons.

The choices, each made so that a chat template sees everything the model should see:

* ``instructions`` and every ``system`` / ``developer`` message are joined, in order, into **one
  leading system message** (many templates reject a system turn anywhere else). Instructions
  are per request: they are never carried over from a ``previous_response_id``.
* ``input`` as a string is one user message. User text parts (``input_text``) become one string
  when there are no images; with images the message is a list of ``text`` / ``image_url`` parts.
  ``input_image`` by ``file_id`` and ``input_file`` need OpenAI's Files API and are refused 400.
* Consecutive assistant output is one chat assistant message: a ``message`` item's text, the
  ``reasoning`` item before it (its ``content`` text, else its summary; ``encrypted_content``
  is opaque and ignored) as ``reasoning_content``, and the ``function_call`` /
  ``custom_tool_call`` items after it as ``tool_calls`` (names flattened as in
  :mod:`cortex_responses.tools`; a custom call's input as ``{"input": ...}``).
* ``function_call_output`` / ``custom_tool_call_output`` become ``tool`` messages. Tool messages
  are text-only, so each image in an output is replaced by :data:`IMAGE_PLACEHOLDER` and moved to
  a user message that follows.
* ``reasoning.effort`` switches the template's reasoning on or off (``enable_thinking``;
  ``none`` is off) and is passed as ``reasoning_effort``; without it the template's default holds.
* ``text.format`` ``json_schema`` / ``json_object`` becomes ``response_format``.

Item types this gateway does not know (``item_reference``, hosted tool calls) are skipped and
logged, never rejected.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from msgspec import UNSET, UnsetType

from cortex_anthropic.chat_protocol import (
    AssistantMessage,
    ChatCompletionRequest,
    ChatMessage,
    ContentPart,
    FunctionCall,
    ImagePart,
    ImageURL,
    StreamOptions,
    SystemMessage,
    TextPart,
    ToolCall,
    ToolMessage,
    UserMessage,
)
from cortex_kernel.errors import BadRequest
from cortex_responses.protocol import (
    CustomToolCallItem,
    FunctionCallItem,
    ImagePartIn,
    MessageItem,
    ReasoningInputItem,
    RefusalPartIn,
    ResponsesRequest,
    TextPartIn,
    ToolOutputItem,
)
from cortex_responses.tools import CUSTOM_ARGUMENT, ToolNames, convert, model_tools, tool_choice

log = logging.getLogger(__name__)

JOIN = "\n\n"
IMAGE_PLACEHOLDER = "[image: attached in the next user message]"
_EFFORT = {"minimal": "low", "low": "low", "medium": "medium", "high": "high", "xhigh": "high"}
_TEXT_PARTS = frozenset({"input_text", "output_text", "text", "summary_text", "reasoning_text"})


def input_items(value: str | list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """``input`` as a list of items (a string is one user message)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    return value


def item_type(raw: dict[str, Any], path: str) -> str:
    kind = raw.get("type", "message" if "role" in raw else None)
    if not isinstance(kind, str):
        raise BadRequest(f"{path}.type: every input item needs a string 'type'", param=f"{path}.type")
    return kind


# ---------------------------------------------------------------------------------------------
# Content parts


def _image(raw: dict[str, Any], path: str) -> ImagePart:
    image: ImagePartIn = convert(raw, ImagePartIn, path)
    if image.image_url is None:
        raise BadRequest(
            f"{path}: images by file_id need OpenAI's Files API, which this gateway does not offer; "
            "send image_url (a URL or a data: URL)",
            param=path,
        )
    return ImagePart(image_url=ImageURL(url=image.image_url))


def content_parts(content: str | list[dict[str, Any]], path: str) -> list[ContentPart]:
    """A message's content as chat parts (text and images; unknown part types skipped)."""
    if isinstance(content, str):
        return [TextPart(text=content)]
    parts: list[ContentPart] = []
    for index, raw in enumerate(content):
        where = f"{path}[{index}]"
        kind = raw.get("type") if isinstance(raw, dict) else None
        if kind in _TEXT_PARTS:
            part: TextPartIn = convert(raw, TextPartIn, where)
            parts.append(TextPart(text=part.text))
        elif kind == "refusal":
            refusal: RefusalPartIn = convert(raw, RefusalPartIn, where)
            parts.append(TextPart(text=refusal.refusal))
        elif kind == "input_image":
            parts.append(_image(raw, where))
        elif kind == "input_file":
            raise BadRequest(
                f"{where}: files cannot be read by these models; send the file's text as input_text",
                param=where,
            )
        elif isinstance(kind, str):
            log.debug("ignoring a %r content part at %s", kind, where)
        else:
            raise BadRequest(f"{where}.type: every content part needs a string 'type'", param=f"{where}.type")
    return parts


def _texts(parts: list[ContentPart]) -> str:
    return JOIN.join(part.text for part in parts if isinstance(part, TextPart))


def _collapse(parts: list[ContentPart]) -> str | list[ContentPart]:
    if all(isinstance(part, TextPart) for part in parts):
        return _texts(parts)
    return parts


# ---------------------------------------------------------------------------------------------
# Items


@dataclass
class _Conversation:
    """Chat messages being built, with the system text and the reasoning waiting for its turn."""

    names: ToolNames
    system: list[str]
    messages: list[ChatMessage]
    reasoning: list[str]
    moved_images: list[ContentPart]

    def assistant(self, *, merge: bool) -> AssistantMessage:
        """The assistant message to add to: the last one when ``merge`` allows it, else a new one."""
        self._flush_images()
        last = self.messages[-1] if self.messages else None
        if merge and isinstance(last, AssistantMessage):
            message = last
        else:
            message = AssistantMessage(content="")
            self.messages.append(message)
        if self.reasoning:
            previous = message.reasoning_content if isinstance(message.reasoning_content, str) else ""
            message.reasoning_content = JOIN.join([previous, *self.reasoning] if previous else self.reasoning)
            self.reasoning = []
        return message

    def call(self, call: ToolCall) -> None:
        message = self.assistant(merge=True)
        calls = message.tool_calls if not isinstance(message.tool_calls, UnsetType) else []
        message.tool_calls = [*calls, call]

    def user(self, parts: list[ContentPart]) -> None:
        parts = [*self.moved_images, *parts]
        self.moved_images = []
        self.messages.append(UserMessage(content=_collapse(parts)))

    def _flush_images(self) -> None:
        if self.moved_images:
            self.user([])


def _tool_output(output: str | list[dict[str, Any]], path: str) -> tuple[str, list[ContentPart]]:
    if isinstance(output, str):
        return output, []
    texts: list[str] = []
    images: list[ContentPart] = []
    for part in content_parts(output, path):
        if isinstance(part, TextPart):
            texts.append(part.text)
        else:
            images.append(part)
            texts.append(IMAGE_PLACEHOLDER)
    return JOIN.join(texts), images


def _item(conversation: _Conversation, raw: dict[str, Any], path: str) -> None:
    kind = item_type(raw, path)
    names = conversation.names
    if kind == "message":
        message: MessageItem = convert(raw, MessageItem, path)
        parts = content_parts(message.content, f"{path}.content")
        if message.role in ("system", "developer"):
            text = _texts(parts)
            if text:
                conversation.system.append(text)
        elif message.role == "user":
            conversation.user(parts)
        else:
            target = conversation.assistant(merge=False)
            target.content = _texts(parts)
    elif kind == "function_call":
        function: FunctionCallItem = convert(raw, FunctionCallItem, path)
        name = names.model_name(function.namespace, function.name)
        conversation.call(
            ToolCall(id=function.call_id, function=FunctionCall(name=name, arguments=function.arguments))
        )
    elif kind == "custom_tool_call":
        custom: CustomToolCallItem = convert(raw, CustomToolCallItem, path)
        name = names.model_name(custom.namespace, custom.name)
        arguments = json.dumps({CUSTOM_ARGUMENT: custom.input}, ensure_ascii=False)
        conversation.call(ToolCall(id=custom.call_id, function=FunctionCall(name=name, arguments=arguments)))
    elif kind in ("function_call_output", "custom_tool_call_output"):
        result: ToolOutputItem = convert(raw, ToolOutputItem, path)
        text, images = _tool_output(result.output, f"{path}.output")
        conversation.messages.append(ToolMessage(tool_call_id=result.call_id, content=text))
        conversation.moved_images.extend(images)
    elif kind == "reasoning":
        reasoning: ReasoningInputItem = convert(raw, ReasoningInputItem, path)
        texts = reasoning.content if reasoning.content else reasoning.summary
        text = JOIN.join(part.text for part in texts if part.text)
        if text:
            conversation.reasoning.append(text)
    else:
        log.debug("ignoring a %r input item at %s", kind, path)


def chat_messages(
    instructions: str | None, items: list[dict[str, Any]], names: ToolNames
) -> list[ChatMessage]:
    """The whole conversation in OpenAI chat messages, with one leading system message."""
    conversation = _Conversation(
        names=names, system=[instructions] if instructions else [], messages=[], reasoning=[], moved_images=[]
    )
    for index, raw in enumerate(items):
        path = f"input[{index}]"
        if not isinstance(raw, dict):
            raise BadRequest(f"{path}: an input item must be an object", param=path)
        _item(conversation, raw, path)
    if conversation.moved_images:
        conversation.user([])
    if conversation.reasoning:
        log.debug("dropping reasoning that no assistant turn followed")
    messages = conversation.messages
    if conversation.system:
        messages.insert(0, SystemMessage(content=JOIN.join(conversation.system)))
    return messages


# ---------------------------------------------------------------------------------------------
# The request


def response_format(params: ResponsesRequest) -> dict[str, Any] | UnsetType:
    fmt = params.text.format if params.text is not None else None
    if not fmt:
        return UNSET
    kind = fmt.get("type")
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        schema = fmt.get("schema")
        if not isinstance(schema, dict):
            raise BadRequest(
                "text.format.schema: a JSON schema object is required", param="text.format.schema"
            )
        spec: dict[str, Any] = {"name": fmt.get("name") or "output", "schema": schema}
        if isinstance(fmt.get("strict"), bool):
            spec["strict"] = fmt["strict"]
        return {"type": "json_schema", "json_schema": spec}
    if kind not in ("text", None):
        raise BadRequest(
            f"text.format.type: {kind!r} is not one of 'text', 'json_object', 'json_schema'",
            param="text.format.type",
        )
    return UNSET


def reasoning_settings(params: ResponsesRequest) -> tuple[dict[str, Any] | UnsetType, str | UnsetType]:
    """``(chat_template_kwargs, reasoning_effort)``."""
    effort = params.reasoning.effort if params.reasoning is not None else None
    if effort is None:
        return UNSET, UNSET
    if effort == "none":
        return {"enable_thinking": False}, UNSET
    return {"enable_thinking": True}, _EFFORT.get(effort, UNSET)


def chat_request(
    params: ResponsesRequest, model: str, items: list[dict[str, Any]]
) -> tuple[ChatCompletionRequest, ToolNames]:
    """The streamed chat request for ``params`` over the conversation ``items`` (history included);
    ``max_completion_tokens`` is set later, once the prompt's size is known."""
    tools, names = model_tools(params.tools)
    messages = chat_messages(params.instructions, items, names)
    if not messages or all(isinstance(message, SystemMessage) for message in messages):
        raise BadRequest("input: at least one input item is required", param="input")
    kwargs, effort = reasoning_settings(params)
    choice = tool_choice(params.tool_choice, names)  # checked even when no tool is left to choose
    request = ChatCompletionRequest(
        model=model,
        messages=messages,
        stream=True,
        stream_options=StreamOptions(include_usage=True),
        tools=tools if tools else UNSET,
        tool_choice=choice if tools else UNSET,
        parallel_tool_calls=params.parallel_tool_calls
        if tools and params.parallel_tool_calls is not None
        else UNSET,
        chat_template_kwargs=kwargs,
        reasoning_effort=effort,
        response_format=response_format(params),
        temperature=params.temperature if params.temperature is not None else UNSET,
        top_p=params.top_p if params.top_p is not None else UNSET,
        user=params.user if params.user else UNSET,
    )
    return request, names
