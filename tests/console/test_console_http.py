"""The console over plain HTTP: who may see it, forged requests, bad input, what it keeps."""

from __future__ import annotations

import json
import socket
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cortex_kernel.keys import key_digest
from tests.console.conftest import ADMIN_KEY, CLIENT_KEY, ConsoleFleet
from tests.daemons import Daemon, LineStream, Started, free_port, gateway_toml, http_json, write_toml


def request(
    url: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes, dict[str, str]]:
    """(status, body, headers) with exactly the headers given (a browser's, a form's)."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as reply:
            return reply.status, reply.read(), {k.lower(): v for k, v in reply.headers.items()}
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read(), {k.lower(): v for k, v in exc.headers.items()}


@pytest.fixture
def lone_gateway(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """A gateway whose one node (``n1``) never answers: enough for auth, guards and capture."""

    def start(extra: str = "") -> Daemon:
        port = free_port()
        neurons = {"n1": f"http://127.0.0.1:{free_port()}"}
        config = write_toml(
            tmp_path / f"gw-{port}" / "cortex.toml",
            gateway_toml(port, neurons, f"poll_interval_s = 0.5\n{extra}"),
        )
        write_toml(config.parent / "models.toml", '[[models]]\nid = "m"\nharness = "transformers"\n')
        return started.healthy(
            Daemon(["serve", "--config", str(config)], port, config.parent / "gateway.log")
        )

    with Started() as started:
        yield start


def test_the_page_is_served_with_a_strict_policy_and_holds_no_fleet_data(console_fleet: ConsoleFleet) -> None:
    status, page, headers = request(f"{console_fleet.url}/console")
    assert status == 200 and headers["content-type"].startswith("text/html")
    policy = headers["content-security-policy"]
    assert (
        "default-src 'none'" in policy
        and "script-src 'self'" in policy
        and "frame-ancestors 'none'" in policy
    )
    assert "unsafe-inline" not in policy
    assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
    assert b"<script>" not in page and b"style=" not in page  # no inline code for the policy to allow
    assert b"n1" not in page and b"tiny-chat" not in page
    for asset in ("console.js", "console.css"):
        status, _, headers = request(f"{console_fleet.url}/console/static/{asset}")
        assert status == 200 and "content-security-policy" in headers
    assert request(f"{console_fleet.url}/console/static/../plugin.py")[0] == 404


@pytest.mark.parametrize("path", ["/console/api/state", "/console/api/stream"])
def test_console_data_needs_an_admin_key_and_a_client_key_is_forbidden(
    console_fleet: ConsoleFleet, path: str
) -> None:
    assert request(console_fleet.url + path)[0] == 401
    assert request(console_fleet.url + path, headers={"Authorization": "Bearer wrong"})[0] == 401
    status, body, _ = request(console_fleet.url + path, headers={"Authorization": f"Bearer {CLIENT_KEY}"})
    assert status == 403, body
    assert json.loads(body)["error"]["code"] == "not_admin"


def test_state_and_stream_show_both_nodes_to_an_admin(console_fleet: ConsoleFleet) -> None:
    status, body, _ = http_json("GET", f"{console_fleet.url}/console/api/state", token=ADMIN_KEY)
    assert status == 200
    assert sorted(n["node"] for n in body["nodes"]) == ["n1", "n2"]
    assert {m["id"] for m in body["catalogue"]} >= {"a", "b", "p", "tiny-chat"}
    stream = LineStream(f"{console_fleet.url}/console/api/stream")  # no key: refused
    assert stream.status == 401
    stream.close()
    req = urllib.request.Request(
        f"{console_fleet.url}/console/api/stream", headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    )
    with urllib.request.urlopen(req, timeout=30) as reply:
        assert reply.headers["content-type"] == "text/event-stream"
        assert reply.readline() == b"event: snapshot\n"
        snapshot = json.loads(reply.readline().removeprefix(b"data: "))
    assert sorted(n["node"] for n in snapshot["nodes"]) == ["n1", "n2"]


def test_an_unknown_node_or_model_in_an_action_is_the_admin_apis_404(console_fleet: ConsoleFleet) -> None:
    browser = {"Origin": console_fleet.url, "X-Cortex-Console": "1", "Content-Type": "application/json"}
    browser["Authorization"] = f"Bearer {ADMIN_KEY}"
    cases = [
        ("/admin/models/load", {"model": "no-such-model", "node": "n1"}, "model_not_found"),
        ("/admin/models/load", {"model": "a", "node": "no-such-node"}, "node_not_found"),
        ("/admin/models/unload", {"model": "a", "node": "no-such-node"}, "node_not_found"),
        ("/admin/nodes/no-such-node/drain", {"drain": True}, "node_not_found"),
    ]
    for path, body, code in cases:
        status, raw, _ = request(console_fleet.url + path, "POST", json.dumps(body).encode(), browser)
        assert status == 404, (path, raw)
        assert json.loads(raw)["error"]["code"] == code


def test_a_forged_cross_site_post_is_refused_on_a_loopback_admin_api(
    lone_gateway: Callable[..., Daemon],
) -> None:
    gateway = lone_gateway()  # no admin keys: the admin API trusts loopback, which a browser is
    drain = f"{gateway.url}/admin/nodes/n1/drain"
    form = {"Content-Type": "application/x-www-form-urlencoded", "Origin": "http://evil.example"}
    forged = [
        form,
        {"Content-Type": "text/plain", "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"},
        {"Origin": "null", "Content-Type": "text/plain"},
        # Same origin, but a plain form: it cannot add the console's header.
        {"Origin": gateway.url, "Sec-Fetch-Site": "same-origin", "Content-Type": "text/plain"},
    ]
    for headers in forged:
        status, body, _ = request(drain, "POST", b"", headers)
        assert status == 403, (headers, body)
        assert json.loads(body)["error"]["code"] == "cross_site"
        assert not http_json("GET", f"{gateway.url}/admin/fleet")[1]["nodes"][0]["draining"]
    console = {"Origin": gateway.url, "Sec-Fetch-Site": "same-origin", "X-Cortex-Console": "1"}
    status, body, _ = request(
        drain, "POST", b'{"drain": true}', {**console, "Content-Type": "application/json"}
    )
    assert status == 200 and json.loads(body)["draining"] is True
    status, body, _ = http_json("POST", drain, {"drain": False})  # the CLI: no browser headers
    assert status == 200 and body["draining"] is False


def test_the_gateway_refuses_a_forged_admin_post_with_the_console_blocked(
    lone_gateway: Callable[..., Daemon],
) -> None:
    """The guard is the gateway's: a loopback-only admin API is no softer without the console."""
    gateway = lone_gateway('\n[plugins]\nblock = ["console"]\n')
    drain = f"{gateway.url}/admin/nodes/n1/drain"
    form = {"Content-Type": "application/x-www-form-urlencoded", "Origin": "http://evil.example"}
    status, body, _ = request(drain, "POST", b"drain=true", form)
    assert status == 403 and json.loads(body)["error"]["code"] == "cross_site", body
    assert not http_json("GET", f"{gateway.url}/admin/fleet")[1]["nodes"][0]["draining"]
    status, body, _ = http_json("POST", drain, {"drain": True})  # the CLI: no browser headers
    assert status == 200 and body["draining"] is True


