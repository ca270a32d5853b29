"""The workers' supervisor with stand-in worker bodies: real forks and signals, no gateway.

The supervisor runs in the test process itself (it blocks SIGTERM, SIGINT and SIGCHLD while it
runs, and restores them); each worker body is a small function run in the forked child.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from cortex_kernel import workers
from cortex_kernel.config.addresses import ListenAddress
from cortex_kernel.workers import WorkerFatal, WorkerSockets, bind_workers, supervise

LOOPBACK = ListenAddress("127.0.0.1", 0)


def _hold_sigterm() -> None:
    """Block SIGTERM first thing in a worker body, so a signal that comes before the body waits
    for it stays pending instead of killing the worker (status 143) on a slow machine."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})


def _wait_for_sigterm() -> None:
    _hold_sigterm()
    signal.sigwait({signal.SIGTERM})


def test_workers_share_one_port_and_each_gets_its_own_metrics_port() -> None:
    sockets = bind_workers(LOOPBACK, LOOPBACK, 3)
    try:
        assert len({own.api.getsockname()[1] for own in sockets}) == 1
        assert len({own.metrics.getsockname()[1] for own in sockets if own.metrics}) == 3
        assert all(own.api_address.port == own.api.getsockname()[1] for own in sockets)
    finally:
        for own in sockets:
            own.close()


def test_the_first_failing_exit_status_of_a_drain_is_the_supervisors() -> None:
    def worker(index: int, own: WorkerSockets) -> int:
        _hold_sigterm()
        if index == 0:
            time.sleep(1.0)  # both workers hold the signal by then
            os.kill(os.getppid(), signal.SIGTERM)
        _wait_for_sigterm()
        return 3 if index == 1 else 0

    assert supervise(bind_workers(LOOPBACK, LOOPBACK, 2), worker) == 3


def test_a_worker_that_keeps_dying_at_start_makes_the_supervisor_give_up(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first back-off a fifth of the default's, so the give-up takes 1.5 s rather than 7.5.
    monkeypatch.setattr(workers, "RESTART_DELAY_S", 0.1)

    def worker(index: int, own: WorkerSockets) -> int:
        if index == 0:
            return 7
        _wait_for_sigterm()
        return 0

    started = time.monotonic()
    assert supervise(bind_workers(LOOPBACK, LOOPBACK, 2), worker) == 1
    # restarted after 0.1, 0.2, 0.4 and 0.8 s (doubled each time), then given up at the fifth death
    assert re.findall(r"restarting it in ([\d.]+) s", caplog.text) == ["0.1", "0.2", "0.4", "0.8"]
    assert time.monotonic() - started >= 1.5
    assert "the 5th time in a row" in caplog.text


def test_a_worker_fatal_error_stops_every_worker_at_once_and_is_raised_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def worker(index: int, own: WorkerSockets) -> int:
        if index == 0:
            raise WorkerFatal("cortex.toml:3: routing.strategy: unknown routing strategy 'x'")
        _wait_for_sigterm()
        return 0

    with pytest.raises(WorkerFatal, match=r"^cortex.toml:3: routing.strategy: unknown routing strategy 'x'$"):
        supervise(bind_workers(LOOPBACK, LOOPBACK, 2), worker)
    assert "restarting it in" not in caplog.text
    assert caplog.text.count("gateway worker 0 cannot start; stopping") == 1


# A supervisor in a process that has another thread, which does not block the signals: the
# kernel may hand that thread the SIGCHLD of a dying worker, or a SIGTERM, instead of the
# supervisor's ``sigtimedwait`` (found as a 300-second hang in the suite, with a library's
# monitor thread in the pytest worker). Run in a fresh process so the thread is the only other.
# The kernel gives a signal to the thread in ``sigtimedwait`` when one is, so the window is the
# supervisor's time between waits; ``sigtimedwait`` is wrapped to spend 0.3 s first (a double of
# a supervisor busy logging or forking), which makes the other thread the one that gets them.
_WITH_A_STRAY_THREAD = """
import os, signal, sys, threading, time
from cortex_kernel import workers
from cortex_kernel.config.addresses import ListenAddress
from cortex_kernel import workers
from cortex_kernel.workers import bind_workers, supervise

workers.RESTART_DELAY_S, workers.POLL_S = 0.1, 0.1  # the give-up in about 2 s rather than 8
threading.Thread(target=threading.Event().wait, daemon=True).start()  # signals unblocked
case = sys.argv[1]
real_sigtimedwait = signal.sigtimedwait

def busy_then_wait(signals, timeout):
    time.sleep(0.3)
    return real_sigtimedwait(signals, timeout)

signal.sigtimedwait = busy_then_wait

def worker(index, own):
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    if case == "dying" and index == 0:
        return 7
    if case == "sigterm" and index == 0:
        time.sleep(1.0)
        os.kill(os.getppid(), signal.SIGTERM)
    signal.sigwait({signal.SIGTERM})
    return 0

loopback = ListenAddress("127.0.0.1", 0)
print("exit", supervise(bind_workers(loopback, loopback, 2), worker))
"""


@pytest.mark.parametrize(("case", "want"), [("dying", "exit 1"), ("sigterm", "exit 0")])
def test_signals_another_thread_takes_still_reach_the_supervisor(case: str, want: str) -> None:
    script = [sys.executable, "-c", textwrap.dedent(_WITH_A_STRAY_THREAD), case]
    with subprocess.Popen(
        script, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    ) as run:
        try:
            out, err = run.communicate(timeout=90)  # a hang is the defect; the give-up takes about 2 s
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)  # the supervisor and the workers it left
            out, err = run.communicate()
    assert out.strip().splitlines()[-1:] == [want], err[-2000:]
