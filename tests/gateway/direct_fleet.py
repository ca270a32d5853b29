"""The real gateway app served in-process on the httptools server, and a neuron double that can
misbehave on cue: what the direct relay's tests (``test_direct_relay.py``) stand on.

The gateway is built as the daemon builds it (the gateway, evictor and metrics plugins through
``create_app``) and served by ``cortex_kernel.serving._serve`` on loopback, with a recording
event sink, so a test sees every ``RequestFinished`` and can run the same requests through a
gateway with ``[gateway] direct_relay`` on and one with it off. :class:`RawNeuron` answers the
gateway's polls like a neuron holding one ready model and answers each chat request with the
next scripted :data:`Action`: exact bytes, including the broken ones no real neuron sends on
purpose (a reply cut mid-stream, a connection closed before any byte, a stall).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import h11

import cortex_evictors.plugin
import cortex_gateway.plugin
from cortex_kernel.config.addresses import parse_listen
from cortex_kernel.config.loader import LoadedConfig
from cortex_kernel.config.schema import Catalogue, CortexConfig, ModelProfile
from cortex_kernel.events import Event, EventSink, RequestFinished
from cortex_kernel.hookspecs import hookimpl
from cortex_kernel.kernel import Kernel, Role
from cortex_kernel.plugins import build_plugin_manager
from cortex_kernel.serving import Listener, _serve
from tests.daemons import free_port

MODEL = "scripted"
# Write a chat reply (the reader holds what the gateway sends next); true: keep the connection.
Action = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[bool]]


SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def delta(text: str) -> bytes:
    return sse({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}]})


def usage_frame(prompt: int, completion: int) -> bytes:
    return sse(
        {
            "object": "chat.completion.chunk",
            "choices": [],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion},
        }
    )


def stream(*frames: bytes, status: int = 200, end: bool = True) -> Action:
    """A chunked SSE reply of ``frames`` (each its own chunk and write), ended unless ``end`` is false
    (then the connection is closed after the last frame: a neuron lost mid-stream)."""

    async def act(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(
            b"HTTP/1.1 %d OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
            b"transfer-encoding: chunked\r\n\r\n" % status
        )
        for frame in frames:
            writer.write(chunk(frame))
            await writer.drain()
            await asyncio.sleep(0.001)
        if not end:
            return False
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    return act


def whole(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Action:
    """A reply with a ``Content-Length`` body."""

    async def act(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items()).encode()
        writer.write(
            b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%b\r\n%b"
            % (status, len(body), extra, body)
        )
        await writer.drain()
        return True

    return act


async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """Close the connection without a byte: a pooled connection the neuron had let go of."""
    return False


async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """Bytes that are not HTTP, then close: a node that failed before its reply began."""
    writer.write(b"this is not a status line\r\n\r\n")
    await writer.drain()
    return False


def stall(*frames: bytes) -> Action:
    """A stream that sends ``frames`` and then nothing, until the gateway gives up on it."""

    async def act(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(SSE_HEAD)
        for frame in frames:
            writer.write(chunk(frame))
        await writer.drain()
        await reader.read()  # until the gateway gives up and closes the connection
        return False

    return act


class RawNeuron:
    """A neuron double on loopback: the poll routes of a node holding ``scripted`` ready, and the
    chat route answering with the next queued :data:`Action` (a short SSE reply when none is)."""

    def __init__(self) -> None:
        self.actions: deque[Action] = deque()
        self.chats: list[bytes] = []
        self.hung_up = 0  # chat connections the gateway closed on us
        self.url = ""
        self._server: asyncio.Server | None = None

    def then(self, *actions: Action) -> RawNeuron:
        self.actions.extend(actions)
        return self

    async def start(self) -> RawNeuron:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                target = lines[0].split(b" ")[1]
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                if target == b"/v1/chat/completions":
                    self.chats.append(body)
                    action = self.actions.popleft() if self.actions else stream(delta("hi"))
                    if not await action(reader, writer):
                        break
                else:
                    self._poll(writer, target)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            self.hung_up += 1
        except asyncio.CancelledError:
            pass
        finally:
            writer.close()

    @staticmethod
    def _poll(writer: asyncio.StreamWriter, target: bytes) -> None:
        entry = {"id": MODEL, "state": "ready", "context_length": 4096, "in_flight": 0, "queued": 0}
        answers: dict[bytes, Any] = {
            b"/discovery": {"hostname": "raw", "devices": [], "harnesses": ["scripted"]},
            b"/models": {"object": "list", "data": [entry]},
            b"/health": {"status": "ok", "models": {MODEL: {"state": "ready", "in_flight": 0, "queued": 0}}},
        }
        body = json.dumps(answers.get(target, {})).encode()
        status = 200 if target in answers else 404
        writer.write(
            b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%b"
            % (status, len(body), body)
        )


class Recorder:
    """The event sink plugin: every event the gateway emits, in order."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    @hookimpl
    def register_event_sinks(self, role: Role) -> list[EventSink] | None:
        recorder = self

        class Sink:
            def handle(self, event: Event) -> None:
                recorder.events.append(event)

        return [Sink()] if role == "gateway" else None

    def finished(self) -> list[RequestFinished]:
        return [e for e in self.events if isinstance(e, RequestFinished)]


