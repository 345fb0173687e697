"""The naive attention one key/value head at a time, its (T, T) matrices held in cache: short sequences.

The same sums as attention.py's BLAS path (layout, masks and contract there: q (B, NH, T, HS), k, v
(B, NKV, T, HS), kv_len (B,), att (B, NH, T, T) keeps the probabilities), computed differently:
each parallel iteration takes one (batch, key/value head) and its group of query heads, forms the
scores, the softmax and the products inside buffers of its own, and writes only the outputs. The
BLAS path writes the (T, T) scores to memory, reads them back for the softmax and again for the
product, and its per-head products are too small for BLAS to run at its rate (K = 32 reaches a
third of it); here each head's matrices stay in L2 (T <= PER_HEAD_MAX_T: 1 MiB of them at 512).

The (T, T) matrices keep att's layout, (query, key), so that nothing of size T^2 is transposed
(element by element a 256 x 256 transpose costs as much as a product: 85 us, measured); the
(T, HS) operands are transposed where that puts a long axis innermost:

    forward    S = Q K^T,  P = softmax of each row,  Y = P V
    backward   dP = dY V^T,  dS = scale P (dP - D),  D = row sums of dP * P
               dV^T = dY^T P,  dQ = dS K,  dK^T = Q^T dS

Under the causal mask every product skips the hidden half: a 4-row block runs its inner loop, or
its sum, only up to the block's last row (`_product`'s modes).
"""

import numpy as np
from numba import njit, prange

from simulator.kernels.cpu.jit import FAST, wide
from simulator.kernels.cpu.softmax import _scaled_softmax_row

# the sequence lengths where attention.py takes these kernels (see its per_head_pays): shorter (T 64), BLAS is
# faster; longer, a head's matrices leave L2 and BLAS's causal row blocks are faster
PER_HEAD_MIN_T, PER_HEAD_MAX_T = 128, 512

FULL, TO_ROW, TO_SUM = 0, 1, 2  # which part of a product is computed (see _product)


@njit(cache=True, nogil=True)
def _up4(n):
    return (n + 3) // 4 * 4


@njit(cache=True, nogil=True, fastmath=FAST, error_model="numpy")
def _product(c, a, b, ni, nj, n, mode):
    """c[i, :n] += sum_j a[i, j] b[j, :n] for i < ni, j < nj (ni, nj multiples of 4, arrays padded so).

    Under the causal mask half of it is 0, and the modes skip that half, by 4-row blocks of c (i) and
    4-blocks of the sum (j): TO_ROW computes c[i, m] only for m < i's block end (the rest is hidden
    and the caller drops it); TO_SUM computes c[:, m] only for m < j's block end (b[j, m] is 0 for
    m > j). FULL: all of it. (A sum that stops at the row, P V and dS K, is _product_t's to_row.)
    """
    # c is (>= ni, >= n), a is (>= ni, >= nj), b is (>= nj, >= n); a 4 x 4 block of a per pass over b's rows.
    # The inner loop runs over slices from 0: over r in range(lo, hi) on whole rows LLVM did not vectorise it
    # (measured 5x slower)
    for i in range(0, ni, 4):
        for j in range(0, nj, 4):
            hi = n
            if mode == TO_ROW:
                hi = min(i + 4, n)
            elif mode == TO_SUM:
                hi = min(j + 4, n)
            c0, c1, c2, c3 = c[i, :hi], c[i + 1, :hi], c[i + 2, :hi], c[i + 3, :hi]
            b0, b1, b2, b3 = b[j, :hi], b[j + 1, :hi], b[j + 2, :hi], b[j + 3, :hi]
            a00, a01, a02, a03 = a[i, j], a[i, j + 1], a[i, j + 2], a[i, j + 3]
            a10, a11, a12, a13 = a[i + 1, j], a[i + 1, j + 1], a[i + 1, j + 2], a[i + 1, j + 3]
            a20, a21, a22, a23 = a[i + 2, j], a[i + 2, j + 1], a[i + 2, j + 2], a[i + 2, j + 3]
            a30, a31, a32, a33 = a[i + 3, j], a[i + 3, j + 1], a[i + 3, j + 2], a[i + 3, j + 3]
            for r in range(hi):
                x0, x1, x2, x3 = b0[r], b1[r], b2[r], b3[r]
                c0[r] += a00 * x0 + a01 * x1 + a02 * x2 + a03 * x3
                c1[r] += a10 * x0 + a11 * x1 + a12 * x2 + a13 * x3
                c2[r] += a20 * x0 + a21 * x1 + a22 * x2 + a23 * x3
                c3[r] += a30 * x0 + a31 * x1 + a32 * x2 + a33 * x3


