"""Kernel sets: `cpu/` (numba @njit). Arrays of one session live on one device."""

import glob
import os
from pathlib import Path


def kernels_cached() -> bool:
    """True when numba has compiled kernels cached from an earlier run (so start-up is fast)."""
    roots = [os.environ["NUMBA_CACHE_DIR"]] if "NUMBA_CACHE_DIR" in os.environ else [str(Path(__file__).parent)]
    return any(glob.glob(os.path.join(r, "**", "*.nbi"), recursive=True) for r in roots)
