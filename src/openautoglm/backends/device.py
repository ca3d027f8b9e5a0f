"""Where the local backend runs: ``device="auto" | "cpu" | "cuda" | "cuda:N"``.

The lean runtime is plain PyTorch, so running on a GPU means: weights moved there once,
and every tensor the forward pass and the decode loop create made there too.  The second
is done by running each call inside ``torch.device(...)`` (a factory-function default, per
thread), so the runtime's code stays device-agnostic.  On CPU nothing is wrapped.
"""

from __future__ import annotations

import contextlib
from typing import Any, ContextManager

from ..errors import BackendError


def resolve_device(name: str | None) -> str:
    """``"auto"`` → ``"cuda"`` where PyTorch sees a GPU, else ``"cpu"``; others validated."""
    import torch

    name = (name or "auto").strip().lower()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return "cpu"
    if name == "gpu" or name.startswith("cuda"):
        name = "cuda" if name == "gpu" else name
        if not torch.cuda.is_available():
            raise BackendError(f"device={name!r}, but PyTorch sees no CUDA GPU here",
                               hint="use device='auto' (GPU when present, else CPU) or device='cpu'; "
                                    "a CPU-only torch build needs a CUDA build from pytorch.org")
        index = name.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise BackendError(f"no GPU {name!r}: {torch.cuda.device_count()} visible",
                               hint="use 'cuda' or 'cuda:<index>'")
        return name
    raise BackendError(f"unknown device {name!r}", hint="use 'auto', 'cpu' or 'cuda' (or 'cuda:<index>')")


def device_scope(device: str) -> ContextManager[Any]:
    """Make ``device`` the default for tensors created inside (nothing on CPU)."""
    if device == "cpu":
        return contextlib.nullcontext()
    import torch

    return torch.device(device)
