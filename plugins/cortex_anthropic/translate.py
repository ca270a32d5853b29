"""Anthropic Messages requests → OpenAI chat requests for the neurons.

The choices, each made so that a chat template sees everything the model should see:

* ``system`` (a string or text blocks) and every ``system``-role message inside ``messages`` are
  joined, in order, into **one leading system message**: many templates (Qwen's among them)
  reject a system turn anywhere else. Claude Code's ``x-anthropic-billing-header:`` block is
  dropped, because its per-conversation suffix would defeat prefix caching on the neuron.
* User text blocks become one string (joined by a blank line); a turn that carries images
  becomes a list of ``text`` / ``image_url`` parts (base64 sources as ``data:`` URLs). Plain
  strings are kept where possible because several templates render only string content.
* ``tool_result`` blocks become ``tool`` messages, emitted before the rest of their user turn.
  Tool messages are text-only, so each image in a result is replaced by
  :data:`IMAGE_PLACEHOLDER` and moved, in order, to the front of a user message that follows;
  ``is_error`` becomes the prefix :data:`TOOL_ERROR_PREFIX`, since OpenAI has no such field.
* Assistant ``tool_use`` blocks become ``tool_calls`` (ids kept, input as a JSON string);
  ``thinking`` becomes ``reasoning_content`` (templates that replay reasoning read it there);
  ``redacted_thinking`` is opaque to any model but Claude's and is dropped.
* Documents with text sources (``text``, ``content``) become text; PDF and file sources, and
  file image sources, are refused with a 400 that says why.
* Client tools map ``input_schema`` → ``parameters``; server tools (versioned ``type``) cannot
  run on a local model and are dropped (logged at debug).
* ``thinking`` switches the template's reasoning on or off (``enable_thinking``); with no
  ``thinking`` field it is off, as Claude's is. ``stop_sequences`` are *not* sent upstream: the
  dialect matches them itself (see :mod:`cortex_anthropic.events`), so it can say which one
  matched.
* A conversation that ends with an assistant turn is a prefill: the template is asked to
  continue that message (``continue_final_message``) instead of opening a new one.

Block types this gateway does not know yet are skipped (logged at debug), never rejected.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

from cortex_anthropic.chat_protocol import (
    AssistantMessage,
    ChatCompletionRequest,
    ChatMessage,
    ContentPart,
    FunctionCall,
    FunctionDef,
    FunctionTool,
    ImagePart,
    ImageURL,
    NamedFunction,
    NamedToolChoice,
    StreamOptions,
    SystemMessage,
    TextPart,
    ToolCall,
    ToolMessage,
    UserMessage,
)
from cortex_anthropic.protocol import (
    INPUT_BLOCK_TYPES,
    TOOL_RESULT_ITEM_TYPES,
    Base64ImageSource,
    CustomTool,
    DocumentBlock,
    ImageBlock,
    ImageSource,
    InputBlock,
    MessageParam,
    MessagesRequest,
    PromptParams,
    RedactedThinkingBlock,
    SearchResultBlock,
    TextBlock,
    ThinkingBlock,
    ToolChoice,
    ToolReferenceBlock,
    ToolResultBlock,
    ToolResultItem,
    ToolUseBlock,
    URLImageSource,
)
from cortex_kernel.errors import BadRequest
from cortex_kernel.validation import error_location

log = logging.getLogger(__name__)

JOIN = "\n\n"
IMAGE_PLACEHOLDER = "[image: attached in the next user message]"
TOOL_ERROR_PREFIX = "[tool error] "
BILLING_PREFIX = "x-anthropic-billing-header:"
_EFFORT = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}
_json = msgspec.json.Encoder()


def invalid(path: str, exc: msgspec.ValidationError) -> BadRequest:
    """A 400 naming the field, from msgspec's ``"problem - at `$.x`"`` message."""
    where = error_location(exc)
    field = ".".join(part for part in (path, where.path) if part)
    if where.path.startswith("["):
        field = f"{path}{where.path}"
    return BadRequest(f"{field}: {where.problem}" if field else where.problem, param=field or None)


