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


def gemm(c, a, b, trans_a: bool = False, trans_b: bool = False, accumulate: bool = False):
    """c = op(a) @ op(b), or c += it with accumulate; op(x) is x.T when its trans flag is set."""
    M, N = _check(c, a, b, trans_a, trans_b)
    _kernels(c.dtype)[0][(blocks(N, TILE), blocks(M, TILE)), (TILE, TILE)](c, a, b, bool(trans_a), bool(trans_b),
                                                                          bool(accumulate))


def gemm_batched(c, a, b, trans_a: bool = False, trans_b: bool = False, accumulate: bool = False):
    """c[z] = op(a[z]) @ op(b[z]) for each z of a stack of 3-D arrays (or c[z] += it with accumulate)."""
    M, N = _check(c, a, b, trans_a, trans_b)
    if not (c.shape[0] == a.shape[0] == b.shape[0]):
        raise ValueError(f"gemm_batched: stacks of {c.shape[0]}, {a.shape[0]} and {b.shape[0]} products")
    grid = (blocks(N, TILE), blocks(M, TILE), c.shape[0])
    _kernels(c.dtype)[1][grid, (TILE, TILE)](c, a, b, bool(trans_a), bool(trans_b), bool(accumulate))
