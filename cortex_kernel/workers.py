"""``[gateway] workers = N``: N gateway processes on one port, under one supervisor process.

One Python process relays on one core; a gateway host has several. Each worker is a whole
gateway (its own event loop, accept loop, ``[limits]`` bounds, neuron polls and routing state);
they share nothing but the neurons, which hold the state that must agree (what is loaded where).

The supervisor binds one ``SO_REUSEPORT`` listening socket *per worker* on the API address, so
the kernel spreads new connections evenly over the workers (one shared socket would let
whichever worker wakes first take a burst of them), and keeps every socket open itself: a
restarted worker takes over the same socket, and connections that arrive while it is down wait
in that socket's queue instead of being refused. Worker ``i`` also gets the metrics address's
port + ``i``, bound the same way but alone, so each worker's metrics are one scrape target and
nothing is mixed or lost. The sockets are bound before any worker starts, so a taken port is one
clear error, as with one process.

Workers are forked once the configuration is loaded and checked (the imports are done once and
shared copy-on-write; no event loop or thread exists yet), and each builds its own gateway. On
SIGTERM/SIGINT the supervisor stops restarting, passes the signal on, and exits with the first
non-zero status of a worker (0 when all drained cleanly). A worker that dies otherwise is
restarted after a back-off; one that keeps dying soon after starting makes the supervisor give
up, stop the others and exit 1, as a single gateway that cannot start would. A worker that finds
a fault no restart can mend (a configuration error met while it builds its gateway) says so with
:class:`WorkerFatal`: it exits with ``FATAL_STATUS`` and its message, the supervisor stops the
others at once and raises the message again, once, for the CLI to print as a single gateway does.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cortex_kernel.config.addresses import ListenAddress
from cortex_kernel.serving import ListenError, bind_socket, check_bindable

log = logging.getLogger(__name__)

# hypercorn's default backlog, what one gateway process listens with.
BACKLOG = 100
# A worker that dies within QUICK_DEATH_S of starting counts towards giving up; its restart waits
# RESTART_DELAY_S, doubled per such death in a row up to MAX_RESTART_DELAY_S.
QUICK_DEATH_S = 10.0
RESTART_DELAY_S = 0.5
MAX_RESTART_DELAY_S = 30.0
GIVE_UP_AFTER = 5
# A worker's exit status for WorkerFatal (EX_CONFIG in <sysexits.h>); its message comes through a
# pipe, one write of at most FATAL_MESSAGE_MAX bytes, so it is atomic even when several workers fail.
FATAL_STATUS = 78
FATAL_MESSAGE_MAX = 4000
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGCHLD})
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# The longest the supervisor sleeps between looks at its children. The supervisor blocks its
# signals in its own thread only: a process-directed SIGCHLD may be taken by any other thread of
# the process that does not block it (a library's monitor thread, pytest's), and then never
# reaches ``sigtimedwait``; the children are reaped by polling at this interval regardless.
POLL_S = 0.5

WorkerMain = Callable[[int, "WorkerSockets"], int]


class WorkerFatal(Exception):
    """A worker's fault that restarting cannot mend (its configuration): raised by a worker body,
    it makes the supervisor stop every worker, and is raised again by :func:`supervise`."""


@dataclass(frozen=True)
class WorkerSockets:
    """What one worker serves on: its share of the API port and its own metrics port."""

    api: socket.socket
    api_address: ListenAddress
    metrics: socket.socket | None
    metrics_address: ListenAddress | None

    def close(self) -> None:
        self.api.close()
        if self.metrics is not None:
            self.metrics.close()


@dataclass
class Slot:
    """One worker position: its sockets, the process holding them now, and its restart record."""

    index: int
    sockets: WorkerSockets
    pid: int | None = None
    started_at: float = 0.0
    quick_deaths: int = 0
    restart_at: float | None = None


def bind_workers(api: ListenAddress, metrics: ListenAddress, count: int) -> list[WorkerSockets]:
    """Every worker's sockets, bound and listening; :class:`ListenError` if any address is taken.

    The probe first refuses an API port that anything (even another process with
    ``SO_REUSEPORT``) already listens on, so two gateways never silently share a port."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise ListenError("gateway.workers > 1 needs SO_REUSEPORT (Linux); set workers = 1")
    check_bindable(api)
    made: list[WorkerSockets] = []
    try:
        for index in range(count):
            api_address = ListenAddress(api.host, made[0].api_address.port if made else api.port)
            api_sock = bind_socket(api_address, reuse_port=True, backlog=BACKLOG)
            api_address = ListenAddress(api.host, api_sock.getsockname()[1])
            metrics_address = ListenAddress(metrics.host, metrics.port + index if metrics.port else 0)
            try:
                metrics_sock = bind_socket(metrics_address, backlog=BACKLOG)
            except ListenError:
                api_sock.close()
                raise
            metrics_address = ListenAddress(metrics.host, metrics_sock.getsockname()[1])
            made.append(WorkerSockets(api_sock, api_address, metrics_sock, metrics_address))
    except ListenError:
        for sockets in made:
            sockets.close()
        raise
    return made


