"""Multi-head self-attention, the plain reference version: it forms the (T, T) score matrix.

The tiled (FlashAttention-style) version lives in attention_tiled.py with the same q/k/v layout:
q is (B, NH, T, HS); k, v are (B, NKV, T, HS) with NH % NKV == 0, and query head h reads key/value
head h // (NH // NKV) (grouped-query attention; NKV == NH is MHA, NKV == 1 is MQA). The fused
projection qkv is (B, T, C + 2 NKV HS) laid out [q | k | v]. kv_len is (B,) int32: keys at
positions >= kv_len[b] are padding and get probability 0; a row without any visible key (only when
kv_len[b] == 0) outputs 0. Products go to BLAS over the head stack (the query heads of one group
are one (G T, HS) matrix, so GQA costs no copies); numba does the layout changes and the softmax.

Local attention (window > 0, causal only): query t sees keys t - window < j <= t, and the first
n_global positions are global (as Longformer's: they see every earlier key, and every later query
sees them). Here the (T, T) matrix is still formed and the entries outside are 0; the tiled kernels
skip the tiles nobody sees.
"""

import numpy as np
from numba import njit, prange

from simulator.attention_mask import check_window
from simulator.kernels.cpu.fastexp import fast_exp
from simulator.kernels.cpu.jit import FAST, wide


@wide
def split_heads(q, k, v, qkv):
    """Writes q, k, v from the fused projection qkv."""
    # qkv is (B, T, C + 2 NKV HS) laid out [q | k | v]; q is (B, NH, T, HS), k, v are (B, NKV, T, HS)
    B, NH, T, HS = q.shape
    NKV = k.shape[1]
    C, CK = NH * HS, NKV * HS
    for bt in prange(B * T):  # one row of qkv, read once, into HS-long runs of each head
        b, t = bt // T, bt % T
        row = qkv[b, t]
        for h in range(NH):
            qh = q[b, h, t]
            for i in range(HS):
                qh[i] = row[h * HS + i]
        for h in range(NKV):
            kh, vh = k[b, h, t], v[b, h, t]
            for i in range(HS):
                kh[i] = row[C + h * HS + i]
                vh[i] = row[C + CK + h * HS + i]


@wide
def merge_qkv_grad(dqkv, dq, dk, dv):
    """Accumulates dqkv += the per-head gradients in the fused layout (the backward of split_heads)."""
    B, NH, T, HS = dq.shape
    NKV = dk.shape[1]
    C, CK = NH * HS, NKV * HS
    for b in prange(B):
        for t in range(T):
            for h in range(NH):
                for i in range(HS):
                    dqkv[b, t, h * HS + i] += dq[b, h, t, i]
            for h in range(NKV):
                for i in range(HS):
                    dqkv[b, t, C + h * HS + i] += dk[b, h, t, i]
                    dqkv[b, t, C + CK + h * HS + i] += dv[b, h, t, i]


@wide
def merge_heads(out, yh):
    """Writes out[b, t, h*HS + i] = yh[b, h, t, i]."""
    # out is (B, T, C), yh is (B, NH, T, HS)
    B, NH, T, HS = yh.shape
    for b in prange(B):
        for t in range(T):
            for h in range(NH):
                for i in range(HS):
                    out[b, t, h * HS + i] = yh[b, h, t, i]


@wide
def split_heads_grad(dyh, dout):
    """Accumulates dyh += dout in the per-head layout (the backward of merge_heads)."""
    # dyh is (B, NH, T, HS), dout is (B, T, C)
    B, NH, T, HS = dyh.shape
    for bt in prange(B * T):
        b, t = bt // T, bt % T
        row = dout[b, t]
        for h in range(NH):
            dh = dyh[b, h, t]
            for i in range(HS):
                dh[i] += row[h * HS + i]


@njit(cache=True, nogil=True)
def _local_span(t, n, window, n_global):
    """(g, lo): under a causal window, query t of n visible-so-far keys sees [0, g) and [lo, n)."""
    # a global query (t < n_global) sees every earlier key; a local one its window and the global keys
    if window <= 0 or t < n_global:
        return 0, 0
    lo = min(max(t - window + 1, 0), n)
    return min(n_global, lo), lo


