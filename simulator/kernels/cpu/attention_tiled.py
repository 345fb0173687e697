"""Tiled (FlashAttention-style) attention on the CPU: the (T, T) score matrix is never formed.

Layout (as in attention.py): q is (B, NH, T, HS); k, v are (B, NKV, T, HS) with NH % NKV == 0,
and query head h reads key/value head h // (NH // NKV) (GQA; NKV == 1 is MQA). kv_len is (B,)
int32: keys at positions >= kv_len[b] are padding and are never attended.

Forward: each query tile walks the key tiles with a running row max m, a running sum l and an
unnormalised output that is rescaled by exp(m_old - m_new) whenever the max grows; at the end
y = acc / l and lse = m + log(l). Backward (FlashAttention-2): probabilities are recomputed tile
by tile from lse: P = exp(S - lse), dV += P^T dY, dP = dY V^T, dS = P * (dP - D) with
D = rowsum(dY * Y), dQ += scale dS K, dK += scale dS^T Q. It runs as two race-free passes, one
parallel over key tiles that owns dK and dV, one parallel over query tiles that owns dQ (as the
Triton fused-attention backward does); the price is computing S and dP twice.

A query row with no valid key (only when kv_len[b] == 0) is defined to output 0 with lse = -inf
and gets zero gradient: a softmax over no keys has no value, and 0 is what a padding row should
pass on. Padded keys get zero dK and dV.

Local attention (window > 0, causal only; see attention.py): query t sees keys t - window < j <= t and
the first n_global positions (global tokens, both ways). A tile pair in which no query sees any key
is skipped whole, so the work falls from O(T^2) to O(T (window + n_global + tile)); a tile that
straddles the window's edge has its hidden scores set to -inf, as the causal diagonal's are.

Inside a tile everything is held transposed, queries along the fast axis: scores are
(key, query), so the max, the exp and the rescale run over contiguous query lanes and every tile
product is the one register-blocked loop `_matmul_acc`. Tile scratch is allocated per parallel
iteration, O(tile_q * tile_k + (tile_q + tile_k) * HS), never O(T^2).
"""

import math

import numpy as np
from numba import njit, prange

from simulator.attention_mask import check_window
from simulator.kernels.cpu.attention_rows import rows_attention_backward
from simulator.kernels.cpu.fastexp import fast_exp
from simulator.kernels.cpu.jit import FAST

# tile sizes measured fastest for HS = 64 on a 2-core AVX-512 machine (see simulator/bench/attention.py); y and lse
# do not depend on the tiles, so the backward may use other sizes than the forward that it follows
TILE_Q, TILE_K = 256, 64
BACKWARD_TILE_Q, BACKWARD_TILE_K = 128, 128


@njit(cache=True, nogil=True)
def _up4(n):
    """n rounded up to a multiple of 4 (the register block)."""
    return (n + 3) // 4 * 4


@njit(cache=True, nogil=True)
def _key_end(kv_len_b, q_end, T, causal):
    """One past the last key any query below q_end may attend."""
    kvl = min(max(kv_len_b, 0), T)
    return min(kvl, q_end) if causal else kvl


@njit(cache=True, nogil=True)
def _interleave(slot, n):
    """Visits tiles 0, n-1, 1, n-2, ... so contiguous chunks of a causal walk get equal work."""
    return slot // 2 if slot % 2 == 0 else n - 1 - slot // 2


