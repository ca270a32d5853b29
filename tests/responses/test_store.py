"""The response store's bounds, and the ``[responses]`` table reaching it through the plugin hook."""

from __future__ import annotations

import pluggy
import pytest

import cortex_responses.plugin
from cortex_kernel.config.loader import ConfigError, LoadedConfig, load_config
from cortex_kernel.config.schema import CortexConfig
from cortex_kernel.kernel import Kernel
from cortex_responses.dialect import ResponsesDialect
from cortex_responses.protocol import Response
from cortex_responses.settings import RESPONSES_TABLE, ResponsesSettings
from cortex_responses.store import ResponseStore


def response(response_id: str) -> Response:
    return Response(id=response_id, created_at=0, model="m", status="completed", output=[])


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_oldest_go_first_when_the_count_is_reached():
    store = ResponseStore(max_responses=2, max_bytes=10**6, ttl_s=60)
    for name in ("a", "b", "c"):
        store.put(response(name), [{"type": "message", "role": "user", "content": name}])
    assert store.get("a") is None and store.get("b") is not None and store.get("c") is not None
    assert len(store) == 2


def test_the_byte_bound_evicts_and_an_entry_over_it_is_not_kept():
    store = ResponseStore(max_responses=100, max_bytes=100, ttl_s=60)
    store.put(response("small1"), [{"text": "x" * 30}])
    store.put(response("small2"), [{"text": "x" * 30}])
    store.put(response("small3"), [{"text": "x" * 30}])  # 3 of ~43 bytes > 100: the first goes
    assert store.get("small1") is None and store.get("small3") is not None
    store.put(response("huge"), [{"text": "x" * 500}])
    assert store.get("huge") is None and store.get("small3") is not None


def test_entries_expire_after_the_ttl_and_can_be_deleted():
    clock = Clock()
    store = ResponseStore(max_responses=10, max_bytes=10**6, ttl_s=30, clock=clock)
    store.put(response("a"), [])
    store.put(response("b"), [])
    clock.now += 29
    assert store.get("a") is not None
    assert store.delete("b") and not store.delete("b") and store.get("b") is None
    clock.now += 2
    assert store.get("a") is None and len(store) == 0


def test_the_responses_table_reaches_the_dialect_through_the_hook(tmp_path):
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
    assert cortex_responses.plugin.register_dialects(default)[0].store.max_responses == (
        ResponsesSettings().store_max_responses
    )


def test_a_bad_responses_value_is_a_config_error(tmp_path):
    path = tmp_path / "cortex.toml"
    path.write_text("[responses]\nstore_ttl_s = 0\n")
    loaded = load_config("cortex", path, environ={}, search=False)
    with pytest.raises(ConfigError, match=r"cortex.toml:2: responses.store_ttl_s"):
        loaded.table(RESPONSES_TABLE)
