"""Waiting for room where a model sleeps, rather than cold-loading it on another node.

A model asleep on a node wakes there in seconds; a cold load elsewhere takes tens of seconds to
minutes. When the only thing that stops the wake is that the node's residents are busy (the
evictor would make room if they had finished their requests, loads or wakes; pinned residents
never count), waiting for one of them to finish usually costs a few seconds where a cold load
costs a minute. So when no plan would wake or join the model in place, placement waits:

- it waits for room where the model sleeps, on every such node at once, woken by what can
  free room (a request there ending, :meth:`Node.finished`, after which the node is read again
  because its last report still counts that request; or a poll of it, :meth:`Node.changed`),
  never by a timer, and holding nothing on any node meanwhile;
- where a cold load elsewhere is possible, the wait is a hedge on the expected costs: it waits
  alone for ``[residency] wake_hedge_s``, or less where this gateway has measured the model's
  cold load and wake (then at most its last load time minus its last wake time: by then a cold
  load started at the outset would have been ready), and then starts that cold load too and
  serves from whichever is ready first, the wake or the load. A request so pays about
  min(time to room + wake, hedge + cold load): never much more than today's cold load, and a
  few seconds where a resident finishes soon. A hedging load that loses goes on and gives the
  model a second replica, as a load whose clients left does today;
- where no cold load is possible (today's answer: 503 ``no_capacity``), it waits at most
  ``[residency] wake_wait_s`` and then answers that 503 with Retry-After.

The wait runs in the model's single-flight placement task (one per model however many requests
ask), and when every request waiting for the model goes away before the hedge, it is cancelled.
``wake_wait_s = 0`` turns all of this off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from cortex_gateway.fleet import Node
from cortex_kernel.config.schema import ModelProfile, ResidencySection
from cortex_kernel.errors import CortexError
from cortex_kernel.eviction import Victim

if TYPE_CHECKING:
    from cortex_gateway.placement import Placement

log = logging.getLogger(__name__)
# States in which a plan wakes the model or joins work on it where it is (no cold load).
_IN_PLACE = ("sleeping", "waking", "loading")


class RoomWait:
    """Decides whether to wait for room where a model sleeps, and waits."""

    def __init__(self, placement: Placement, settings: ResidencySection) -> None:
        self.placement = placement
        self.settings = settings
        # model → seconds its last cold load and its last wake took (event-loop clock).
        self.load_s: dict[str, float] = {}
        self.wake_s: dict[str, float] = {}
        # model → requests waiting for its placement task, and the tasks now waiting for room.
        self._joined: dict[str, int] = {}
        self._waiting: dict[str, asyncio.Task[Node]] = {}
        self._background: set[asyncio.Task[Node]] = set()
        self.waits = 0
        self.waits_won = 0
        self.waits_lost = 0

    def loaded(self, model_id: str, seconds: float) -> None:
        self.load_s[model_id] = seconds

    def woken(self, model_id: str, seconds: float) -> None:
        self.wake_s[model_id] = seconds

    # -- whether to wait --------------------------------------------------------------------

    def blocked(self, profile: ModelProfile, exclude: frozenset[str]) -> list[Node]:
        """Nodes where ``profile`` sleeps and could be woken once busy residents go idle."""
        placement = self.placement
        return [
            node
            for node in self._asleep(profile, exclude)
            if placement.room_on(node, profile) is None
            and placement.room_on(node, profile, assume_idle=True) is not None
        ]

    def hedge_after(self, profile: ModelProfile) -> float:
        """How long to wait for room alone before a cold load elsewhere starts too."""
        limit = self.settings.wake_hedge_s
        load = self.load_s.get(profile.id)
        if load is not None:
            limit = min(limit, load - self.wake_s.get(profile.id, 0.0))
        return max(0.0, limit)

    def worth_waiting(
        self, profile: ModelProfile, exclude: frozenset[str], plans: list[tuple[Node, list[Victim]]]
    ) -> bool:
        """Whether placement, about to follow ``plans``, should wait for room first (see the
        module docstring); cheap when the model sleeps nowhere."""
        if not self.settings.wake_wait_s or not self.placement.fleet.replicas(profile.id, ("sleeping",)):
            return False
        if any((m := node.models.get(profile.id)) is not None and m.state in _IN_PLACE for node, _ in plans):
            return False
        return bool(self.blocked(profile, exclude))

    # -- waiting ----------------------------------------------------------------------------

    async def wait(
        self,
        profile: ModelProfile,
        exclude: frozenset[str],
        cold: Callable[[], Coroutine[Any, Any, Node]] | None,
    ) -> Node | None:
        """Wait for room where ``profile`` sleeps and wake it there; returns the node it is ready
        on, or ``None`` when placement should go on as usual (the bound passed, or a replica
        became ready elsewhere).

        With ``cold`` (a cold load elsewhere is possible), the wait is a hedge: after
        :meth:`hedge_after` seconds ``cold`` starts too, and whichever is ready first serves
        (a cold load that loses goes on to give the model a second replica, as a load whose
        clients left does). Without it, the wait ends at ``wake_wait_s``."""
        placement = self.placement
        loop = asyncio.get_running_loop()
        hedge = self.hedge_after(profile) if cold is not None else self.settings.wake_wait_s
        deadline = loop.time() + hedge
        task = asyncio.current_task()
        assert task is not None
        self.waits += 1
        log.info("waiting up to %.1fs for room where %s sleeps", hedge, profile.id)
        refused = False  # a wake was just refused: wait for a change before trying again
        while True:
            self._waiting[profile.id] = task  # holding nothing: cancelled if its clients leave
            try:
                while refused or (plan := self._room(profile, exclude)) is None:
                    refused, plan = False, None
                    if placement.fleet.replicas(profile.id):
                        return None
                    remaining = deadline - loop.time()
                    nodes = self._asleep(profile, exclude)
                    if remaining <= 0 or not nodes:
                        break
                    await self._changed(nodes, remaining)
            finally:
                self._waiting.pop(profile.id, None)
            if plan is None:
                break
            if (node := await self._try_wake(profile, *plan)) is not None:
                return node
            refused = True
        if cold is None:
            self.waits_lost += 1
            log.info("no room where %s sleeps in %.1fs", profile.id, hedge)
            return None
        hedging = loop.create_task(cold(), name=f"hedge {profile.id}")
        self._background.add(hedging)  # kept: it goes on if the wake wins or this is cancelled
        hedging.add_done_callback(self._settled)
        return await self._race(profile, exclude, hedging)

    async def _race(self, profile: ModelProfile, exclude: frozenset[str], cold: asyncio.Task[Node]) -> Node:
        """Until ``cold`` finishes, wake ``profile`` where it sleeps as soon as there is room."""
        log.info("no room where %s sleeps yet: loading it elsewhere meanwhile", profile.id)
        while not cold.done():
            plan = self._room(profile, exclude)
            if plan is not None and (node := await self._try_wake(profile, *plan)) is not None:
                return node
            nodes = self._asleep(profile, exclude)
            if not nodes:
                break
            changed = asyncio.ensure_future(self._changed(nodes, None))
            try:
                await asyncio.wait({cold, changed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                changed.cancel()
        self.waits_lost += 1
        return await cold

    async def _try_wake(self, profile: ModelProfile, node: Node, victims: list[Victim]) -> Node | None:
        """Make room on ``node`` and wake ``profile`` there; ``None`` if the neuron refused (the
        room was taken meanwhile, by another model that waited there too or another gateway):
        the node is read again and the wait goes on."""
        placement = self.placement
        try:
            await placement.on_node(node, placement.residency.make_room_and_place(node, victims, profile))
        except CortexError as exc:
            log.info("waking %s on %s refused: %s", profile.id, node.name, exc.message)
            if placement.reread is not None:
                await placement.reread(node)
            return None
        self.waits_won += 1
        placement.residency.awaited(node, profile.id)
        return node

    def _asleep(self, profile: ModelProfile, exclude: frozenset[str]) -> list[Node]:
        return [n for n in self.placement.fleet.replicas(profile.id, ("sleeping",)) if n.name not in exclude]

    def _room(self, profile: ModelProfile, exclude: frozenset[str]) -> tuple[Node, list[Victim]] | None:
        """A node where ``profile`` sleeps that can make room for it now, and its victims."""
        for node in self._asleep(profile, exclude):
            victims = self.placement.room_on(node, profile)
            if victims is not None and not self._outranked(profile, node):
                return node, victims
        return None

    def _outranked(self, profile: ModelProfile, node: Node) -> bool:
        """Another placement waiting for room on ``node`` has more requests waiting on it and
        could take the room now: it goes first. Otherwise whichever placement the change woke
        first took the room, and a burst's dozens of requests could wait behind one request
        each of two or three models that happened to sleep there too."""
        mine = self._joined.get(profile.id, 0)
        for other in self._waiting:
            if other == profile.id or self._joined.get(other, 0) <= mine:
                continue
            model = node.models.get(other)
            other_profile = self.placement.catalogue.get(other)
            if (
                model is not None
                and model.state == "sleeping"
                and other_profile is not None
                and self.placement.room_on(node, other_profile) is not None
            ):
                return True
        return False

    def _settled(self, task: asyncio.Task[Node]) -> None:
        self._background.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.info("the hedging load failed: %s", exc)

    async def _changed(self, nodes: list[Node], within: float | None) -> None:
        """Return when any of ``nodes`` changes (a request there ends, a poll) or ``within`` s.

        When a request this gateway sent ends, the node's last report still counts it, so the
        node is read again at once rather than at the next poll."""
        signal: asyncio.Future[Node | None] = asyncio.get_running_loop().create_future()
        for node in nodes:
            node.room_waiters[signal] = None
        try:
            # Not ``asyncio.wait_for``: on Python 3.11 it returns a signal that arrives in the
            # step it is cancelled, and a placement whose requests all left would wait on.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(within):
                    finished = await signal
                if finished is not None and self.placement.reread is not None:
                    await self.placement.reread(finished)
        finally:
            for node in nodes:
                node.room_waiters.pop(signal, None)

    # -- requests that wait on the placement ---------------------------------------------------

    def join(self, model_id: str) -> None:
        self._joined[model_id] = self._joined.get(model_id, 0) + 1

    def leave(self, model_id: str) -> None:
        """A request stopped waiting for ``model_id``: if it was the last and the placement is
        only waiting for room (it holds nothing yet), cancel it."""
        left = self._joined.get(model_id, 0) - 1
        if left > 0:
            self._joined[model_id] = left
            return
        self._joined.pop(model_id, None)
        task = self._waiting.get(model_id)
        if task is not None:
            log.info("nobody waits for %s any more: stop waiting for room", model_id)
            task.cancel()
