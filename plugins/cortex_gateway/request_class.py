"""The request class a client names, and the header line that hands it to the neuron.

Claude Code sends ``x-claude-code-request-class`` (``main``, ``subagent``, ``compaction``,
``auxiliary``) when ``CLAUDE_CODE_GATEWAY_HINT_HEADERS=1``; any client may send ours,
``x-cortex-request-class``, which wins when both are there. The gateway does not judge the value
beyond its shape: the neuron maps it to a priority (an unknown class is ``main`` there), so a
neuron configured with its own classes needs no gateway change. A value that is not a short
token is ignored rather than refused: the hint steers queueing, never whether a request is served.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from cortex_kernel.node_wire import REQUEST_CLASS_HEADER

# Read in this order; the first with a well-formed value names the class.
INCOMING_HEADERS = (REQUEST_CLASS_HEADER, "x-claude-code-request-class")
_TOKEN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}")


def request_class_of(headers: Mapping[str, str]) -> str | None:
    """The class the request's headers name (lower-cased), or ``None`` when none is well formed."""
    for name in INCOMING_HEADERS:
        value = headers.get(name)
        if value is None:
            continue
        value = value.strip().lower()
        if _TOKEN.fullmatch(value):
            return value
    return None


def class_header_line(request_class: str | None) -> bytes:
    """The header line (CRLF included) that carries ``request_class`` to a neuron; empty for none."""
    if request_class is None or not _TOKEN.fullmatch(request_class):
        return b""
    return f"{REQUEST_CLASS_HEADER}: {request_class}\r\n".encode("ascii")