def test_without_admin_keys_the_console_answers_loopback_clients(lone_gateway: Callable[..., Daemon]) -> None:
    gateway = lone_gateway()
    status, body, _ = http_json("GET", f"{gateway.url}/console/api/state")
    assert status == 200 and [n["node"] for n in body["nodes"]] == ["n1"]


def test_recent_requests_keep_no_text_unless_capture_is_on(lone_gateway: Callable[..., Daemon]) -> None:
    prompt = "the secret plan is in the blue folder"
    body = {"model": "m", "messages": [{"role": "user", "content": prompt}]}
    plain = lone_gateway()
    captured = lone_gateway("[console]\ncapture = true\ncapture_chars = 20\n")
    for gateway in (plain, captured):
        status, _, _ = http_json("POST", f"{gateway.url}/v1/chat/completions", body)
        assert status >= 400  # the node is down; the request is recorded all the same
    state = http_json("GET", f"{plain.url}/console/api/state")[1]
    assert state["requests"] and state["requests"][-1]["endpoint"] == "/v1/chat/completions"
    assert "secret" not in json.dumps(state) and state["capture"] is False
    state = http_json("GET", f"{captured.url}/console/api/state")[1]
    assert state["capture"] is True
    assert state["captures"][-1]["prompt"] == prompt[:20]


def test_a_client_key_still_chats_and_an_admin_key_chats_too(
    tmp_path: Path, lone_gateway: Callable[..., Daemon]
) -> None:
    auth = f'[auth]\nrequire_api_key = true\napi_keys = ["{key_digest(CLIENT_KEY)}"]\n'
    gateway = lone_gateway(auth + f'admin_keys = ["{key_digest(ADMIN_KEY)}"]\n')
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    url = f"{gateway.url}/v1/chat/completions"
    assert http_json("POST", url, body, token="nobody")[0] == 401
    for key in (CLIENT_KEY, ADMIN_KEY):  # past auth: the dead node answers, not the key check
        assert http_json("POST", url, body, token=key)[0] not in (401, 403)


