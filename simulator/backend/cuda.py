"""The CUDA backend: numba device arrays and the CUDA twins (`simulator/kernels/cuda/`).

Imported only when a session asks for backend cuda (importing it imports numba.cuda). Arrays stay on
the device across steps: weights, gradients, optimizer state, activations and their gradients. What
crosses to the host, and why:

* host to device: the batch's token ids and targets and, for padded data, the row lengths (B x T
  int32 a step: the data pipeline is numpy), and the fixed position tables once per model;
* device to host: the per-row losses (N numbers a step) for the mean loss of the StepRecord, the
  global gradient norm (one number, inside the clipping twin), a clamp count (value clipping), and
  whatever a reader asks for (a parameter, a gradient, an activation, a checkpoint: see
  simulator/backend/host.py), and the statistics every `train.stats_every` steps: their norms and
  moments reduced on the device, so only those results and a few small tensors cross
  (simulator/backend/device_stats.py).

Dropout draws its masks on the device from Philox (simulator/kernels/cuda/dropout.py); the key of
each dropout call is one 64-bit number drawn from the session's dropout stream, so the stream (and
the checkpoint that holds its state) still decides the masks, but they differ from the CPU's.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from simulator.backend.description import Described
from simulator.backend.kernels import kernel_namespace
from simulator.kernels.cuda import dropout as _dropout
from simulator.kernels.cuda import launch
from simulator.kernels.cuda import optim as _optim
from simulator.kernels.cuda.table import ELSEWHERE, MODULES

# grid-stride loops over at most MAX_BLOCKS blocks: under the simulator every CUDA thread is a Python
# thread, so a thread per element would make zeroing the gradients cost more than a kernel that uses them


@cuda.jit
def _fill(x, value):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        x[i] = value


@cuda.jit
def _multiply(out, a, b):
    for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        out[i] = a[i] * b[i]


@cuda.jit
def _scale_rows(x, rows):
    # x (N, V) *= rows (N,)
    V = x.shape[1]
    for i in range(cuda.grid(1), x.shape[0] * V, cuda.gridsize(1)):
        x[i // V, i % V] *= rows[i // V]


def _grid(n: int) -> tuple[int, int]:
    return min(launch.blocks(n), launch.MAX_BLOCKS), launch.THREADS


def _flat(a):
    return a.reshape(a.size)


class CudaBackend(Described):
    """Device arrays; `k` holds the CUDA twins by the CPU kernels' names."""

    name = "cuda"
    on_host = False

    def __init__(self, description: str):
        self.describe(description)  # "GPU" or "CUDA simulator"
        self.k = kernel_namespace(lambda module, name: ELSEWHERE.get(name, MODULES[module]))
        self._scratch: dict[int, object] = {}

    # ------------------------------------------------------------- arrays
    def zeros(self, shape, dtype):
        return cuda.to_device(np.zeros(shape, dtype=dtype))

    def empty_like(self, a):
        return cuda.device_array(a.shape, a.dtype)

    def from_host(self, a, dtype=None):
        return cuda.to_device(np.ascontiguousarray(a, dtype=dtype))

    def to_host(self, a) -> np.ndarray:
        return a.copy() if isinstance(a, np.ndarray) else a.copy_to_host()  # host arrays too (the batch's ids)

    def as_host(self, a) -> np.ndarray:
        return a if isinstance(a, np.ndarray) else a.copy_to_host()

    def upload(self, dst, host) -> None:
        dst.copy_to_device(np.ascontiguousarray(np.broadcast_to(np.asarray(host, dtype=dst.dtype), dst.shape)))

    def mirror(self, host: np.ndarray):
        return cuda.to_device(host)

    def sync(self, mirror, host: np.ndarray) -> None:
        mirror.copy_to_device(host)

    def clone(self, a):
        out = cuda.device_array(a.shape, a.dtype)
        out.copy_to_device(a)  # device to device
        return out

    def copy(self, dst, src) -> None:
        dst.copy_to_device(src)

    def fill(self, a, value) -> None:
        if a.size:
            _fill[_grid(a.size)](_flat(a), a.dtype.type(value))

    def multiply(self, out, a, b) -> None:
        if out.size:
            _multiply[_grid(out.size)](_flat(out), _flat(a), _flat(b))

    def scale_rows(self, x, rows) -> None:
        if x.size:
            _scale_rows[_grid(x.size)](x, rows)

    def mean64(self, a) -> float:
        return float(a.copy_to_host().mean(dtype=np.float64))  # N losses cross: the step record's loss is a host float

    def sum64(self, a) -> float:
        return float(a.copy_to_host().sum(dtype=np.float64))

    def transposed(self, a):
        return launch.transposed(a)  # a view of the same memory: a DeviceNDArray's .T is a copy

    # ------------------------------------------------------------- kernels with a backend's own arguments
    def dropout_forward(self, x, mask, uniform, rng: np.random.Generator, p: float, classic: bool) -> None:
        """Dropout in place on x (the mask from Philox, keyed by one number from `rng`); `uniform` is unused."""
        seed = int(rng.integers(0, 2 ** 63))
        (_dropout.dropout_classic_forward if classic else _dropout.dropout_forward)(x, mask, x, seed, 0, p)

    def clip_gradients(self, grads, cfg) -> tuple[float, bool]:
        n = grads.shape[0]
        if n not in self._scratch:
            self._scratch[n] = _optim.reduction_scratch(n)
        return _optim.clip_gradients(grads, cfg, self._scratch[n])
