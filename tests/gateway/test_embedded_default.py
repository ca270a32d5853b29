"""The README's run command: `cortex-kernel serve` with no configuration at all, offline."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import openai
import pytest

from tests.daemons import Daemon, LineStream, free_port, http_json

pytestmark = pytest.mark.slow


def test_serve_with_no_configuration_answers_models_and_a_streamed_chat(
    tmp_path: Path, openai_client: Callable[..., openai.OpenAI]
) -> None:
    port = free_port()
    env = {
        "HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_CONFIG_DIRS": str(tmp_path / "site-config"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
    }
    args = ["serve", "--listen", f"127.0.0.1:{port}", "--metrics-listen", f"127.0.0.1:{free_port()}"]
    gateway = Daemon(args, port, tmp_path / "serve.log", env=env)
    gateway.start()
    try:
        gateway.wait_healthy(timeout=120)
        status, listing, _ = http_json("GET", f"{gateway.url}/v1/models")
        assert status == 200 and listing["object"] == "list"
        ids = [entry["id"] for entry in listing["data"]]
        assert "cortex-smoke-tiny" in ids

        # The raw SSE a curl user sees.
        body = {
            "model": "cortex-smoke-tiny",
            "stream": True,
            "max_tokens": 8,
            "messages": [{"role": "user", "content": "hi"}],
        }
        with LineStream(f"{gateway.url}/v1/chat/completions", "POST", body, timeout=120) as stream:
            assert stream.status == 200
            content_type = stream.getheader("content-type")
            assert content_type is not None and content_type.startswith("text/event-stream")
            lines = [line for line in stream if not line.startswith(":")]
        assert lines[-1] == "data: [DONE]"
        assert all(line.startswith("data: ") for line in lines)

        client = openai_client(f"{gateway.url}/v1")
        chunks = list(
            client.chat.completions.create(
                model="cortex-smoke-tiny",
                messages=[{"role": "user", "content": "hello"}],
                max_tokens=8,
                stream=True,
            )
        )
        assert chunks and chunks[-1].choices[0].finish_reason in ("stop", "length", "tool_calls")
        assert gateway.stop() == 0
    finally:
        gateway.kill()