@njit(cache=True, nogil=True, fastmath=FAST)
def _matmul_acc(c, a, b, ni, nj, n):
    """c[i, :n] += sum_j a[i, j] * b[j, :n] for i < ni, j < nj (ni, nj multiples of 4)."""
    # c is (>= ni, >= n), a is (>= ni, >= nj), b is (>= nj, >= n)
    # a 4 x 4 block of a: each pass over four rows of b feeds 16 multiply-adds per lane
    for i in range(0, ni, 4):
        c0, c1, c2, c3 = c[i], c[i + 1], c[i + 2], c[i + 3]
        for j in range(0, nj, 4):
            b0, b1, b2, b3 = b[j], b[j + 1], b[j + 2], b[j + 3]
            a00, a01, a02, a03 = a[i, j], a[i, j + 1], a[i, j + 2], a[i, j + 3]
            a10, a11, a12, a13 = a[i + 1, j], a[i + 1, j + 1], a[i + 1, j + 2], a[i + 1, j + 3]
            a20, a21, a22, a23 = a[i + 2, j], a[i + 2, j + 1], a[i + 2, j + 2], a[i + 2, j + 3]
            a30, a31, a32, a33 = a[i + 3, j], a[i + 3, j + 1], a[i + 3, j + 2], a[i + 3, j + 3]
            for r in range(n):
                x0, x1, x2, x3 = b0[r], b1[r], b2[r], b3[r]
                c0[r] += a00 * x0 + a01 * x1 + a02 * x2 + a03 * x3
                c1[r] += a10 * x0 + a11 * x1 + a12 * x2 + a13 * x3
                c2[r] += a20 * x0 + a21 * x1 + a22 * x2 + a23 * x3
                c3[r] += a30 * x0 + a31 * x1 + a32 * x2 + a33 * x3


@njit(cache=True, nogil=True, fastmath=FAST)
def _exp_sub(x, m, n):
    """In place: x[:n] = exp(x[:n] - m[:n]); -inf gives 0."""
    # fast_exp vectorises for float32 (libm's expf does not) and gives exact zeros for -inf.
    # In place on purpose: given separate in and out arrays that may be one array, LLVM's
    # overlap check sends the loop down its scalar path (6x slower)
    for i in range(n):
        x[i] = fast_exp(x[i] - m[i])


@njit(cache=True, nogil=True)
def _load_rows(dst, src, t0, nt, nt4, mult):
    """dst[t, :HS] = mult * src[t0 + t] for t < nt; rows nt..nt4 zeroed (the register-block padding)."""
    # dst is (>= nt4, >= HS), src is (T, HS)
    HS = src.shape[1]
    for t in range(nt):
        for d in range(HS):
            dst[t, d] = src[t0 + t, d] * mult
    for t in range(nt, nt4):
        dst[t, :] = 0


@njit(cache=True, nogil=True)
def _load_cols(dst, src, t0, nt, nt4, mult):
    """dst[:HS, t] = mult * src[t0 + t] for t < nt (a transposed tile); columns nt..nt4 zeroed."""
    # dst is (>= HS, >= nt4), src is (T, HS)
    HS = src.shape[1]
    for t in range(nt):
        for d in range(HS):
            dst[d, t] = src[t0 + t, d] * mult
    for t in range(nt, nt4):
        dst[:, t] = 0


@njit(cache=True, nogil=True)
def _mask_future(sT, q0, k0, nc, nr):
    """Sets scores of keys after their query to -inf (only tiles that straddle the diagonal call this)."""
    # sT is (key, query): key k0 + c is visible to query q0 + r when k0 + c <= q0 + r
    for c in range(nc):
        for r in range(min(nr, max(k0 + c - q0, 0))):
            sT[c, r] = -np.inf


@njit(cache=True, nogil=True)
def _tile_hidden(q0, k0, nc, window, n_global):
    """True when, under a causal window, no query from q0 on sees a key of [k0, k0 + nc): the pair is skipped."""
    if window <= 0 or k0 < n_global or q0 < n_global:  # no window, or a global key or query in the pair
        return False
    return q0 - (k0 + nc - 1) >= window  # even the nearest pair is a window or more apart


@njit(cache=True, nogil=True)
def _tile_straddles_window(q0, nr, k0, nc, window, n_global):
    """True when some (local query, local key) pair of the tiles is a window or more apart."""
    if window <= 0 or k0 + nc <= n_global or q0 + nr <= n_global:
        return False
    return q0 + nr - 1 - k0 >= window


