"""A soak: a gateway over two neurons under a mixed load for a while, watching for failures and growth.

Each kind of traffic has its own workers, each sending its next request when the last ends:
OpenAI streams and non-streams, completions, Anthropic messages (streamed and not),
count_tokens, embeddings, clients that leave mid-stream, slow readers, and hostile requests
from the campaign's generator. Every answer is judged; each daemon's RSS is sampled throughout.

Read the result as: ``failed`` must be 0 for every kind (a hostile request fails only on a 5xx
or an answer in the wrong envelope; a client that leaves on purpose never counts as failed),
and the RSS growth from the baseline (minute 2 by default, once start-up allocations settled)
to the end should stay under 5 %.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tests.campaign.client import build, read_answer, send
from tests.campaign.fleet import ALIAS, CHAT, CLIENT_KEY, EMBED, Fleet
from tests.campaign.hostile import GATEWAY_ROUTES, NEURON_ROUTES, draw_cases
from tests.campaign.runner import judge

HEADERS = [("Content-Type", "application/json"), ("Authorization", f"Bearer {CLIENT_KEY}")]
MESSAGES = [{"role": "user", "content": "tell me something"}]


def _request(path: str, body: dict[str, Any]) -> bytes:
    return build("POST", path, HEADERS, json.dumps(body).encode())


@dataclass
class Counts:
    sent: Counter[str] = field(default_factory=Counter)
    answered: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)

    def fail(self, kind: str, reason: str) -> None:
        self.failed[kind] += 1
        self.reasons[f"{kind}: {reason[:160]}"] += 1


async def _stream(
    port: int, data: bytes, *, leave_after: int | None = None, pause_s: float = 0.0
) -> str | None:
    """Send a streamed request and read its SSE body; None when it ended properly, else why not."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    try:
        async with asyncio.timeout(120):
            writer.write(data)
            await writer.drain()
            head = await read_answer(reader, head_only=True)
            if head.status != 200:
                body = await reader.read(2000)
                return f"status {head.status}: {body[:200]!r}"
            events = 0
            ended = False
            while line := await reader.readline():
                if line.startswith((b"data:", b"event:")):
                    events += 1
                    if b"[DONE]" in line or b"message_stop" in line:
                        ended = True
                    if b'"error"' in line:
                        return f"error event: {line[:200]!r}"
                if leave_after is not None and events >= leave_after:
                    return None  # the client walks away on purpose
                if ended and line == b"0\r\n":
                    break
                if pause_s:
                    await asyncio.sleep(pause_s)
                if ended:
                    break
            return None if ended else "stream ended without its terminal event"
    except TimeoutError:
        return "no end within 120 s"
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _whole(port: int, data: bytes, want: str) -> str | None:
    answer = await send(port, data, limit_s=120)
    if answer.status != 200:
        return f"status {answer.status}: {answer.body[:200]!r}"
    body = answer.json()
    if not isinstance(body, dict) or want not in body:
        return f"no {want!r} in {answer.body[:200]!r}"
    return None


def _kinds(fleet: Fleet, seed: int) -> dict[str, object]:
    port = fleet.gateway.port
    rng = random.Random(seed)
    hostile = draw_cases(GATEWAY_ROUTES + NEURON_ROUTES, 2000, seed=seed)
    ports = {"gateway": port, "neuron": fleet.neurons[0].port}

    def model() -> str:
        return rng.choice([CHAT, ALIAS])

    async def stream() -> str | None:
        body = {"model": model(), "messages": MESSAGES, "max_tokens": 16, "stream": True}
        return await _stream(port, _request("/v1/chat/completions", body))

    async def plain() -> str | None:
        body = {"model": model(), "messages": MESSAGES, "max_tokens": 16}
        return await _whole(port, _request("/v1/chat/completions", body), "choices")

    async def completion() -> str | None:
        body = {"model": model(), "prompt": "once upon a time", "max_tokens": 16}
        return await _whole(port, _request("/v1/completions", body), "choices")

    async def messages() -> str | None:
        body = {"model": CHAT, "messages": MESSAGES, "max_tokens": 16}
        return await _whole(port, _request("/v1/messages", body), "content")

    async def messages_stream() -> str | None:
        body = {"model": CHAT, "messages": MESSAGES, "max_tokens": 16, "stream": True}
        return await _stream(port, _request("/v1/messages", body))

    async def count_tokens() -> str | None:
        body = {"model": CHAT, "messages": MESSAGES}
        return await _whole(port, _request("/v1/messages/count_tokens", body), "input_tokens")

    async def embeddings() -> str | None:
        body = {"model": EMBED, "input": ["one sentence", "another one"]}
        return await _whole(port, _request("/v1/embeddings", body), "data")

    async def disconnect() -> str | None:
        body = {"model": model(), "messages": MESSAGES, "max_tokens": 64, "stream": True, "ignore_eos": True}
        return await _stream(port, _request("/v1/chat/completions", body), leave_after=rng.randint(1, 8))

    async def slow_reader() -> str | None:
        body = {"model": model(), "messages": MESSAGES, "max_tokens": 32, "stream": True}
        return await _stream(port, _request("/v1/chat/completions", body), pause_s=0.05)

    async def hostile_request() -> str | None:
        case = rng.choice(hostile)
        answer = await send(
            ports[case.route.target],
            case.data,
            limit_s=120,
            head_only=case.method == "HEAD",
            endless=case.route.endless,
        )
        label, problem = judge(case, answer)
        return (
            None
            if problem is None
            else f"{case.route.name} [{', '.join(case.mistakes)}] -> {label}: {problem}"
        )

    return {
        "stream": stream,
        "non-stream": plain,
        "completion": completion,
        "messages": messages,
        "messages-stream": messages_stream,
        "count_tokens": count_tokens,
        "embeddings": embeddings,
        "disconnect": disconnect,
        "slow-reader": slow_reader,
        "hostile": hostile_request,
    }


