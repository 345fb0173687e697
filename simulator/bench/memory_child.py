"""Peak resident memory of this engine training one model: `python -m simulator.bench.memory_child V d L H T B steps`.

A process's peak resident set only grows, so each model is measured in a process of its own: the bench runs
this module once per model and reads the one JSON line it prints, {"start_mb", "peak_mb"}: the peak after the
engine's imports (numpy, numba, the compiled kernels loaded), and the peak after building the model and
training `steps` steps. The PyTorch child reports the same two numbers for its model (torch_child.py).
"""

from __future__ import annotations

import json
import resource
import sys


def peak_rss_mb() -> float:
    """This process's peak resident set so far, in MB: Linux's VmHWM (the peak of this program's memory; the
    rusage peak would start at the parent's, which a forked child inherits), else the rusage peak (macOS reports
    bytes, others KB)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def main(argv: list[str]) -> None:
    from simulator.bench.step import Shape, session_for  # the engine, imported before the first number

    V, d, L, H, T, B, steps = (int(a) for a in argv[:7])
    session_for(Shape("warm", V, d, 1, H, T, 1)).step()  # the kernels loaded (compiled once, then cached)
    start = peak_rss_mb()
    session = session_for(Shape("model", V, d, L, H, T, B))
    for _i in range(steps):
        session.step()
    print(json.dumps({"start_mb": start, "peak_mb": peak_rss_mb()}))


if __name__ == "__main__":
    main(sys.argv[1:])
