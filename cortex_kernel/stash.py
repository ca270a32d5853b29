"""Per-kernel state for plugins: a :class:`Stash` keyed by typed :class:`StashKey` objects.

A plugin whose hooks must share an object (say, the metrics sink that one hook registers and
another serves) keeps it on the kernel rather than in a module-level dict keyed by
``id(kernel)``: the state then lives and dies with the kernel, two kernels in one process
(tests, embedded neurons) never see each other's, and the type checker knows what each key
holds. The shape is pytest's ``Stash`` and aiohttp's ``AppKey``: a key is a module-level
constant, ``SINK = StashKey[MetricsSink]()``, and only the code holding the key can reach the
value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

T = TypeVar("T")


class StashKey(Generic[T]):
    """A key into a :class:`Stash`; compared by identity, typed by what it holds."""

    __slots__ = ()


class Stash:
    """A typed map from :class:`StashKey` to values; one per kernel (``Kernel.stash``)."""

    __slots__ = ("_values",)

    def __init__(self) -> None:
        self._values: dict[StashKey[Any], object] = {}

    def __setitem__(self, key: StashKey[T], value: T) -> None:
        self._values[key] = value

    def __getitem__(self, key: StashKey[T]) -> T:
        return cast(T, self._values[key])

    def __contains__(self, key: StashKey[Any]) -> bool:
        return key in self._values

    def __delitem__(self, key: StashKey[Any]) -> None:
        del self._values[key]

    def __len__(self) -> int:
        return len(self._values)

    def get(self, key: StashKey[T], default: T) -> T:
        """The value under ``key``, or ``default`` when there is none."""
        return cast(T, self._values.get(key, default))

    def setdefault(self, key: StashKey[T], make: Callable[[], T]) -> T:
        """The value under ``key``; made by ``make()`` and stored first if there is none, so two
        hooks called in either order share one object."""
        if key not in self._values:
            self._values[key] = make()
        return cast(T, self._values[key])
