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
from simulator.kernels.cpu.attention_heads import PER_HEAD_MAX_T, PER_HEAD_MIN_T, per_head_backward, per_head_forward
from simulator.kernels.cpu.fastexp import fast_exp
from simulator.kernels.cpu.jit import FAST, wide
from simulator.kernels.cpu.softmax import _scaled_softmax_row


@wide
def split_heads(q, k, v, qkv):
    """Writes q, k, v from the fused projection qkv."""
    # qkv is (B, T, C + 2 NKV HS) laid out [q | k | v]; q is (B, NH, T, HS), k, v are (B, NKV, T, HS)
    B, NH, T, HS = q.shape
    NKV = k.shape[1]
    C, CK = NH * HS, NKV * HS
    # one head's (T, HS) block per iteration, written in order from HS-long runs of qkv's rows: 0.26 ms
    # against 0.74 for the medium model's layer going row by row (every head's block written a run at a
    # time, measured). The backward's merge_qkv_grad stays row by row: head by head it was slower
    for bh in prange(B * NH):
        b, h = bh // NH, bh % NH
        qh = q[b, h]
        for t in range(T):
            qh[t, :] = qkv[b, t, h * HS:(h + 1) * HS]
        if h < NKV:  # key/value head h, beside query head h
            kh, vh = k[b, h], v[b, h]
            for t in range(T):
                row = qkv[b, t]
                kh[t, :] = row[C + h * HS:C + (h + 1) * HS]
                vh[t, :] = row[C + CK + h * HS:C + CK + (h + 1) * HS]


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
        _scaled_softmax_row(row, n, scale, row)
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


def window_starts(blocks, window, n_global):
    """Each row block's first key: under a local window without global keys, block [r0, r1) sees none
    before r0 - window + 1; else 0. (The local softmax writes whole rows, 0 outside the window.)"""
    return [max(0, r0 - int(window) + 1) if window > 0 and n_global == 0 else 0 for r0, _r1 in blocks]


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
    _attention_softmax_backward(datt, att, att.dtype.type(scale), causal, kv_len, np.zeros(T, np.int32),
                                _row_ends(T, [(0, T)]))


@wide(fastmath=FAST)
def _attention_softmax_backward(datt, att, scale, causal, kv_len, row_start, row_end):
    # datt, att are (B, NH, T, T); masked entries have p = 0 and so get 0; row t is read and written over
    # [row_start[t], row_end[t]) (T,) each: its keys before row_start have p = 0 (a local window's) and stay as they are
    B, NH, T, _ = att.shape
    for r in prange(B * NH * T):
        b, h, t = r // (NH * T), (r // T) % NH, r % T
        n = min(max(kv_len[b], 0), T)
        if causal:
            n = min(n, t + 1)
        drow, prow = datt[b, h, t], att[b, h, t]
        dot = 0.0
        for j in range(row_start[t], n):
            dot += drow[j] * prow[j]
        for j in range(row_start[t], n):
            drow[j] = scale * prow[j] * (drow[j] - dot)
        for j in range(max(n, row_start[t]), max(n, row_end[t])):
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


def per_head_pays(T: int, causal: bool, window: int = 0) -> bool:
    """Whether attention_heads_forward and _backward take attention_heads.py's per-head kernels for T.

    Measured on 2 cores, float32, forward + backward: causal T 256, HS 32, 8 x 8 heads 15.3 ms against
    24 ms here; HS 64 33 ms against 45; T 384, HS 48 16.5 against 19.7; T 128, HS 32, 16 x 4 heads,
    each after a product as in a step, 7.3 against 9.8 (inside the small model's step, attention
    25.1-25.7 against 26.0-27.8 ms). At T 64 the BLAS path here is faster (HS 16, 16 x 4 heads: 1.5 ms
    against 1.8), and without the causal mask too (T 256: 25 ms against 30): the per-head kernels'
    products run at about BLAS's rate there, and only the causal half they skip pays for their softmax.
    A local window stays here in the forward (its row blocks skip the keys before the window).
    """
    return causal and window <= 0 and PER_HEAD_MIN_T <= T <= PER_HEAD_MAX_T


def attention_heads_forward(yh, att, q, k, v, scale, causal, kv_len=None, window=0, n_global=0):
    """Writes yh = softmax(scale q k^T, masked) v per head and keeps the probabilities in att (window: local).

    Where per_head_pays, attention_heads.py's kernels do it one head at a time in cache; else BLAS does
    the products over the head stack (blas_heads_forward).
    """
    if kv_len is None:  # no padding
        kv_len = np.full(q.shape[0], q.shape[2], np.int32)
    if per_head_pays(q.shape[2], causal, window):
        per_head_forward(yh, att, q, k, v, scale, causal, kv_len)
    else:
        blas_heads_forward(yh, att, q, k, v, scale, causal, kv_len, window, n_global)


def blas_heads_forward(yh, att, q, k, v, scale, causal, kv_len=None, window=0, n_global=0):
    """attention_heads_forward with the products through BLAS over the head stack.

    Under the causal mask the products run per row block and skip the keys after it (causal_blocks),
    under a local window without global tokens also the keys before the block's window; the softmax
    writes the probabilities of every (T, T) entry, hidden ones 0, so att is whole either way.
    """
    # q, yh are (B, NH, T, HS); k, v are (B, NKV, T, HS); att is (B, NH, T, T); all C-contiguous
    nkv, T = k.shape[1], q.shape[2]
    blocks = causal_blocks(T, causal)
    starts = window_starts(blocks, window, n_global)
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