@njit(cache=True, nogil=True)
def _mask_outside_window(sT, q0, k0, nc, nr, window, n_global):
    """Sets to -inf the scores of local keys a window or more before their local query."""
    # sT is (key, query): key kk >= n_global is hidden from query q0 + r >= n_global when q0 + r - kk >= window
    for c in range(nc):
        kk = k0 + c
        if kk < n_global:
            continue
        for r in range(max(kk + window - q0, n_global - q0, 0), nr):
            sT[c, r] = -np.inf


@njit(cache=True, nogil=True, fastmath=FAST)
def _online_softmax_step(sT, accT, m, lsum, m_new, alpha, nc, nc4, nr):
    """Folds one key tile in: scores in sT become probabilities exp(s - m_new); lsum and accT are rescaled."""
    # sT is (tile_k4, tile_q), accT is (HS4, tile_q); m, lsum, m_new, alpha are (tile_q,)
    for r in range(nr):
        m_new[r] = m[r]
    for c in range(nc):
        for r in range(nr):
            x = sT[c, r]
            m_new[r] = x if x > m_new[r] else m_new[r]  # a plain select vectorises, max() does not
    for r in range(nr):
        # a row that has seen no valid key yet keeps m = -inf; subtracting 0 keeps its exps at 0
        alpha[r] = m[r]
        m[r] = m_new[r]
        if m_new[r] == -np.inf:
            m_new[r] = 0
    _exp_sub(alpha, m_new, nr)  # exp(m_old - m_new): 0 while m_old = -inf
    for c in range(nc):
        _exp_sub(sT[c], m_new, nr)
    for c in range(nc, nc4):
        sT[c, :] = 0
    for r in range(nr):
        lsum[r] *= alpha[r]
    for c in range(nc):
        for r in range(nr):
            lsum[r] += sT[c, r]
    for d in range(accT.shape[0]):
        for r in range(nr):
            accT[d, r] *= alpha[r]


def tiled_attention_forward(y, lse, q, k, v, kv_len, scale, causal, tile_q, tile_k, window=0, n_global=0):
    """Writes y and lse: masked softmax(scale q k^T) v, one (query tile, key tile) pair at a time.

    window > 0 (causal only): local attention with n_global global tokens; hidden tile pairs are skipped.
    """
    check_window(causal, window, n_global)
    _forward(y, lse, q, k, v, kv_len, scale, causal, tile_q, tile_k, int(window), int(n_global))


