"""A sample third-party plugin written only against ``cortex_kernel``'s public API.

It is never run; ``tests/typing/test_public_api.py`` type-checks it with ``mypy --strict``
against the package, so a change to the public plugin API that would break a plugin author's
code fails the suite. It implements every kind of plugin object: hook implementations, a
harness, an evictor, a dialect, a router and an event sink, and it owns two configuration tables
(``[shout]`` and its router's ``[routing.emptiest-first]``), read back typed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from cortex_kernel import (
    AppPart,
    CatalogueEntry,
    ChatRequest,
    CompletionRequest,
    ConfigTable,
    ContextLengthExceeded,
    CortexError,
    Delta,
    Dialect,
    Embeddings,
    Event,
    EventSink,
    EvictionRequest,
    Evictor,
    Harness,
    HarnessContext,
    HarnessSpec,
    Kernel,
    ModelDescription,
    ModelProfile,
    NotFound,
    RequestFinished,
    Role,
    RouteChoice,
    Router,
    RoutingFacts,
    StashKey,
    Upstream,
    Usage,
    hookimpl,
)


class EchoOptions(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    prefix: str = ""


class EchoHarness:
    """Streams the last user message back."""

    name = "echo"
    supports_sleep = False

    def __init__(self, context: HarnessContext) -> None:
        self.options = msgspec.convert(context.options, EchoOptions)
        self.loaded: dict[str, ModelProfile] = {}

    async def load(self, profile: ModelProfile) -> ModelDescription:
        self.loaded[profile.id] = profile
        return ModelDescription(context_length=profile.context_length or 1024)

    async def unload(self, model_id: str) -> None:
        self.loaded.pop(model_id, None)

    async def sleep(self, model_id: str) -> None:
        raise CortexError("echo cannot sleep", status=409)

    async def wake(self, model_id: str) -> None:
        return None

    async def chat(self, model_id: str, request: ChatRequest) -> AsyncIterator[Delta]:
        if model_id not in self.loaded:
            raise NotFound(f"{model_id} is not loaded")
        yield Delta(text=self.options.prefix)
        yield Delta(finish_reason="stop", usage=Usage(prompt_tokens=1, completion_tokens=1))

    async def complete(self, model_id: str, request: CompletionRequest) -> AsyncIterator[Delta]:
        yield Delta(finish_reason="stop", usage=Usage(prompt_tokens=1, completion_tokens=0))

    async def embed(self, model_id: str, inputs: list[str], *, normalize: bool) -> Embeddings:
        return Embeddings(vectors=[[0.0] for _ in inputs], prompt_tokens=len(inputs))

    async def count_tokens(self, model_id: str, request: ChatRequest) -> int:
        limit = self.describe(model_id).context_length or 0
        if limit < 1:
            raise ContextLengthExceeded(1, limit)
        return 1

    def describe(self, model_id: str) -> ModelDescription:
        return ModelDescription(context_length=self.loaded[model_id].context_length)


def build_harness(context: HarnessContext) -> Harness:
    return EchoHarness(context)


class BiggestFirst:
    """Evicts the largest idle residents first."""

    name = "biggest-first"

    def choose(self, request: EvictionRequest) -> list[str] | None:
        chosen, freed = [], 0
        for resident in sorted(request.residents, key=lambda r: r.memory_bytes, reverse=True):
            if freed >= request.needed_bytes:
                break
            chosen.append(resident.id)
            freed += resident.memory_bytes
        return chosen if freed >= request.needed_bytes else None


class ShoutSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """``[shout]`` in ``cortex.toml``."""

    path: str = "/v1/shout"
    api_token: str | None = None


class EmptiestSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """``[routing.emptiest-first]``: how much an engine's waiting request weighs."""

    queue_weight: float = 1.0


SHOUT_TABLE = ConfigTable("shout", ShoutSettings)
EMPTIEST_TABLE = ConfigTable("routing.emptiest-first", EmptiestSettings)


def shout_settings(kernel: Kernel) -> ShoutSettings:
    # Typed, not Any: with warn_return_any (mypy --strict) an untyped reader would fail here.
    return kernel.config.table(SHOUT_TABLE)


class EmptiestFirst:
    """Sends each request to the replica with the fewest requests in flight, counting engine
    queues where the neuron reports them."""

    name = "emptiest-first"

    def __init__(self, settings: EmptiestSettings) -> None:
        self.queue_weight = settings.queue_weight

    def route(self, facts: RoutingFacts) -> RouteChoice:
        def load(replica_name: str) -> float:
            replica = next(r for r in facts.replicas if r.name == replica_name)
            return replica.in_flight + self.queue_weight * replica.engine.get("requests_waiting", 0.0)

        order = sorted((r.name for r in facts.replicas), key=load)
        return RouteChoice(order=tuple(order), outcome="emptiest")


class ShoutDialect:
    """Lists models in capitals at ``/v1/shout``; errors as ``{"shout": MESSAGE}``."""

    name = "shout"

    def __init__(self, settings: ShoutSettings) -> None:
        self.path = settings.path

    def routes(self, upstream: Upstream) -> list[BaseRoute]:
        async def listing(request: Request) -> Response:
            entry = upstream.model(upstream.resolve("default"))
            names = [model.id.upper() for model in upstream.models()]
            return JSONResponse({"models": names, "default": entry.id if entry else None})

        return [Route(self.path, listing)]

    def render_models(self, request: Request, models: list[CatalogueEntry]) -> Response | None:
        return JSONResponse([m.id.upper() for m in models]) if "x-shout" in request.headers else None

    def claims(self, request: HTTPConnection) -> bool:
        return request.url.path.startswith(self.path)

    def render_error(self, error: CortexError) -> Response:
        return JSONResponse({"shout": error.message.upper()}, status_code=error.status)


class Counter:
    def __init__(self) -> None:
        self.finished = 0

    def handle(self, event: Event) -> None:
        if isinstance(event, RequestFinished):
            self.finished += 1


COUNTER = StashKey[Counter]()


@hookimpl
def register_config_tables() -> list[ConfigTable[msgspec.Struct]]:
    return [SHOUT_TABLE, EMPTIEST_TABLE]


@hookimpl
def register_harnesses() -> list[HarnessSpec]:
    return [HarnessSpec(name="echo", factory=build_harness, options=EchoOptions)]


@hookimpl
def register_evictors() -> list[Evictor]:
    return [BiggestFirst()]


@hookimpl
def register_routers(kernel: Kernel) -> list[Router]:
    return [EmptiestFirst(kernel.config.table(EMPTIEST_TABLE))]


@hookimpl
def register_dialects(kernel: Kernel) -> list[Dialect]:
    return [ShoutDialect(shout_settings(kernel))]


@hookimpl
def register_event_sinks(role: Role, kernel: Kernel) -> list[EventSink] | None:
    if role != "gateway":
        return None
    return [kernel.stash.setdefault(COUNTER, Counter)]


@hookimpl
def register_app_parts(role: Role, kernel: Kernel) -> list[AppPart] | None:
    counter = kernel.stash.setdefault(COUNTER, Counter)

    async def count(request: Request) -> Response:
        return JSONResponse({"finished": counter.finished})

    return [AppPart(name="counter", routes=[Route("/counter", count)])] if role == "gateway" else None
