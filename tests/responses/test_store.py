"""The response store's bounds, and the ``[responses]`` table reaching it through the plugin hook."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path
from typing import Any

import pluggy
import pytest

import cortex_responses.plugin
from cortex_kernel.config.errors import ConfigError
from cortex_kernel.config.loader import LoadedConfig, load_config
from cortex_kernel.config.schema import CortexConfig
from cortex_kernel.kernel import Kernel
from cortex_responses.dialect import ResponsesDialect
from cortex_responses.protocol import FunctionCall, OutputItem, OutputMessage, OutputText, Response
from cortex_responses.settings import RESPONSES_TABLE, ResponsesSettings
from cortex_responses.store import ResponseStore


def response(response_id: str) -> Response:
    return Response(id=response_id, created_at=0, model="m", status="completed", output=[])


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_oldest_go_first_when_the_count_is_reached() -> None:
    store = ResponseStore(max_responses=2, max_bytes=10**6, ttl_s=60)
    for name in ("a", "b", "c"):
        store.put(response(name), [{"type": "message", "role": "user", "content": name}])
    assert store.get("a") is None and store.get("b") is not None and store.get("c") is not None
    assert len(store) == 2


def test_the_byte_bound_evicts_and_an_entry_over_it_is_not_kept() -> None:
    one = ResponseStore(max_responses=1, max_bytes=10**6, ttl_s=60)
    one.put(response("small0"), [{"text": "x" * 30}])
    size = one.get("small0").size  # type: ignore[union-attr]
    store = ResponseStore(max_responses=100, max_bytes=2 * size + size // 2, ttl_s=60)
    store.put(response("small1"), [{"text": "x" * 30}])
    store.put(response("small2"), [{"text": "x" * 30}])
    store.put(response("small3"), [{"text": "x" * 30}])  # three entries do not fit: the first goes
    assert store.get("small1") is None and store.get("small2") is not None and store.get("small3") is not None
    store.put(response("huge"), [{"text": "x" * 3 * size}])
    assert store.get("huge") is None and store.get("small3") is not None


def a_turn(n: int) -> tuple[Response, list[dict[str, Any]]]:
    """A tool-using turn of a coding agent: many small items, as Codex's conversations are."""
    output: list[OutputItem] = [
        OutputMessage(id=f"msg_{n}", status="completed", content=[OutputText(text=f"step {n}: reading")]),
        FunctionCall(
            id=f"fc_{n}",
            call_id=f"call_{n}",
            name="shell",
            arguments='{"cmd":["ls","-la"]}',
            status="completed",
        ),
    ]
    conversation: list[dict[str, Any]] = []
    for i in range(40):
        conversation.append(
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": f"q{i}"}]}
        )
        conversation.append({"type": "function_call_output", "call_id": f"call_{i}", "output": f"file{i}.py"})
    return Response(id=f"resp_{n}", created_at=n, model="m", status="completed", output=output), conversation


def test_an_entry_reads_back_as_it_was_stored() -> None:
    store = ResponseStore(max_responses=10, max_bytes=10**6, ttl_s=60)
    stored, conversation = a_turn(1)
    store.put(stored, conversation)
    entry = store.get("resp_1")
    assert entry is not None and entry.response == stored and entry.conversation == conversation


def test_the_byte_bound_is_the_memory_the_entries_hold() -> None:
    """``store_max_mb`` bounds memory: what the entries take stays within what they count.

    A conversation kept as decoded dicts and strings took five to ten times its JSON size, so a
    store "full" at its bound held several times the memory it was configured for.
    """
    store = ResponseStore(max_responses=10**6, max_bytes=10**9, ttl_s=60)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        turns = [a_turn(n) for n in range(200)]  # made here, so what the store keeps of them counts
        for stored, conversation in turns:
            store.put(stored, conversation)
        del turns, stored, conversation
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    counted = store._bytes
    assert held <= counted * 1.1, (held, counted)


def test_entries_expire_after_the_ttl_and_can_be_deleted() -> None:
    clock = Clock()
    store = ResponseStore(max_responses=10, max_bytes=10**6, ttl_s=30, clock=clock)
    store.put(response("a"), [])
    store.put(response("b"), [])
    clock.now += 29
    assert store.get("a") is not None
    assert store.delete("b") and not store.delete("b") and store.get("b") is None
    clock.now += 2
    assert store.get("a") is None and len(store) == 0


def test_the_responses_table_reaches_the_dialect_through_the_hook(tmp_path: Path) -> None:
    path = tmp_path / "cortex.toml"
    path.write_text(
        "[gateway]\nmax_body_bytes = 4096\n\n"
        "[responses]\nstore_max_responses = 7\nstore_max_mb = 3\nstore_ttl_s = 9.5\n"
    )
    loaded = load_config("cortex", path, environ={}, search=False)
    kernel = Kernel(role="gateway", config=loaded, pm=pluggy.PluginManager("cortex_kernel"))
    [dialect] = cortex_responses.plugin.register_dialects(kernel)
    assert isinstance(dialect, ResponsesDialect)
    store = dialect.store
    assert (store.max_responses, store.max_bytes, store.ttl_s) == (7, 3 * 1024 * 1024, 9.5)
    assert dialect.max_body_bytes == 4096
    default = Kernel(role="gateway", config=LoadedConfig("cortex", CortexConfig(), None, {}), pm=kernel.pm)
    default_dialect = cortex_responses.plugin.register_dialects(default)[0]
    assert isinstance(default_dialect, ResponsesDialect)
    assert default_dialect.store.max_responses == (ResponsesSettings().store_max_responses)


def test_a_bad_responses_value_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "cortex.toml"
    path.write_text("[responses]\nstore_ttl_s = 0\n")
    loaded = load_config("cortex", path, environ={}, search=False)
    with pytest.raises(ConfigError, match=r"cortex.toml:2: responses.store_ttl_s"):
        loaded.table(RESPONSES_TABLE)
