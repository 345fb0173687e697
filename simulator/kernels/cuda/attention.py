"""Tiled (FlashAttention-style) attention on the GPU, twin of kernels/cpu/attention_tiled.py, and the head layouts.

Layout as on the CPU: q, y are (B, NH, T, HS); k, v are (B, NKV, T, HS), query head h reads
key/value head h // (NH // NKV) (GQA; NKV == 1 is MQA); lse is (B, NH, T); kv_len (B,) int32
marks keys at positions >= kv_len[b] as padding. A row with no valid key outputs 0, lse -inf,
and gets no gradient; a NaN score reaches y (a diverged run says so).

Forward: a block per (query tile, batch x head), one thread per query row. The block's scaled
Q tile sits in shared memory; the block walks the key tiles, loading each K and V tile into
shared memory together (every thread a share of the rows), then each thread scores its row
against the tile, and folds it into its running max m, sum l and unnormalised output (in
registers / local memory) with the online softmax: when the max grows, l and the output are
rescaled by exp(m_old - m_new). At the end y = acc / l and lse = m + log(l). The (T, T) score
matrix is never formed.

Backward (FlashAttention-2, recomputing P = exp(S - lse) from the forward's lse): two race-free
kernels, as on the CPU. One has a block per (key tile, batch x key/value head), a thread per key
row owning its rows of dK and dV; it walks the query heads of its group and their query tiles
(Q, dY, lse and D = rowsum(dY * Y) loaded into shared memory). The other has a block per query
tile and a thread per query row owning its row of dQ, walking the key tiles as the forward does.
Gradients are added (`+=`), per the backward contract.

The tile sizes tile_q, tile_k of the CPU signature are honoured up to the shared arrays' size
(tile_rows: 32 rows in float32, 16 in float64 on a GPU; the results do not depend on the tiles).
Head sizes up to MAX_HEAD_SIZE.

Local attention (window > 0, causal, n_global global tokens; see kernels/cpu/attention.py): a
score is used only when `seen(query, key)`, and a tile pair nobody sees is skipped whole by every
thread of the block (`hidden`, the CPU's `_tile_hidden`), so the syncthreads stay uniform.

The naive attention (twin of attention.py: the (T, T) probabilities are formed and kept) runs
the tiled GEMM over the stack of key/value groups (the query heads of one group are one
(G T, HS) matrix, as on the CPU, so GQA costs no copies) and a block per score row for the
masked softmax. Its products write their gradients, as BLAS does on the CPU.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from simulator.attention_mask import check_window
from simulator.kernels.cuda.gemm import gemm_batched
from simulator.kernels.cuda.launch import ROW_THREADS, SIMULATED, THREADS, block_max, block_sum, blocks, per_dtype

MAX_TILE = 4 if SIMULATED else 32  # rows of a Q or K/V tile (threads per block), float32
MAX_HEAD_SIZE = 16 if SIMULATED else 64  # shared and local arrays are sized by it


def tile_rows(dtype) -> int:
    """Rows of a tile for dtype: four (32, 64) tiles of float32 are 32 KiB of shared memory; float64 halves
    the rows to stay there (a block may hold 48 KiB of static shared memory)."""
    return MAX_TILE if SIMULATED or np.dtype(dtype).itemsize <= 4 else MAX_TILE // 2


@per_dtype
def _kernels(t):
    zero, one = t(0), t(1)
    ninf, pinf = t(-math.inf), t(math.inf)
    BT, HSM = tile_rows(t), MAX_HEAD_SIZE

    @cuda.jit(device=True)
    def seen(qi, kj, window, n_global):
        """Whether query qi sees key kj <= qi under local attention (always without a window)."""
        return window <= 0 or qi - kj < window or kj < n_global or qi < n_global

    @cuda.jit(device=True)
    def hidden(q0, k0, nc, window, n_global):
        """No query from q0 on sees a key of [k0, k0 + nc): the tile pair is skipped (as on the CPU)."""
        return window > 0 and k0 >= n_global and q0 >= n_global and q0 - (k0 + nc - 1) >= window

    @cuda.jit(device=True)
    def dot(a, i, b, j, n):
        acc = zero
        for d in range(n):
            acc += a[i, d] * b[j, d]
        return acc

    @cuda.jit
    def forward(y, lse, q, k, v, kv_len, scale, causal, tile_k, window, n_global):
        sq = cuda.shared.array((BT, HSM), t)
        sk = cuda.shared.array((BT, HSM), t)
        sv = cuda.shared.array((BT, HSM), t)
        acc = cuda.local.array(HSM, t)
        sc = cuda.local.array(BT, t)
        B, NH, T, HS = q.shape
        group = NH // k.shape[1]
        r, tq = cuda.threadIdx.x, cuda.blockDim.x
        b, h = cuda.blockIdx.y // NH, cuda.blockIdx.y % NH
        kh = h // group
        q0 = cuda.blockIdx.x * tq
        qi = q0 + r
        row_ok = qi < T
        for d in range(HS):
            sq[r, d] = q[b, h, qi, d] * scale if row_ok else zero
            acc[d] = zero
        kvl = min(max(kv_len[b], 0), T)
        k_end = min(kvl, min(q0 + tq, T)) if causal else kvl  # the last key any row of the tile sees
        my_end = min(kvl, qi + 1) if causal else kvl
        m, lsum = ninf, zero
        for k0 in range(0, k_end, tile_k):
            nc = min(tile_k, k_end - k0)
            if hidden(q0, k0, nc, window, n_global):  # the same for every thread of the block
                continue
            cuda.syncthreads()  # the previous tile is no longer read
            for c in range(r, nc, tq):
                for d in range(HS):
                    sk[c, d] = k[b, kh, k0 + c, d]
                    sv[c, d] = v[b, kh, k0 + c, d]
            cuda.syncthreads()
            if row_ok:
                m_new = m
                nan = zero
                for c in range(nc):
                    if k0 + c < my_end and seen(qi, k0 + c, window, n_global):
                        s = dot(sq, r, sk, c, HS)
                        sc[c] = s
                        if s > m_new:
                            m_new = s
                        elif s != s:
                            nan = s  # a NaN score: it must reach y and lse (a diverged run says so)
                    else:
                        sc[c] = ninf
                if m_new > ninf:  # this row has seen a valid key (else nothing to fold in yet)
                    alpha = math.exp(m - m_new)  # 0 while m is still -inf
                    lsum *= alpha
                    for d in range(HS):
                        acc[d] *= alpha
                    for c in range(nc):
                        if sc[c] > ninf:
                            p = math.exp(sc[c] - m_new)
                            lsum += p
                            for d in range(HS):
                                acc[d] += p * sv[c, d]
                    m = m_new
                if nan != zero:
                    lsum = nan
        if row_ok:
            if lsum != zero:  # not `> 0`: a NaN must reach y
                inv = one / lsum
                for d in range(HS):
                    y[b, h, qi, d] = acc[d] * inv
                lse[b, h, qi] = m + math.log(lsum)
            else:
                for d in range(HS):
                    y[b, h, qi, d] = zero
                lse[b, h, qi] = ninf

    @cuda.jit
    def backward_dkdv(dk, dv, dy, q, k, v, y, lse, kv_len, scale, causal, tile_q, window, n_global):
        sk = cuda.shared.array((BT, HSM), t)
        sv = cuda.shared.array((BT, HSM), t)
        sq = cuda.shared.array((BT, HSM), t)
        sdy = cuda.shared.array((BT, HSM), t)
        slse = cuda.shared.array(BT, t)
        sD = cuda.shared.array(BT, t)
        dk_acc = cuda.local.array(HSM, t)
        dv_acc = cuda.local.array(HSM, t)
        B, NH, T, HS = q.shape
        NKV = k.shape[1]
        group = NH // NKV
        c, tk = cuda.threadIdx.x, cuda.blockDim.x
        b, kh = cuda.blockIdx.y // NKV, cuda.blockIdx.y % NKV
        k0 = cuda.blockIdx.x * tk
        kj = k0 + c
        kvl = min(max(kv_len[b], 0), T)
        if k0 >= kvl:  # a tile of padded keys (the whole block leaves together): no gradient
            return
        key_ok = kj < kvl
        for d in range(HS):
            sk[c, d] = k[b, kh, kj, d] if key_ok else zero
            sv[c, d] = v[b, kh, kj, d] if key_ok else zero
            dk_acc[d] = zero
            dv_acc[d] = zero
        n_qt = (T + tile_q - 1) // tile_q
        for h in range(kh * group, (kh + 1) * group):
            for qt in range(k0 // tile_q if causal else 0, n_qt):  # causal: only queries at or after k0
                q0 = qt * tile_q
                nr = min(tile_q, T - q0)
                if hidden(q0, k0, tk, window, n_global):  # the block's whole key tile, the same for every thread
                    continue
                cuda.syncthreads()
                for r in range(c, nr, tk):
                    acc = zero
                    for d in range(HS):
                        sq[r, d] = q[b, h, q0 + r, d] * scale  # scale folded in: dK = scale dS^T Q
                        sdy[r, d] = dy[b, h, q0 + r, d]
                        acc += dy[b, h, q0 + r, d] * y[b, h, q0 + r, d]
                    sD[r] = acc
                    ls = lse[b, h, q0 + r]
                    slse[r] = ls if ls > ninf else pinf  # a row without keys: every exp(s - lse) is 0
                cuda.syncthreads()
                if key_ok:
                    for r in range(nr):
                        if (causal and kj > q0 + r) or not seen(q0 + r, kj, window, n_global):
                            continue
                        p = math.exp(dot(sq, r, sk, c, HS) - slse[r])
                        ds = p * (dot(sdy, r, sv, c, HS) - sD[r])
                        for d in range(HS):
                            dv_acc[d] += p * sdy[r, d]
                            dk_acc[d] += ds * sq[r, d]
        if key_ok:
            for d in range(HS):
                dk[b, kh, kj, d] += dk_acc[d]
                dv[b, kh, kj, d] += dv_acc[d]

    @cuda.jit
    def backward_dq(dq, dy, q, k, v, y, lse, kv_len, scale, causal, tile_k, window, n_global):
        sq = cuda.shared.array((BT, HSM), t)
        sdy = cuda.shared.array((BT, HSM), t)
        sk = cuda.shared.array((BT, HSM), t)
        sv = cuda.shared.array((BT, HSM), t)
        dq_acc = cuda.local.array(HSM, t)
        B, NH, T, HS = q.shape
        group = NH // k.shape[1]
        r, tq = cuda.threadIdx.x, cuda.blockDim.x
        b, h = cuda.blockIdx.y // NH, cuda.blockIdx.y % NH
        kh = h // group
        q0 = cuda.blockIdx.x * tq
        qi = q0 + r
        row_ok = qi < T
        D = zero
        for d in range(HS):
            sq[r, d] = q[b, h, qi, d] * scale if row_ok else zero
            sdy[r, d] = dy[b, h, qi, d] if row_ok else zero
            if row_ok:
                D += dy[b, h, qi, d] * y[b, h, qi, d]
            dq_acc[d] = zero
        ls = lse[b, h, qi] if row_ok else ninf
        ls = ls if ls > ninf else pinf
        kvl = min(max(kv_len[b], 0), T)
        k_end = min(kvl, min(q0 + tq, T)) if causal else kvl
        my_end = min(kvl, qi + 1) if causal else kvl
        for k0 in range(0, k_end, tile_k):
            nc = min(tile_k, k_end - k0)
            if hidden(q0, k0, nc, window, n_global):
                continue
            cuda.syncthreads()
            for c in range(r, nc, tq):
                for d in range(HS):
                    sk[c, d] = k[b, kh, k0 + c, d]
                    sv[c, d] = v[b, kh, k0 + c, d]
            cuda.syncthreads()
            if row_ok:
                for c in range(nc):
                    if k0 + c < my_end and seen(qi, k0 + c, window, n_global):
                        p = math.exp(dot(sq, r, sk, c, HS) - ls)
                        ds = p * (dot(sdy, r, sv, c, HS) - D)
                        for d in range(HS):
                            dq_acc[d] += ds * sk[c, d]
        if row_ok:
            for d in range(HS):
                dq[b, h, qi, d] += scale * dq_acc[d]

    return {"forward": forward, "backward_dkdv": backward_dkdv, "backward_dq": backward_dq}


def _tile(n, T, dtype):
    return max(1, min(int(n), tile_rows(dtype), T))


def _check(q, k):
    B, NH, T, HS = q.shape
    if HS > MAX_HEAD_SIZE:
        raise ValueError(f"CUDA tiled attention: head size {HS} is larger than {MAX_HEAD_SIZE}, "
                         "the size its shared-memory tiles hold")
    if NH % k.shape[1]:
        raise ValueError(f"CUDA tiled attention: {NH} query heads do not divide into {k.shape[1]} key/value heads")
    return B, NH, T, HS


def tiled_attention_forward(y, lse, q, k, v, kv_len, scale, causal, tile_q, tile_k, window=0, n_global=0):
    """Writes y and lse: masked softmax(scale q k^T) v, one (query tile, key tile) pair at a time (window: local)."""
    B, NH, T, HS = _check(q, k)
    check_window(causal, window, n_global)
    tq, tk = _tile(tile_q, T, q.dtype), _tile(tile_k, T, q.dtype)
    fwd = _kernels(q.dtype)["forward"]
    fwd[(blocks(T, tq), B * NH), tq](y, lse, q, k, v, kv_len, q.dtype.type(scale), bool(causal), tk, int(window),
                                     int(n_global))


def tiled_attention_backward(dq, dk, dv, dy, q, k, v, y, lse, kv_len, scale, causal, tile_q, tile_k, window=0,
                             n_global=0):
    """dq, dk, dv += the gradients of tiled_attention_forward, recomputing probabilities from lse (same mask)."""
    B, NH, T, HS = _check(q, k)
    check_window(causal, window, n_global)
    tq, tk = _tile(tile_q, T, q.dtype), _tile(tile_k, T, q.dtype)
    kern, s = _kernels(q.dtype), q.dtype.type(scale)
    w, g = int(window), int(n_global)
    kern["backward_dkdv"][(blocks(T, tk), B * k.shape[1]), tk](dk, dv, dy, q, k, v, y, lse, kv_len, s,
                                                                 bool(causal), tq, w, g)
    kern["backward_dq"][(blocks(T, tq), B * NH), tq](dq, dy, q, k, v, y, lse, kv_len, s, bool(causal), tk, w, g)


# ------------------------------------------------------------------ head layouts (twins of attention.py's)


@cuda.jit
def _split_heads(q, k, v, qkv):
    # qkv is (B, T, C + 2 CK) laid out [q | k | v]: one thread per element of qkv
    i = cuda.grid(1)
    B, NH, T, HS = q.shape
    NKV = k.shape[1]
    C, CK = NH * HS, NKV * HS
    W = C + 2 * CK
    if i < B * T * W:
        b, t, j = i // (T * W), (i // W) % T, i % W
        x = qkv[b, t, j]
        if j < C:
            q[b, j // HS, t, j % HS] = x
        elif j < C + CK:
            k[b, (j - C) // HS, t, (j - C) % HS] = x
        else:
            v[b, (j - C - CK) // HS, t, (j - C - CK) % HS] = x


@cuda.jit
def _merge_qkv_grad(dqkv, dq, dk, dv):
    i = cuda.grid(1)
    B, NH, T, HS = dq.shape
    NKV = dk.shape[1]
    C, CK = NH * HS, NKV * HS
    W = C + 2 * CK
    if i < B * T * W:
        b, t, j = i // (T * W), (i // W) % T, i % W
        if j < C:
            dqkv[b, t, j] += dq[b, j // HS, t, j % HS]
        elif j < C + CK:
            dqkv[b, t, j] += dk[b, (j - C) // HS, t, (j - C) % HS]
        else:
            dqkv[b, t, j] += dv[b, (j - C - CK) // HS, t, (j - C - CK) % HS]


@cuda.jit
def _merge_heads(out, yh, accumulate):
    # out is (B, T, C), yh is (B, NH, T, HS); accumulate: yh += out's layout instead (split_heads_grad)
    i = cuda.grid(1)
    B, NH, T, HS = yh.shape
    C = NH * HS
    if i < B * T * C:
        b, t, j = i // (T * C), (i // C) % T, i % C
        if accumulate:
            yh[b, j // HS, t, j % HS] += out[b, t, j]
        else:
            out[b, t, j] = yh[b, j // HS, t, j % HS]


def split_heads(q, k, v, qkv):
    """Writes q, k, v from the fused projection qkv."""
    _split_heads[blocks(qkv.shape[0] * qkv.shape[1] * qkv.shape[2]), THREADS](q, k, v, qkv)


def merge_qkv_grad(dqkv, dq, dk, dv):
    """Accumulates dqkv += the per-head gradients in the fused layout."""
    _merge_qkv_grad[blocks(dqkv.shape[0] * dqkv.shape[1] * dqkv.shape[2]), THREADS](dqkv, dq, dk, dv)


def merge_heads(out, yh):
    """Writes out[b, t, h*HS + i] = yh[b, h, t, i]."""
    _merge_heads[blocks(out.shape[0] * out.shape[1] * out.shape[2]), THREADS](out, yh, False)


def split_heads_grad(dyh, dout):
    """Accumulates dyh += dout in the per-head layout."""
    _merge_heads[blocks(dout.shape[0] * dout.shape[1] * dout.shape[2]), THREADS](dout, dyh, True)


# ------------------------------------------------------------------ the naive attention (twins of attention.py's)


@per_dtype
def _naive_kernels(t):
    R = ROW_THREADS
    zero = t(0)

    @cuda.jit(device=True)
    def visible(kv_len, b, i, T, causal):
        n = min(max(kv_len[b], 0), T)  # keys past kv_len are padding
        return min(n, i + 1) if causal else n

    @cuda.jit(device=True)
    def seen(i, j, window, n_global):
        """Whether query i sees key j <= i under local attention (always without a window)."""
        return window <= 0 or i - j < window or j < n_global or i < n_global

    @cuda.jit
    def softmax_forward(att, scale, causal, kv_len, window, n_global):
        # one block per row of att (B, NH, T, T): raw scores in, probabilities out
        buf = cuda.shared.array(R, t)
        tid = cuda.threadIdx.x
        B, NH, T, _ = att.shape
        r = cuda.blockIdx.x
        b, h, i = r // (NH * T), (r // T) % NH, r % T
        n = visible(kv_len, b, i, T, causal)
        # the row's largest scaled score, taken on the raw scores (the smallest for a negative scale) as on the
        # CPU, so the top key gets exp(0) = 1 exactly; sign * x is an exact negation
        sign = t(1) if scale >= zero else t(-1)
        first = 0 if window <= 0 or n_global > 0 or i < n_global else max(i - window + 1, 0)  # a visible key
        mx = sign * att[b, h, i, first] if n > first else zero
        for j in range(tid, n, R):
            x = sign * att[b, h, i, j]
            if x > mx and seen(i, j, window, n_global):
                mx = x
        buf[tid] = mx
        block_max(buf, tid, R)
        mx = sign * buf[0]
        cuda.syncthreads()
        acc = zero
        for j in range(tid, n, R):
            if seen(i, j, window, n_global):
                e = math.exp(scale * (att[b, h, i, j] - mx))
                att[b, h, i, j] = e
                acc += e
        buf[tid] = acc
        block_sum(buf, tid, R)
        s = buf[0]
        for j in range(tid, T, R):
            if j < n and seen(i, j, window, n_global):
                att[b, h, i, j] = att[b, h, i, j] / s
            else:
                att[b, h, i, j] = zero  # hidden keys (a row without any visible key passes on nothing)

    @cuda.jit
    def softmax_backward(datt, att, scale, causal, kv_len):
        # in place: datt (dL/dprobs) becomes dL/dscores = scale p (dp - sum(dp p)) over the visible keys
        buf = cuda.shared.array(R, t)
        tid = cuda.threadIdx.x
        B, NH, T, _ = att.shape
        r = cuda.blockIdx.x
        b, h, i = r // (NH * T), (r // T) % NH, r % T
        n = visible(kv_len, b, i, T, causal)
        acc = zero
        for j in range(tid, n, R):
            acc += datt[b, h, i, j] * att[b, h, i, j]
        buf[tid] = acc
        block_sum(buf, tid, R)
        dot = buf[0]
        for j in range(tid, T, R):
            if j < n:
                datt[b, h, i, j] = scale * att[b, h, i, j] * (datt[b, h, i, j] - dot)
            else:
                datt[b, h, i, j] = zero

    @cuda.jit
    def fill(x, value):
        i = cuda.grid(1)
        if i < x.shape[0]:
            x[i] = value

    return softmax_forward, softmax_backward, fill


def _kv_len(kv_len, B, T):
    return cuda.to_device(np.full(B, T, np.int32)) if kv_len is None else kv_len


def attention_softmax_forward(att, scale, causal, kv_len=None, window=0, n_global=0):
    """In place: att = softmax(scale * att) per row over the visible keys; hidden keys get probability 0."""
    B, NH, T, _ = att.shape
    check_window(causal, window, n_global)
    k = _naive_kernels(att.dtype)[0]
    k[B * NH * T, ROW_THREADS](att, att.dtype.type(scale), bool(causal), _kv_len(kv_len, B, T), int(window),
                               int(n_global))


def attention_softmax_backward(datt, att, scale, causal=False, kv_len=None):
    """In place: datt (dL/dprobs) becomes dL/dscores = scale * p * (dp - sum(dp * p)); the forward's mask."""
    B, NH, T, _ = att.shape
    k = _naive_kernels(att.dtype)[1]
    k[B * NH * T, ROW_THREADS](datt, att, att.dtype.type(scale), bool(causal), _kv_len(kv_len, B, T))


