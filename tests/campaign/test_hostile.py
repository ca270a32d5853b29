"""The hostile-input campaign, short: every route of both daemons, bad input of every kind.

About 1,200 generated requests (derandomized, so CI sees the same ones every run) are sent
concurrently, then the raw malformed-HTTP cases one by one. Afterwards: not one 5xx (bar 503
with ``Retry-After``), every 4xx in its caller's envelope, both daemons alive, every in-flight
and admission counter back to 0, and no traceback in either log.

``CORTEX_CAMPAIGN=long`` runs 10,000 requests instead; ``bench/campaign.py hostile`` does the
same outside pytest and prints the counts by route and status. The last test is eight seconds
of the soak (``bench/campaign.py soak``) on the same fleet.
"""

from __future__ import annotations

import asyncio
import os

import pytest
from hypothesis import HealthCheck, given, settings

from tests.campaign.client import send
from tests.campaign.fleet import Fleet
from tests.campaign.hostile import ROUTES, Case, any_case, draw_cases
from tests.campaign.rawhttp import raw_cases
from tests.campaign.runner import Tally, judge, run_cases, run_raw, settle

pytestmark = pytest.mark.slow

REQUESTS = 10_000 if os.environ.get("CORTEX_CAMPAIGN") == "long" else 1_200


def test_hostile_requests_get_4xx_in_their_envelope_and_leave_nothing_behind(fleet: Fleet) -> None:
    before = fleet.tracebacks()
    tally = Tally()
    asyncio.run(run_cases(fleet, draw_cases(ROUTES, REQUESTS), tally, concurrency=8))
    raw = {target: raw_cases(target) for target in ("gateway", "neuron")}
    asyncio.run(run_raw(fleet, raw, tally))
    print(f"\n{tally.sent} requests in {tally.seconds:.1f}s\n{tally.table()}")
    assert not tally.failures, "\n".join(str(f) for f in tally.failures[:20])
    assert all(fleet.alive().values()), fleet.alive()
    assert asyncio.run(settle(fleet)) == {}
    assert fleet.tracebacks() == before


@settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=any_case(ROUTES))
def test_each_hostile_request_is_answered_without_a_server_error(fleet: Fleet, case: Case) -> None:
    """The same generator, one request at a time, so hypothesis can shrink a failure to its cause."""
    port = fleet.gateway.port if case.route.target == "gateway" else fleet.neurons[0].port
    answer = asyncio.run(
        send(port, case.data, limit_s=90, head_only=case.method == "HEAD", endless=case.route.endless)
    )
    label, problem = judge(case, answer)
    assert problem is None, (label, problem, case.mistakes, case.data[:300], answer.body[:300])


def test_a_short_soak_of_mixed_load_fails_nothing_and_leaves_nothing_behind(fleet: Fleet) -> None:
    """Eight seconds of ``bench/campaign.py soak`` (streams, disconnects, slow readers, hostile)."""
    from tests.campaign.soak import soak

    before = fleet.tracebacks()
    result = asyncio.run(soak(fleet, 8.0, seed=1))
    print("\n" + result.report())
    assert sum(result.counts.sent.values()) > 0
    assert result.failed == 0, result.counts.reasons
    assert all(result.alive.values()) and result.busy == {}
    assert fleet.tracebacks() == before
