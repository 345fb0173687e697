"""Helpers for comparing a CUDA kernel with its CPU twin: device copies in, host copies out, tolerances."""

from __future__ import annotations

import numpy as np

DTYPES = [np.float32, np.float64]
# float32: the GPU and the CPU sum in other orders (and the CPU in float64 in places); float64: both exact-ish
TOL = {np.float32: 2e-5, np.float64: 1e-12}


def dev(*arrays):
    """Device copies of host arrays (a tuple for several)."""
    from numba import cuda

    out = tuple(cuda.to_device(np.ascontiguousarray(a)) for a in arrays)
    return out if len(out) > 1 else out[0]


def host(*arrays):
    out = tuple(a.copy_to_host() for a in arrays)
    return out if len(out) > 1 else out[0]


def close(gpu, cpu, dtype, scale=1.0):
    """Asserts |gpu - cpu| <= tol * max(1, |cpu|) elementwise (tol by dtype, times scale); NaN and inf must match."""
    gpu, cpu = np.asarray(gpu, np.float64), np.asarray(cpu, np.float64)
    assert gpu.shape == cpu.shape
    assert np.array_equal(np.isnan(gpu), np.isnan(cpu)), "NaN at other places"
    fin = np.isfinite(cpu)
    assert np.array_equal(gpu[~fin & ~np.isnan(cpu)], cpu[~fin & ~np.isnan(cpu)]), "infinities differ"
    tol = TOL[np.dtype(dtype).type] * scale
    err = np.abs(gpu[fin] - cpu[fin]) / np.maximum(1.0, np.abs(cpu[fin]))
    assert err.max(initial=0.0) <= tol, f"max rel err {err.max():.3g} > {tol:.3g}"


def randn(rng, shape, dtype, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)
