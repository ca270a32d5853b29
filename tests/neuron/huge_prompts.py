"""Huge prompts and the bounds they are held to, with a client that sends one several times at once.

Shared by the neuron's own prompt-limit tests (``tests/neuron/test_prompt_limits.py``) and the
gateway's (``tests/gateway/test_huge_prompts.py``), which hold the same neuron to the same bounds
through the gateway.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

HUGE = 20_000_000
MIB = 1024 * 1024
# Each refused request holds a few copies of its body at once (the read chunks and their join,
# the decoded string, the rendered prompt): about 75 MB per 20 MB body was measured, so three
# at once stay far below this (before the fix: 7.9 GB over the start).
PEAK_GROWTH_BOUND = 512 * MIB


def post_raw(url: str, data: bytes, timeout: float = 120.0) -> tuple[int, dict[str, Any]]:
    """POST ``data`` as it is (no re-encoding of a 20 MB body): the status and the JSON reply."""
    request = urllib.request.Request(url, data=data, method="POST")
    request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def concurrently(url: str, data: bytes, count: int) -> list[tuple[int, dict[str, Any], float]]:
    """``count`` identical POSTs at once: (status, body, seconds) of each."""
    results: list[tuple[int, dict[str, Any], float]] = []

    def one() -> None:
        started = time.monotonic()
        status, body = post_raw(url, data)
        results.append((status, body, time.monotonic() - started))

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    return results
