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
(MAX_TILE; the results do not depend on the tiles). Head sizes up to MAX_HEAD_SIZE.
"""

from __future__ import annotations

import math

from numba import cuda

from simulator.kernels.cuda.launch import SIMULATED, THREADS, blocks, per_dtype

MAX_TILE = 4 if SIMULATED else 32  # rows of a Q or K/V tile (threads per block)
MAX_HEAD_SIZE = 16 if SIMULATED else 64  # shared and local arrays are sized by it


@per_dtype
def _kernels(t):
    zero, one = t(0), t(1)
    ninf, pinf = t(-math.inf), t(math.inf)
    BT, HSM = MAX_TILE, MAX_HEAD_SIZE

    @cuda.jit(device=True)
    def dot(a, i, b, j, n):
        acc = zero
        for d in range(n):
            acc += a[i, d] * b[j, d]
        return acc

    @cuda.jit
    def forward(y, lse, q, k, v, kv_len, scale, causal, tile_k):
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
                    if k0 + c < my_end:
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
    def backward_dkdv(dk, dv, dy, q, k, v, y, lse, kv_len, scale, causal, tile_q):
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
                        if causal and kj > q0 + r:
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
    def backward_dq(dq, dy, q, k, v, y, lse, kv_len, scale, causal, tile_k):
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
            cuda.syncthreads()
            for c in range(r, nc, tq):
                for d in range(HS):
                    sk[c, d] = k[b, kh, k0 + c, d]
                    sv[c, d] = v[b, kh, k0 + c, d]
            cuda.syncthreads()
            if row_ok:
                for c in range(nc):
                    if k0 + c < my_end:
                        p = math.exp(dot(sq, r, sk, c, HS) - ls)
                        ds = p * (dot(sdy, r, sv, c, HS) - D)
                        for d in range(HS):
                            dq_acc[d] += ds * sk[c, d]
        if row_ok:
            for d in range(HS):
                dq[b, h, qi, d] += scale * dq_acc[d]

    return {"forward": forward, "backward_dkdv": backward_dkdv, "backward_dq": backward_dq}


def _tile(n, T):
    return max(1, min(int(n), MAX_TILE, T))


def _check(q, k):
    B, NH, T, HS = q.shape
    if HS > MAX_HEAD_SIZE:
        raise ValueError(f"CUDA tiled attention: head size {HS} is larger than {MAX_HEAD_SIZE}, "
                         "the size its shared-memory tiles hold")
    if NH % k.shape[1]:
        raise ValueError(f"CUDA tiled attention: {NH} query heads do not divide into {k.shape[1]} key/value heads")
    return B, NH, T, HS


def tiled_attention_forward(y, lse, q, k, v, kv_len, scale, causal, tile_q, tile_k):
    """Writes y and lse: masked softmax(scale q k^T) v, one (query tile, key tile) pair at a time."""
    B, NH, T, HS = _check(q, k)
    tq, tk = _tile(tile_q, T), _tile(tile_k, T)
    fwd = _kernels(q.dtype)["forward"]
    fwd[(blocks(T, tq), B * NH), tq](y, lse, q, k, v, kv_len, q.dtype.type(scale), bool(causal), tk)


def tiled_attention_backward(dq, dk, dv, dy, q, k, v, y, lse, kv_len, scale, causal, tile_q, tile_k):
    """dq, dk, dv += the gradients of tiled_attention_forward, recomputing probabilities from lse."""
    B, NH, T, HS = _check(q, k)
    tq, tk = _tile(tile_q, T), _tile(tile_k, T)
    kern, s = _kernels(q.dtype), q.dtype.type(scale)
    kern["backward_dkdv"][(blocks(T, tk), B * k.shape[1]), tk](dk, dv, dy, q, k, v, y, lse, kv_len, s,
                                                                 bool(causal), tq)
    kern["backward_dq"][(blocks(T, tq), B * NH), tq](dq, dy, q, k, v, y, lse, kv_len, s, bool(causal), tk)


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
