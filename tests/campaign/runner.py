"""Send the campaign's cases to a fleet, judge every answer, and count them by route and status.

The verdict on one answer (:func:`judge`): a 5xx is a failure, except 503 with ``Retry-After``
(a daemon honestly overloaded, counted apart); a 4xx must come in the caller's envelope (the
Anthropic one on ``/v1/messages*``, OpenAI's everywhere else) when the request reached its route;
no answer at all is a failure unless the case was allowed to be refused by a close.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

from tests.campaign.client import Answer, exchange, send
from tests.campaign.fleet import Fleet
from tests.campaign.hostile import Case
from tests.campaign.rawhttp import RawCase


def envelope_problem(case: Case, answer: Answer) -> str | None:
    body = answer.json()
    if case.route.dialect == "anthropic":
        ok = (
            isinstance(body, dict)
            and body.get("type") == "error"
            and isinstance(body.get("error"), dict)
            and {"type", "message"} <= set(body["error"])
        )
        return None if ok else "not in the Anthropic error envelope"
    ok = (
        isinstance(body, dict)
        and isinstance(body.get("error"), dict)
        and {"type", "message"} <= set(body["error"])
    )
    return None if ok else "not in the OpenAI error envelope"


def judge(case: Case, answer: Answer) -> tuple[str, str | None]:
    """``(label, problem)``: the label counted for the answer, and what is wrong with it (or None)."""
    if answer.status is None:
        label = f"no-answer:{answer.error}"
        if case.may_close and answer.error == "closed":
            return label, None
        return label, f"no answer ({answer.error})"
    label = str(answer.status)
    if answer.status >= 500:
        if answer.status == 503 and "retry-after" in answer.headers:
            return "503-overloaded", None
        return label, f"server error {answer.status}"
    if answer.status >= 400 and case.matched and case.method != "HEAD":
        return label, envelope_problem(case, answer)
    return label, None


@dataclass
class Failure:
    route: str
    mistakes: list[str]
    label: str
    problem: str
    request: bytes
    answer: bytes

    def __str__(self) -> str:
        return (
            f"{self.route} [{', '.join(self.mistakes)}] -> {self.label}: {self.problem}\n"
            f"    request: {self.request[:300]!r}\n    answer: {self.answer[:300]!r}"
        )


@dataclass
class Tally:
    """What a run saw: answers by route and label, and every failure in detail."""

    by_route: Counter[tuple[str, str]] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)
    sent: int = 0
    seconds: float = 0.0

    def add(self, route: str, label: str) -> None:
        self.sent += 1
        self.by_route[(route, label)] += 1

    @property
    def server_errors(self) -> int:
        return sum(
            n
            for (_, label), n in self.by_route.items()
            if label.startswith("5") and label != "503-overloaded"
        )

    def table(self) -> str:
        routes = sorted({route for route, _ in self.by_route})
        lines = []
        for route in routes:
            counts = sorted((label, n) for (r, label), n in self.by_route.items() if r == route)
            lines.append(f"  {route:<48} " + "  ".join(f"{label}:{n}" for label, n in counts))
        statuses: Counter[str] = Counter()
        for (_, label), n in self.by_route.items():
            statuses[label] += n
        lines.append("  " + "-" * 60)
        lines.append(f"  {'all':<48} " + "  ".join(f"{label}:{n}" for label, n in sorted(statuses.items())))
        return "\n".join(lines)


async def run_cases(fleet: Fleet, cases: list[Case], tally: Tally, *, concurrency: int = 8) -> None:
    """Send ``cases`` with ``concurrency`` connections at a time and judge each answer."""
    ports = {"gateway": fleet.gateway.port, "neuron": fleet.neurons[0].port}
    queue = list(reversed(cases))

    async def worker() -> None:
        while queue:
            case = queue.pop()
            answer = await send(
                ports[case.route.target],
                case.data,
                limit_s=90,
                head_only=case.method == "HEAD",
                endless=case.route.endless,
            )
            label, problem = judge(case, answer)
            tally.add(case.route.name, label)
            if problem is not None:
                tally.failures.append(
                    Failure(case.route.name, case.mistakes, label, problem, case.data, answer.body)
                )

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    tally.seconds += time.monotonic() - started


async def _send_and_close(port: int, data: bytes) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    writer.close()
    await writer.wait_closed()


def judge_raw(case: RawCase, answers: list[Answer]) -> tuple[str, str | None]:
    seen = Counter(str(a.status) if a.status is not None else f"closed({a.error})" for a in answers)
    labels = ",".join(label if n == 1 else f"{label}x{n}" for label, n in seen.items())
    if case.expect == "any":
        return labels, None
    if case.expect == "400-close":
        first = answers[0]
        closed = len(answers) == 1 or answers[-1].status is None
        if first.status == 400 and closed:
            return labels, None
        return labels, "a smuggling shape must get 400 and a closed connection"
    for answer in answers:
        if answer.status is not None and answer.status >= 500:
            return labels, f"server error {answer.status}"
        if answer.status is None and answer.error == "timeout":
            return labels, "the daemon neither answered nor closed"
    return labels, None


async def run_raw(fleet: Fleet, cases: dict[str, list[RawCase]], tally: Tally) -> None:
    """Send each raw case once, one at a time (they are about framing, not load)."""
    ports = {"gateway": fleet.gateway.port, "neuron": fleet.neurons[0].port}
    for target, target_cases in cases.items():
        for case in target_cases:
            route = f"{target} raw {case.name}"
            if case.close_after_send:
                await _send_and_close(ports[target], case.data)
                answers = [Answer(None, error="closed by the client")]
            else:
                answers = await exchange(ports[target], case.data, limit_s=20, answers=case.answers)
            label, problem = judge_raw(case, answers)
            tally.add(route, label)
            if problem is not None:
                failure = Failure(route, [case.name], label, problem, case.data, answers[0].body)
                tally.failures.append(failure)


async def settle(fleet: Fleet, *, within_s: float = 30.0) -> dict[str, int]:
    """Wait until every counter is 0 (the last answers may still be closing); the last reading."""
    deadline = time.monotonic() + within_s
    while True:
        counters = await asyncio.to_thread(fleet.counters)
        busy = {k: v for k, v in counters.items() if v}
        if not busy or time.monotonic() > deadline:
            return busy
        await asyncio.sleep(0.25)
