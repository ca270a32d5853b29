"""The neuron's HTTP API: lifecycle routes, OpenAI generation routes, health and discovery."""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any, TypeVar

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from cortex_kernel.bodies import decode_body
from cortex_kernel.config.schema import NeuronConfig
from cortex_kernel.drain import Drain
from cortex_kernel.errors import BadRequest, Conflict, CortexError, Overloaded
from cortex_kernel.harness import Delta, Harness
from cortex_kernel.node_wire import (
    REQUEST_CLASS_HEADER,
    ActivationState,
    DeviceMemory,
    Health,
    HostMemory,
    ModelEntry,
    ModelList,
    ModelLoad,
)
from cortex_kernel.openai_wire import ChatRequest, CompletionRequest, EmbeddingRequest, check_chat_request
from cortex_neuron.discovery import Discovery, discover, read_devices
from cortex_neuron.metrics import GenerationTimer, NeuronMetrics
from cortex_neuron.registry import ModelRecord, ModelRegistry, profile_for
from cortex_neuron.requests import ClientGone, until_disconnect
from cortex_neuron.responses import (
    ChunkWriter,
    DeltaPump,
    aggregate,
    chat_completion,
    embeddings_response,
    sse_stream,
    text_completion,
)
from cortex_neuron.wire import LoadRequest, ModelRequest, UnloadRequest

log = logging.getLogger(__name__)
T = TypeVar("T")
_encode = msgspec.json.Encoder().encode
EARLY_ERROR_WINDOW_S = 0.5


def json_response(body: Any, status: int = 200) -> Response:
    return Response(_encode(body), status_code=status, media_type="application/json")


class GuardedStream(StreamingResponse):
    """A streaming response that releases its admission slot however the response ends.

    A generator's ``finally`` never runs if the generator was never started (a client that
    left before the first byte), so the slot is held by an exit stack closed here instead.
    """

    def __init__(self, content: AsyncIterator[bytes], stack: AsyncExitStack) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )
        self._stack = stack

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._stack.aclose()


