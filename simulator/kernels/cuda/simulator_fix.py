"""A thread-safe `cuda.shared.array` for numba-cuda's simulator (installed by launch.py when simulated).

The simulator runs each CUDA thread of a block as a Python thread. It makes a block's shared array
lazily: the first thread to reach a `cuda.shared.array(...)` line makes it, and the others find it
in a dict keyed by that line. numba-cuda 0.30 does the look-up and the store without a lock. If
the interpreter switches threads between the two (more likely on a busy machine, since
`sys.getswitchinterval()` is measured in wall time), two threads each make an array of their own.
A reduction then sums slots that its other threads never wrote, and a kernel that is correct on a
GPU gives wrong numbers. We saw it as a rare failure of whole training steps in the simulator
(one `wte` entry off by exactly the learning rate); with a switch interval of 1 µs it failed in
three runs out of four, and with this lock in none.

The replacement does the same look-up under one lock. The key is the calling line, as in
numba-cuda: two `cuda.shared.array` calls on one line would share one array, as there.
"""

from __future__ import annotations

import sys
import threading

import numpy as np

_lock = threading.Lock()
_new_array = np.empty  # how a block's shared array is made (a seam: a test slows it to widen the race)


def shared_array(self, shape, dtype, alignment=None):
    """FakeCUDAShared.array, with its lazy per-line allocation made under a lock."""
    if alignment is not None or shape == 0:  # numba-cuda's own errors and its dynamic shared memory
        return _original(self, shape, dtype, alignment)
    from numba.core import types
    from numba.np import numpy_support

    if isinstance(dtype, types.Type):
        dtype = numpy_support.as_dtype(dtype)
    caller = sys._getframe(1)
    key = (caller.f_code.co_filename, caller.f_lineno)
    with _lock:
        array = self._allocations.get(key)
        if array is None:
            array = self._allocations[key] = _new_array(shape, dtype)
    return array


_original = None


def install() -> bool:
    """Replaces the simulator's FakeCUDAShared.array (once); False where this numba-cuda has another layout."""
    global _original
    try:
        from numba.cuda.simulator import kernelapi
    except ImportError:  # pragma: no cover - a numba-cuda without the simulator
        return False
    shared = getattr(kernelapi, "FakeCUDAShared", None)
    if shared is None or not hasattr(shared, "array"):  # pragma: no cover - another simulator layout
        return False
    if shared.array is not shared_array:
        _original = shared.array
        shared.array = shared_array
    return True
