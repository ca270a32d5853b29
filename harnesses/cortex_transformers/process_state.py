"""The one lock around work that swaps process-wide state in transformers and torch.

``from_pretrained`` builds a model inside context managers that patch globals and put them
back on exit: ``PreTrainedModel.tie_weights`` becomes a no-op, ``torch.linspace`` is wrapped,
torch's default dtype and default-device context change. Each saves "the original" on entry,
so two loads on two threads interleave: the second saves the first one's patch as the
original and restores it last, and from then on tied weights (a chat model's ``lm_head``) stay
on the meta device, every load in the process failing with "Cannot copy out of meta tensor".
Building a synthetic model forks torch's global RNG the same way.

The state is the process's, not a harness's, so the lock is the process's too: it lives here,
the one module-level object of this package, and every such call runs under it. Only the
model's construction is serialised; tokenizers, moving weights to a device and generation run
in parallel as before.
"""

from __future__ import annotations

import threading

PROCESS_STATE_LOCK = threading.RLock()