class Activation:
    """Progress of loading the default models after the listener bound."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.completed = 0
        self.failed: list[str] = []
        self.in_progress: str | None = None

    @property
    def state(self) -> str:
        return "ready" if self.completed + len(self.failed) >= self.total else "activating"

    def to_json(self) -> ActivationState:
        return ActivationState(
            state=self.state,
            pending=self.total - self.completed - len(self.failed),
            in_progress=self.in_progress,
            completed=self.completed,
            failed=list(self.failed),
        )


class NeuronAPI:
    """Handlers bound to one neuron's registry and configuration."""

    def __init__(self, config: NeuronConfig, registry: ModelRegistry, drain: Drain | None = None) -> None:
        self.config = config
        self.registry = registry
        self.drain = drain or Drain()
        self.streams: set[DeltaPump] = set()  # open streamed generations, ended by a drain
        self.metrics = NeuronMetrics(registry)
        self.started = time.time()
        self.activation = Activation(len(config.default_models))
        self._discovery: Discovery | None = None

    async def _body(self, request: Request, kind: type[T]) -> T:
        """Every route reads its body under the configured ``max_body_bytes`` (413 above it)."""
        return await decode_body(request, kind, self.config.max_body_bytes)

    # -- lifecycle of the daemon -------------------------------------------------------------

    async def activate(self) -> None:
        """Load the default models one after another, after the listener has bound."""
        for entry in self.config.default_models:
            profile = profile_for(entry, self.registry.catalogue)
            self.activation.in_progress = profile.id
            try:
                record = await self.registry.wait_loaded(await self.registry.load(profile))
            except CortexError as exc:
                log.warning("default model %s: %s", profile.id, exc.message)
                self.activation.failed.append(profile.id)
                continue
            if record.state == "ready":
                self.activation.completed += 1
            else:
                self.activation.failed.append(profile.id)
        self.activation.in_progress = None

    # -- neuron API ----------------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        budget = self.config.memory_budget_mb
        models = {
            record.id: ModelLoad(
                state=record.state,
                in_flight=record.gate.in_flight,
                queued=record.gate.queued,
                engine=_or_unset(self.registry.engine_stats(record)),
            )
            for record in self.registry
        }
        return json_response(
            Health(
                status="ok",
                name=self.config.name or os.uname().nodename,
                uptime_s=round(time.time() - self.started, 3),
                activation=self.activation.to_json(),
                models=models,
                lifecycle_cycles=self.registry.cycles,
                rss_bytes=_rss_bytes(),
                max_rss_bytes=usage.ru_maxrss * 1024,
                memory=HostMemory(
                    budget_bytes=budget * 1024 * 1024 if budget else None,
                    # What loading, waking and ready models hold or were promised (the
                    # figure the neuron checks a new load against; failed loads hold none).
                    reserved_bytes=self.registry.reserved_bytes,
                    available_bytes=_available_ram_bytes(),
                    # Sleeping models hold host RAM only, against their own budget.
                    host_budget_bytes=_mib_bytes(self.config.host_memory_budget_mb),
                    host_reserved_bytes=self.registry.host_reserved_bytes,
                ),
                devices=msgspec.convert(await asyncio.to_thread(_device_memory), list[DeviceMemory]),
            )
        )

    async def live(self, request: Request) -> Response:
        return json_response({"status": "live"})

    async def ready(self, request: Request) -> Response:
        """503 while default models still load or while the neuron drains: a load balancer (or
        an orchestrator's readiness probe) sends nothing new here then."""
        if self.drain.active:
            return json_response({"status": "draining"}, 503)
        if self.activation.state != "ready":
            return json_response({"status": "activating"}, 503)
        return json_response({"status": "ready"})

    async def end_streams_at_cutoff(self) -> None:
        """Shortly before the shutdown grace runs out, end every open stream with an error frame."""
        await self.drain.wait_cutoff()
        error = Overloaded("the neuron is shutting down; retry the request", code="shutting_down")
        for pump in list(self.streams):
            pump.interrupt(error)

    async def discovery(self, request: Request) -> Response:
        if self._discovery is None:
            self._discovery = await asyncio.to_thread(discover, self.registry.harness_names)
        return json_response(self._discovery)

    def _model_json(self, record: ModelRecord) -> ModelEntry:
        description = record.description
        return ModelEntry(
            id=record.id,
            state=record.state,
            harness=record.harness,
            task=record.profile.task,
            devices=description.devices if description else [],
            # A failed model holds nothing, whatever it measured before it failed.
            memory_bytes=description.memory_bytes if description and record.state != "failed" else None,
            context_length=(description.context_length if description else None)
            or record.profile.context_length,
            max_prompt_bytes=description.max_prompt_bytes if description else None,
            last_error=record.error,
            load_seconds=record.load_seconds,
            last_used=record.last_used,
            in_flight=record.gate.in_flight,
            queued=record.gate.queued,
        )

    async def list_models(self, request: Request) -> Response:
        return json_response(ModelList(data=[self._model_json(r) for r in self.registry]))

    async def load(self, request: Request) -> Response:
        body = await self._body(request, LoadRequest)
        model_id = body.profile.id if body.profile else body.model
        if not model_id:
            raise BadRequest("send 'model' (a catalogue id) or 'profile'", param="model")
        if body.model and body.profile and body.model != body.profile.id:
            raise BadRequest("'model' and 'profile.id' disagree", param="model")
        profile = self.registry.resolve_profile(model_id, body.profile)
        record = await self.registry.load(profile)
        if body.wait:
            await self.registry.wait_loaded(record)
            if record.task is not None and record.task.cancelled():
                raise Conflict(f"loading {model_id!r} was cancelled by an unload", code="load_cancelled")
            if record.state == "failed":
                # The caller's mistake (a source outside the roots, an unknown model) keeps its
                # 4xx; only a failure of this node is a 500.
                failure = record.failure
                message = f"loading {model_id!r} failed: {record.error}"
                if failure is None:
                    raise CortexError(message, code="load_failed")
                raise CortexError(
                    message,
                    status=failure.status,
                    type=failure.type,
                    code=failure.code or "load_failed",
                    param=failure.param,
                    retry_after=failure.retry_after,
                )
            if record.state == "sleeping":  # it was asleep and waking it failed
                raise CortexError(f"waking {model_id!r} failed: {record.error}", code="wake_failed")
        status = 200 if record.state == "ready" else 202
        return json_response(self._model_json(record), status)

    async def unload(self, request: Request) -> Response:
        body = await self._body(request, UnloadRequest)
        state = await self.registry.unload(body.model, force=body.force)
        return json_response({"id": body.model, "state": state})

    async def sleep(self, request: Request) -> Response:
        body = await self._body(request, ModelRequest)
        return json_response({"id": body.model, "state": await self.registry.set_sleep(body.model, True)})

    async def wake(self, request: Request) -> Response:
        body = await self._body(request, ModelRequest)
        return json_response({"id": body.model, "state": await self.registry.set_sleep(body.model, False)})

    async def restart_engines(self, request: Request) -> Response:
        restarted = await self.registry.restart_engines()
        return json_response({"restarted": restarted, "lifecycle_cycles": self.registry.cycles})

    async def metrics_route(self, request: Request) -> Response:
        budget = self.config.memory_budget_mb
        self.metrics.host.refresh(
            rss=_rss_bytes(),
            available=_available_ram_bytes(),
            budget=budget * 1024 * 1024 if budget else None,
            devices=await asyncio.to_thread(_device_memory),
        )
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # -- OpenAI ---------------------------------------------------------------------------------

    async def openai_models(self, request: Request) -> Response:
        data = [
            {
                "id": r.id,
                "object": "model",
                "created": int(r.load_started),
                "owned_by": "cortex",
                "state": r.state,
            }
            for r in self.registry
        ]
        return json_response({"object": "list", "data": data})

    async def chat(self, request: Request) -> Response:
        body = await self._body(request, ChatRequest)
        check_chat_request(body)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return await self._generate(request, body.model, "chat", body.stream, include_usage, body)

    async def completions(self, request: Request) -> Response:
        body = await self._body(request, CompletionRequest)
        check_chat_request(body)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return await self._generate(request, body.model, "text", body.stream, include_usage, body)

    async def _generate(
        self,
        request: Request,
        model: str,
        kind: str,
        stream: bool,
        include_usage: bool,
        body: ChatRequest | CompletionRequest,
    ) -> Response:
        endpoint = "chat" if kind == "chat" else "completions"
        try:
            record, harness = self.registry.ready(model)
        except CortexError as exc:
            self.metrics.requests.labels("_other", endpoint, f"{exc.status // 100}xx").inc()
            raise
        stack = AsyncExitStack()
        arrived = time.monotonic()
        try:
            await stack.enter_async_context(record.gate.admit(request.headers.get(REQUEST_CLASS_HEADER)))
        except CortexError:
            self.metrics.rejections.labels(model).inc()
            self.metrics.requests.labels(model, endpoint, "5xx").inc()
            raise
        admitted = time.monotonic()
        self.metrics.queue_wait.labels(model).observe(admitted - arrived)
        timer = self.metrics.timer(model, admitted)
        try:
            deltas = self._deltas(harness, model, body)
            if stream:
                pump = DeltaPump(self._counted(deltas, model, timer), self.streams)
                stack.push_async_callback(pump.close)
                await pump.raise_early_error(EARLY_ERROR_WINDOW_S)
                writer = ChunkWriter("chat" if kind == "chat" else "text", model, include_usage)
                self.metrics.requests.labels(model, endpoint, "2xx").inc()
                return GuardedStream(sse_stream(pump, writer), stack)
            async with stack:
                result = await until_disconnect(request, aggregate(self._counted(deltas, model, timer)))
            self.metrics.requests.labels(model, endpoint, "2xx").inc()
            build = chat_completion if kind == "chat" else text_completion
            return json_response(build(model, result))
        except ClientGone:
            await stack.aclose()
            return Response(status_code=499)
        except CortexError as exc:
            await stack.aclose()
            self.metrics.requests.labels(model, endpoint, f"{exc.status // 100}xx").inc()
            raise
        except BaseException:
            await stack.aclose()
            raise

    @staticmethod
    def _deltas(harness: Harness, model: str, body: ChatRequest | CompletionRequest) -> AsyncIterator[Delta]:
        if isinstance(body, ChatRequest):
            return harness.chat(model, body)
        return harness.complete(model, body)

    async def _counted(
        self, deltas: AsyncIterator[Delta], model: str, timer: GenerationTimer
    ) -> AsyncIterator[Delta]:
        try:
            async for delta in deltas:
                timer.delta(delta, time.monotonic())
                if delta.usage is not None:
                    self.metrics.tokens.labels(model, "prompt").inc(delta.usage.prompt_tokens)
                    self.metrics.tokens.labels(model, "completion").inc(delta.usage.completion_tokens)
                    self.metrics.tokens.labels(model, "cached").inc(delta.usage.cached_tokens)
                yield delta
            timer.finished(time.monotonic())
        finally:
            await deltas.aclose()  # type: ignore[attr-defined]

    async def embeddings(self, request: Request) -> Response:
        body = await self._body(request, EmbeddingRequest)
        if body.encoding_format not in ("float", "base64"):
            raise BadRequest("encoding_format must be 'float' or 'base64'", param="encoding_format")
        if not body.inputs:
            raise BadRequest("'input' must not be empty", param="input")
        record, harness = self.registry.ready(body.model)
        async with record.gate.admit(request.headers.get(REQUEST_CLASS_HEADER)):
            result = await until_disconnect(
                request, harness.embed(body.model, body.inputs, normalize=body.normalize)
            )
        self.metrics.tokens.labels(body.model, "prompt").inc(result.prompt_tokens)
        self.metrics.requests.labels(body.model, "embeddings", "2xx").inc()
        return json_response(embeddings_response(body.model, result, body.encoding_format))

    async def count_tokens(self, request: Request) -> Response:
        """Count through the model's admission gate: rendering and tokenizing a prompt costs CPU and
        memory in proportion to its size, so counts queue behind the same bound as generations."""
        body = await self._body(request, ChatRequest)
        record, harness = self.registry.ready(body.model)
        try:
            async with record.gate.admit(request.headers.get(REQUEST_CLASS_HEADER)):
                count = await until_disconnect(request, harness.count_tokens(body.model, body))
        except ClientGone:
            return Response(status_code=499)
        description = record.description
        limit = (description.context_length if description else None) or record.profile.context_length
        return json_response({"model": body.model, "prompt_tokens": count, "context_length": limit})

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/health", self.health, methods=["GET"]),
            Route("/health/live", self.live, methods=["GET"]),
            Route("/health/ready", self.ready, methods=["GET"]),
            Route("/discovery", self.discovery, methods=["GET"]),
            Route("/models", self.list_models, methods=["GET"]),
            Route("/models/load", self.load, methods=["POST"]),
            Route("/models/unload", self.unload, methods=["POST"]),
            Route("/models/sleep", self.sleep, methods=["POST"]),
            Route("/models/wake", self.wake, methods=["POST"]),
            Route("/engines/restart", self.restart_engines, methods=["POST"]),
            Route("/metrics", self.metrics_route, methods=["GET"]),
            Route("/v1/models", self.openai_models, methods=["GET"]),
            Route("/v1/chat/completions", self.chat, methods=["POST"]),
            Route("/v1/completions", self.completions, methods=["POST"]),
            Route("/v1/embeddings", self.embeddings, methods=["POST"]),
            Route("/v1/count_tokens", self.count_tokens, methods=["POST"]),
        ]


def _or_unset(engine: dict[str, float] | None) -> dict[str, Any] | msgspec.UnsetType:
    """The engine's own queue and KV-cache figures (vLLM); the field is left out when it has none."""
    return msgspec.UNSET if engine is None else dict(engine)


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _available_ram_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _device_memory() -> list[dict[str, Any]]:
    devices, _, _, _ = read_devices()
    return [
        {
            "index": d.index,
            "memory_free_bytes": d.memory_free_bytes,
            "memory_used_bytes": d.memory_used_bytes,
            "utilization_pct": d.utilization_pct,
        }
        for d in devices
    ]


def _mib_bytes(mib: int | None) -> int | None:
    """A ``*_mb`` setting in bytes (``None`` stays ``None``)."""
    return mib * 1024 * 1024 if mib else None
