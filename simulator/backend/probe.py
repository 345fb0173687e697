"""Is a CUDA device usable? Asked without importing numba.cuda, so the CPU path never loads it.

The driver library is asked directly (cuInit and cuDeviceGetCount through ctypes). numba-cuda's
simulator (`NUMBA_ENABLE_CUDASIM=1`) counts as usable only when that variable is set explicitly:
it runs every CUDA thread as a Python thread, thousands of times slower than the CPU backend, so it
is for tests and never what `train.backend: auto` should pick on a machine without a GPU.
"""

from __future__ import annotations

import ctypes
import os

from simulator.i18n import N_

SIMULATOR_VARIABLE = "NUMBA_ENABLE_CUDASIM"


def gpu_usable() -> tuple[bool, str]:
    """(True, "") when the CUDA driver loads and sees a device; else (False, why): a message id, English here."""
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll", "libcuda.dylib"):
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError:
            continue
    else:
        return False, N_("no CUDA driver library (libcuda) on this machine")
    try:
        if lib.cuInit(0) != 0:
            return False, N_("the CUDA driver did not initialise (cuInit failed)")
        count = ctypes.c_int(0)
        if lib.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value < 1:
            return False, N_("the CUDA driver sees no device")
    except AttributeError:
        return False, N_("libcuda lacks cuInit / cuDeviceGetCount")
    return True, ""


def simulator_requested() -> bool:
    """Whether NUMBA_ENABLE_CUDASIM=1 is set (numba-cuda then runs kernels in its simulator)."""
    return os.environ.get(SIMULATOR_VARIABLE) == "1"


def cuda_usable() -> tuple[bool, str]:
    """(True, what runs: N_("GPU") or N_("CUDA simulator")) or (False, why not), numba.cuda not imported."""
    if simulator_requested():
        return True, N_("CUDA simulator")
    ok, why = gpu_usable()
    return (True, N_("GPU")) if ok else (False, why)
