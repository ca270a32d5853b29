"""The part of vLLM's OpenAI server that runs beside the engine: rendering prompts, choosing parsers.

A loaded model keeps one :class:`Frontend`. It wraps vLLM's ``OnlineRenderer`` (the chat
template with tools, ``tool_choice`` validation, parsers' request adjustments, completions'
tokenization) and the ``Parser`` class that ``ParserManager`` composes from the profile's
``tool_parser`` and ``reasoning_parser``, so prompts and parsed output are exactly what
``vllm serve`` would produce for the same model. Nothing here is hand-written chat templating
or tool-call parsing.

All of it runs in the neuron process on the CPU (the tokenizer, the Jinja template); the GPU
work happens in the engine-core process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vllm.entrypoints.serve.engine.protocol import ErrorResponse
from vllm.exceptions import VLLMValidationError
from vllm.parser.abstract_parser import Parser
from vllm.renderers.chat_utils.chat_template import load_chat_template
from vllm.renderers.inputs.preprocess import extract_prompt_components
from vllm.renderers.online_renderer import OnlineRenderer
from vllm.sampling_params import SamplingParams
from vllm.utils.mistral import is_mistral_tokenizer

from cortex_kernel.errors import BadRequest
from cortex_kernel.harness import ContextLengthExceeded
from cortex_kernel.openai_wire import ChatRequest, CompletionRequest
from cortex_vllm.options import VllmOptions
from cortex_vllm.stream import DeltaAdapter
from cortex_vllm.translate import (
    ExactChatRequest,
    ExactCompletionRequest,
    sampling_params,
    vllm_chat_request,
    vllm_completion_request,
)


@dataclass
class Prepared:
    """A request ready for ``AsyncLLM.generate``."""

    engine_input: Any
    prompt_token_ids: list[int]
    params: SamplingParams
    request: ExactChatRequest | ExactCompletionRequest
    parser: Parser | None = None
    generate_kwargs: dict[str, Any] = field(default_factory=dict)

    def adapter(self) -> DeltaAdapter:
        """A stream adapter for this request's outputs (parsers are per request: they keep state)."""
        if self.parser is None or not isinstance(self.request, ExactChatRequest):
            return DeltaAdapter(self.prompt_token_ids)
        return DeltaAdapter(self.prompt_token_ids, parser=self.parser, request=self.request)


