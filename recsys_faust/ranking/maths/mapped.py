"""Arrays that are a memory-mapped file travel between processes as the file's name.

A worker maps a large model's item factors (``artifact.load(..., mmap=True)``) and sends the
fold-in to its scoring process by pickle. Pickled as data, the factors would be copied into the
pipe and held twice (256 MB each at a million items); sent as the name of the mapped ``.npy``,
the scoring process maps the same file and both processes share the page cache's one copy.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np


def mapped_file(a: np.ndarray) -> Optional[str]:
    """The ``.npy`` file ``a`` is the whole of (mapped read-only), or None for an array in memory."""
    base: Any = a
    while base is not None and not isinstance(base, np.memmap):
        base = getattr(base, "base", None)
    if base is None or getattr(base, "filename", None) is None or base.mode != "r":
        return None
    same = (base.shape == a.shape and base.dtype == a.dtype and a.flags.c_contiguous
            and a.__array_interface__["data"][0] == base.__array_interface__["data"][0])
    return str(base.filename) if same else None


def pack(a: np.ndarray) -> Any:
    """What to pickle for ``a``: its file's name where it is a mapped file, else ``a`` itself."""
    name = mapped_file(a)
    return ("mapped-npy", name) if name is not None else a


def unpack(value: Any) -> np.ndarray:
    if isinstance(value, tuple) and len(value) == 2 and value[0] == "mapped-npy":
        return np.load(value[1], mmap_mode="r", allow_pickle=False)
    return value
