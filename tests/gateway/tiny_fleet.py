"""What the placement and residency tests share: catalogues of the tiny chat model under many
names with a declared size (so the gateway's memory arithmetic, and so each placement, is
deterministic), and the one small request they send."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.daemons import Daemon, http_json, model_toml


def catalogue(chat: Path, models: dict[str, str]) -> str:
    """``[[models]]`` entries named ``models`` (id → extra TOML), all backed by the tiny chat model
    and each declaring 60 MiB."""
    return "".join(model_toml(name, chat, extra, vram_mb=60) for name, extra in models.items())


def ask(gateway: Daemon, model: str, max_tokens: int = 2) -> tuple[int, Any, dict[str, str]]:
    """One short chat request through ``gateway`` (a cold load on a loaded machine can be slow)."""
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens}
    return http_json("POST", f"{gateway.url}/v1/chat/completions", body, timeout=180)