class Frontend:
    """Rendering and output parsing for one loaded model.

    :param engine: the model's ``AsyncLLM`` (only ``model_config`` and ``renderer`` are used).
    :raises BadRequest: (``invalid_option``) an unknown parser name, a parser the model's
        tokenizer cannot serve, or an unreadable ``chat_template``.
    """

    def __init__(self, engine: Any, options: VllmOptions) -> None:
        self.model_config = engine.model_config
        self.context_length: int = int(self.model_config.max_model_len)
        self.default_max_tokens = options.default_max_tokens
        # The checkpoint's generation_config.json, as vLLM's server applies it by default.
        self.defaults: dict[str, Any] = self.model_config.get_diff_sampling_param()
        try:
            template = load_chat_template(options.chat_template) if options.chat_template else None
            self.online = OnlineRenderer(
                self.model_config,
                engine.renderer,
                request_logger=None,
                chat_template=template,
                chat_template_content_format="auto",
                enable_auto_tools=options.tool_parser is not None,
                tool_parser=options.tool_parser,
                reasoning_parser=options.reasoning_parser,
                default_chat_template_kwargs=dict(options.chat_template_kwargs),
            )
        except (TypeError, ValueError, OSError, KeyError) as exc:
            raise BadRequest(f"cannot set up the model's frontend: {exc}", code="invalid_option") from exc
        self.parser_cls: type[Parser] | None = self.online.parser
        # As in vLLM's server: tools need a tool parser, unless the model's own format has one.
        self._tools_need_parser = (
            (self.parser_cls is None or self.parser_cls.tool_parser_cls is None)
            and not self.online.use_harmony
            and not is_mistral_tokenizer(engine.renderer.tokenizer)
        )

    @property
    def capabilities(self) -> list[str]:
        found = ["chat", "completions", "structured_outputs"]
        if self.parser_cls is not None and self.parser_cls.tool_parser_cls is not None:
            found.append("tools")
        if self.parser_cls is not None and self.parser_cls.reasoning_parser_cls is not None:
            found.append("reasoning")
        return found

    async def render_chat(self, request: ChatRequest) -> tuple[ExactChatRequest, Any, list[int]]:
        """Apply the chat template (with tools) and tokenize, as ``vllm serve`` would."""
        vreq = vllm_chat_request(request)
        if vreq.tools and vreq.tool_choice != "none" and self._tools_need_parser:
            raise BadRequest(
                "this model has no tool parser, so it cannot take 'tools'; set the model's "
                "'tool_parser' option (for example \"hermes\")",
                code="tools_not_supported",
                param="tools",
            )
        result = await self._render(self.online.render_chat(vreq))
        return vreq, result[1][0], self._token_ids(result[1][0])

    async def prepare_chat(self, request: ChatRequest) -> Prepared:
        vreq, engine_input, ids = await self.render_chat(request)
        self._check_length(ids, "messages")
        params = sampling_params(vreq, self._max_tokens(request.output_limit, len(ids)), self.defaults)
        prepared = Prepared(engine_input=engine_input, prompt_token_ids=ids, params=params, request=vreq)
        if self.parser_cls is None:
            return prepared
        template_kwargs = self.online.effective_chat_template_kwargs(vreq)
        tools: Any = vreq.tools  # vLLM's own serving code passes the same list
        parser = self.parser_cls(
            self.online.renderer.get_tokenizer(),
            tools,
            chat_template_kwargs=template_kwargs,
            model_config=self.model_config,
        )
        prepared.parser = parser
        # What vLLM's server passes so that structured output starts after the reasoning.
        prepared.generate_kwargs["reasoning_ended"] = vreq.resolve_reasoning_ended(parser, ids)
        if parser.reasoning_parser is not None:
            prepared.generate_kwargs["reasoning_parser_kwargs"] = {"chat_template_kwargs": template_kwargs}
        return prepared

    async def prepare_completion(self, request: CompletionRequest) -> Prepared:
        if isinstance(request.prompt, list) and len(request.prompt) != 1:
            raise BadRequest("only one prompt per request is supported", code="invalid_value", param="prompt")
        vreq = vllm_completion_request(request)
        result = await self._render(self.online.render_completion(vreq))
        engine_input = result[0]
        ids = self._token_ids(engine_input)
        if not ids:
            raise BadRequest("'prompt' must not be empty", code="invalid_value", param="prompt")
        self._check_length(ids, "prompt")
        params = sampling_params(vreq, self._max_tokens(request.max_tokens, len(ids)), self.defaults)
        return Prepared(engine_input=engine_input, prompt_token_ids=ids, params=params, request=vreq)

    async def _render(self, rendering: Any) -> Any:
        """Await a renderer call; vLLM's request errors become 400s that say what was wrong."""
        try:
            result = await rendering
        except VLLMValidationError as exc:
            raise BadRequest(str(exc.args[0]), code="invalid_value", param=exc.parameter) from exc
        except (ValueError, TypeError, KeyError) as exc:  # template errors, malformed messages
            raise BadRequest(f"cannot render the prompt: {exc}", code="invalid_prompt") from exc
        if isinstance(result, ErrorResponse):
            raise BadRequest(result.error.message, code="invalid_value", param=result.error.param)
        return result

    def _token_ids(self, engine_input: Any) -> list[int]:
        ids = extract_prompt_components(self.model_config, engine_input).token_ids
        return list(ids or [])

    def _check_length(self, ids: list[int], param: str) -> None:
        """The prompt must leave room for at least one generated token."""
        if len(ids) >= self.context_length:
            error = ContextLengthExceeded(len(ids), self.context_length)
            error.param = param
            raise error

    def _max_tokens(self, requested: int | None, prompt_tokens: int) -> int:
        """The request's limit, else ``default_max_tokens``, else the checkpoint's, clamped to the room left.

        A limit larger than the room left is clamped rather than refused (the reply then ends
        with ``length``), as vLLM's server and the transformers harness do: clients such as
        Claude Code routinely ask for more output than a small model's context holds.
        """
        room = self.context_length - prompt_tokens
        wanted = requested or self.default_max_tokens or self.defaults.get("max_tokens") or room
        return max(1, min(int(wanted), room))
