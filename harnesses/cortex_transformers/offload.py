"""Sleep for the transformers harness: move a model's weights out of its working set and back.

Sleeping keeps one host-RAM copy of every parameter and buffer (non-persistent buffers such as
rotary frequencies included, which a ``state_dict`` would drop) and turns the model's own
tensors into storage-less ``meta`` tensors, so the model cannot run and holds no device memory
until woken. On a GPU the copy is made in host RAM and the device memory is returned; on a CPU
model the copy *is* the weights (no bytes are copied either way), so sleeping and waking are
instant there and the model still counts against the neuron's host-RAM budget only.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch

HostCopy = dict[str, tuple[bool, torch.Tensor]]


def offload(model: Any) -> HostCopy:
    """Keep every parameter and buffer of ``model`` in host RAM and empty the model itself."""
    named = itertools.chain(
        ((name, True, t) for name, t in model.named_parameters(remove_duplicate=False)),
        ((name, False, t) for name, t in model.named_buffers(remove_duplicate=False)),
    )
    saved: HostCopy = {}
    host = torch.device("cpu")
    for name, is_parameter, tensor in named:
        saved[name] = (is_parameter, tensor.detach().to(host))
    model.to("meta")
    return saved


def restore(model: Any, saved: HostCopy, device: torch.device) -> None:
    """Put the tensors :func:`offload` kept back into ``model``, on ``device``.

    Tensors that shared storage before (tied embeddings) are moved once and shared again."""
    moved: dict[tuple[bool, int, tuple[int, ...]], torch.Tensor] = {}
    for name, (is_parameter, tensor) in saved.items():
        key = (is_parameter, tensor.data_ptr(), tuple(tensor.shape))
        restored = moved.get(key)
        if restored is None:
            on_device = tensor.to(device)
            restored = torch.nn.Parameter(on_device, requires_grad=False) if is_parameter else on_device
            moved[key] = restored
        owner_name, _, leaf = name.rpartition(".")
        owner = model.get_submodule(owner_name) if owner_name else model
        if is_parameter:
            owner._parameters[leaf] = restored
        else:
            owner._buffers[leaf] = restored
