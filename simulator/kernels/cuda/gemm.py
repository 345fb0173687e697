"""A shared-memory tiled GEMM: c (+)= op(a) op(b), op a transpose or not, in one kernel.

Each block computes one TILE x TILE tile of c; for each step along the inner dimension its
threads load one tile of op(a) and one of op(b) into shared memory (one element each, zero past
the edges), wait, and each thread adds the tile's dot product into its own element. A
transposed operand is read through its stored layout (a (K, M) array as op(a) = a^T), so the
linear layers' dout @ W^T and x^T @ dout need no transposed copies. `accumulate` adds onto c
(the backward contract: gradients add up) instead of writing it. The sum runs in the data's
dtype, as BLAS does.

On a real GPU with CuPy installed (`pip install .[gpu]`), `gemm` and `gemm_batched` call cuBLAS
instead, on the same device memory (CuPy reads numba's arrays through `__cuda_array_interface__`:
no copies; both use the default stream, so the kernels around them stay in order). The tiled kernel
stays for the simulator (CuPy has none) and for `TRANSFORMER_SIM_GEMM=numba`, which keeps it on a GPU
too (a comparison, or a CuPy that fails). Without a GPU at hand this path has not been run: the
CUDA tests run it on a GPU machine with CuPy (tests/cuda/test_cuda_gemm_cublas.py).
"""

from __future__ import annotations

import os
from functools import lru_cache

from numba import cuda

from simulator.kernels.cuda.launch import SIMULATED, blocks, per_dtype

TILE = 8 if SIMULATED else 16  # 16 x 16 = 256 threads on a GPU; 64 simulated threads (fewer blocks, fewer barriers)


@cuda.jit(device=True)
def _tile_product(c, a, b, ta, tb, accumulate, sa, sb, zero):
    """This thread's element of c (+)= op(a) op(b), its block's tiles staged in sa, sb (TILE x TILE)."""
    # c is (M, N); a is (M, K), or (K, M) when ta; b is (K, N), or (N, K) when tb
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row = cuda.blockIdx.y * TILE + ty
    col = cuda.blockIdx.x * TILE + tx
    M, N = c.shape
    K = a.shape[0] if ta else a.shape[1]
    acc = zero
    for k0 in range(0, K, TILE):
        ka, kb = k0 + tx, k0 + ty
        if row < M and ka < K:
            sa[ty, tx] = a[ka, row] if ta else a[row, ka]
        else:
            sa[ty, tx] = zero
        if col < N and kb < K:
            sb[ty, tx] = b[col, kb] if tb else b[kb, col]
        else:
            sb[ty, tx] = zero
        cuda.syncthreads()
        for j in range(TILE):
            acc += sa[ty, j] * sb[j, tx]
        cuda.syncthreads()  # the tiles are overwritten next step
    if row < M and col < N:
        if accumulate:
            c[row, col] += acc
        else:
            c[row, col] = acc


@per_dtype
def _kernels(t):
    zero = t(0)

    @cuda.jit
    def gemm2(c, a, b, ta, tb, accumulate):
        sa = cuda.shared.array((TILE, TILE), t)
        sb = cuda.shared.array((TILE, TILE), t)
        _tile_product(c, a, b, ta, tb, accumulate, sa, sb, zero)

    @cuda.jit
    def gemm3(c, a, b, ta, tb, accumulate):
        # a stack of products, one per blockIdx.z: c[z] (+)= op(a[z]) op(b[z])
        sa = cuda.shared.array((TILE, TILE), t)
        sb = cuda.shared.array((TILE, TILE), t)
        z = cuda.blockIdx.z
        _tile_product(c[z], a[z], b[z], ta, tb, accumulate, sa, sb, zero)

    return gemm2, gemm3


