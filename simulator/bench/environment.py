"""What a bench ran on: the CPU, the BLAS library with its kernel and threads, the variables that change speed.

Tables from different machines compare only with these beside them: a GEMM's speed depends on
the BLAS kernel (OpenBLAS picks one per CPU; OPENBLAS_CORETYPE overrides it) and on how many
threads each pool runs.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping

import numpy as np

# prefixes of the environment variables that change how fast numpy, numba or torch run
SPEED_PREFIXES = ("OMP_", "OPENBLAS_", "GOTO_", "MKL_", "KMP_", "BLIS_", "NUMBA_NUM_THREADS", "NUMBA_THREADING")


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo; elsewhere what platform says)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def thread_pools() -> list[str]:
    """One line per native thread pool loaded in this process (BLAS, OpenMP), as threadpoolctl reports it."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return ["(threadpoolctl not installed: BLAS kernel and thread counts unknown)"]
    lines = []
    for pool in threadpool_info():
        kernel = f", kernel {pool['architecture']}" if pool.get("architecture") else ""
        layer = f", {pool['threading_layer']}" if pool.get("threading_layer") else ""
        name = " ".join(str(x) for x in (pool["internal_api"], pool.get("version")) if x)
        lines.append(f"{pool['user_api']}: {name} ({pool['prefix']}){kernel}, {pool['num_threads']} threads{layer}")
    return lines


def speed_variables(env: Mapping[str, str]) -> dict[str, str]:
    """The variables of `env` that change speed (thread counts, wait policies, BLAS kernels)."""
    return {k: v for k, v in sorted(env.items()) if k.startswith(SPEED_PREFIXES)}


def describe(user_env: Mapping[str, str]) -> list[str]:
    """Lines naming the machine, the thread pools, and the variables the engine and the torch child ran with."""
    import numba

    import simulator
    ours = speed_variables(os.environ)
    set_by_us = {k for k, v in ours.items() if user_env.get(k) != v}

    def note(k):
        if k not in set_by_us:
            return ""
        if k.startswith("OPENBLAS_") and simulator.NUMPY_BEFORE_ENGINE:  # read when numpy loaded OpenBLAS
            return " (set by the engine too late: numpy was imported first, so OpenBLAS did not see it)"
        return " (set by the engine)"
    engine = ", ".join(f"{k}={v}{note(k)}" for k, v in ours.items())
    child = ", ".join(f"{k}={v}" for k, v in speed_variables(user_env).items())
    return [f"CPU: {cpu_model()}, {os.cpu_count()} logical CPUs; {platform.system()} {platform.machine()}",
            f"Python {platform.python_version()}, numpy {np.__version__}, numba {numba.__version__} "
            f"({numba.get_num_threads()} threads)",
            *(f"  {line}" for line in thread_pools()),
            f"engine environment: {engine or 'no speed variables set'}",
            f"torch child environment (the user's own): {child or 'no speed variables set'}"]


if __name__ == "__main__":
    import simulator
    print("\n".join(describe(simulator.USER_ENVIRON)))
