"""Histogram bucket boundaries, chosen for LLM traffic rather than web requests.

Explicit buckets are what make these real histograms: the original gateway configured none and
its latencies came out as summaries, which neither aggregate across instances nor survive a
restart. Latency buckets copy vLLM's (``vllm/v1/metrics``) where one exists, so a panel can put
the gateway's figure next to an engine's without re-bucketing; the upper ends reach the minutes
that a cold load or a long stream takes.
"""

from __future__ import annotations

# Time to first token: milliseconds when warm, minutes when the request waits for a cold load.
TTFT_SECONDS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
    1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip

# Gaps between relayed chunks: vLLM's inter-token buckets, plus three below 10 ms because a
# small model (or several tokens coalesced into one read) arrives faster than that.
INTER_TOKEN_SECONDS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75,
    1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
)  # fmt: skip

# A whole request: an embedding takes milliseconds, a long generation tens of minutes (the
# gateway never caps a stream's total time).
REQUEST_SECONDS = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0,
    60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0,
)  # fmt: skip

# Waiting for a ready node: near zero when a replica is ready, a model load otherwise.
WAIT_SECONDS = (
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0, 600.0, 1800.0,
)  # fmt: skip

# Loading weights: a tiny model in a fraction of a second, a large one from the hub in minutes.
LOAD_SECONDS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0)

# Output tokens per second for one request: CPU hosts give single digits, a GPU hundreds.
TOKENS_PER_SECOND = (1, 2, 5, 10, 20, 30, 40, 50, 75, 100, 150, 200, 300, 500, 1000, 2000, 5000)

# Token counts per request, a 1-2-5 series (vLLM's shape) up to a million-token context.
TOKEN_COUNTS = (
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000,
    10000, 20000, 50000, 100000, 200000, 500000, 1000000,
)  # fmt: skip
