"""`@wide`: a kernel compiled twice, serial and parallel, called in parallel only when the arrays are big.

Waking numba's thread pool costs about 50 µs per parallel region here (measured: a parallel
LayerNorm forward over 1024 x 64 took 0.116 ms, the serial backward over the same rows, with more
work, 0.067 ms), which is more than a small kernel's whole work. Kernels under `@wide` must be
row- or element-parallel (no reduction across `prange` iterations), so both compiles give
bit-identical results.

Both compiles use numpy's error model: a division by zero gives inf or NaN, as numpy's would, and
not Python's ZeroDivisionError. A parallel loop is compiled so anyway; the serial one, checking
each division for zero, did not vectorise (measured: GELU forward over 1024 x 256, 1.9 ms serial
with the check, 0.16 ms without).

`@wide(fastmath=FAST)`: both compiles may reorder a reduction inside one row (a row's max or sum)
so that LLVM vectorises it; without nnan and ninf, so -inf (a masked score) and NaN (a diverging
run) keep their meaning.
"""

from __future__ import annotations

import functools
import types

import numpy as np
from numba import njit

PARALLEL_MIN_ELEMENTS = 1 << 17  # below this many elements in the largest array, run serially
# fastmath without nnan/ninf: -inf marks masked scores and must survive the optimiser
FAST = {"nsz", "arcp", "contract", "afn", "reassoc"}


def wide(fn=None, *, fastmath=False):
    """Decorator: numba-compile `fn` serially and in parallel; dispatch on the largest array's size."""
    if fn is None:  # @wide(fastmath=...)
        return functools.partial(wide, fastmath=fastmath)
    options = {"fastmath": set(fastmath) if fastmath else False, "error_model": "numpy"}
    serial = _compile(fn, "serial", **options)
    parallel = _compile(fn, "parallel", parallel=True, **options)

    @functools.wraps(fn)
    def dispatch(*args):
        size = max((a.size for a in args if isinstance(a, np.ndarray)), default=0)
        return (parallel if size >= PARALLEL_MIN_ELEMENTS else serial)(*args)

    dispatch.serial, dispatch.parallel = serial, parallel
    return dispatch


def _compile(fn, suffix: str, **options):
    """njit of a copy of fn named NAME_suffix_numpyerrors: each compile gets its own cache file.

    Numba's cache is keyed by name and source file, not by options: the name carries the error
    model, so a cache written before it changed is not reused.
    """
    name = f"{fn.__name__}_{suffix}_numpyerrors"
    twin = types.FunctionType(fn.__code__, fn.__globals__, name, fn.__defaults__, fn.__closure__)
    twin.__qualname__ = f"{fn.__qualname__}_{suffix}_numpyerrors"
    twin.__module__ = fn.__module__
    return njit(cache=True, nogil=True, **options)(twin)
