"""The fault and hostile-input campaign, long versions (docs/campaign.md says how to read them).

    .venv/bin/python bench/campaign.py hostile --requests 10000      # >= 10,000 hostile requests
    .venv/bin/python bench/campaign.py soak --minutes 15              # a gateway + two neurons

``hostile`` starts a gateway (keys, one alias) over a neuron serving the tiny synthetic models,
sends the generated requests concurrently and the raw malformed-HTTP cases, then prints counts
by route and status and the verdict: 0 x 5xx, both daemons alive, every counter 0, no traceback.
``soak`` runs a mixed load over a gateway and two neurons and prints sent, answered and failed by
kind and each daemon's RSS at start, baseline (minute 2), middle and end. Both exit 1 on a
failed verdict. Nothing is downloaded: the models are built locally.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.campaign.fleet import build_models, start_fleet
from tests.campaign.hostile import ROUTES, draw_cases
from tests.campaign.rawhttp import raw_cases
from tests.campaign.runner import Tally, run_cases, run_raw, settle
from tests.campaign.soak import soak


def hostile(args: argparse.Namespace, home: Path) -> bool:
    fleet = start_fleet(home, build_models(home / "models"))
    try:
        before = fleet.tracebacks()
        tally = Tally()
        seed = args.seed if args.seed is not None else int(time.time())
        started = time.monotonic()
        remaining = args.requests
        batch = 0
        distinct: set[bytes] = set()
        while remaining > 0:  # fresh seeds per batch: more distinct cases than one long run
            cases = draw_cases(ROUTES, min(remaining, 2000), seed=seed + batch)
            distinct.update(case.data for case in cases)
            asyncio.run(run_cases(fleet, cases, tally, concurrency=args.concurrency))
            remaining -= len(cases)
            batch += 1
            print(f"  {tally.sent} sent, {len(tally.failures)} failed", flush=True)
        raw = {target: raw_cases(target) for target in ("gateway", "neuron")}
        for _ in range(args.raw_rounds):
            asyncio.run(run_raw(fleet, raw, tally))
        elapsed = time.monotonic() - started
        busy = asyncio.run(settle(fleet))
        alive = fleet.alive()
        tracebacks = {k: v - before[k] for k, v in fleet.tracebacks().items()}
        print(f"\nhostile campaign: {tally.sent} requests ({len(distinct)} distinct generated, seed {seed})"
              f" in {elapsed:.0f}s\n")  # fmt: skip
        print(tally.table())
        labels = [(label, n) for (_, label), n in tally.by_route.items()]
        overloaded = sum(n for label, n in labels if label == "503-overloaded")
        print(f"\n  5xx: {tally.server_errors} (apart: {overloaded} x 503 with Retry-After)")
        print(f"  failures: {len(tally.failures)}")
        print(f"  alive: {alive}  counters not 0: {busy or 'none'}  new tracebacks: {tracebacks}")
        for failure in tally.failures[:30]:
            print(f"\n  {failure}")
        return not tally.failures and all(alive.values()) and not busy and not any(tracebacks.values())
    finally:
        fleet.stop()


def soak_command(args: argparse.Namespace, home: Path) -> bool:
    fleet = start_fleet(home, build_models(home / "models"), neurons=2)
    try:
        result = asyncio.run(
            soak(fleet, args.minutes * 60, baseline_s=args.baseline_s, seed=args.seed or 0, progress=True)
        )
        print()
        print(result.report())
        growth = result.growth()
        ok = (
            result.failed == 0
            and all(result.alive.values())
            and not result.busy
            and not any(result.tracebacks.values())
        )
        if args.minutes >= 10:
            ok = ok and all(g < 5.0 for g in growth.values())
        return ok
    finally:
        fleet.stop()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    h = sub.add_parser("hostile", help="hostile requests to every route of a gateway and a neuron")
    h.add_argument("--requests", type=int, default=10_000)
    h.add_argument("--concurrency", type=int, default=8)
    h.add_argument("--raw-rounds", type=int, default=3, help="rounds of the raw malformed-HTTP cases")
    h.add_argument("--seed", type=int, default=None)
    s = sub.add_parser("soak", help="a mixed load over a gateway and two neurons")
    s.add_argument("--minutes", type=float, default=15.0)
    s.add_argument(
        "--baseline-s", type=float, default=None, help="RSS baseline (default min(120, duration/4))"
    )
    s.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="cortex-campaign-"))
    ok = hostile(args, home) if args.command == "hostile" else soak_command(args, home)
    print(f"\nverdict: {'PASS' if ok else 'FAIL'}   (logs: {home})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
