"""How much memory a checkpoint will take once loaded, read from its files without loading it.

The neuron refuses a load that does not fit its memory budget, so it needs a model's size
before the load starts. A profile's ``vram_mb`` says it when the operator declared it; otherwise
this estimate does. safetensors files carry a JSON header with every tensor's dtype and shape,
so the count of elements is exact and only the header is read; the size follows from the dtype
the model will be loaded in (float32 on CPU). Pickled ``.bin`` checkpoints have no such header
and count as their file size.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

# Bytes per element of each safetensors dtype.
_SAFETENSORS_BYTES = {
    "F64": 8,
    "I64": 8,
    "U64": 8,
    "F32": 4,
    "I32": 4,
    "U32": 4,
    "F16": 2,
    "BF16": 2,
    "I16": 2,
    "U16": 2,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
}
_FLOATS = frozenset({"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"})
# A header larger than this is not a safetensors header (the format caps it at 100 MB).
_MAX_HEADER = 100 * 1024 * 1024


def checkpoint_bytes(directory: Path, float_bytes: int | None) -> int | None:
    """Bytes the weights in ``directory`` take once loaded, or ``None`` when it holds none.

    ``float_bytes`` is the element size floating-point weights are loaded in (4 for float32),
    or ``None`` to keep each tensor's stored dtype (``dtype = "auto"``).
    """
    tensors = sorted(directory.glob("*.safetensors"))
    if tensors:
        return sum(_safetensors_bytes(path, float_bytes) for path in tensors)
    pickled = sorted(directory.glob("*.bin"))
    if pickled:
        return sum(path.stat().st_size for path in pickled)
    return None


def _safetensors_bytes(path: Path, float_bytes: int | None) -> int:
    with path.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        if length > _MAX_HEADER:
            raise ValueError(f"{path.name}: not a safetensors file")
        header = json.loads(handle.read(length))
    total = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        count = 1
        for dim in entry["shape"]:
            count *= int(dim)
        dtype = entry["dtype"]
        size = float_bytes if float_bytes is not None and dtype in _FLOATS else _SAFETENSORS_BYTES[dtype]
        total += count * size
    return total