def _convert(value: Any, kind: Any, path: str) -> Any:
    try:
        return msgspec.convert(value, kind)
    except msgspec.ValidationError as exc:
        raise invalid(path, exc) from None


def _typed_items(items: list[dict[str, Any]], known: frozenset[str], kind: Any, path: str) -> list[Any]:
    """Decode each typed block; skip (and log) the types this gateway does not know yet."""
    decoded = []
    for index, raw in enumerate(items):
        where = f"{path}[{index}]"
        block_type = raw.get("type")
        if not isinstance(block_type, str):
            raise BadRequest(f"{where}.type: every content block needs a string 'type'", param=where)
        if block_type not in known:
            log.debug("ignoring a %r block at %s", block_type, where)
            continue
        decoded.append(_convert(raw, kind, where))
    return decoded


def input_blocks(content: str | list[dict[str, Any]], path: str) -> list[InputBlock]:
    """A message's content as typed blocks (a string is one text block)."""
    if isinstance(content, str):
        return [TextBlock(text=content)]
    return _typed_items(content, INPUT_BLOCK_TYPES, InputBlock, path)


# ---------------------------------------------------------------------------------------------
# Content


def image_url(source: ImageSource, path: str) -> str:
    if isinstance(source, Base64ImageSource):
        return f"data:{source.media_type};base64,{source.data}"
    if isinstance(source, URLImageSource):
        return source.url
    raise BadRequest(
        f"{path}.source: file sources need the Files API, which this gateway does not offer; "
        "send the image as base64 or a URL",
        param=f"{path}.source",
    )


def document_text(block: DocumentBlock, path: str) -> str:
    source = block.source
    content = source.content
    if source.type == "text" and source.data is not None:
        body = source.data
    elif source.type == "content" and isinstance(content, str):
        body = content
    elif source.type == "content" and isinstance(content, list):
        items = _typed_items(content, frozenset({"text"}), TextBlock, f"{path}.source.content")
        body = JOIN.join(item.text for item in items)
    else:
        raise BadRequest(
            f"{path}.source: {source.type!r} documents (PDFs, files) cannot be read by these models; "
            "send the document's text",
            param=f"{path}.source",
        )
    return JOIN.join(part for part in (block.title, block.context, body) if part)


def search_result_text(block: SearchResultBlock) -> str:
    return JOIN.join([block.title, block.source, *(item.text for item in block.content)])


def _tool_result(block: ToolResultBlock, path: str) -> tuple[ToolMessage, list[ImagePart]]:
    texts: list[str] = []
    images: list[ImagePart] = []
    if isinstance(block.content, str):
        texts = [block.content] if block.content else []
    else:
        items = _typed_items(block.content, TOOL_RESULT_ITEM_TYPES, ToolResultItem, f"{path}.content")
        for index, item in enumerate(items):
            if isinstance(item, TextBlock):
                if item.text:
                    texts.append(item.text)
            elif isinstance(item, ImageBlock):
                images.append(
                    ImagePart(image_url=ImageURL(url=image_url(item.source, f"{path}.content[{index}]")))
                )
                texts.append(IMAGE_PLACEHOLDER)
            elif isinstance(item, DocumentBlock):
                texts.append(document_text(item, f"{path}.content[{index}]"))
            elif isinstance(item, SearchResultBlock):
                texts.append(search_result_text(item))
            elif isinstance(item, ToolReferenceBlock):
                texts.append(f"Tool reference: {item.tool_name}")
    content = JOIN.join(texts)
    if block.is_error:
        content = TOOL_ERROR_PREFIX + content
    return ToolMessage(tool_call_id=block.tool_use_id, content=content), images


