"""Segmented reductions for the StepRecord's heavy statistics, on the device (simulator/backend/device_stats.py).

A statistics step wants a few numbers per tensor: the norms of each parameter's slice of the flat
weight and gradient buffers and of its update, a q/k/v column block's gradient norm, a weight's
spread across units, each activation site's mean / std / max|x|, the MLP's saturated share and
dead units, the identity path's sums over rows, and per row of the watched layer's attention its
entropy and top probability (`attention_rows`, at the end). Copying the buffers to the host for
numpy would move the whole model; these kernels reduce them where they are, and only the small
results cross.

A segment is a rectangle in a flat buffer: `rows` rows of `cols` entries, `stride` apart, from
`start` (a whole tensor is rows = size / cols, stride = cols; a column block of qkv.w has stride
C + 2 KV). Its entry e is buffer[start + (e // cols) stride + e % cols]. The segments' entries
are cut into chunks of at most CHUNK entries (a chunk never spans two segments), so one launch
covers every tensor with even work per block whatever their sizes: block b reduces chunks b,
b + grid, ... in shared memory (float64, as numpy's statistics accumulate; the k results of a
pass share one tree and its barriers) into one row of partials; then a second launch reduces
each segment's chunks' partials the same way, a block per segment (`_segment_reduce`). No
atomics: each partial and each result is written by one block. Everything stays on the device
until the caller copies the (segments, k) results.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from simulator.kernels.cuda.launch import MAX_BLOCKS, ROW_THREADS, SIMULATED, THREADS

R = ROW_THREADS
CHUNK = 8 * R if SIMULATED else 32 * R  # entries per chunk: several per thread, so a block's sums amortise
SPREAD_NONE, SPREAD_ROW, SPREAD_COLUMN = -1, 0, 1  # unit spread: none, |w - w[row, 0]|, |w - w[0, column]|
# Segments widths: param_statistics, moment_statistics, saturated_counts, identity_rows
PARAM_WIDTHS, MOMENT_WIDTHS, COUNT_WIDTHS, IDENTITY_WIDTHS = (4,), (2, 1), (1,), (2,)
K = 4  # the widest pass: rows of the shared buffers


class Segments:
    """The launch plan for a list of segments: their geometry and chunks on the device, scratch for k results.

    segments: (start, rows, cols, stride, spread) per segment; `spread` is a SPREAD_* mode (used by
    param_statistics only). widths: the number of results per segment of each pass (partials and
    results of pass i: (chunks, widths[i]) and (segments, widths[i])). Built once per model (the
    layouts do not change) and reused every statistics step.
    """

    def __init__(self, segments: list[tuple[int, int, int, int, int]], widths: tuple[int, ...],
                 chunk: int = CHUNK):
        geometry = np.array([s[:4] for s in segments], dtype=np.int64).reshape(-1, 4)
        sizes = geometry[:, 1] * geometry[:, 2]
        chunk_seg, chunk_lo, seg_lo = [], [], []
        for s, n in enumerate(sizes):
            seg_lo.append(len(chunk_seg))
            for lo in range(0, int(n), chunk):
                chunk_seg.append(s)
                chunk_lo.append(lo)
        seg_lo.append(len(chunk_seg))
        chunk_hi = [min(lo + chunk, int(sizes[s])) for s, lo in zip(chunk_seg, chunk_lo, strict=True)]
        self.n, self.widths, self.sizes = len(segments), tuple(widths), sizes
        self.n_chunks = len(chunk_seg)
        i64 = np.int64
        self.start, self.cols, self.stride = (cuda.to_device(np.ascontiguousarray(geometry[:, j])) for j in (0, 2, 3))
        self.spread = cuda.to_device(np.array([s[4] for s in segments], dtype=i64))
        self.size = cuda.to_device(sizes.astype(i64))
        self.chunk_seg, self.chunk_lo, self.chunk_hi = (cuda.to_device(np.array(a or [0], dtype=i64))
                                                        for a in (chunk_seg, chunk_lo, chunk_hi))
        self.seg_lo = cuda.to_device(np.array(seg_lo, dtype=i64))  # segment s owns chunks seg_lo[s]:seg_lo[s + 1]
        self.partials = [cuda.device_array((max(self.n_chunks, 1), k), np.float64) for k in widths]
        self.out = [cuda.device_array((max(self.n, 1), k), np.float64) for k in widths]

    @property
    def grid(self) -> int:
        return max(1, min(self.n_chunks, MAX_BLOCKS))


@cuda.jit(device=True)
def _block_reduce(buf, tid, k, n_max):
    # tree reduction of buf[j, :R] into buf[j, 0] for j < k: a sum, or a max for the last n_max rows; the k rows
    # share one set of barriers (every thread of the block calls it)
    cuda.syncthreads()
    s = R // 2
    while s > 0:
        if tid < s:
            for j in range(k):
                other = buf[j, tid + s]
                if j < k - n_max:
                    buf[j, tid] += other
                elif other > buf[j, tid]:
                    buf[j, tid] = other
        cuda.syncthreads()
        s //= 2


@cuda.jit(device=True)
def _index(start, cols, stride, e):
    r = e // cols
    return start + r * stride + (e - r * cols)


@cuda.jit
def _param_partials(grads, params, before, start, cols, stride, spread, chunk_seg, chunk_lo, chunk_hi, out):
    # out (n_chunks, 4) per chunk: sum g^2, sum p^2, sum (p - b)^2, max |b - b[reference]| (the unit spread of
    # the weights the forward used: a row's first column, or a column's first row)
    buf = cuda.shared.array((K, R), np.float64)
    tid = cuda.threadIdx.x
    for c in range(cuda.blockIdx.x, chunk_seg.shape[0], cuda.gridDim.x):
        s = chunk_seg[c]
        s0, nc, st, mode = start[s], cols[s], stride[s], spread[s]
        ag, ap, ad, am = 0.0, 0.0, 0.0, 0.0
        for e in range(chunk_lo[c] + tid, chunk_hi[c], R):
            r = e // nc
            j = e - r * nc
            i = s0 + r * st + j
            g = np.float64(grads[i])
            p = np.float64(params[i])
            b = np.float64(before[i])
            ag += g * g
            ap += p * p
            ad += (p - b) * (p - b)
            if mode >= 0:
                ref = s0 + r * st if mode == 0 else s0 + j
                m = abs(b - np.float64(before[ref]))
                if m > am:
                    am = m
        buf[0, tid], buf[1, tid], buf[2, tid], buf[3, tid] = ag, ap, ad, am
        _block_reduce(buf, tid, 4, 1)
        if tid == 0:
            out[c, 0], out[c, 1], out[c, 2], out[c, 3] = buf[0, 0], buf[1, 0], buf[2, 0], buf[3, 0]
        cuda.syncthreads()  # the next chunk refills the shared buffers


@cuda.jit
def _moment_partials(x, start, cols, stride, chunk_seg, chunk_lo, chunk_hi, out):
    # out (n_chunks, 2) per chunk: sum x, max |x|
    buf = cuda.shared.array((K, R), np.float64)
    tid = cuda.threadIdx.x
    for c in range(cuda.blockIdx.x, chunk_seg.shape[0], cuda.gridDim.x):
        s = chunk_seg[c]
        a1, am = 0.0, 0.0
        for e in range(chunk_lo[c] + tid, chunk_hi[c], R):
            v = np.float64(x[_index(start[s], cols[s], stride[s], e)])
            a1 += v
            if abs(v) > am:
                am = abs(v)
        buf[0, tid], buf[1, tid] = a1, am
        _block_reduce(buf, tid, 2, 1)
        if tid == 0:
            out[c, 0], out[c, 1] = buf[0, 0], buf[1, 0]
        cuda.syncthreads()


@cuda.jit
def _centered_partials(x, start, cols, stride, size, chunk_seg, chunk_lo, chunk_hi, sums, out):
    # out (n_chunks, 1) per chunk: sum (x - mean)^2 with the segment's mean = sums[s, 0] / size[s] (two passes,
    # as numpy's std: a one-pass sum of squares would cancel for a site whose mean is large against its spread)
    buf = cuda.shared.array((K, R), np.float64)
    tid = cuda.threadIdx.x
    for c in range(cuda.blockIdx.x, chunk_seg.shape[0], cuda.gridDim.x):
        s = chunk_seg[c]
        mean = sums[s, 0] / size[s]
        a2 = 0.0
        for e in range(chunk_lo[c] + tid, chunk_hi[c], R):
            d = np.float64(x[_index(start[s], cols[s], stride[s], e)]) - mean
            a2 += d * d
        buf[0, tid] = a2
        _block_reduce(buf, tid, 1, 0)
        if tid == 0:
            out[c, 0] = buf[0, 0]
        cuda.syncthreads()


@cuda.jit
def _segment_reduce(partials, seg_lo, n_max, out):
    # segment s (blocks s, s + grid, ...): out[s, j] = the sum of partials[seg_lo[s]:seg_lo[s + 1], j], or the max
    # for the last n_max columns (maxima of non-negative numbers: 0 is their identity)
    buf = cuda.shared.array((K, R), np.float64)
    tid, k = cuda.threadIdx.x, out.shape[1]
    for s in range(cuda.blockIdx.x, out.shape[0], cuda.gridDim.x):
        for j in range(k):
            acc = 0.0
            for c in range(seg_lo[s] + tid, seg_lo[s + 1], R):
                v = partials[c, j]
                if j < k - n_max:
                    acc += v
                elif v > acc:
                    acc = v
            buf[j, tid] = acc
        _block_reduce(buf, tid, k, n_max)
        if tid == 0:
            for j in range(k):
                out[s, j] = buf[j, 0]
        cuda.syncthreads()


def _reduce(plan: Segments, i: int, n_max: int):
    if plan.n:
        _segment_reduce[max(1, min(plan.n, MAX_BLOCKS)), R](plan.partials[i], plan.seg_lo, n_max, plan.out[i])


def param_statistics(plan: Segments, grads, params, before):
    """(segments, 4) float64 on the device: sum g^2, sum p^2, sum (p - before)^2, unit spread of `before`.

    grads, params, before: flat buffers of the same layout (before = params when there is no update).
    """
    assert plan.widths == PARAM_WIDTHS, plan.widths
    if plan.n_chunks:
        _param_partials[plan.grid, R](grads, params, before, plan.start, plan.cols, plan.stride, plan.spread,
                                      plan.chunk_seg, plan.chunk_lo, plan.chunk_hi, plan.partials[0])
    _reduce(plan, 0, 1)
    return plan.out[0]


def moment_statistics(plan: Segments, x):
    """((segments, 2): sum, max|x|; (segments, 1): sum (x - mean)^2) float64 on the device, for flat buffer x."""
    assert plan.widths == MOMENT_WIDTHS, plan.widths
    if plan.n_chunks:
        _moment_partials[plan.grid, R](x, plan.start, plan.cols, plan.stride, plan.chunk_seg, plan.chunk_lo,
                                       plan.chunk_hi, plan.partials[0])
    _reduce(plan, 0, 1)
    if plan.n_chunks:
        _centered_partials[plan.grid, R](x, plan.start, plan.cols, plan.stride, plan.size, plan.chunk_seg,
                                         plan.chunk_lo, plan.chunk_hi, plan.out[0], plan.partials[1])
    _reduce(plan, 1, 0)
    return plan.out[0], plan.out[1]


def moments_from(sums: np.ndarray, centered: np.ndarray, sizes: np.ndarray) -> list[tuple[float, float, float]]:
    """(mean, std, max|x|) per segment from the host copies of moment_statistics' results."""
    return [(float(s[0] / n), float(math.sqrt(c[0] / n)), float(s[1]))
            for s, c, n in zip(sums, centered, sizes, strict=True)]


