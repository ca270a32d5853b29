"""The pieces both HTTP/1.1 servers share: the peer's address and fresh refusals."""

from __future__ import annotations

from cortex_kernel.http_edge import head_too_large, socket_address


def test_an_ip_socket_gives_host_and_port_and_any_other_none() -> None:
    assert socket_address(("127.0.0.1", 8080)) == ("127.0.0.1", 8080)
    assert socket_address(("::1", 8080, 0, 0)) == ("::1", 8080)  # IPv6's flow info and scope dropped
    assert socket_address("/run/cortex.sock") is None
    assert socket_address(None) is None


def test_each_refusal_is_a_new_exception() -> None:
    """A shared instance raised again would carry a traceback that grows with each raise."""
    first, second = head_too_large(), head_too_large()
    assert first is not second
    assert (first.status, first.code) == (second.status, second.code) == (431, "header_too_large")
