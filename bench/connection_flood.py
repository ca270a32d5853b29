"""The connect-and-close flood from issue 12, on demand: does a daemon keep answering?

Starts a real gateway (over one unreachable neuron) or neuron with a capped open-file limit,
opens and at once closes ``--rate`` connections a second for ``--seconds``, and meanwhile probes
``GET /health`` on fresh connections every 0.25 s. Prints probe latencies (a probe over 1 s or
failed counts as a miss), the daemon's peak descriptors and how much its log grew.

    .venv/bin/python bench/connection_flood.py                      # gateway, 300/s, 60 s, 4,096 fds
    .venv/bin/python bench/connection_flood.py --daemon neuron --seconds 15

Run from the repository root (it imports the test helpers in tests/).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.floods import connect_and_close_flood, start_daemon


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--daemon", choices=["gateway", "neuron"], default="gateway")
    parser.add_argument("--rate", type=float, default=300.0, help="connections a second")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--nofile", type=int, default=4096, help="the daemon's open-file limit")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        daemon = start_daemon(args.daemon, Path(tmp), nofile=args.nofile)
        try:
            report = connect_and_close_flood(daemon, args.rate, args.seconds)
            alive = daemon.alive()
        finally:
            daemon.kill()
    finite = sorted(p for p in report.probes if p != float("inf"))
    print(f"{args.daemon}: {args.rate:g} connections/s for {args.seconds:g} s, open-file limit {args.nofile}")
    print(f"  {report.summary()}")
    if finite:
        p99 = finite[min(len(finite) - 1, int(len(finite) * 0.99))]
        print(
            f"  probe latency ms: p50 {statistics.median(finite) * 1000:.1f}  p99 {p99 * 1000:.1f}  "
            f"max {finite[-1] * 1000:.1f}"
        )
    print(f"  daemon alive at the end: {alive}")
    return 0 if alive and report.failed_probes() == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