@wide(fastmath=FAST)
def _attention_softmax_forward(att, scale, causal, kv_len):
    # att is (B, NH, T, T): raw scores q.k in, probabilities out; scale has att's dtype so
    # float32 scores are exponentiated in float32 (the sum is kept in float64); fastmath lets
    # the row's max and sum run in vector lanes
    B, NH, T, _ = att.shape
    for r in prange(B * NH * T):
        b, h, t = r // (NH * T), (r // T) % NH, r % T
        row = att[b, h, t]
        n = min(max(kv_len[b], 0), T)  # keys past kv_len are padding
        if causal:
            n = min(n, t + 1)
        if n == 0:  # no visible key: the row passes on nothing
            row[:] = 0.0
            continue
        # subtracting the row's largest scaled score keeps exp() finite at any scale (scores of 1e4
        # included); it is taken on the raw scores and the difference scaled, so the top key gets
        # exp(0) = 1 exactly (a fused multiply-add of scale * row - mx need not give 0 there)
        mx = row[0]
        if scale >= 0:
            for j in range(1, n):
                mx = row[j] if row[j] > mx else mx  # a select vectorises, max() does not
        else:
            for j in range(1, n):
                mx = row[j] if row[j] < mx else mx
        s = 0.0
        for j in range(n):
            e = fast_exp(scale * (row[j] - mx))
            row[j] = e
            s += e
        inv = 1.0 / s
        for j in range(n):
            row[j] *= inv
        for j in range(n, T):
            row[j] = 0.0


@wide(fastmath=FAST)
def _local_softmax_forward(att, scale, kv_len, window, n_global):
    # att is (B, NH, T, T) as above; causal, and row t sees only the keys [0, g) and [lo, n) of _local_span.
    # One loop over the visible keys (index i -> key i below g, lo + i - g above), so fast_exp is inlined once
    B, NH, T, _ = att.shape
    for r in prange(B * NH * T):
        b, h, t = r // (NH * T), (r // T) % NH, r % T
        row = att[b, h, t]
        n = min(min(max(kv_len[b], 0), T), t + 1)
        g, lo = _local_span(t, n, window, n_global)
        m = g + n - lo  # visible keys
        if m <= 0:
            row[:] = 0.0
            continue
        mx = row[0] if g > 0 else row[lo]
        for i in range(m):
            x = row[i if i < g else lo + i - g]
            mx = x if (x > mx) == (scale >= 0) else mx  # the max (the min for a negative scale)
        s = 0.0
        for i in range(m):
            j = i if i < g else lo + i - g
            e = fast_exp(scale * (row[j] - mx))
            row[j] = e
            s += e
        inv = 1.0 / s
        for j in range(g):
            row[j] *= inv
        for j in range(g, lo):
            row[j] = 0.0
        for j in range(lo, n):
            row[j] *= inv
        for j in range(n, T):
            row[j] = 0.0


def attention_softmax_forward(att, scale, causal, kv_len=None, window=0, n_global=0):
    """In place: att = softmax(scale * att) per row over the visible keys; hidden keys get probability 0.

    window > 0 (causal only): each row sees the last `window` keys and the first `n_global` ones.
    """
    if kv_len is None:  # no padding
        kv_len = np.full(att.shape[0], att.shape[-1], np.int32)
    check_window(causal, window, n_global)
    if window > 0:  # a kernel of its own, so the full-mask one stays as it was
        _local_softmax_forward(att, att.dtype.type(scale), kv_len, int(window), int(n_global))
    else:
        _attention_softmax_forward(att, att.dtype.type(scale), causal, kv_len)


def attention_softmax_backward(datt, att, scale, causal=False, kv_len=None):
    """In place: datt (dL/dprobs) becomes dL/dscores = scale * p * (dp - sum(dp * p)) (one gradient, two names).

    Given the forward's mask (causal, kv_len), the hidden keys are not read: their p is 0, so is their gradient.
    A local window needs no parameter here: the keys outside it have p = 0 in att, so their gradient is 0.
    """
    if kv_len is None:
        kv_len = np.full(att.shape[0], att.shape[-1], np.int32)
    _attention_softmax_backward(datt, att, att.dtype.type(scale), causal, kv_len)


