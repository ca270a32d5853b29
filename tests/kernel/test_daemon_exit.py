"""A daemon's exit after its drain: the interpreter's final collection is skipped.

A neuron that held a model answered its SIGTERM in well under a second but then spent 3-4 s in
the interpreter's teardown, garbage-collecting every object torch and transformers had made
(`PYTHONFAULTHANDLER` showed "Garbage-collecting" with no Python frame). ``run_until_signalled``
freezes what is left, so the exit frees it with the process. Timed in docs/performance.md.
"""

from __future__ import annotations

import gc

from cortex_kernel.serving import run_until_signalled


def test_what_is_left_after_the_daemons_main_is_frozen_for_the_exit() -> None:
    async def main() -> None:
        return None

    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    try:
        run_until_signalled(main())
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