def _check(c, a, b, trans_a, trans_b):
    c, a, b = (_Shape(x) for x in (c, a, b))  # the simulator's shapes take no negative indices
    M, N = c.shape[-2:]
    K = a.shape[-2] if trans_a else a.shape[-1]
    if (b.shape[-1] if trans_b else b.shape[-2]) != K or (a.shape[-1] if trans_a else a.shape[-2]) != M or \
            (b.shape[-2] if trans_b else b.shape[-1]) != N or not (c.ndim == a.ndim == b.ndim):
        raise ValueError(f"gemm: shapes do not chain: c {c.shape}, a {a.shape} (T={trans_a}), "
                         f"b {b.shape} (T={trans_b})")
    return M, N


class _Shape:
    def __init__(self, x):
        self.shape, self.ndim = tuple(x.shape), len(x.shape)


GEMM_VARIABLE = "TRANSFORMER_SIM_GEMM"  # "numba": our tiled kernel even where cuBLAS (CuPy) is at hand


@lru_cache(maxsize=1)
def cublas():
    """CuPy, whose `cublas.gemm` runs cuBLAS, on a real GPU; None in the simulator, without CuPy, or with
    TRANSFORMER_SIM_GEMM=numba."""
    if SIMULATED or os.environ.get(GEMM_VARIABLE) == "numba":
        return None
    try:
        import cupy
        import cupy.cublas  # noqa: F401  (its gemm takes alpha and beta: accumulate without a temporary)
    except Exception:  # not installed, or built for another CUDA: our kernel serves
        return None
    return cupy


def which_gemm() -> str:
    """"cublas" or "numba": which one `gemm` runs here."""
    return "cublas" if cublas() is not None else "numba"


def _cublas_gemm(cp, c, a, b, trans_a, trans_b, accumulate) -> None:
    cp.cublas.gemm("T" if trans_a else "N", "T" if trans_b else "N", cp.asarray(a), cp.asarray(b),
                   out=cp.asarray(c), alpha=1.0, beta=1.0 if accumulate else 0.0)


def gemm(c, a, b, trans_a: bool = False, trans_b: bool = False, accumulate: bool = False):
    """c = op(a) @ op(b), or c += it with accumulate; op(x) is x.T when its trans flag is set."""
    M, N = _check(c, a, b, trans_a, trans_b)
    cp = cublas()
    if cp is not None:
        _cublas_gemm(cp, c, a, b, trans_a, trans_b, accumulate)
        return
    tiled_gemm(c, a, b, trans_a, trans_b, accumulate)


def tiled_gemm(c, a, b, trans_a: bool = False, trans_b: bool = False, accumulate: bool = False):
    """`gemm` by our shared-memory kernel, whatever else is installed."""
    M, N = _check(c, a, b, trans_a, trans_b)
    _kernels(c.dtype)[0][(blocks(N, TILE), blocks(M, TILE)), (TILE, TILE)](c, a, b, bool(trans_a), bool(trans_b),
                                                                          bool(accumulate))


def gemm_batched(c, a, b, trans_a: bool = False, trans_b: bool = False, accumulate: bool = False):
    """c[z] = op(a[z]) @ op(b[z]) for each z of a stack of 3-D arrays (or c[z] += it with accumulate)."""
    M, N = _check(c, a, b, trans_a, trans_b)
    if not (c.shape[0] == a.shape[0] == b.shape[0]):
        raise ValueError(f"gemm_batched: stacks of {c.shape[0]}, {a.shape[0]} and {b.shape[0]} products")
    cp = cublas()
    if cp is not None:  # one cuBLAS call a product of the stack (batch x heads of them: dozens)
        cs, as_, bs = cp.asarray(c), cp.asarray(a), cp.asarray(b)
        for z in range(c.shape[0]):
            _cublas_gemm(cp, cs[z], as_[z], bs[z], trans_a, trans_b, accumulate)
        return
    grid = (blocks(N, TILE), blocks(M, TILE), c.shape[0])
    _kernels(c.dtype)[1][grid, (TILE, TILE)](c, a, b, bool(trans_a), bool(trans_b), bool(accumulate))
