"""The kernel's stash: typed per-kernel plugin state, never shared between kernels."""

from __future__ import annotations

import pytest

from cortex_kernel.stash import Stash, StashKey

COUNT = StashKey[int]()
NAME = StashKey[str]()


def test_keys_are_distinct_and_values_typed() -> None:
    stash = Stash()
    stash[COUNT] = 3
    assert stash[COUNT] == 3 and COUNT in stash and NAME not in stash and len(stash) == 1
    assert stash.get(NAME, "none") == "none"
    with pytest.raises(KeyError):
        stash[NAME]
    del stash[COUNT]
    assert COUNT not in stash


def test_setdefault_makes_once_so_hooks_in_any_order_share_one_object() -> None:
    stash, made = Stash(), []

    def make() -> int:
        made.append(1)
        return len(made)

    assert stash.setdefault(COUNT, make) == 1 and stash.setdefault(COUNT, make) == 1 and made == [1]
    assert Stash().get(COUNT, 0) == 0  # another stash (another kernel) sees nothing