@cuda.jit
def _saturated_partials(x, start, cols, stride, chunk_seg, chunk_lo, chunk_hi, tanh, margin, out):
    # out (n_chunks, 1): the chunk's entries within margin of a bound (observe.saturated_fraction): sigmoid
    # x < margin or x > 1 - margin; tanh |x| > 1 - margin
    buf = cuda.shared.array((K, R), np.float64)
    tid = cuda.threadIdx.x
    for c in range(cuda.blockIdx.x, chunk_seg.shape[0], cuda.gridDim.x):
        s = chunk_seg[c]
        n = 0.0
        for e in range(chunk_lo[c] + tid, chunk_hi[c], R):
            v = np.float64(x[_index(start[s], cols[s], stride[s], e)])
            if (abs(v) > 1.0 - margin) if tanh else (v < margin or v > 1.0 - margin):
                n += 1.0
        buf[0, tid] = n
        _block_reduce(buf, tid, 1, 0)
        if tid == 0:
            out[c, 0] = buf[0, 0]
        cuda.syncthreads()


@cuda.jit
def _live_columns(x, out):
    # out[j] = 1 when column j of x (N, H) is > 0 on some row (a ReLU unit that is alive), else 0: a thread per
    # column, so the threads of a warp read a row's neighbouring entries together
    for j in range(cuda.grid(1), x.shape[1], cuda.gridsize(1)):
        live = 0
        for r in range(x.shape[0]):
            if x[r, j] > 0:
                live = 1
                break
        out[j] = live


