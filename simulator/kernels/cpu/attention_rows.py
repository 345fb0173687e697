"""The tiled attention's backward through BLAS, one block of query rows at a time (used when no window is set).

The same gradients as the tile kernels of attention_tiled.py (FlashAttention-2's backward: the
probabilities are recomputed from the forward's lse, never kept), but each block of R query rows
is done for every head at once in batched BLAS products over the C keys the block can see
(C = the block's end under the causal mask, else T):

    S = Q_r K^T, dP = dY_r V^T                      (B, NH, R, C), BLAS
    P = exp(scale S - lse), dS = scale P (dP - D)   one numba pass; D = rowsum(dY * Y)
    dQ_r += dS K, dK += dS^T Q_r, dV += P^T dY_r    BLAS, into scratch, then added

Scratch: two (B, NH, R, T) score buffers, 8 MiB each at most while 16 rows fit (row_block), kept between calls.

Why a second backward: at head size 32 the tile kernels' register-blocked products run at a
fraction of BLAS's rate (their inner loop over the head is two vectors long), which made the tiled
backward 2.6x slower than the naive one at the medium model's shape (measured); here the products
are BLAS's and the skipped causal half is the blocks' upper right. A local window keeps the tile
kernels: they skip the tiles outside it, so their cost falls with the window, which a block of
whole rows would not.
"""

import numpy as np
from numba import prange

from simulator.kernels.cpu.attention import _transposed, scratch
from simulator.kernels.cpu.fastexp import fast_exp
from simulator.kernels.cpu.jit import FAST, wide

SCRATCH_FLOATS = 1 << 21  # at most this many floats in each of the two (B, NH, R, T) score buffers (8 MiB)