@wide(fastmath=FAST)
def _attention_softmax_backward(datt, att, scale, causal, kv_len):
    # datt, att are (B, NH, T, T); masked entries have p = 0 and so get 0
    B, NH, T, _ = att.shape
    for r in prange(B * NH * T):
        b, h, t = r // (NH * T), (r // T) % NH, r % T
        n = min(max(kv_len[b], 0), T)
        if causal:
            n = min(n, t + 1)
        drow, prow = datt[b, h, t], att[b, h, t]
        dot = 0.0
        for j in range(n):
            dot += drow[j] * prow[j]
        for j in range(n):
            drow[j] = scale * prow[j] * (drow[j] - dot)
        for j in range(n, T):
            drow[j] = 0.0


def _grouped(x, nkv):
    """(B, NH, T, X) -> (B, NKV, G T, X): the query heads of one key/value group as one matrix (a view)."""
    B, NH, T, X = x.shape
    view = x.view()
    view.shape = (B, nkv, (NH // nkv) * T, X)  # raises rather than copy: matmul must write into x itself
    return view


def attention_heads_forward(yh, att, q, k, v, scale, causal, kv_len=None, window=0, n_global=0):
    """Writes yh = softmax(scale q k^T, masked) v per head and keeps the probabilities in att (window: local)."""
    # q, yh are (B, NH, T, HS); k, v are (B, NKV, T, HS); att is (B, NH, T, T); all C-contiguous
    nkv = k.shape[1]
    np.matmul(_grouped(q, nkv), k.transpose(0, 1, 3, 2), out=_grouped(att, nkv))  # raw scores (B, NH, T, T)
    attention_softmax_forward(att, scale, causal, kv_len, window, n_global)
    np.matmul(_grouped(att, nkv), v, out=_grouped(yh, nkv))  # (B, NH, T, HS)


def attention_heads_backward(dq, dk, dv, datt, dyh, q, k, v, att, scale, causal=False, kv_len=None):
    """Accumulates dq, dk, dv from dyh into gradients that hold none yet; datt is scratch; the forward's mask.

    Each gradient is one BLAS product, which BLAS writes: onto zero, the same
    sum. A key/value head sums the gradients of its query group in the product.
    """
    nkv = k.shape[1]
    np.matmul(_grouped(dyh, nkv), v.transpose(0, 1, 3, 2), out=_grouped(datt, nkv))  # dL/dprobs (B, NH, T, T)
    np.matmul(_grouped(att, nkv).transpose(0, 1, 3, 2), _grouped(dyh, nkv), out=dv)  # (B, NKV, T, HS)
    attention_softmax_backward(datt, att, scale, causal, kv_len)  # now dL/d(q.k)
    np.matmul(_grouped(datt, nkv), k, out=_grouped(dq, nkv))
    np.matmul(_grouped(datt, nkv).transpose(0, 1, 3, 2), _grouped(q, nkv), out=dk)


def attention_forward(out, q, k, v, att, yh, qkv, scale, causal, kv_len=None):
    """Writes out (B, T, C) and caches q, k, v, att (the probabilities) and yh."""
    # qkv is (B, T, C + 2 NKV HS); q, yh are (B, NH, T, HS); k, v are (B, NKV, T, HS); att is (B, NH, T, T)
    split_heads(q, k, v, qkv)
    attention_heads_forward(yh, att, q, k, v, scale, causal, kv_len)
    merge_heads(out, yh)


def attention_backward(dqkv, dq, dk, dv, datt, dyh, dout, q, k, v, att, scale):
    """Accumulates dqkv (B, T, C + 2 NKV HS) from dout (B, T, C); dq, dk, dv, datt, dyh are scratch."""
    dyh.fill(0.0)  # scratch, which the per-head gradient is added into
    split_heads_grad(dyh, dout)
    attention_heads_backward(dq, dk, dv, datt, dyh, q, k, v, att, scale)
    merge_qkv_grad(dqkv, dq, dk, dv)
