"""A shared-memory tiled GEMM: c (+)= op(a) op(b), op a transpose or not, in one kernel.

Each block computes one TILE x TILE tile of c; for each step along the inner dimension its
threads load one tile of op(a) and one of op(b) into shared memory (one element each, zero past
the edges), wait, and each thread adds the tile's dot product into its own element. A
transposed operand is read through its stored layout (a (K, M) array as op(a) = a^T), so the
linear layers' dout @ W^T and x^T @ dout need no transposed copies. `accumulate` adds onto c
(the backward contract: gradients add up) instead of writing it. The sum runs in the data's
dtype, as BLAS does.
"""

from __future__ import annotations

from numba import cuda

from simulator.kernels.cuda.launch import SIMULATED, blocks, per_dtype

TILE = 8 if SIMULATED else 16  # 16 x 16 = 256 threads on a GPU; 64 simulated threads (fewer blocks, fewer barriers)


@per_dtype
def _kernel(t):
    zero = t(0)

    @cuda.jit
    def gemm(c, a, b, ta, tb, accumulate):
        # c is (M, N); a is (M, K), or (K, M) when ta; b is (K, N), or (N, K) when tb
        sa = cuda.shared.array((TILE, TILE), t)
        sb = cuda.shared.array((TILE, TILE), t)
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

    return gemm


def gemm(c, a, b, trans_a: bool = False, trans_b: bool = False, accumulate: bool = False):
    """c = op(a) @ op(b), or c += it with accumulate; op(x) is x.T when its trans flag is set."""
    M, N = c.shape
    K = a.shape[0] if trans_a else a.shape[1]
    if (b.shape[1] if trans_b else b.shape[0]) != K or (a.shape[1] if trans_a else a.shape[0]) != M or \
            (b.shape[0] if trans_b else b.shape[1]) != N:
        raise ValueError(f"gemm: shapes do not chain: c {c.shape}, a {a.shape} (T={trans_a}), "
                         f"b {b.shape} (T={trans_b})")
    _kernel(c.dtype)[(blocks(N, TILE), blocks(M, TILE)), (TILE, TILE)](c, a, b, bool(trans_a), bool(trans_b),
                                                                       bool(accumulate))
