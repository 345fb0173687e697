"""The CPU backend: host numpy arrays and the numba CPU kernels (`simulator/kernels/cpu/`).

Every method is the numpy call the engine made before the backend seam existed, so the CPU numbers
and speed are those of before (tests/test_golden.py, and the losses of a preset compared bit for bit).
"""

from __future__ import annotations

import numpy as np

from simulator.backend.description import Described
from simulator.backend.kernels import kernel_namespace
from simulator.i18n import N_
from simulator.kernels.cpu import activations as act


class CpuBackend(Described):
    """Host arrays; `k` holds the kernels by name."""

    name = "cpu"
    on_host = True  # arrays are numpy arrays: host code may read and write them in place

    def __init__(self):
        self.describe(N_("CPU (numba)"))
        self.k = kernel_namespace(lambda module, _name: module)

    # ------------------------------------------------------------- arrays
    def zeros(self, shape, dtype) -> np.ndarray:
        return np.zeros(shape, dtype=dtype)

    def empty_like(self, a) -> np.ndarray:
        return np.empty_like(a)

    def from_host(self, a, dtype=None) -> np.ndarray:
        """A new array holding a copy of host array `a` (cast to dtype)."""
        return np.array(a, dtype=dtype, copy=True)

    def to_host(self, a) -> np.ndarray:
        """A host copy of `a` (never a view into a live buffer)."""
        return a.copy()

    def as_host(self, a) -> np.ndarray:
        """`a` readable on the host: itself here (no copy), a copy on a device."""
        return a

    def upload(self, dst, host) -> None:
        """dst[...] = host (cast to dst's dtype)."""
        dst[...] = host

    def mirror(self, host: np.ndarray) -> np.ndarray:
        """Where the kernels read a host array the engine fills (batch ids, lengths): the array itself here."""
        return host

    def sync(self, mirror, host: np.ndarray) -> None:
        """Brings a mirror up to date with its host array: nothing to do here."""

    def clone(self, a) -> np.ndarray:
        return a.copy()

    def copy(self, dst, src) -> None:
        np.copyto(dst, src)

    def fill(self, a, value) -> None:
        a.fill(value)

    def multiply(self, out, a, b) -> None:
        """out = a * b elementwise (same shapes)."""
        np.multiply(a, b, out=out)

    def scale_rows(self, x, rows) -> None:
        """x (N, V) *= rows (N,) per row."""
        np.multiply(x, rows[:, None], out=x)

    def mean64(self, a) -> float:
        return float(a.mean(dtype=np.float64))

    def sum64(self, a) -> float:
        return float(a.sum(dtype=np.float64))

    def transposed(self, a):
        """A 2-D array's transpose as a view of the same memory."""
        return a.T

    # ------------------------------------------------------------- kernels with a backend's own arguments
    def dropout_forward(self, x, mask, uniform, rng: np.random.Generator, p: float, classic: bool) -> None:
        """Dropout in place on x, its per-element factor into mask; the uniforms drawn from `rng` into `uniform`."""
        rng.random(out=uniform, dtype=x.dtype)
        (act.dropout_classic_forward if classic else act.dropout_forward)(x, mask, x, uniform, p)
