"""Every hook a cortex-kernel plugin can implement.

Hooks are *synchronous factories* called at start-up; the objects they return carry the async
methods used while serving. No hook is called per request. An implementation may accept any
subset of a hook's documented arguments (pluggy passes them by name).

Plugins are found through the ``cortex_kernel`` entry-point group; see ``docs/plugins.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click
    import msgspec

    from cortex_kernel.config.tables import ConfigTable
    from cortex_kernel.dialect import Dialect
    from cortex_kernel.events import EventSink
    from cortex_kernel.eviction import Evictor
    from cortex_kernel.harness import HarnessSpec
    from cortex_kernel.kernel import AppPart, Kernel, Role
    from cortex_kernel.routing import Router

PROJECT = "cortex_kernel"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add subcommands to the ``cortex-kernel`` command line.

    Called once, when the CLI is assembled, before arguments are parsed. Implementations add
    ``click`` commands to ``cli`` with ``cli.add_command``. Return value: ignored.

    :param cli: the top-level ``cortex-kernel`` group.

    .. versionadded:: 0.1
    """


@hookspec
def register_config_tables() -> list[ConfigTable[msgspec.Struct]] | None:
    """Declare the configuration tables this plugin owns, each with the Struct that validates it.

    Called by the CLI once the plugins are loaded, before any hook that is given the
    configuration: by ``config check`` and ``config show``, and by ``serve`` and ``neuron``
    before they assemble a daemon. Return
    :class:`cortex_kernel.ConfigTable` objects: a dotted table name (``"acme"`` for ``[acme]``,
    or ``"routing.acme"`` for a sub-table of a kernel table) and a msgspec Struct with
    ``forbid_unknown_fields=True`` and a default for every field. Each table is validated with
    the same ``FILE:LINE: KEY: PROBLEM`` errors as the kernel's own; a table in the file that
    no loaded plugin declares is an error. Two plugins declaring the same table, or a table
    that is a key of the kernel's configuration, is a start-up error. Read the validated table
    with ``kernel.config.table(TABLE)``.

    :return: a list of config tables, or ``None``.

    .. versionadded:: 0.2
    """


@hookspec
def register_app_parts(role: Role, kernel: Kernel) -> list[AppPart] | None:
    """Contribute routes, middleware and a lifespan to a daemon's ASGI app.

    Called once per process by the app factory, when ``cortex-kernel serve`` (``role ==
    "gateway"``) or ``cortex-kernel neuron`` (``role == "neuron"``) assembles its app. Return
    the parts for ``role``, or ``None`` (or ``[]``) when the plugin has nothing for that role.
    Two parts claiming the same method and path is a start-up error.

    :param role: ``"gateway"`` or ``"neuron"``.
    :param kernel: the start-up context (configuration, plugin manager).
    :return: a list of :class:`cortex_kernel.kernel.AppPart`, or ``None``.

    .. versionadded:: 0.1
    """


@hookspec
def register_harnesses() -> list[HarnessSpec] | None:
    """Offer inference-engine harnesses to the neuron.

    Called once by a neuron at start-up. Return :class:`cortex_kernel.harness.HarnessSpec`
    objects; each names a harness (the ``harness`` key of a model profile) and a factory the
    neuron calls with a :class:`cortex_kernel.harness.HarnessContext` when the harness is first
    needed. Two plugins offering the same name is a start-up error; block one to choose.

    :return: a list of harness specs, or ``None``.

    .. versionadded:: 0.1
    """


@hookspec
def register_dialects(kernel: Kernel) -> list[Dialect] | None:
    """Offer API dialects to the gateway.

    Called once by the gateway at start-up, when it assembles its app. Return objects satisfying
    :class:`cortex_kernel.dialect.Dialect`; the gateway calls each one's ``routes(upstream)``
    with an :class:`cortex_kernel.dialect.Upstream` and mounts the routes, and asks each one's
    ``render_models`` to answer ``GET /v1/models`` in its own shape, and its ``claims`` and
    ``render_error`` to refuse a client key in its own envelope. OpenAI chat, completions
    and embeddings are served by the gateway itself; a dialect must not mount those paths.

    :param kernel: the start-up context (a dialect reads its own configuration table there).
    :return: a list of dialects, or ``None``.

    .. versionadded:: 0.1
    .. versionchanged:: 0.1 receives ``kernel`` (implementations may leave it out).
    """


@hookspec
def register_evictors() -> list[Evictor] | None:
    """Offer eviction strategies to the gateway.

    Called once by the gateway at start-up. Return objects satisfying
    :class:`cortex_kernel.eviction.Evictor`; the one whose ``name`` equals ``[eviction]
    strategy`` in ``cortex.toml`` is used when a model must be loaded on a node without room.
    Two evictors with the same name is a start-up error. The gateway only offers residents that
    are idle and not pinned to the node, and rejects a choice that frees too little or too much.

    :return: a list of evictors, or ``None``.

    .. versionadded:: 0.1
    """


@hookspec
def register_routers(kernel: Kernel) -> list[Router] | None:
    """Offer routing strategies to the gateway.

    Called once by the gateway at start-up (a router reads its own settings from the table it
    declares with ``register_config_tables``, by convention ``[routing.NAME]``). Return objects satisfying
    :class:`cortex_kernel.routing.Router`; the one whose ``name`` equals ``[routing] strategy``
    in ``cortex.toml`` (or a model's ``routing`` in ``models.toml``) orders the ready replicas of
    each request, given its :class:`cortex_kernel.routing.RoutingFacts`. ``route`` runs on the
    event loop for every request, so it must be quick and must not block. Two routers with the
    same name is a start-up error. The gateway only tries replicas it offered, each at most once,
    and tries those a router left out after the ones it named.

    :param kernel: the start-up context.
    :return: a list of routers, or ``None``.

    .. versionadded:: 0.2
    """


@hookspec
def register_event_sinks(role: Role, kernel: Kernel) -> list[EventSink] | None:
    """Subscribe to the request and lifecycle events a daemon emits.

    Called once by the gateway at start-up (``role == "gateway"``). Return objects satisfying
    :class:`cortex_kernel.events.EventSink`; each gets every
    :class:`cortex_kernel.events.RequestFinished`, ``ModelLoaded``, ``ModelUnloaded``,
    ``DefragRestarted``, ``PollFailed`` and ``FleetPolled`` (after every poll), synchronously,
    on the event loop. ``handle`` must
    return quickly; an exception is logged and the event goes on to the next sink. A metrics
    plugin typically also returns an ``AppPart`` from ``register_app_parts`` to expose what it
    counts.

    :param role: the daemon emitting events.
    :param kernel: the start-up context.
    :return: a list of sinks, or ``None``.

    .. versionadded:: 0.1
    """
