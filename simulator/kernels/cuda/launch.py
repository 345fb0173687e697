"""Launch geometry shared by the CUDA kernels: block sizes, grids, the per-dtype kernel cache, reductions.

Block sizes depend on where the kernels run. On a GPU they are the usual ones (256 threads for
elementwise kernels, 128 for a block that reduces one row). Under the CUDA simulator every CUDA
thread is a Python thread and every `syncthreads` a round of polling, so the blocks are tiny
(8 threads for a row): the code path is the same, only the constants shrink, and the tests'
odd sizes (C = 19 over 8 threads) still cross block edges.

Kernels are built per dtype (`per_dtype`): shared and local arrays need their dtype when the
kernel is compiled, and constants (1, 0.5, ...) are given in the data's dtype so float32 data
is computed in float32 on the GPU (a Python float literal would promote it to float64).
"""

from __future__ import annotations

import functools
import os

import numpy as np
from numba import cuda

try:  # numba-cuda keeps its own config module; numba's built-in target read numba's
    from numba.cuda.core import config as _cuda_config
except ImportError:  # pragma: no cover - older layouts
    from numba.core import config as _cuda_config

SIMULATED = bool(getattr(_cuda_config, "ENABLE_CUDASIM", 0)) or os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
if SIMULATED:  # the simulator's shared arrays are made without a lock: simulator_fix.py says why that matters
    from simulator.kernels.cuda import simulator_fix

    simulator_fix.install()

THREADS = 32 if SIMULATED else 256  # elementwise kernels: threads per block
ROW_THREADS = 8 if SIMULATED else 128  # one block per row (norms, softmax): a power of two
COLS, ROWS = (4, 4) if SIMULATED else (32, 8)  # column reductions: a block of COLS columns x ROWS row lanes
MAX_BLOCKS = 8 if SIMULATED else 1024  # grid-stride reductions over a flat buffer: partial sums per call


def blocks(n: int, threads: int = THREADS) -> int:
    """Blocks of `threads` that cover n items (at least one: a zero-sized grid is a launch error)."""
    return max(1, (int(n) + threads - 1) // threads)


def per_dtype(build):
    """Decorator: build(t) -> kernels for numpy scalar type t, built once per dtype and kept."""
    cache: dict = {}

    @functools.wraps(build)
    def get(dtype):
        key = np.dtype(dtype)
        if key not in cache:
            cache[key] = build(key.type)
        return cache[key]

    return get


def transposed(a):
    """The transpose of a 2-D array as a view that shares its memory (the tied head reads wte^T and adds into
    its gradient through it). A numba DeviceNDArray's own `.T` runs a transpose kernel into a new array, so
    a gradient added through it would be lost: this builds the strided view from the same device memory."""
    if SIMULATED or isinstance(a, np.ndarray):
        return a.T  # numpy's (and the simulator's) transpose is a view already
    from numba.cuda.cudadrv.devicearray import DeviceNDArray

    return DeviceNDArray(shape=tuple(a.shape)[::-1], strides=tuple(a.strides)[::-1], dtype=a.dtype, stream=a.stream,
                         gpu_data=a.gpu_data)


@cuda.jit(device=True)
def block_sum(buf, tid, n):
    """Tree sum of buf[:n] (n a power of two, one slot per thread) into buf[0]; every thread of the block calls it."""
    cuda.syncthreads()
    s = n // 2
    while s > 0:
        if tid < s:
            buf[tid] += buf[tid + s]
        cuda.syncthreads()
        s //= 2


@cuda.jit(device=True)
def block_sum2(buf1, buf2, tid, n):
    """block_sum of two buffers in the same barriers."""
    cuda.syncthreads()
    s = n // 2
    while s > 0:
        if tid < s:
            buf1[tid] += buf1[tid + s]
            buf2[tid] += buf2[tid + s]
        cuda.syncthreads()
        s //= 2


@cuda.jit(device=True)
def block_max(buf, tid, n):
    """Tree max of buf[:n] into buf[0] (NaN-propagating is not needed: a NaN row gives NaN later anyway)."""
    cuda.syncthreads()
    s = n // 2
    while s > 0:
        if tid < s:
            other = buf[tid + s]
            if other > buf[tid]:
                buf[tid] = other
        cuda.syncthreads()
        s //= 2


@cuda.jit(device=True)
def column_sum(buf, tx, ty, rows):
    """Sum of buf[:rows, tx] over the row lanes into buf[0, tx] (rows a power of two); every thread calls it."""
    cuda.syncthreads()
    s = rows // 2
    while s > 0:
        if ty < s:
            buf[ty, tx] += buf[ty + s, tx]
        cuda.syncthreads()
        s //= 2