@dataclass
class Served:
    """A gateway being served: its port and the events it emitted."""

    port: int
    recorder: Recorder
    kernel: Kernel
    app: Any = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def finished(self) -> list[RequestFinished]:
        return self.recorder.finished()


@contextlib.asynccontextmanager
async def served_gateway(
    neuron_url: str | dict[str, str],
    config: CortexConfig | None = None,
    extra: tuple[tuple[str, Any], ...] = (),
    tables: dict[str, Any] | None = None,
) -> AsyncIterator[Served]:
    """The gateway app over the neuron at ``neuron_url`` (``n1``), or the neurons named in it,
    with ``config``'s other settings and the plugin ``tables`` (``{"console": {...}}``), served on
    a free loopback port by the httptools server until the block ends; ``extra`` plugins too."""
    import msgspec

    from cortex_kernel.app import create_app
    from cortex_kernel.config.schema import NeuronEndpoint

    base = config or CortexConfig()
    urls = {"n1": neuron_url} if isinstance(neuron_url, str) else neuron_url
    neurons = [NeuronEndpoint(name=name, endpoint=url) for name, url in urls.items()]
    value = msgspec.structs.replace(base, neurons=neurons)
    catalogue = Catalogue(models=[ModelProfile(id=MODEL, harness="scripted", min_devices=0)])
    loaded = LoadedConfig(
        kind="cortex", value=value, path=None, sources={}, catalogue=catalogue, tables=dict(tables or {})
    )
    recorder = Recorder()
    pm = build_plugin_manager(
        load_entrypoints=False,
        extra=[
            ("gateway", cortex_gateway.plugin),
            ("evictors", cortex_evictors.plugin),
            ("recorder", recorder),
            *extra,
        ],
    )
    kernel = Kernel(role="gateway", config=loaded, pm=pm)
    app = create_app(kernel)
    port = free_port()
    stop = asyncio.Event()
    listener = Listener(app, parse_listen(f"127.0.0.1:{port}"), "gateway", server="httptools")
    task = asyncio.get_running_loop().create_task(_serve(listener, 2.0, stop))
    try:
        for _ in range(200):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                if task.done():
                    task.result()
                await asyncio.sleep(0.02)
                continue
            writer.close()
            break
        yield Served(port, recorder, kernel, app)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


@dataclass
class Reply:
    """A reply as h11 read it off the wire."""

    status: int
    headers: dict[bytes, bytes]
    body: bytes
    chunked: bool


class Client:
    """One keep-alive connection to the gateway; each reply read with h11."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.h11 = h11.Connection(h11.CLIENT)

    async def __aenter__(self) -> Client:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.writer is not None:
            self.writer.close()

    async def post(self, body: dict[str, Any] | bytes, headers: dict[str, str] | None = None) -> Reply:
        assert self.reader is not None and self.writer is not None
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        extra = headers or {}
        fields = [("host", "gateway"), ("content-length", str(len(data)))]
        fields += [("content-type", "application/json")] if "content-type" not in extra else []
        fields += list(extra.items())
        if self.h11.our_state is h11.DONE:
            self.h11.start_next_cycle()
        self.writer.write(
            self.h11.send(h11.Request(method="POST", target="/v1/chat/completions", headers=fields))
        )
        self.writer.write(self.h11.send(h11.Data(data=data)) + self.h11.send(h11.EndOfMessage()))
        response: h11.Response | None = None
        body_parts: list[bytes] = []
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                received = await asyncio.wait_for(self.reader.read(65536), 20)
                self.h11.receive_data(received)
                continue
            if isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                body_parts.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionError("the gateway closed the connection mid-reply")
        assert response is not None
        got = {bytes(k): bytes(v) for k, v in response.headers}
        return Reply(
            response.status_code, got, b"".join(body_parts), got.get(b"transfer-encoding") == b"chunked"
        )