def _collapse(parts: list[ContentPart]) -> str | list[ContentPart]:
    if all(isinstance(part, TextPart) for part in parts):
        return JOIN.join(part.text for part in parts if isinstance(part, TextPart))
    return parts


def user_turn(content: str | list[dict[str, Any]], path: str) -> list[ChatMessage]:
    """One Anthropic user turn: its tool results first, then the rest as one user message."""
    if isinstance(content, str):
        return [UserMessage(content=content)]
    tool_messages: list[ChatMessage] = []
    moved: list[ContentPart] = []
    parts: list[ContentPart] = []
    for index, block in enumerate(input_blocks(content, path)):
        where = f"{path}[{index}]"
        if isinstance(block, TextBlock):
            if block.text.strip():  # empty text blocks are noise the real API rejects
                parts.append(TextPart(text=block.text))
        elif isinstance(block, ImageBlock):
            parts.append(ImagePart(image_url=ImageURL(url=image_url(block.source, where))))
        elif isinstance(block, DocumentBlock):
            parts.append(TextPart(text=document_text(block, where)))
        elif isinstance(block, SearchResultBlock):
            parts.append(TextPart(text=search_result_text(block)))
        elif isinstance(block, ToolResultBlock):
            message, images = _tool_result(block, where)
            tool_messages.append(message)
            moved.extend(images)
        else:
            raise BadRequest(f"{where}: {type(block).__struct_config__.tag} blocks belong in assistant turns")
    rest = moved + parts
    if rest or not tool_messages:
        return [*tool_messages, UserMessage(content=_collapse(rest))]
    return tool_messages


def assistant_turn(content: str | list[dict[str, Any]], path: str) -> AssistantMessage:
    """One Anthropic assistant turn: text, reasoning and tool calls."""
    if isinstance(content, str):
        return AssistantMessage(content=content)
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[ToolCall] = []
    for index, block in enumerate(input_blocks(content, path)):
        if isinstance(block, TextBlock):
            if block.text:
                texts.append(block.text)
        elif isinstance(block, ThinkingBlock):
            if block.thinking:
                reasoning.append(block.thinking)
        elif isinstance(block, ToolUseBlock):
            arguments = _json.encode(block.input).decode()
            calls.append(ToolCall(id=block.id, function=FunctionCall(name=block.name, arguments=arguments)))
        elif not isinstance(block, RedactedThinkingBlock):
            tag = type(block).__struct_config__.tag
            raise BadRequest(f"{path}[{index}]: {tag} blocks belong in user turns", param=f"{path}[{index}]")
    return AssistantMessage(
        content=JOIN.join(texts),
        reasoning_content=JOIN.join(reasoning) if reasoning else UNSET,
        tool_calls=calls if calls else UNSET,
    )


def system_texts(content: str | list[dict[str, Any]] | None, path: str) -> list[str]:
    """The text of a ``system`` value, without Claude Code's per-conversation billing block."""
    if content is None:
        return []
    if isinstance(content, str):
        texts = [content]
    else:
        texts = [block.text for block in _typed_items(content, frozenset({"text"}), TextBlock, path)]
    kept = []
    for text in texts:
        if text.startswith(BILLING_PREFIX):
            log.debug("dropping the %s system block", BILLING_PREFIX)
        elif text:
            kept.append(text)
    return kept


def chat_messages(
    system: str | list[dict[str, Any]] | None, messages: list[MessageParam]
) -> list[ChatMessage]:
    """The whole conversation in OpenAI chat messages, with one leading system message."""
    instructions = system_texts(system, "system")
    out: list[ChatMessage] = []
    for index, message in enumerate(messages):
        path = f"messages[{index}].content"
        if message.role == "system":
            instructions.extend(system_texts(message.content, path))
        elif message.role == "user":
            out.extend(user_turn(message.content, path))
        else:
            out.append(assistant_turn(message.content, path))
    if instructions:
        out.insert(0, SystemMessage(content=JOIN.join(instructions)))
    return out


