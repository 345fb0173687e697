"""cuBLAS through CuPy for the CUDA backend's matrix products: which GEMM runs where, and on a GPU with CuPy the
cuBLAS path against numpy and against our tiled kernel for every transpose and accumulate combination."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from simulator.kernels.cuda import gemm as g
from tests.cuda import target


@pytest.fixture
def fresh_choice():
    g.cublas.cache_clear()
    yield
    g.cublas.cache_clear()


def test_the_simulator_and_the_variable_keep_the_tiled_kernel(monkeypatch, fresh_choice):
    if target.MODE == "simulator":
        assert g.cublas() is None and g.which_gemm() == "numba"  # CuPy has no simulator
    g.cublas.cache_clear()
    monkeypatch.setenv(g.GEMM_VARIABLE, "numba")
    assert g.which_gemm() == "numba"


needs_cublas = pytest.mark.skipif(g.cublas() is None, reason="cuBLAS needs a real GPU with CuPy installed "
                                                             "(pip install .[gpu]); here the tiled kernel runs")


@needs_cublas
@pytest.mark.parametrize("trans_a, trans_b, accumulate", list(itertools.product((False, True), repeat=3)))
def test_cublas_gemm_equals_numpy_and_the_tiled_kernel(trans_a, trans_b, accumulate):
    from numba import cuda
    rng = np.random.default_rng(0)
    M, N, K = 37, 23, 45  # no multiple of a tile
    a = rng.standard_normal((K, M) if trans_a else (M, K)).astype(np.float32)
    b = rng.standard_normal((N, K) if trans_b else (K, N)).astype(np.float32)
    c0 = rng.standard_normal((M, N)).astype(np.float32)
    want = (a.T if trans_a else a) @ (b.T if trans_b else b) + (c0 if accumulate else 0)
    outs = {}
    for name, fn in (("cublas", g.gemm), ("tiled", g.tiled_gemm)):
        c = cuda.to_device(c0)
        fn(c, cuda.to_device(a), cuda.to_device(b), trans_a, trans_b, accumulate)
        outs[name] = c.copy_to_host()
    np.testing.assert_allclose(outs["cublas"], want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(outs["cublas"], outs["tiled"], rtol=1e-4, atol=1e-4)


@needs_cublas
def test_cublas_batched_equals_numpy():
    from numba import cuda
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((5, 9, 7)), rng.standard_normal((5, 11, 7))  # float64 too
    c = cuda.to_device(np.ones((5, 9, 11)))
    g.gemm_batched(c, cuda.to_device(a), cuda.to_device(b), trans_b=True, accumulate=True)
    np.testing.assert_allclose(c.copy_to_host(), 1.0 + a @ b.transpose(0, 2, 1), rtol=1e-12)