def row_block(B: int, NH: int, T: int) -> int:
    """Query rows per block: 64 up to T = 512 (more of the causal half skipped), else 128 (bigger BLAS calls).

    Measured, one thread: T = 256, head 32, 8 x 8 heads: 64 rows 16 ms, 128 rows 25 ms, 256 rows 28 ms;
    T = 4096, head 64, one head: 64 rows 102 ms, 128 rows 90 ms, 256 rows 110 ms. Fewer where
    B NH R T would pass SCRATCH_FLOATS, down to 16 rows, so the scratch stays O(T), not O(T^2).
    """
    rows = 64 if T <= 512 else 128
    return max(16, min(rows, SCRATCH_FLOATS // max(1, B * NH * T)))


@wide(fastmath=FAST)
def _row_dots(dsum, dy, y):
    """dsum[b, h, t] = sum_d dy[b, h, t, d] * y[b, h, t, d] (D of the softmax backward)."""
    # dsum is (B, NH, T); dy, y are (B, NH, T, HS)
    B, NH, T, HS = dy.shape
    for r in prange(B * NH * T):
        b, h, t = r // (NH * T), (r // T) % NH, r % T
        acc = dy[b, h, t, 0] * 0
        for d in range(HS):
            acc += dy[b, h, t, d] * y[b, h, t, d]
        dsum[b, h, t] = acc


@wide(fastmath=FAST)
def _probs_and_dscores(s, dp, lse, dsum, kv_len, scale, causal, r0):
    """In place: s (raw scores q.k) becomes P = exp(scale s - lse), dp becomes dS = scale P (dP - D); hidden keys 0."""
    # s, dp are (B, NH, R, C) for query rows r0 .. r0 + R and keys 0 .. C; lse, dsum are (B, NH, T)
    B, NH, R, C = s.shape
    for r in prange(B * NH * R):
        b, h, i = r // (NH * R), (r // R) % NH, r % R
        t = r0 + i
        n = min(max(kv_len[b], 0), C)  # keys past kv_len are padding
        if causal:
            n = min(n, t + 1)
        lse_t = lse[b, h, t]
        if lse_t == -np.inf:  # a row without keys (lse -inf in the forward) outputs 0 and gets no gradient
            n = 0
        srow, drow, d = s[b, h, i], dp[b, h, i], dsum[b, h, t]
        for j in range(n):
            p = fast_exp(scale * srow[j] - lse_t)
            srow[j] = p
            drow[j] = scale * p * (drow[j] - d)
        for j in range(n, C):
            srow[j] = 0
            drow[j] = 0


def rows_attention_backward(dq, dk, dv, dy, q, k, v, y, lse, kv_len, scale, causal, rows=0):
    """dq, dk, dv += the gradients of tiled_attention_forward (no window), by blocks of `rows` query rows.

    rows 0: row_block(B, NH, T).
    """
    # dq, dy, q, y are (B, NH, T, HS); dk, dv, k, v are (B, NKV, T, HS); lse is (B, NH, T); kv_len is (B,)
    B, NH, T, HS = q.shape
    NKV = k.shape[1]
    G, dt = NH // NKV, q.dtype
    R = max(1, min(int(rows) or row_block(B, NH, T), T))
    n_keys = int(np.clip(kv_len, 0, T).max(initial=0))  # no row sees a key past this one
    if n_keys == 0 or T == 0:
        return
    dsum = scratch("rows.dsum", (B, NH, T), dt)
    # serial numba kernels here: a parallel region between BLAS calls left BLAS's own threads waking
    # slowly for the next product (measured up to 10x per product on a busy 2-core machine)
    _row_dots.serial(dsum, dy, y)
    kT, vT = _transposed(k, "rows.kT")[:, :, None], _transposed(v, "rows.vT")[:, :, None]  # (B, NKV, 1, HS, T)
    q5, dy5, k5 = q.reshape(B, NKV, G, T, HS), dy.reshape(B, NKV, G, T, HS), k[:, :, None]
    flat_s, flat_dp = scratch("rows.s", (B * NH * R * T,), dt), scratch("rows.dp", (B * NH * R * T,), dt)
    flat_rows = [scratch(f"rows.{name}", (B * NH * R * HS,), dt) for name in ("dq", "q", "dy")]
    flat_kv = scratch("rows.dkv", (B * NKV * T * HS,), dt)
    sc = dt.type(scale)
    for r0 in range(0, T, R):
        r1 = min(r0 + R, T)
        nr, C = r1 - r0, min(r1 if causal else T, n_keys)
        s5 = flat_s[:B * NH * nr * C].reshape(B, NKV, G, nr, C)
        dp5 = flat_dp[:B * NH * nr * C].reshape(B, NKV, G, nr, C)
        np.matmul(q5[:, :, :, r0:r1], kT[..., :C], out=s5)  # raw scores, a key/value head broadcast over its group
        np.matmul(dy5[:, :, :, r0:r1], vT[..., :C], out=dp5)  # dP
        s4, dp4 = s5.reshape(B, NH, nr, C), dp5.reshape(B, NH, nr, C)
        _probs_and_dscores.serial(s4, dp4, lse, dsum, kv_len, sc, causal, r0)
        tq, qr, dyr = (f[:B * NH * nr * HS].reshape(B, NKV, G, nr, HS) for f in flat_rows)
        np.matmul(dp5, k5[:, :, :, :C], out=tq)  # dQ of the block
        dq[:, :, r0:r1] += tq.reshape(B, NH, nr, HS)
        # dK and dV sum over the query heads of a group and the block's rows: one product over (G nr) rows each
        np.copyto(qr, q5[:, :, :, r0:r1])
        np.copyto(dyr, dy5[:, :, :, r0:r1])
        tkv = flat_kv[:B * NKV * C * HS].reshape(B, NKV, C, HS)
        np.matmul(dp5.reshape(B, NKV, G * nr, C).transpose(0, 1, 3, 2), qr.reshape(B, NKV, G * nr, HS), out=tkv)
        dk[:, :, :C] += tkv
        np.matmul(s5.reshape(B, NKV, G * nr, C).transpose(0, 1, 3, 2), dyr.reshape(B, NKV, G * nr, HS), out=tkv)
        dv[:, :, :C] += tkv
