"""Hypothesis strategies the dialect suites share for request bodies a client gets wrong."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st


def invalid_bodies(invalid_documents: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[bytes]:
    """Bodies every dialect must refuse with a 4xx: its own ``invalid_documents`` as JSON, bytes
    that are not a JSON object, and JSON values of the wrong kind (a list, a string, a number)."""
    return st.one_of(
        invalid_documents.map(lambda document: json.dumps(document).encode()),
        st.binary(max_size=40).filter(lambda raw: not raw.strip().startswith(b"{")),
        (st.lists(st.integers(), max_size=3) | st.text(max_size=5) | st.integers() | st.none()).map(
            lambda value: json.dumps(value).encode()
        ),
    )
