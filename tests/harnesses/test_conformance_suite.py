"""The conformance suite itself: it passes a well-behaved harness and catches each kind of bug.

``FakeHarness`` is a fake (no model behind it): a word-counting echo engine built from the real
contract types, with switches that break one rule each.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cortex_kernel.config.schema import ModelProfile
from cortex_kernel.errors import NotFound
from cortex_kernel.harness import ContextLengthExceeded, Delta, Embeddings, Harness, ModelDescription, Usage
from cortex_kernel.openai_wire import ChatRequest, CompletionRequest
from cortex_kernel.testing.conformance import ConformanceError, ConformanceOptions, run_conformance

CONTEXT = 64
OPTIONS = ConformanceOptions(stop_timeout_s=0.5, long_max_tokens=10_000)


class FakeHarness:
    name = "fake"
    supports_sleep = False

    def __init__(self, *, break_rule: str | None = None) -> None:
        self.break_rule = break_rule
        self.models: dict[str, ModelProfile] = {}

    async def load(self, profile: ModelProfile) -> ModelDescription:
        self.models[profile.id] = profile
        return self.describe(profile.id)

    async def unload(self, model_id: str) -> None:
        if self.break_rule != "unload_keeps_model":
            self.models.pop(model_id, None)

    async def sleep(self, model_id: str) -> None:
        raise NotImplementedError

    async def wake(self, model_id: str) -> None:
        raise NotImplementedError

    def _check(self, model_id: str) -> None:
        if model_id not in self.models:
            if self.break_rule == "generic_errors":
                raise KeyError(model_id)
            raise NotFound(f"no {model_id}")

    def _prompt_tokens(self, request: ChatRequest) -> int:
        return sum(len(str(m.get("content", "")).split()) for m in request.messages) + 1

    async def _generate(self, prompt_tokens: int, max_tokens: int) -> AsyncIterator[Delta]:
        if prompt_tokens >= CONTEXT:
            raise ContextLengthExceeded(prompt_tokens, CONTEXT)
        produced = 0
        try:
            while produced < max_tokens:
                await asyncio.sleep(0.001)
                produced += 1
                yield Delta(text="word ")
            if self.break_rule == "double_finish":
                yield Delta(finish_reason="length")
            yield Delta(
                finish_reason="length", usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=produced)
            )
        finally:
            if self.break_rule == "slow_close":
                await asyncio.sleep(2)

    async def chat(self, model_id: str, request: ChatRequest) -> AsyncIterator[Delta]:
        self._check(model_id)
        async for delta in self._generate(self._prompt_tokens(request), request.output_limit or 16):
            yield delta

    async def complete(self, model_id: str, request: CompletionRequest) -> AsyncIterator[Delta]:
        self._check(model_id)
        async for delta in self._generate(len(str(request.prompt).split()), request.max_tokens or 16):
            yield delta

    async def embed(self, model_id: str, inputs: list[str], *, normalize: bool) -> Embeddings:
        self._check(model_id)
        vectors = [[float(len(text)), 1.0, 2.0] for text in inputs]
        if normalize and self.break_rule != "unnormalised":
            vectors = [[x / math.sqrt(sum(y * y for y in v)) for x in v] for v in vectors]
        return Embeddings(vectors=vectors, prompt_tokens=sum(len(t.split()) for t in inputs))

    async def count_tokens(self, model_id: str, request: ChatRequest) -> int:
        self._check(model_id)
        return self._prompt_tokens(request) + (1 if self.break_rule == "miscount" else 0)

    def describe(self, model_id: str) -> ModelDescription:
        self._check(model_id)
        return ModelDescription(context_length=CONTEXT, memory_bytes=0, task=self.models[model_id].task)


CHAT = ModelProfile(id="fake-chat", harness="fake", min_devices=0)
EMBED = ModelProfile(id="fake-embed", harness="fake", task="embedding", min_devices=0)


async def test_a_well_behaved_harness_passes() -> None:
    harness = FakeHarness()
    assert isinstance(harness, Harness)
    report = await run_conformance(harness, CHAT, EMBED, options=OPTIONS)
    assert report.ok, report.summary()
    assert not report.failures


@pytest.mark.parametrize(
    ("rule", "failing"),
    [
        (
            "double_finish",
            {"chat.chat_stream", "chat.complete_stream", "chat.close_stops"},
        ),
        ("miscount", {"chat.count_tokens", "chat.context_length"}),
        ("slow_close", {"chat.close_stops"}),
        ("generic_errors", {"chat.unknown_model", "chat.unload", "embedding.unload"}),
        ("unload_keeps_model", {"chat.unload", "embedding.unload"}),
        ("unnormalised", {"embedding.embeddings"}),
    ],
)
async def test_each_broken_rule_is_reported(rule: str, failing: set[str]) -> None:
    report = await run_conformance(FakeHarness(break_rule=rule), CHAT, EMBED, options=OPTIONS)
    assert {result.name for result in report.failures} == failing, report.summary()
    with pytest.raises(ConformanceError, match="harness conformance failed"):
        report.raise_for_failures()


def test_the_suite_fails_a_broken_harness_even_under_python_o(tmp_path: Path) -> None:
    """The checks raise ConformanceError themselves; ``assert`` (stripped by ``-O``) is not used."""
    import subprocess
    import sys

    script = tmp_path / "run.py"
    script.write_text(
        "import asyncio\n"
        "from tests.harnesses.test_conformance_suite import CHAT, EMBED, OPTIONS, FakeHarness\n"
        "from cortex_kernel.testing.conformance import run_conformance\n"
        "broken = FakeHarness(break_rule='unnormalised')\n"
        "report = asyncio.run(run_conformance(broken, CHAT, EMBED, options=OPTIONS))\n"
        "print(sorted(r.name for r in report.failures))\n"
    )
    run = subprocess.run([sys.executable, "-O", str(script)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "embedding.embeddings" in run.stdout, run.stdout