@njit(cache=True, nogil=True, parallel=True, fastmath=FAST)
def _forward(y, lse, q, k, v, kv_len, scale, causal, tile_q, tile_k, window, n_global):
    # y, q are (B, NH, T, HS); k, v are (B, NKV, T, HS); lse is (B, NH, T); kv_len is (B,)
    B, NH, T, HS = q.shape
    group = NH // k.shape[1]
    tile_q, tile_k = max(1, min(tile_q, T)), max(1, min(tile_k, T))  # scratch no larger than the sequence
    n_qt = (T + tile_q - 1) // tile_q
    HS4, BC4 = _up4(HS), _up4(tile_k)
    for item in prange(B * NH * n_qt):
        b, h, qt = item // (NH * n_qt), item // n_qt % NH, _interleave(item % n_qt, n_qt)
        kb, vb = k[b, h // group], v[b, h // group]  # (T, HS)
        q0 = qt * tile_q
        nr = min(tile_q, T - q0)
        qT = np.zeros((HS4, tile_q), q.dtype)  # scale * Q^T of this tile
        accT = np.zeros((HS4, tile_q), q.dtype)  # unnormalised output, transposed
        sT = np.zeros((BC4, tile_q), q.dtype)  # scores, then probabilities, (key, query)
        kt = np.zeros((BC4, HS4), q.dtype)
        vT = np.zeros((HS4, BC4), q.dtype)
        m = np.full(tile_q, -np.inf, q.dtype)
        lsum = np.zeros(tile_q, q.dtype)  # running sum l of exp(s - m)
        m_new, alpha = np.empty(tile_q, q.dtype), np.empty(tile_q, q.dtype)
        _load_cols(qT, q[b, h], q0, nr, nr, scale)
        k_end = _key_end(kv_len[b], q0 + nr, T, causal)
        for k0 in range(0, k_end, tile_k):
            nc = min(tile_k, k_end - k0)
            if _tile_hidden(q0, k0, nc, window, n_global):
                continue
            nc4 = _up4(nc)
            _load_rows(kt, kb, k0, nc, nc4, 1.0)
            _load_cols(vT, vb, k0, nc, nc4, 1.0)
            sT[:nc4, :nr] = 0
            _matmul_acc(sT, kt, qT, nc4, HS4, nr)  # S^T = K Q^T, (tile_k, tile_q)
            if causal and k0 + nc - 1 > q0:
                _mask_future(sT, q0, k0, nc, nr)
            if _tile_straddles_window(q0, nr, k0, nc, window, n_global):
                _mask_outside_window(sT, q0, k0, nc, nr, window, n_global)
            _online_softmax_step(sT, accT, m, lsum, m_new, alpha, nc, nc4, nr)
            _matmul_acc(accT, vT, sT, HS4, nc4, nr)  # acc^T += V^T P^T, (HS, tile_q)
        for r in range(nr):
            if lsum[r] != 0:  # not `> 0`: a NaN score makes lsum NaN, and NaN must reach y (a diverged run says so)
                inv = 1 / lsum[r]
                for d in range(HS):
                    y[b, h, q0 + r, d] = accT[d, r] * inv
                lse[b, h, q0 + r] = m[r] + math.log(lsum[r])
            else:  # no valid key: defined as output 0, lse -inf
                for d in range(HS):
                    y[b, h, q0 + r, d] = 0
                lse[b, h, q0 + r] = -np.inf


@njit(cache=True, nogil=True, fastmath=FAST)
def _load_query_tile(qT, qr, dyT, dyr, lse_use, dsum, q, dy, y, lse, q0, nr, nr4, scale, rows):
    """Loads a query tile for the backward: scale Q^T, dY^T, lse (+inf for empty rows), D; rows: scale Q, dY too."""
    # q, dy, y are (T, HS), lse is (T,); row layouts padded with zero rows up to nr4
    HS = q.shape[1]
    _load_cols(qT, q, q0, nr, nr, scale)
    _load_cols(dyT, dy, q0, nr, nr, 1.0)
    if rows:
        _load_rows(qr, q, q0, nr, nr4, scale)  # scale folded in: dK = scale dS^T Q
        _load_rows(dyr, dy, q0, nr, nr4, 1.0)
    for r in range(nr):
        # lse = -inf marks a row without keys: +inf makes every exp(s - lse) an exact 0
        lse_use[r] = lse[q0 + r] if lse[q0 + r] > -np.inf else np.inf
        acc = dy[q0, 0] * 0
        for d in range(HS):
            acc += dy[q0 + r, d] * y[q0 + r, d]
        dsum[r] = acc


@njit(cache=True, nogil=True, fastmath=FAST)
def _probs_and_dscores(sT, dpT, lse_use, dsum, nc, nc4, nr, nr4):
    """In place: sT (scores) becomes P = exp(S - lse) and dpT (dP) becomes dS = P (dP - D)."""
    # sT, dpT are (tile_k4, tile_q4) laid out (key, query); padding rows and columns end as 0
    for c in range(nc):
        _exp_sub(sT[c], lse_use, nr)
        for r in range(nr):
            dpT[c, r] = sT[c, r] * (dpT[c, r] - dsum[r])
        for r in range(nr, nr4):
            sT[c, r] = 0
            dpT[c, r] = 0
    for c in range(nc, nc4):
        sT[c, :] = 0
        dpT[c, :] = 0


@njit(cache=True, nogil=True, parallel=True, fastmath=FAST)
def _backward_dkdv(dk, dv, dy, q, k, v, y, lse, kv_len, scale, causal, tile_q, tile_k, window, n_global):
    """dk, dv += their gradients; parallel over key tiles, each owning its rows of dk and dv."""
    B, NH, T, HS = q.shape
    NKV = k.shape[1]
    group = NH // NKV
    tile_q, tile_k = max(1, min(tile_q, T)), max(1, min(tile_k, T))
    n_qt = (T + tile_q - 1) // tile_q
    n_kt = (T + tile_k - 1) // tile_k
    HS4, BC4, BR4 = _up4(HS), _up4(tile_k), _up4(tile_q)
    for item in prange(B * NKV * n_kt):
        b, kh, kt_i = item // (NKV * n_kt), item // n_kt % NKV, _interleave(item % n_kt, n_kt)
        k0 = kt_i * tile_k
        nc = min(tile_k, _key_end(kv_len[b], T, T, False) - k0)
        if nc <= 0:  # a tile of padded keys: no gradient
            continue
        nc4 = _up4(nc)
        kt = np.zeros((BC4, HS4), q.dtype)
        vr = np.zeros((BC4, HS4), q.dtype)
        dk_acc = np.zeros((BC4, HS4), q.dtype)
        dv_acc = np.zeros((BC4, HS4), q.dtype)
        qT, dyT = np.zeros((HS4, BR4), q.dtype), np.zeros((HS4, BR4), q.dtype)
        qr, dyr = np.zeros((BR4, HS4), q.dtype), np.zeros((BR4, HS4), q.dtype)
        sT, dpT = np.zeros((BC4, BR4), q.dtype), np.zeros((BC4, BR4), q.dtype)
        lse_use, dsum = np.empty(tile_q, q.dtype), np.empty(tile_q, q.dtype)
        _load_rows(kt, k[b, kh], k0, nc, nc4, 1.0)
        _load_rows(vr, v[b, kh], k0, nc, nc4, 1.0)
        for h in range(kh * group, (kh + 1) * group):
            # under the causal mask only queries at or after k0 see this tile
            for qt in range(k0 // tile_q if causal else 0, n_qt):
                q0 = qt * tile_q
                nr = min(tile_q, T - q0)
                if _tile_hidden(q0, k0, nc, window, n_global):
                    continue
                nr4 = _up4(nr)
                _load_query_tile(qT, qr, dyT, dyr, lse_use, dsum, q[b, h], dy[b, h], y[b, h], lse[b, h],
                                 q0, nr, nr4, scale, True)
                sT[:nc4, :nr] = 0
                dpT[:nc4, :nr] = 0
                _matmul_acc(sT, kt, qT, nc4, HS4, nr)  # S^T = K Q^T (scaled)
                if causal and k0 + nc - 1 > q0:
                    _mask_future(sT, q0, k0, nc, nr)
                if _tile_straddles_window(q0, nr, k0, nc, window, n_global):
                    _mask_outside_window(sT, q0, k0, nc, nr, window, n_global)
                _matmul_acc(dpT, vr, dyT, nc4, HS4, nr)  # dP^T = V dY^T
                _probs_and_dscores(sT, dpT, lse_use, dsum, nc, nc4, nr, nr4)
                _matmul_acc(dv_acc, sT, dyr, nc4, nr4, HS)  # dV += P^T dY
                _matmul_acc(dk_acc, dpT, qr, nc4, nr4, HS)  # dK += dS^T (scale Q)
        for c in range(nc):
            for d in range(HS):
                dk[b, kh, k0 + c, d] += dk_acc[c, d]
                dv[b, kh, k0 + c, d] += dv_acc[c, d]


@njit(cache=True, nogil=True, parallel=True, fastmath=FAST)
def _backward_dq(dq, dy, q, k, v, y, lse, kv_len, scale, causal, tile_q, tile_k, window, n_global):
    """dq += its gradient; parallel over query tiles, each owning its rows of dq."""
    B, NH, T, HS = q.shape
    group = NH // k.shape[1]
    tile_q, tile_k = max(1, min(tile_q, T)), max(1, min(tile_k, T))
    n_qt = (T + tile_q - 1) // tile_q
    HS4, BC4, BR4 = _up4(HS), _up4(tile_k), _up4(tile_q)
    for item in prange(B * NH * n_qt):
        b, h, qt = item // (NH * n_qt), item // n_qt % NH, _interleave(item % n_qt, n_qt)
        kb, vb = k[b, h // group], v[b, h // group]
        q0 = qt * tile_q
        nr = min(tile_q, T - q0)
        nr4 = _up4(nr)
        kt, vr = np.zeros((BC4, HS4), q.dtype), np.zeros((BC4, HS4), q.dtype)
        kT = np.zeros((HS4, BC4), q.dtype)
        qT, dyT = np.zeros((HS4, BR4), q.dtype), np.zeros((HS4, BR4), q.dtype)
        sT, dpT = np.zeros((BC4, BR4), q.dtype), np.zeros((BC4, BR4), q.dtype)
        dqT = np.zeros((HS4, BR4), q.dtype)
        lse_use, dsum = np.empty(tile_q, q.dtype), np.empty(tile_q, q.dtype)
        # this pass needs no row layouts (the qT, dyT passed in their place stay untouched)
        _load_query_tile(qT, qT, dyT, dyT, lse_use, dsum, q[b, h], dy[b, h], y[b, h], lse[b, h],
                         q0, nr, nr4, scale, False)
        k_end = _key_end(kv_len[b], q0 + nr, T, causal)
        for k0 in range(0, k_end, tile_k):
            nc = min(tile_k, k_end - k0)
            if _tile_hidden(q0, k0, nc, window, n_global):
                continue
            nc4 = _up4(nc)
            _load_rows(kt, kb, k0, nc, nc4, 1.0)
            _load_rows(vr, vb, k0, nc, nc4, 1.0)
            _load_cols(kT, kb, k0, nc, nc4, 1.0)
            sT[:nc4, :nr] = 0
            dpT[:nc4, :nr] = 0
            _matmul_acc(sT, kt, qT, nc4, HS4, nr)  # S^T = K Q^T (scaled)
            if causal and k0 + nc - 1 > q0:
                _mask_future(sT, q0, k0, nc, nr)
            if _tile_straddles_window(q0, nr, k0, nc, window, n_global):
                _mask_outside_window(sT, q0, k0, nc, nr, window, n_global)
            _matmul_acc(dpT, vr, dyT, nc4, HS4, nr)  # dP^T = V dY^T
            _probs_and_dscores(sT, dpT, lse_use, dsum, nc, nc4, nr, nr4)
            _matmul_acc(dqT, kT, dpT, HS4, nc4, nr)  # dQ^T += K^T dS^T (scaled when stored)
        for r in range(nr):
            for d in range(HS):
                dq[b, h, q0 + r, d] += scale * dqT[d, r]


def tiled_attention_backward(dq, dk, dv, dy, q, k, v, y, lse, kv_len, scale, causal, tile_q, tile_k, window=0,
                             n_global=0, by_rows=None, rows=0):
    """dq, dk, dv += the gradients of tiled_attention_forward, recomputing probabilities from lse (same mask).

    by_rows (None: when no window is set): blocks of `rows` query rows (0: attention_rows.row_block) through
    BLAS (attention_rows.py) instead of the tile kernels, which tile_q and tile_k are for; the same gradients,
    2-3x faster at head sizes 32-64 (measured).
    """
    # dq, dy, q, y are (B, NH, T, HS); dk, dv, k, v are (B, NKV, T, HS); lse is (B, NH, T)
    check_window(causal, window, n_global)
    window, n_global = int(window), int(n_global)
    if by_rows is None:
        by_rows = window <= 0
    if by_rows:
        if window > 0:
            raise ValueError("the row-block backward has no local window: use the tile kernels (by_rows=False)")
        rows_attention_backward(dq, dk, dv, dy, q, k, v, y, lse, kv_len, scale, causal, rows)
        return
    _backward_dkdv(dk, dv, dy, q, k, v, y, lse, kv_len, scale, causal, tile_q, tile_k, window, n_global)
    _backward_dq(dq, dy, q, k, v, y, lse, kv_len, scale, causal, tile_q, tile_k, window, n_global)
