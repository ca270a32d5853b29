"""Turning an OpenAI chat request into the model's own prompt, with its own chat template.

Chat templates are written for Hugging Face's message shape, which differs from OpenAI's wire
shape in two places a client will hit: content may arrive as a list of typed parts, and a tool
call's ``arguments`` arrive as a JSON string where templates expect an object. Both are
normalised here, once, so that ``chat`` and ``count_tokens`` render the very same text.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from cortex_kernel.errors import BadRequest
from cortex_kernel.openai_wire import ChatRequest

# apply_chat_template arguments a request must not steer: they change the return type, or (for
# chat_template) would run client-supplied Jinja.
_RESERVED_KWARGS = frozenset(
    {
        "conversation",
        "tools",
        "documents",
        "chat_template",
        "tokenize",
        "padding",
        "truncation",
        "max_length",
        "return_tensors",
        "return_dict",
        "return_assistant_tokens_mask",
        "tokenizer_kwargs",
    }
)
_TEXT_PARTS = frozenset({"text", "input_text", "output_text"})


def _flatten_content(content: Any, index: int) -> Any:
    if not isinstance(content, list):
        return content
    texts = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in _TEXT_PARTS:
            raise BadRequest(
                f"messages[{index}]: content parts of type {kind!r} are not supported by this model "
                "(text only)",
                code="unsupported_content",
                param=f"messages[{index}].content",
            )
        texts.append(str(part.get("text", "")))
    return "".join(texts)


def _normalise_tool_call(call: Any) -> Any:
    if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
        return call
    function = dict(call["function"])
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        # A malformed string (or one nested too deeply to decode) is left as it is; the template
        # decides what to do with it.
        with contextlib.suppress(ValueError, RecursionError):
            function["arguments"] = json.loads(arguments) if arguments.strip() else {}
    return {**call, "function": function}


def normalise_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI messages in the shape Hugging Face chat templates expect."""
    normalised = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise BadRequest(
                f"messages[{index}] must be an object with a 'role'", code="invalid_value", param="messages"
            )
        out = dict(message)
        if "content" in out:
            out["content"] = _flatten_content(out["content"], index)
        if isinstance(out.get("tool_calls"), list):
            out["tool_calls"] = [_normalise_tool_call(call) for call in out["tool_calls"]]
        if "reasoning" in out and "reasoning_content" not in out:
            out["reasoning_content"] = out["reasoning"]
        normalised.append(out)
    return normalised


def render_chat(
    tokenizer: Any,
    request: ChatRequest,
    *,
    with_tools: bool,
    default_kwargs: dict[str, Any] | None = None,
) -> str:
    """The prompt text for ``request``, rendered with the model's chat template.

    :param with_tools: pass the request's tools to the template (off for ``tool_choice="none"``).
    :param default_kwargs: template variables from the model profile; the request's
        ``chat_template_kwargs`` override them.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise BadRequest(
            f"model {request.model!r} has no chat template; use /v1/completions with a raw prompt",
            code="no_chat_template",
        )
    kwargs: dict[str, Any] = {"add_generation_prompt": True, **(default_kwargs or {})}
    for key, value in (request.chat_template_kwargs or {}).items():
        if key in _RESERVED_KWARGS:
            raise BadRequest(
                f"chat_template_kwargs may not set {key!r}",
                code="invalid_value",
                param="chat_template_kwargs",
            )
        kwargs[key] = value
    if kwargs.get("continue_final_message"):
        kwargs["add_generation_prompt"] = False
    messages = normalise_messages(request.messages)
    tools = request.tools if with_tools and request.tools else None
    try:
        text = tokenizer.apply_chat_template(messages, tools=tools, tokenize=False, **kwargs)
    except BadRequest:
        raise
    except Exception as exc:  # jinja2 errors, raise_exception() in templates, HF's ValueErrors
        raise BadRequest(f"the chat template rejected the request: {exc}", code="invalid_messages") from exc
    if not isinstance(text, str):
        raise BadRequest("the chat template did not render text", code="invalid_messages")
    return text
