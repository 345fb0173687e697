"""The simulator's shared arrays are one array per block and line, however the threads interleave
(simulator/kernels/cuda/simulator_fix.py; on a GPU there is nothing to fix and these tests skip)."""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
import pytest

from tests.cuda import target

pytestmark = pytest.mark.skipif(target.MODE != "simulator", reason="the fix is for numba-cuda's simulator only")

if target.MODE == "simulator":
    from numba import cuda

    import simulator.kernels.cuda.launch  # noqa: F401  (installs the fix, as every kernel module does)

    @cuda.jit  # at module level: the simulator swaps in its fake `cuda` through the kernel's globals
    def _reverse(out):
        buf = cuda.shared.array(32, np.float64)
        tid = cuda.threadIdx.x
        buf[tid] = tid + 1.0
        cuda.syncthreads()
        out[cuda.blockIdx.x, tid] = buf[31 - tid]


def test_the_fix_is_installed_with_the_kernels():
    from numba.cuda.simulator import kernelapi

    from simulator.kernels.cuda import launch, simulator_fix

    assert launch.SIMULATED
    assert kernelapi.FakeCUDAShared.array is simulator_fix.shared_array


def test_threads_that_ask_at_once_get_one_array(monkeypatch):
    """The race made wide: making the array takes 20 ms, and four threads ask for it together. Without the
    lock each would make its own."""
    from numba import float64
    from numba.cuda.simulator import kernelapi

    from simulator.kernels.cuda import simulator_fix

    def slow_empty(shape, dtype):
        time.sleep(0.02)
        return np.empty(shape, dtype)

    monkeypatch.setattr(simulator_fix, "_new_array", slow_empty)
    shared = kernelapi.FakeCUDAShared(0)
    start, got = threading.Barrier(4), []

    def ask():
        start.wait()
        got.append(shared.array(5, float64))  # one line: every thread asks for the same array

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 4 and all(a is got[0] for a in got)
    assert got[0].dtype == np.float64 and got[0].shape == (5,)
    other = shared.array(3, np.float32)  # another line: another array
    assert other is not got[0] and other.dtype == np.float32


def test_a_block_reads_what_its_other_threads_wrote():
    """End to end under a 1 µs switch interval, which made the unlocked simulator fail about one launch in 40
    here: every thread writes its slot, and reads another thread's after the barrier."""
    want = np.tile(np.arange(32, 0, -1.0), (2, 1))
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(40):
            out = np.zeros((2, 32))
            _reverse[2, 32](out)
            assert np.array_equal(out, want)
    finally:
        sys.setswitchinterval(old)
