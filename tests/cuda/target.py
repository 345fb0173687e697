"""Where the CUDA tests run: a real GPU when one is usable, else numba-cuda's simulator.

Decided before numba.cuda is first imported (its config reads NUMBA_ENABLE_CUDASIM then), and
without importing it to decide: the CUDA driver library is asked directly (cuInit and
cuDeviceGetCount through ctypes, simulator/backend/probe.py). An explicit NUMBA_ENABLE_CUDASIM in the environment wins.
"""

from __future__ import annotations

import os

from simulator.backend.probe import gpu_usable  # the driver probe, shared with the engine's backend selection


def choose() -> tuple[str, str]:
    """Sets NUMBA_ENABLE_CUDASIM when needed; returns (mode, why): mode "gpu", "simulator" or "" (unusable)."""
    forced = os.environ.get("NUMBA_ENABLE_CUDASIM")
    if forced not in (None, ""):
        if forced != "0":
            return "simulator", "NUMBA_ENABLE_CUDASIM is set"
        ok, why = gpu_usable()
        return ("gpu", "") if ok else ("", f"NUMBA_ENABLE_CUDASIM=0 asks for a GPU, but {why}")
    ok, why = gpu_usable()
    if ok:
        return "gpu", "a CUDA device is usable"
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"  # kept for the whole process: numba-cuda re-reads it at each compile
    return "simulator", why


MODE, WHY = choose()
SKIP_REASON = "" if MODE else WHY
if MODE:
    try:
        from numba import cuda  # noqa: F401  (imported here, after the mode is set)

        if MODE == "gpu" and not cuda.is_available():
            MODE, SKIP_REASON = "", "a CUDA device was found but numba-cuda cannot use it"
    except Exception as exc:  # a broken numba-cuda: the CPU suite still runs, these tests say why they skip
        MODE, SKIP_REASON = "", f"numba.cuda does not import: {type(exc).__name__}: {exc}"
