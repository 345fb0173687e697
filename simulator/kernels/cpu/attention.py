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

import threading

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


@njit(cache=True, nogil=True, fastmath=FAST, error_model="numpy", inline="always")
def _row_max(row, n):
    """The largest of row[:n], n >= 1, in eight running lanes."""
    # a max reduction vectorises only under nnan, which FAST leaves out (NaN must survive): eight
    # independent selects give the core eight compares in flight instead of one chain
    m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = row[0]
    n8 = n // 8 * 8
    for j in range(0, n8, 8):
        x0, x1, x2, x3 = row[j], row[j + 1], row[j + 2], row[j + 3]
        x4, x5, x6, x7 = row[j + 4], row[j + 5], row[j + 6], row[j + 7]
        m0 = x0 if x0 > m0 else m0
        m1 = x1 if x1 > m1 else m1
        m2 = x2 if x2 > m2 else m2
        m3 = x3 if x3 > m3 else m3
        m4 = x4 if x4 > m4 else m4
        m5 = x5 if x5 > m5 else m5
        m6 = x6 if x6 > m6 else m6
        m7 = x7 if x7 > m7 else m7
    for j in range(n8, n):
        m0 = row[j] if row[j] > m0 else m0
    m0 = m1 if m1 > m0 else m0
    m2 = m3 if m3 > m2 else m2
    m4 = m5 if m5 > m4 else m4
    m6 = m7 if m7 > m6 else m6
    m0 = m2 if m2 > m0 else m0
    m4 = m6 if m6 > m4 else m4
    return m4 if m4 > m0 else m0


@wide(fastmath=FAST)
def _attention_softmax_forward(att, scale, causal, kv_len):
    # att is (B, NH, T, T): raw scores q.k in, probabilities out; scale has att's dtype so
    # float32 scores are exponentiated in float32 (the sum is kept in float64); fastmath lets
    # the row's sum run in vector lanes. Whole rows are written: past a causal block's end too, where
    # the products wrote nothing (looking whether that part is still 0 from the last call instead
    # measured no faster)
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
        # exp(0) = 1 exactly (a fused multiply-add of scale * row - mx need not give 0 there).
        # A negative scale makes the smallest raw score the largest scaled one
        if scale >= 0:
            mx = _row_max(row, n)
        else:
            mx = row[0]
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