def _grouped(x, nkv):
    """(B, NH, T, X) -> (B NKV, G T, X): the query heads of one key/value group as one matrix (a view)."""
    B, NH, T, X = x.shape
    return x.reshape(B * nkv, (NH // nkv) * T, X)


def _stacked(x):
    """(B, NKV, T, X) -> (B NKV, T, X)."""
    B, NKV, T, X = x.shape
    return x.reshape(B * NKV, T, X)


def attention_heads_forward(yh, att, q, k, v, scale, causal, kv_len=None, window=0, n_global=0):
    """Writes yh = softmax(scale q k^T, masked) v per head and keeps the probabilities in att (window: local)."""
    nkv = k.shape[1]
    gemm_batched(_grouped(att, nkv), _grouped(q, nkv), _stacked(k), trans_b=True)  # raw scores
    attention_softmax_forward(att, scale, causal, kv_len, window, n_global)
    gemm_batched(_grouped(yh, nkv), _grouped(att, nkv), _stacked(v))


def attention_heads_backward(dq, dk, dv, datt, dyh, q, k, v, att, scale, causal=False, kv_len=None, window=0,
                             n_global=0):
    """Writes dq, dk, dv (gradients that hold none yet, as the CPU's BLAS products do); datt is scratch.

    The window is the forward's; the products run over whole rows, which is the same sum (att is 0
    outside the window), so it is not used here.
    """
    nkv = k.shape[1]
    gemm_batched(_grouped(datt, nkv), _grouped(dyh, nkv), _stacked(v), trans_b=True)  # dL/dprobs
    gemm_batched(_stacked(dv), _grouped(att, nkv), _grouped(dyh, nkv), trans_a=True)
    attention_softmax_backward(datt, att, scale, causal, kv_len)  # now dL/d(q.k)
    gemm_batched(_grouped(dq, nkv), _grouped(datt, nkv), _stacked(k))
    gemm_batched(_stacked(dk), _grouped(datt, nkv), _grouped(q, nkv), trans_a=True)


def attention_forward(out, q, k, v, att, yh, qkv, scale, causal, kv_len=None):
    """Writes out (B, T, C) and caches q, k, v, att (the probabilities) and yh."""
    split_heads(q, k, v, qkv)
    attention_heads_forward(yh, att, q, k, v, scale, causal, kv_len)
    merge_heads(out, yh)


def attention_backward(dqkv, dq, dk, dv, datt, dyh, dout, q, k, v, att, scale):
    """Accumulates dqkv (B, T, C + 2 NKV HS) from dout (B, T, C); dq, dk, dv, datt, dyh are scratch."""
    flat = dyh.reshape(dyh.size)
    _naive_kernels(dyh.dtype)[2][blocks(flat.shape[0]), THREADS](flat, dyh.dtype.type(0))  # scratch, added into
    split_heads_grad(dyh, dout)
    attention_heads_backward(dq, dk, dv, datt, dyh, q, k, v, att, scale)
    merge_qkv_grad(dqkv, dq, dk, dv)
