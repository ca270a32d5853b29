"""The headers an Anthropic client sends with every request, for tests that send them by hand.

``anthropic-version`` is also how the gateway tells an Anthropic client from an OpenAI one on
shared paths such as ``/v1/models``, so a test that leaves it out asks a different question.
"""

from __future__ import annotations

ANTHROPIC = {"anthropic-version": "2023-06-01"}