def _row_ends(T, blocks):
    """(T,) int32: each row's block end (T for every row when there is one block)."""
    ends = np.empty(T, np.int32)
    for r0, r1 in blocks:
        ends[r0:r1] = r1
    return ends


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
    Whole rows are written (attention_heads_backward's blocked products need each row only up to its
    block's end, and write no more: 20-25 % faster at T = 256-512, measured).
    """
    if kv_len is None:
        kv_len = np.full(att.shape[0], att.shape[-1], np.int32)
    T = att.shape[-1]
    _attention_softmax_backward(datt, att, att.dtype.type(scale), causal, kv_len, _row_ends(T, [(0, T)]))


@wide(fastmath=FAST)
def _attention_softmax_backward(datt, att, scale, causal, kv_len, row_end):
    # datt, att are (B, NH, T, T); masked entries have p = 0 and so get 0, up to row_end[t] (T, ) of row t
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
        for j in range(n, max(n, row_end[t])):
            drow[j] = 0.0


def _grouped(x, nkv):
    """(B, NH, T, X) -> (B, NKV, G T, X): the query heads of one key/value group as one matrix (a view)."""
    B, NH, T, X = x.shape
    view = x.view()
    view.shape = (B, nkv, (NH // nkv) * T, X)  # raises rather than copy: matmul must write into x itself
    return view


CAUSAL_BLOCK_MIN_T = 128  # shorter: one product per head (two 64-row blocks already pay at T = 128, measured)


def causal_blocks(T: int, causal: bool) -> list[tuple[int, int]]:
    """Row blocks [r0, r1) of the (T, T) scores: under the causal mask block i needs only keys < r1.

    Products per block skip the blocks above the diagonal: with n blocks they do (n + 1) / 2n of
    the full work (4 blocks at T = 256: 62 %). Blocks are at least 64 rows, so each BLAS call stays
    big enough to run at its rate; at most 8, so the calls stay few.
    """
    if not causal or T < CAUSAL_BLOCK_MIN_T:
        return [(0, T)]
    n = min(8, T // 64)
    edges = [T * i // n for i in range(n + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


_scratch = threading.local()  # per thread: sessions may step in threads of their own


def scratch(tag: str, shape: tuple, dtype) -> np.ndarray:
    """An uninitialised C-contiguous array, the front of one buffer per (tag, dtype) and thread kept between calls.

    Kept so that a step does not map fresh pages for its temporaries (a multi-MiB np.empty does,
    and touching them costs more than the pass that fills them); one per tag, grown when a larger
    shape asks, so models of many shapes in one process do not pile buffers up.
    """
    buffers = _scratch.__dict__.setdefault("buffers", {})
    n = int(np.prod(shape))
    key = (tag, np.dtype(dtype))
    buf = buffers.get(key)
    if buf is None or buf.size < n:
        buf = buffers[key] = np.empty(n, dtype)
    return buf[:n].reshape(shape)


def _transposed(x, tag="T"):
    """A C-contiguous copy of x with its last two axes swapped, in a scratch buffer.

    BLAS runs Q K^T at 60 % of its speed when K^T is a transposed view (measured, T = 256, d = 32);
    the copy costs one pass over K.
    """
    buf = scratch(tag, (*x.shape[:-2], x.shape[-1], x.shape[-2]), x.dtype)
    np.copyto(buf, np.swapaxes(x, -1, -2))
    return buf


def _heads5(x, nkv):
    """(B, NH, T, X) -> (B, NKV, G, T, X), the query heads of one group on their own axis (a view)."""
    B, NH, T, X = x.shape
    view = x.view()
    view.shape = (B, nkv, NH // nkv, T, X)  # raises rather than copy: matmul must write into x itself
    return view


def attention_heads_forward(yh, att, q, k, v, scale, causal, kv_len=None, window=0, n_global=0):
    """Writes yh = softmax(scale q k^T, masked) v per head and keeps the probabilities in att (window: local).

    Under the causal mask the products run per row block and skip the keys after it (causal_blocks),
    under a local window without global tokens also the keys before the block's window; the softmax
    writes the probabilities of every (T, T) entry, hidden ones 0, so att is whole either way.
    """
    # q, yh are (B, NH, T, HS); k, v are (B, NKV, T, HS); att is (B, NH, T, T); all C-contiguous
    nkv, T = k.shape[1], q.shape[2]
    blocks = causal_blocks(T, causal)
    # a local window without global keys: block [r0, r1) sees no key before r0 - window + 1 (the local
    # softmax still writes whole rows, 0 outside the window, so the backward's full blocks stay right)
    starts = [max(0, r0 - int(window) + 1) if window > 0 and n_global == 0 else 0 for r0, _r1 in blocks]
    if len(blocks) == 1:
        np.matmul(_grouped(q, nkv), k.transpose(0, 1, 3, 2), out=_grouped(att, nkv))  # raw scores (B, NH, T, T)
    else:  # a key/value head broadcast over its query group (axis 2)
        q5, a5, kT = _heads5(q, nkv), _heads5(att, nkv), _transposed(k)[:, :, None]
        for (r0, r1), lo in zip(blocks, starts, strict=True):
            np.matmul(q5[:, :, :, r0:r1], kT[..., lo:r1], out=a5[:, :, :, r0:r1, lo:r1])
    attention_softmax_forward(att, scale, causal, kv_len, window, n_global)
    if len(blocks) == 1:
        np.matmul(_grouped(att, nkv), v, out=_grouped(yh, nkv))  # (B, NH, T, HS)
    else:
        a5, y5, v5 = _heads5(att, nkv), _heads5(yh, nkv), v[:, :, None]
        for (r0, r1), lo in zip(blocks, starts, strict=True):
            np.matmul(a5[:, :, :, r0:r1, lo:r1], v5[:, :, :, lo:r1], out=y5[:, :, :, r0:r1])


def attention_heads_backward(dq, dk, dv, datt, dyh, q, k, v, att, scale, causal=False, kv_len=None):
    """Accumulates dq, dk, dv from dyh into gradients that hold none yet; datt is scratch; the forward's mask.

    Each gradient is one BLAS product, which BLAS writes: onto zero, the same
    sum. A key/value head sums the gradients of its query group in the product.
    Under the causal mask the products skip the blocks above the diagonal, as the forward's do:
    dP and dQ by row block, dK and dV by column block (key block j is seen by query rows >= its start).
    """
    nkv, T = k.shape[1], q.shape[2]
    blocks = causal_blocks(T, causal)
    if len(blocks) == 1:
        np.matmul(_grouped(dyh, nkv), v.transpose(0, 1, 3, 2), out=_grouped(datt, nkv))  # dL/dprobs (B, NH, T, T)
    else:
        dy5, da5, vT = _heads5(dyh, nkv), _heads5(datt, nkv), _transposed(v)[:, :, None]
        for r0, r1 in blocks:
            np.matmul(dy5[:, :, :, r0:r1], vT[..., :r1], out=da5[:, :, :, r0:r1, :r1])
    # now dL/d(q.k), 0 past the visible keys: up to the block ends where only blocked products follow,
    # whole rows for grouped heads, which sum over the group in one product of full columns
    grouped = nkv != q.shape[1]
    if kv_len is None:
        kv_len = np.full(att.shape[0], T, np.int32)
    ends = _row_ends(T, [(0, T)] if grouped else blocks)
    _attention_softmax_backward(datt, att, att.dtype.type(scale), causal, kv_len, ends)
    if len(blocks) == 1 or grouped:
        np.matmul(_grouped(att, nkv).transpose(0, 1, 3, 2), _grouped(dyh, nkv), out=dv)  # (B, NKV, T, HS)
        np.matmul(_grouped(datt, nkv).transpose(0, 1, 3, 2), _grouped(q, nkv), out=dk)
    else:  # key block [c0, c1): only query rows >= c0 see it
        attT, dattT = att.transpose(0, 1, 3, 2), datt.transpose(0, 1, 3, 2)
        for c0, c1 in blocks:
            np.matmul(attT[:, :, c0:c1, c0:], dyh[:, :, c0:], out=dv[:, :, c0:c1])
            np.matmul(dattT[:, :, c0:c1, c0:], q[:, :, c0:], out=dk[:, :, c0:c1])
    if len(blocks) == 1:
        np.matmul(_grouped(datt, nkv), k, out=_grouped(dq, nkv))
    else:
        da5, dq5, k5 = _heads5(datt, nkv), _heads5(dq, nkv), k[:, :, None]
        for r0, r1 in blocks:
            np.matmul(da5[:, :, :, r0:r1, :r1], k5[:, :, :, :r1], out=dq5[:, :, :, r0:r1])


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