@njit(cache=True, nogil=True, fastmath=FAST, error_model="numpy")
def _product_t(c, a, bT, ni, nn, nj, to_row):
    """c[i, r] += sum_j a[i, j] bT[r, j] for i < ni, r < nn (multiples of 4), j < nj; to_row: j < i's block end.

    For the products whose output rows are only HS long (Y = P V, dQ = dS K): `_product` would run its
    inner loop over those HS lanes, two vectors at HS = 32, and reload c for every 4 keys; here a 4 x 4 block
    of c is held in sixteen running sums while the inner loop runs over the keys (measured 37 us against
    76 us for a 256-row causal P V at HS 32, float32). The sums start at a zero of c's type: from a float64
    literal the float32 loop did not vectorise.
    """
    # c is (>= ni, >= nn), a is (>= ni, >= nj), bT is (>= nn, >= nj)
    zero = np.zeros(1, c.dtype)[0]
    for i in range(0, ni, 4):
        jn = min(i + 4, nj) if to_row else nj
        a0, a1, a2, a3 = a[i, :jn], a[i + 1, :jn], a[i + 2, :jn], a[i + 3, :jn]
        for r in range(0, nn, 4):
            b0, b1, b2, b3 = bT[r, :jn], bT[r + 1, :jn], bT[r + 2, :jn], bT[r + 3, :jn]
            s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = zero
            s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = zero
            for j in range(jn):
                x0, x1, x2, x3 = a0[j], a1[j], a2[j], a3[j]
                y0, y1, y2, y3 = b0[j], b1[j], b2[j], b3[j]
                s00 += x0 * y0
                s01 += x0 * y1
                s02 += x0 * y2
                s03 += x0 * y3
                s10 += x1 * y0
                s11 += x1 * y1
                s12 += x1 * y2
                s13 += x1 * y3
                s20 += x2 * y0
                s21 += x2 * y1
                s22 += x2 * y2
                s23 += x2 * y3
                s30 += x3 * y0
                s31 += x3 * y1
                s32 += x3 * y2
                s33 += x3 * y3
            c[i, r] += s00
            c[i, r + 1] += s01
            c[i, r + 2] += s02
            c[i, r + 3] += s03
            c[i + 1, r] += s10
            c[i + 1, r + 1] += s11
            c[i + 1, r + 2] += s12
            c[i + 1, r + 3] += s13
            c[i + 2, r] += s20
            c[i + 2, r + 1] += s21
            c[i + 2, r + 2] += s22
            c[i + 2, r + 3] += s23
            c[i + 3, r] += s30
            c[i + 3, r + 1] += s31
            c[i + 3, r + 2] += s32
            c[i + 3, r + 3] += s33


@njit(cache=True, nogil=True)
def _rows_into(dst, src, n_rows, n_cols):
    """dst[:n_rows, :n_cols] = src[:n_rows, :n_cols]; the rest of dst stays as it is."""
    for t in range(n_rows):
        dst[t, :n_cols] = src[t, :n_cols]


@njit(cache=True, nogil=True)
def _transpose(dst, src, n_rows, n_cols):
    """dst[j, t] = src[t, j] for t < n_rows, j < n_cols (used on the (T, HS) operands only)."""
    for t in range(n_rows):
        for j in range(n_cols):
            dst[j, t] = src[t, j]


@njit(cache=True, nogil=True)
def _visible(t, nk, causal):
    """How many keys query t sees: those before kv_len, and under the causal mask those up to t."""
    return min(nk, t + 1) if causal else nk


@njit(cache=True, nogil=True, fastmath=FAST, error_model="numpy")
def _softmax_row(row, arow, n, n_pad, scale):
    """row[:n] = softmax(scale row[:n]), copied into att's row arow; 0 over row[n:n_pad] and arow[n:]."""
    if n > 0:
        _scaled_softmax_row(row, n, scale, arow)
    row[n:n_pad] = 0.0  # hidden keys a product sums over: probability 0
    arow[n:] = 0.0


@njit(cache=True, nogil=True, fastmath=FAST, error_model="numpy")
def _dscores_row(drow, prow, n, n_pad, scale):
    """In place: drow[:n] (dL/dp) becomes dL/dscores = scale p (dp - sum(dp p)); 0 over drow[n:n_pad]."""
    dot = 0.0
    for j in range(n):
        dot += drow[j] * prow[j]
    for j in range(n):
        drow[j] = scale * prow[j] * (drow[j] - dot)
    drow[n:n_pad] = 0.0


def per_head_forward(yh, att, q, k, v, scale, causal, kv_len):
    """Writes yh = softmax(scale q k^T, masked) v and the probabilities att, as attention_heads_forward does."""
    _forward(yh, att, q, k, v, att.dtype.type(scale), causal, kv_len)