def test_open_console_streams_do_not_hold_up_a_gateway_shutdown(lone_gateway: Callable[..., Daemon]) -> None:
    gateway = lone_gateway("shutdown_grace_s = 40\n")
    req = urllib.request.Request(f"{gateway.url}/console/api/stream")
    with urllib.request.urlopen(req, timeout=60) as reply:
        assert reply.readline() == b"event: snapshot\n"
        started = time.monotonic()
        assert gateway.stop(timeout=60) == 0
        # A console carries no user's work: it ends with the drain, not with the grace.
        assert time.monotonic() - started < 20
        assert reply.read() is not None  # the stream ended (EOF), the page will reconnect


def test_console_streams_dropped_at_once_do_not_hold_up_a_gateway_shutdown(
    lone_gateway: Callable[..., Daemon],
) -> None:
    """A console that leaves as soon as it asked (a page reloaded, a tab closed): its stream saw
    the disconnect as its writer took the first event, and the writer swallowed its cancellation
    (``asyncio.wait_for`` on Python 3.11), so it ran on and held the shutdown for the whole grace."""
    gateway = lone_gateway("shutdown_grace_s = 40\n")
    host, port = urllib.parse.urlsplit(gateway.url).hostname, gateway.port
    for _ in range(50):
        with socket.create_connection((host, port), timeout=30) as sock:
            sock.sendall(b"GET /console/api/stream HTTP/1.1\r\nhost: console\r\n\r\n")
    assert http_json("GET", f"{gateway.url}/health")[0] == 200  # accepted after all 50
    started = time.monotonic()
    assert gateway.stop(timeout=60) == 0
    assert time.monotonic() - started < 20  # the drain's business, not the 40 s grace's


def test_blocking_the_console_plugin_removes_it(lone_gateway: Callable[..., Daemon]) -> None:
    gateway = lone_gateway('\n[plugins]\nblock = ["console"]\n')
    assert request(f"{gateway.url}/console")[0] == 404
    assert request(f"{gateway.url}/console/api/state")[0] == 404
    assert http_json("GET", f"{gateway.url}/admin/fleet")[0] == 200  # the gateway itself is untouched


def test_a_failed_load_reaches_the_console_with_the_nodes_reason(console_fleet: ConsoleFleet) -> None:
    status, body, _ = http_json(
        "POST", f"{console_fleet.url}/admin/models/load", {"model": "broken", "node": "n2"}, token=ADMIN_KEY
    )
    assert status == 202, body
    deadline = time.monotonic() + 60
    while True:
        state = http_json("GET", f"{console_fleet.url}/console/api/state", token=ADMIN_KEY)[1]
        failed = [a for a in state["activity"] if a["kind"] == "load_failed" and a["model"] == "broken"]
        if failed:
            break
        assert time.monotonic() < deadline, state["activity"]
        time.sleep(0.2)
    assert failed[0]["node"] == "n2" and "/nowhere/weights" in failed[0]["text"], failed


@pytest.mark.timeout(290)
def test_a_console_that_stops_reading_is_dropped_by_a_real_gateway(
    lone_gateway: Callable[..., Daemon],
) -> None:
    import http.client
    import socket

    gateway = lone_gateway()
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)  # a small window fills fast
    stalled.connect(("127.0.0.1", gateway.port))
    stalled.sendall(b"GET /console/api/stream HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        admin = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
        state = http_json("GET", f"{gateway.url}/console/api/state")[1]
        assert state["clients"] == 1
        deadline = time.monotonic() + 200  # ~16,000 flips fill the socket buffers (34 s here)
        flips = 0
        while state["dropped"] == 0:
            # Each drain flip is pushed to consoles at once: one batch each, never read here.
            for _ in range(50):
                admin.request(
                    "POST", "/admin/nodes/n1/drain", body=f'{{"drain": {str(flips % 2 == 0).lower()}}}'
                )
                admin.getresponse().read()
                flips += 1
            state = http_json("GET", f"{gateway.url}/console/api/state")[1]
            assert time.monotonic() < deadline, f"still subscribed after {flips} events"
        assert state["clients"] == 0 and state["dropped"] == 1
        admin.close()
    finally:
        stalled.close()