def saturated_counts(plan: Segments, x, activation: str, margin: float):
    """(segments, 1) float64 on the device: per segment of flat buffer x, the entries within margin of a bound of
    `activation` (sigmoid or tanh)."""
    assert plan.widths == COUNT_WIDTHS and activation in ("sigmoid", "tanh"), (plan.widths, activation)
    if plan.n_chunks:
        _saturated_partials[plan.grid, R](x, plan.start, plan.cols, plan.stride, plan.chunk_seg, plan.chunk_lo,
                                          plan.chunk_hi, activation == "tanh", float(margin), plan.partials[0])
    _reduce(plan, 0, 0)
    return plan.out[0]


def live_columns(x):
    """(H,) int8 on the device: 1 where column j of x (N, H) is positive on some row."""
    out = cuda.device_array(x.shape[1], np.int8)
    if x.shape[1]:
        _live_columns[max(1, min(MAX_BLOCKS, (x.shape[1] + THREADS - 1) // THREADS)), THREADS](x, out)
    return out


@cuda.jit
def _identity_rows(x, gamma, rstd, centre, eps, out, row0):
    # One block per row r of x (N, C) (grid-stride), for observe.identity_fractions under post-LayerNorm (centre)
    # or post-RMSNorm: with xc = x - the row's mean (centre) or x, G = sum_c (gamma_c xc_c)^2 and M = mean_c xc_c^2,
    # out[row0 + r] = (G rstd_r^2, G / (M + eps)): the squared norms of the skip path's share with the forward's
    # statistics and with x's own
    buf = cuda.shared.array((K, R), np.float64)
    tid = cuda.threadIdx.x
    N, C = x.shape
    for r in range(cuda.blockIdx.x, N, cuda.gridDim.x):
        mean = 0.0
        if centre:
            acc = 0.0
            for c in range(tid, C, R):
                acc += np.float64(x[r, c])
            buf[0, tid] = acc
            _block_reduce(buf, tid, 1, 0)
            mean = buf[0, 0] / C
            cuda.syncthreads()  # every thread has read the mean before the buffer is refilled
        g, m = 0.0, 0.0
        for c in range(tid, C, R):
            d = np.float64(x[r, c]) - mean
            m += d * d
            gd = np.float64(gamma[c]) * d
            g += gd * gd
        buf[0, tid], buf[1, tid] = g, m
        _block_reduce(buf, tid, 2, 0)
        if tid == 0:
            f = np.float64(rstd[r])
            out[row0 + r, 0] = buf[0, 0] * f * f
            out[row0 + r, 1] = buf[0, 0] / (buf[1, 0] / C + eps)
        cuda.syncthreads()


def identity_rows(plan: Segments, s: int, x, gamma, rstd, centre: bool, eps: float) -> None:
    """Writes the rows of sublayer s into plan's partials: plan has one segment per sublayer and one chunk per
    row (Segments([(0, 1, N, N, SPREAD_NONE)] * sublayers, IDENTITY_WIDTHS, chunk=1)); then identity_sums."""
    assert plan.widths == IDENTITY_WIDTHS
    N = x.shape[0]
    _identity_rows[max(1, min(N, MAX_BLOCKS)), R](x, gamma, rstd, bool(centre), float(eps), plan.partials[0], s * N)


def identity_sums(plan: Segments):
    """(sublayers, 2) float64 on the device: per sublayer the sums over rows of identity_rows' two numbers."""
    _reduce(plan, 0, 0)
    return plan.out[0]


# ------------------------------------------------------------------ the watched layer's attention rows


@cuda.jit(device=True)
def _visible(b, i, j, kv_len, causal, window, n_global):
    # key j of row (b, i): not padding, not in the future (causal), inside the window or global (local)
    if j >= kv_len[b] or (causal and j > i):
        return False
    return window <= 0 or i - j < window or j < n_global or i < n_global


@cuda.jit
def _attention_rows(att, q, k, lse, kv_len, scale, causal, window, n_global, naive, head, entropy, top, amap):
    # One block per row (b, h, i) of a layer's (B, NH, T, T) attention probabilities (rows b*NH*T + h*T + i,
    # grid-stride), its threads over the keys j. naive: p = att[b, h, i, j] as kept (0 where not visible);
    # tiled: p = exp(scale q_i . k_j - lse_i) on the visible keys (q (B, NH, T, HS), k (B, NKV, T, HS), lse
    # (B, NH, T): observe.attention_probs' recomputation, in float64). Writes entropy (B, NH, T) = -sum p log p,
    # top (B, NH, T) = max p, and amap (T, T) = the probabilities of row b = 0, head `head` (the map shown).
    buf = cuda.shared.array((K, R), np.float64)
    tid = cuda.threadIdx.x
    B, NH, T = entropy.shape
    group = NH // k.shape[1]
    for row in range(cuda.blockIdx.x, B * NH * T, cuda.gridDim.x):
        b, h, i = row // (NH * T), (row // T) % NH, row % T
        L = np.float64(lse[b, h, i]) if not naive else 0.0
        ah, am = 0.0, 0.0
        for j in range(tid, T, R):
            p = 0.0
            if naive:
                p = np.float64(att[b, h, i, j])
            elif math.isfinite(L) and _visible(b, i, j, kv_len, causal, window, n_global):  # no keys: lse -inf, 0s
                s = 0.0
                for d in range(q.shape[3]):
                    s += np.float64(q[b, h, i, d]) * np.float64(k[b, h // group, j, d])
                p = math.exp(s * scale - L)
            if p > 0.0:
                ah -= p * math.log(p)
            if p > am:
                am = p
            if b == 0 and h == head:
                amap[i, j] = p
        buf[0, tid], buf[1, tid] = ah, am
        _block_reduce(buf, tid, 2, 1)
        if tid == 0:
            entropy[b, h, i], top[b, h, i] = buf[0, 0], buf[1, 0]
        cuda.syncthreads()


def attention_rows(shape, head: int, kv_len, att=None, q=None, k=None, lse=None, scale=1.0, causal=True,
                   window=0, n_global=0):
    """Per row of a layer's attention (B, NH, T): entropy in nats and top probability, float64; and the (T, T)
    float32 map of batch row 0, head `head` — all on the device. Naive attention passes att (its kept
    probabilities); tiled passes q, k and lse (recomputed as observe.attention_probs does)."""
    B, NH, T = shape
    entropy, top = cuda.device_array((B, NH, T), np.float64), cuda.device_array((B, NH, T), np.float64)
    amap = cuda.device_array((T, T), np.float32)
    naive = att is not None
    if naive:  # the unused arguments: a kernel argument must still be an array of the right rank
        q = k = att
        lse = entropy
    else:
        att = q
    grid = max(1, min(B * NH * T, MAX_BLOCKS))
    _attention_rows[grid, R](att, q, k, lse, kv_len, float(scale), bool(causal), int(window),
                             int(n_global), naive, int(head), entropy, top, amap)
    return entropy, top, amap