def attention_heads_backward(dq, dk, dv, datt, dyh, q, k, v, att, scale, causal=False, kv_len=None, window=0,
                             n_global=0):
    """Accumulates dq, dk, dv from dyh into gradients that hold none yet; datt is scratch; the forward's mask.

    Where per_head_pays (for any window: att is 0 outside it), attention_heads.py's kernels, which leave
    datt alone; else blas_heads_backward. The window is the forward's: the results are the same without
    it, but the BLAS path then skips the keys before each row block's window, as the forward did
    (one causal head, T 4096, HS 64, window 256: 75 ms against 202). The per-head kernels walk the whole
    lower triangle and are still faster where they are taken (8 x 8 heads, T 256, HS 32, window 64:
    11.6 ms against 18.6 banded; 4 x 8 heads, T 512, window 128: 15.7 against 27.3).
    """
    if kv_len is None:
        kv_len = np.full(q.shape[0], q.shape[2], np.int32)
    if per_head_pays(q.shape[2], causal):
        per_head_backward(dq, dk, dv, dyh, q, k, v, att, scale, causal, kv_len)
    else:
        blas_heads_backward(dq, dk, dv, datt, dyh, q, k, v, att, scale, causal, kv_len, window, n_global)


def blas_heads_backward(dq, dk, dv, datt, dyh, q, k, v, att, scale, causal=False, kv_len=None, window=0,
                        n_global=0):
    """attention_heads_backward through BLAS; datt is scratch (dL/dscores when it returns, over what was read).

    Each gradient is one BLAS product, which BLAS writes: onto zero, the same
    sum. A key/value head sums the gradients of its query group in the product.
    Under the causal mask the products skip the blocks above the diagonal, as the forward's do:
    dP and dQ by row block, dK and dV by column block (key block j is seen by query rows >= its start).
    Under a local window without global keys they also skip the keys before each row block's window
    (_windowed_backward).
    """
    nkv, T = k.shape[1], q.shape[2]
    blocks = causal_blocks(T, causal)
    if kv_len is None:
        kv_len = np.full(att.shape[0], T, np.int32)
    starts = window_starts(blocks, window, n_global)
    if any(starts):
        _windowed_backward(dq, dk, dv, datt, dyh, q, k, v, att, scale, causal, kv_len, blocks, starts)
        return
    if len(blocks) == 1:
        np.matmul(_grouped(dyh, nkv), v.transpose(0, 1, 3, 2), out=_grouped(datt, nkv))  # dL/dprobs (B, NH, T, T)
    else:
        dy5, da5, vT = _heads5(dyh, nkv), _heads5(datt, nkv), _transposed(v)[:, :, None]
        for r0, r1 in blocks:
            np.matmul(dy5[:, :, :, r0:r1], vT[..., :r1], out=da5[:, :, :, r0:r1, :r1])
    # now dL/d(q.k), 0 past the visible keys: up to the block ends where only blocked products follow,
    # whole rows for grouped heads, which sum over the group in one product of full columns
    grouped = nkv != q.shape[1]
    ends = _row_ends(T, [(0, T)] if grouped else blocks)
    _attention_softmax_backward(datt, att, att.dtype.type(scale), causal, kv_len, np.zeros(T, np.int32), ends)
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


def _windowed_backward(dq, dk, dv, datt, dyh, q, k, v, att, scale, causal, kv_len, blocks, starts):
    """blas_heads_backward by row blocks [r0, r1) over their keys [lo, r1) only: datt is read and written there.

    dK and dV sum over the row blocks whose keys overlap, so each block's product is formed in scratch
    and added (a key/value head also sums its query group there); dP and dQ are one product per block.
    """
    # dq, dyh, q are (B, NH, T, HS); dk, dv, k, v are (B, NKV, T, HS); datt, att are (B, NH, T, T)
    nkv, T = k.shape[1], q.shape[2]
    dy5, da5, p5, q5, dq5 = (_heads5(x, nkv) for x in (dyh, datt, att, q, dq))
    vT, k5 = _transposed(v)[:, :, None], k[:, :, None]
    for (r0, r1), lo in zip(blocks, starts, strict=True):  # dL/dprobs over the block's keys
        np.matmul(dy5[:, :, :, r0:r1], vT[..., lo:r1], out=da5[:, :, :, r0:r1, lo:r1])
    row_start, row_end = np.empty(T, np.int32), np.empty(T, np.int32)
    for (r0, r1), lo in zip(blocks, starts, strict=True):
        row_start[r0:r1], row_end[r0:r1] = lo, r1
    _attention_softmax_backward(datt, att, att.dtype.type(scale), causal, kv_len, row_start, row_end)
    dk.fill(0.0)
    dv.fill(0.0)
    B, G, HS = q.shape[0], q.shape[1] // nkv, q.shape[3]
    for (r0, r1), lo in zip(blocks, starts, strict=True):
        part = scratch("window_dkv", (B, nkv, G, r1 - lo, HS), q.dtype)
        np.matmul(p5[:, :, :, r0:r1, lo:r1].swapaxes(-1, -2), dy5[:, :, :, r0:r1], out=part)
        dv[:, :, lo:r1] += part.sum(axis=2) if G > 1 else part[:, :, 0]
        np.matmul(da5[:, :, :, r0:r1, lo:r1].swapaxes(-1, -2), q5[:, :, :, r0:r1], out=part)
        dk[:, :, lo:r1] += part.sum(axis=2) if G > 1 else part[:, :, 0]
        np.matmul(da5[:, :, :, r0:r1, lo:r1], k5[:, :, :, lo:r1], out=dq5[:, :, :, r0:r1])


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