@wide(fastmath=FAST)
def _forward(yh, att, q, k, v, scale, causal, kv_len):
    # yh, q are (B, NH, T, HS); k, v are (B, NKV, T, HS); att is (B, NH, T, T); kv_len is (B,)
    B, NH, T, HS = q.shape
    NKV = k.shape[1]
    G = NH // NKV
    T4, H4 = _up4(T), _up4(HS)
    for item in prange(B * NKV):
        b, hk = item // NKV, item % NKV
        nk = min(max(kv_len[b], 0), T)  # keys past kv_len are padding
        nk4 = _up4(nk)
        kT = np.zeros((H4, T4), q.dtype)  # K^T and V^T: every product's inner loop runs over keys
        vT = np.zeros((H4, T4), q.dtype)
        _transpose(kT, k[b, hk], nk, HS)
        _transpose(vT, v[b, hk], nk, HS)
        qp = np.zeros((T4, H4), q.dtype)
        s = np.zeros((T4, T4), q.dtype)  # scores, then probabilities
        y = np.empty((T4, H4), q.dtype)
        for g in range(G):
            h = hk * G + g
            _rows_into(qp, q[b, h], T, HS)
            for t in range(T4):
                s[t, :nk4] = 0
            _product(s, qp, kT, T4, H4, nk, TO_ROW if causal else FULL)  # S = Q K^T
            for t in range(T):
                _softmax_row(s[t], att[b, h, t], _visible(t, nk, causal), nk4, scale)
            for t in range(T4):
                y[t, :] = 0
            _product_t(y, s, vT, T4, H4, nk4, causal)  # Y = P V
            _rows_into(yh[b, h], y, T, HS)


def per_head_backward(dq, dk, dv, dyh, q, k, v, att, scale, causal, kv_len):
    """Writes dq, dk, dv from dyh and the forward's probabilities att, as attention_heads_backward does."""
    _backward(dq, dk, dv, dyh, q, k, v, att, att.dtype.type(scale), causal, kv_len)


@wide(fastmath=FAST)
def _backward(dq, dk, dv, dyh, q, k, v, att, scale, causal, kv_len):
    # dq, dyh, q are (B, NH, T, HS); dk, dv, k, v are (B, NKV, T, HS); att is (B, NH, T, T); kv_len is (B,)
    B, NH, T, HS = q.shape
    NKV = k.shape[1]
    G = NH // NKV
    T4, H4 = _up4(T), _up4(HS)
    for item in prange(B * NKV):
        b, hk = item // NKV, item % NKV
        nk = min(max(kv_len[b], 0), T)
        nk4 = _up4(nk)
        vT = np.zeros((H4, T4), q.dtype)  # V^T and K^T, for dP = dY V^T and dQ = dS K
        kT = np.zeros((H4, T4), q.dtype)
        _transpose(vT, v[b, hk], nk, HS)
        _transpose(kT, k[b, hk], nk, HS)
        dyp = np.zeros((T4, H4), q.dtype)
        dyT = np.zeros((H4, T4), q.dtype)
        qT = np.zeros((H4, T4), q.dtype)
        p = np.zeros((T4, T4), q.dtype)  # P; its hidden entries stay 0 for every head of the group
        ds = np.zeros((T4, T4), q.dtype)  # dP, then dS
        dqp = np.empty((T4, H4), q.dtype)
        dkT = np.zeros((H4, T4), q.dtype)  # dK^T and dV^T, summed over the group's query heads
        dvT = np.zeros((H4, T4), q.dtype)
        for g in range(G):
            h = hk * G + g
            _rows_into(dyp, dyh[b, h], T, HS)
            _transpose(dyT, dyh[b, h], T, HS)
            _transpose(qT, q[b, h], T, HS)
            for t in range(T):
                n = _visible(t, nk, causal)
                p[t, :n] = att[b, h, t, :n]
            for t in range(T4):
                ds[t, :nk4] = 0
            _product(ds, dyp, vT, T4, H4, nk, TO_ROW if causal else FULL)  # dP = dY V^T
            for t in range(T):
                _dscores_row(ds[t], p[t], _visible(t, nk, causal), nk4, scale)
            _product(dvT, dyT, p, H4, T4, nk, TO_SUM if causal else FULL)  # dV^T += dY^T P
            for t in range(T4):
                dqp[t, :] = 0
            _product_t(dqp, ds, kT, T4, H4, nk4, causal)  # dQ = dS K
            _rows_into(dq[b, h], dqp, T, HS)
            _product(dkT, qT, ds, H4, T4, nk, TO_SUM if causal else FULL)  # dK^T += Q^T dS
        _transpose(dk[b, hk], dkT, HS, T)
        _transpose(dv[b, hk], dvT, HS, T)