@dataclass
class SoakResult:
    counts: Counts
    rss: list[tuple[float, dict[str, int]]]
    baseline_s: float
    seconds: float
    busy: dict[str, int]
    alive: dict[str, bool]
    tracebacks: dict[str, int]

    def rss_at(self, at_s: float) -> dict[str, int]:
        return min(self.rss, key=lambda sample: abs(sample[0] - at_s))[1]

    def growth(self) -> dict[str, float]:
        base, end = self.rss_at(self.baseline_s), self.rss[-1][1]
        return {name: 100.0 * (end[name] - base[name]) / base[name] for name in end if name in base}

    @property
    def failed(self) -> int:
        return sum(self.counts.failed.values())

    def report(self) -> str:
        c = self.counts
        lines = [f"soak: {self.seconds:.0f}s, {sum(c.sent.values())} requests", ""]
        lines.append(f"  {'kind':<16}{'sent':>8}{'answered':>10}{'failed':>8}")
        for kind in sorted(c.sent):
            lines.append(f"  {kind:<16}{c.sent[kind]:>8}{c.answered[kind]:>10}{c.failed[kind]:>8}")
        lines.append(f"  {'all':<16}{sum(c.sent.values()):>8}{sum(c.answered.values()):>10}{self.failed:>8}")
        if c.reasons:
            lines.append("\n  failures:")
            lines.extend(f"    {n} x {reason}" for reason, n in c.reasons.most_common(20))
        lines.append("\n  RSS (MiB)        start   baseline     middle        end   growth baseline->end")
        start, base = self.rss[0][1], self.rss_at(self.baseline_s)
        middle, end = self.rss_at(self.seconds / 2), self.rss[-1][1]
        growth = self.growth()
        for name in sorted(end):
            lines.append(
                f"  {name:<12}{start.get(name, 0) / 1024:>9.1f}{base.get(name, 0) / 1024:>11.1f}"
                f"{middle.get(name, 0) / 1024:>11.1f}{end[name] / 1024:>11.1f}"
                f"{growth.get(name, 0.0):>+9.1f} %"
            )
        lines.append(f"  (baseline at {self.baseline_s:.0f}s)")
        lines.append(
            f"\n  alive: {self.alive}  counters not 0: {self.busy or 'none'}  tracebacks: {self.tracebacks}"
        )
        return "\n".join(lines)


async def soak(
    fleet: Fleet,
    duration_s: float,
    *,
    workers: dict[str, int] | None = None,
    baseline_s: float | None = None,
    seed: int = 0,
    progress: bool = False,
) -> SoakResult:
    """Run the mixed load for ``duration_s`` seconds and judge it."""
    kinds = _kinds(fleet, seed)
    per_kind = {kind: 1 for kind in kinds} | {"stream": 2, "hostile": 2} | (workers or {})
    counts = Counts()
    started = time.monotonic()
    deadline = started + duration_s
    rss: list[tuple[float, dict[str, int]]] = [(0.0, fleet.rss_kb())]

    async def worker(kind: str) -> None:
        run = kinds[kind]
        while time.monotonic() < deadline:
            counts.sent[kind] += 1
            try:
                problem = await run()  # type: ignore[operator]
            except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if problem is None:
                counts.answered[kind] += 1
            else:
                counts.fail(kind, problem)

    async def sampler() -> None:
        while time.monotonic() < deadline:
            await asyncio.sleep(min(5.0, max(0.0, deadline - time.monotonic())))
            rss.append((time.monotonic() - started, fleet.rss_kb()))
            if progress:
                sent, failed = sum(counts.sent.values()), sum(counts.failed.values())
                print(f"  {rss[-1][0]:6.0f}s sent {sent} failed {failed} rss {rss[-1][1]}", flush=True)

    tasks = [worker(kind) for kind, n in per_kind.items() for _ in range(n)]
    await asyncio.gather(sampler(), *tasks)
    seconds = time.monotonic() - started
    from tests.campaign.runner import settle

    busy = await settle(fleet)
    rss.append((seconds, fleet.rss_kb()))
    return SoakResult(
        counts=counts,
        rss=rss,
        baseline_s=baseline_s if baseline_s is not None else min(120.0, duration_s / 4),
        seconds=seconds,
        busy=busy,
        alive=fleet.alive(),
        tracebacks=fleet.tracebacks(),
    )