@dataclass
class Supervisor:
    """Starts, watches, restarts and stops the workers; see the module docstring."""

    slots: list[Slot]
    main: WorkerMain
    name: str = "gateway"
    stop_signal: int | None = None
    exit_code: int = 0
    saved_mask: set[int | signal.Signals] = field(default_factory=set)
    supervisor_pid: int = field(default_factory=os.getpid)
    fatal: str | None = None
    fatal_pipe: tuple[int, int] = (-1, -1)
    handlers: dict[int, object] = field(default_factory=dict)
    caught: list[int] = field(default_factory=list)

    def run(self) -> int:
        """Run until every worker has exited after a stop signal; return the exit status.

        :raises WorkerFatal: a worker raised it; every worker has exited by then."""
        self.saved_mask = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        # A stop signal another thread takes runs this handler in the main thread, instead of
        # the default action (SIGTERM would end the supervisor without stopping its workers).
        self.handlers = {signum: signal.signal(signum, self._caught) for signum in STOP_SIGNALS}
        self.fatal_pipe = os.pipe()
        os.set_blocking(self.fatal_pipe[0], False)
        try:
            for slot in self.slots:
                self._spawn(slot)
            while any(slot.pid is not None or slot.restart_at is not None for slot in self.slots):
                info = signal.sigtimedwait(SIGNALS, self._wait_s())
                if info is not None and info.si_signo != signal.SIGCHLD:
                    self._stop(info.si_signo)
                while self.caught:
                    self._stop(self.caught.pop(0))
                self._reap()
                self._restart_due()
            if self.fatal is not None:
                raise WorkerFatal(self.fatal)
            return self.exit_code
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, self.saved_mask)
            self._restore_handlers()
            for fd in self.fatal_pipe:
                os.close(fd)
            for slot in self.slots:
                slot.sockets.close()

    def _wait_s(self) -> float:
        due = [slot.restart_at for slot in self.slots if slot.restart_at is not None]
        return min(POLL_S, max(0.0, min(due) - time.monotonic())) if due else POLL_S

    def _caught(self, signum: int, _frame: object) -> None:
        self.caught.append(signum)

    def _restore_handlers(self) -> None:
        for signum, handler in self.handlers.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]

    def _spawn(self, slot: Slot) -> None:
        pid = os.fork()
        if pid == 0:
            self._worker(slot)  # never returns
        slot.pid, slot.started_at, slot.restart_at = pid, time.monotonic(), None
        log.info("%s worker %d started (pid %d)", self.name, slot.index, pid)

    def _worker(self, slot: Slot) -> None:
        code = 1
        try:
            self._restore_handlers()  # the worker's own, not the supervisor's note-taker
            signal.pthread_sigmask(signal.SIG_SETMASK, self.saved_mask)
            _drain_with_parent(self.supervisor_pid)
            for other in self.slots:
                if other is not slot:
                    other.sockets.close()
            code = self.main(slot.index, slot.sockets)
        except WorkerFatal as exc:
            os.write(self.fatal_pipe[1], str(exc).encode()[:FATAL_MESSAGE_MAX] + b"\0")
            code = FATAL_STATUS
        except BaseException:  # the fork must never return into the supervisor's loop
            log.exception("%s worker %d failed", self.name, slot.index)
        finally:
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def _stop(self, signum: int) -> None:
        """Pass the signal to every worker (again on a second signal, which a worker may take as
        "stop now"); never restart after the first."""
        if self.stop_signal is None:
            self.stop_signal = signum
            log.info("%s: %s, stopping %d workers", self.name, signal.Signals(signum).name, len(self.slots))
            for slot in self.slots:  # new connections are refused, as by a single gateway
                slot.sockets.close()
        for slot in self.slots:
            slot.restart_at = None
            if slot.pid is not None:
                os.kill(slot.pid, signum)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            slot = next((s for s in self.slots if s.pid == pid), None)
            if slot is None:
                continue
            slot.pid = None
            code = os.waitstatus_to_exitcode(status)
            code = 128 - code if code < 0 else code  # killed by a signal: the shell's convention
            if code == FATAL_STATUS:
                self._fatal_exit(slot)
                continue
            if self.stop_signal is not None:
                if code and not self.exit_code:
                    self.exit_code = code
                log.log(
                    logging.INFO if not code else logging.ERROR,
                    "%s worker %d exited with status %d",
                    self.name,
                    slot.index,
                    code,
                )
                continue
            self._schedule_restart(slot, pid, code)

    def _fatal_exit(self, slot: Slot) -> None:
        """Keep the first worker's message (the others, built from the same configuration, say the
        same), and stop every worker rather than restart one."""
        try:
            message = os.read(self.fatal_pipe[0], 1 << 16).split(b"\0")[0].decode(errors="replace")
        except BlockingIOError:
            message = ""
        if self.fatal is None:
            self.fatal = message or f"{self.name} worker {slot.index} could not start"
            log.error("%s worker %d cannot start; stopping", self.name, slot.index)
        self.exit_code = self.exit_code or FATAL_STATUS
        if self.stop_signal is None:
            self._stop(signal.SIGTERM)

    def _schedule_restart(self, slot: Slot, pid: int, code: int) -> None:
        lived = time.monotonic() - slot.started_at
        slot.quick_deaths = slot.quick_deaths + 1 if lived < QUICK_DEATH_S else 1
        if slot.quick_deaths >= GIVE_UP_AFTER:
            log.error(
                "%s worker %d exited with status %d, the %dth time in a row within %.0f s of starting; "
                "giving up",
                self.name,
                slot.index,
                code,
                slot.quick_deaths,
                QUICK_DEATH_S,
            )
            self.exit_code = 1
            self._stop(signal.SIGTERM)
            return
        delay = min(MAX_RESTART_DELAY_S, RESTART_DELAY_S * 2 ** (slot.quick_deaths - 1))
        log.warning(
            "%s worker %d (pid %d) exited with status %d; restarting it in %.1f s",
            self.name,
            slot.index,
            pid,
            code,
            delay,
        )
        slot.restart_at = time.monotonic() + delay

    def _restart_due(self) -> None:
        if self.stop_signal is not None:
            return
        now = time.monotonic()
        for slot in self.slots:
            if slot.restart_at is not None and slot.restart_at <= now:
                self._spawn(slot)


def _drain_with_parent(supervisor_pid: int) -> None:
    """Have the kernel send this worker SIGTERM if the supervisor dies (``PR_SET_PDEATHSIG``), so a
    supervisor killed outright does not leave workers serving on the port, unsupervised."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the workers outlive a killed supervisor
        return
    if os.getppid() != supervisor_pid:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def supervise(sockets: Sequence[WorkerSockets], main: WorkerMain, name: str = "gateway") -> int:
    """Run ``main(index, sockets)`` in one forked worker per entry of ``sockets`` until signalled."""
    return Supervisor([Slot(index, own) for index, own in enumerate(sockets)], main, name).run()