# ---------------------------------------------------------------------------------------------
# Tools, reasoning, sampling


def function_tools(tools: list[dict[str, Any]] | None) -> list[FunctionTool]:
    converted = []
    for index, raw in enumerate(tools or []):
        kind = raw.get("type")
        if kind not in (None, "custom"):
            log.debug("dropping server tool %r (%s): a local model cannot run it", raw.get("name"), kind)
            continue
        tool: CustomTool = _convert(raw, CustomTool, f"tools[{index}]")
        converted.append(
            FunctionTool(
                function=FunctionDef(
                    name=tool.name,
                    parameters=tool.input_schema,
                    description=tool.description if tool.description is not None else UNSET,
                    strict=tool.strict if tool.strict is not None else UNSET,
                )
            )
        )
    return converted


def tool_choice(choice: ToolChoice | None) -> tuple[str | NamedToolChoice | UnsetType, bool | UnsetType]:
    """``(tool_choice, parallel_tool_calls)`` for OpenAI."""
    if choice is None:
        return UNSET, UNSET
    parallel: bool | UnsetType = False if choice.disable_parallel_tool_use else UNSET
    if choice.type == "tool":
        if not choice.name:
            raise BadRequest(
                "tool_choice.name: required when tool_choice.type is 'tool'", param="tool_choice"
            )
        return NamedToolChoice(function=NamedFunction(name=choice.name)), parallel
    return {"auto": "auto", "any": "required", "none": "none"}[choice.type], parallel


def reasoning_on(params: PromptParams) -> bool:
    return params.thinking is not None and params.thinking.type != "disabled"


def shows_reasoning(params: PromptParams) -> bool:
    """Whether reasoning is returned as thinking blocks (``display: "omitted"`` drops it)."""
    return params.thinking is None or params.thinking.display != "omitted"


def prompt_request(params: PromptParams, model: str) -> ChatCompletionRequest:
    """The OpenAI request that renders the same prompt as ``params`` (for counting and as the base
    of a generation request)."""
    if not params.messages:
        raise BadRequest("messages: at least one message is required", param="messages")
    messages = chat_messages(params.system, params.messages)
    tools = function_tools(params.tools)
    choice, parallel = tool_choice(params.tool_choice) if tools else (UNSET, UNSET)
    kwargs: dict[str, Any] = {"enable_thinking": reasoning_on(params)}
    last = messages[-1] if messages else None
    if isinstance(last, AssistantMessage) and last.content and last.tool_calls is UNSET:
        kwargs["continue_final_message"] = True
    effort: str | UnsetType = UNSET
    response_format: dict[str, Any] | UnsetType = UNSET
    if params.output_config is not None:
        if params.output_config.effort and reasoning_on(params):
            effort = _EFFORT.get(params.output_config.effort, UNSET)
        output_format = params.output_config.format
        if output_format is not None and output_format.type == "json_schema" and output_format.schema:
            response_format = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": output_format.schema},
            }
    return ChatCompletionRequest(
        model=model,
        messages=messages,
        tools=tools if tools else UNSET,
        tool_choice=choice,
        parallel_tool_calls=parallel,
        chat_template_kwargs=kwargs,
        reasoning_effort=effort,
        response_format=response_format,
    )


def generation_request(request: MessagesRequest, model: str) -> ChatCompletionRequest:
    """The streamed OpenAI request for ``request``; ``max_completion_tokens`` is set later, once
    the prompt's size is known (see :mod:`cortex_anthropic.exchange`)."""
    base = prompt_request(request, model)
    user = request.metadata.user_id if request.metadata is not None else None
    return msgspec.structs.replace(
        base,
        stream=True,
        stream_options=StreamOptions(include_usage=True),
        temperature=request.temperature if request.temperature is not None else UNSET,
        top_p=request.top_p if request.top_p is not None else UNSET,
        top_k=request.top_k if request.top_k is not None else UNSET,
        user=user if user else UNSET,
    )
