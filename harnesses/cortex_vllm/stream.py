"""One request's stream of vLLM ``RequestOutput`` objects, as the harness contract's ``Delta``s.

The engine runs with ``RequestOutputKind.DELTA``: each output carries only the new text and
token ids. Reasoning and tool calls are split off by vLLM's own ``Parser`` (a reasoning parser
and a tool parser composed by ``ParserManager``), exactly as vLLM's OpenAI server streams them;
this module only reshapes its ``DeltaMessage``s and adds what the contract asks of the last
delta: one ``finish_reason`` in OpenAI's vocabulary, and usage with the prompt-cache hits.

The adapter is synchronous and engine-free, so it is tested with real ``RequestOutput``s.
"""

from __future__ import annotations

from typing import Any

from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
from vllm.outputs import RequestOutput
from vllm.parser.abstract_parser import Parser

from cortex_kernel.errors import CortexError
from cortex_kernel.harness import Delta, FinishReason, ToolCallDelta, Usage

# vLLM's finish reasons that end a reply normally. "repetition" comes only from vLLM's
# repetition detector, which this harness never asks for; OpenAI's nearest word is "stop".
_FINISH: dict[str, FinishReason] = {"stop": "stop", "length": "length", "repetition": "stop"}
_VLLM_TOOL_ID_PREFIX = "chatcmpl-tool-"


class EngineAborted(Exception):
    """The engine ended the request with ``abort``: the harness stopped it (sleep, unload)."""


class DeltaAdapter:
    """Turns the ``RequestOutput``s of one request (``n == 1``) into ``Delta``s.

    :param prompt_token_ids: the rendered prompt; its length is ``usage.prompt_tokens``, and
        the reasoning parser looks at it to learn whether the prompt already opened a
        reasoning block (``enable_thinking`` templates).
    :param parser: a fresh vLLM parser for this request (they are stateful), or ``None`` to pass
        text through untouched (completions, models without parsers).
    :param request: the vLLM chat request the parser consults (``tool_choice``, ``tools``,
        ``include_reasoning``).
    """

    def __init__(
        self,
        prompt_token_ids: list[int],
        *,
        parser: Parser | None = None,
        request: ChatCompletionRequest | None = None,
    ) -> None:
        if parser is not None and request is None:
            raise ValueError("a parser needs the request it parses for")
        self._prompt_ids = prompt_token_ids
        self._parser = parser
        self._request = request
        self._completion_tokens = 0
        self._cached_tokens = 0
        self._called_tools = False

    def feed(self, output: RequestOutput) -> list[Delta]:
        """The deltas for one output; the last output also yields the final delta.

        :raises EngineAborted: the engine aborted the request.
        :raises CortexError: the engine failed the request (vLLM's ``error`` finish reason).
        """
        completion = output.outputs[0]
        token_ids = list(completion.token_ids)
        self._completion_tokens += len(token_ids)
        if output.num_cached_tokens is not None:
            self._cached_tokens = output.num_cached_tokens
        if completion.finish_reason == "abort":
            raise EngineAborted(output.request_id)
        deltas = self._parse(completion.text, token_ids, output.finished)
        if output.finished:
            deltas.append(
                Delta(finish_reason=self._finish_reason(completion.finish_reason), usage=self.usage)
            )
        return deltas

    @property
    def usage(self) -> Usage:
        return Usage(
            prompt_tokens=len(self._prompt_ids),
            completion_tokens=self._completion_tokens,
            cached_tokens=self._cached_tokens,
        )

    def _parse(self, text: str, token_ids: list[int], finished: bool) -> list[Delta]:
        if self._parser is None or self._request is None:
            return [Delta(text=text)] if text else []
        message = self._parser.parse_delta(
            text, token_ids, self._request, self._prompt_ids, finished=finished
        )
        if message is None:
            return []
        calls = [_tool_call(call) for call in message.tool_calls or []]
        self._called_tools = self._called_tools or bool(calls)
        delta = Delta(text=message.content or "", reasoning=message.reasoning or "", tool_calls=calls)
        return [delta] if delta.text or delta.reasoning or delta.tool_calls else []

    def _finish_reason(self, reason: str | None) -> FinishReason:
        if reason == "error":
            raise CortexError(
                "the engine failed this request with an internal error; it may be retried",
                code="engine_error",
            )
        mapped = _FINISH.get(reason or "stop", "stop")
        return "tool_calls" if mapped == "stop" and self._called_tools else mapped


def _tool_call(call: Any) -> ToolCallDelta:
    """One of vLLM's ``DeltaToolCall``s; vLLM's random ids get OpenAI's ``call_`` shape.

    Ids a parser derives from the model's own format (Kimi's ``functions.NAME:N``) stay as
    they are: the model reads them back in the next turn's history.
    """
    function = call.function
    call_id = call.id
    if call_id is not None and call_id.startswith(_VLLM_TOOL_ID_PREFIX):
        call_id = "call_" + call_id.removeprefix(_VLLM_TOOL_ID_PREFIX)
    return ToolCallDelta(
        index=call.index,
        id=call_id,
        name=function.name if function is not None else None,
        arguments=(function.arguments if function is not None else None) or "",
    )
