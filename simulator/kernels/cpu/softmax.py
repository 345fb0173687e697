"""Row softmax (stable) and the fused softmax + cross-entropy over the vocabulary."""

import numpy as np
from numba import njit, prange

from simulator.kernels.cpu.fastexp import fast_exp
from simulator.kernels.cpu.jit import FAST, wide


@wide
def softmax_forward(probs, logits):
    """probs = softmax(logits) per row, subtracting the row max so any scale is safe."""
    # probs, logits are (N, V)
    N, V = logits.shape
    for n in prange(N):
        mx = -np.inf
        for v in range(V):
            mx = max(mx, logits[n, v])
        s = 0.0
        for v in range(V):
            e = np.exp(logits[n, v] - mx)
            probs[n, v] = e
            s += e
        for v in range(V):
            probs[n, v] /= s


@wide
def softmax_backward(dlogits, dprobs, probs):
    """dlogits += probs * (dprobs - sum(dprobs * probs)) per row."""
    N, V = probs.shape
    for n in prange(N):
        dot = 0.0
        for v in range(V):
            dot += dprobs[n, v] * probs[n, v]
        for v in range(V):
            dlogits[n, v] += probs[n, v] * (dprobs[n, v] - dot)


@wide
def crossentropy_forward(losses, logits, targets):
    """losses[n] = logsumexp(logits[n]) - logits[n, targets[n]]."""
    # losses is (N,), logits is (N, V), targets is (N,) ints
    N, V = logits.shape
    for n in prange(N):
        mx = -np.inf
        for v in range(V):
            mx = max(mx, logits[n, v])
        s = 0.0
        for v in range(V):
            s += np.exp(logits[n, v] - mx)
        losses[n] = mx + np.log(s) - logits[n, targets[n]]


@wide(fastmath=FAST)
def crossentropy_softmax_backward(losses, dlogits, logits, targets, dloss):
    """Fused: writes losses and dlogits = dloss * (softmax(logits) - onehot(targets)) in one pass.

    The one backward kernel that writes: the gradient starts here, before the
    model zeroes the others, so there is nothing to add it onto. The row's max in eight lanes and the sum
    in vector lanes (measured alone: the tiny model's 1024 x 65 logits 0.36 -> 0.23 ms, the medium's
    2048 x 256 2.29 -> 1.42 ms); a NaN logit still makes its row's loss NaN (through the sum). fast_exp
    would vectorise the exp too (0.10 and 0.27 ms), but its last bits moved a chaotic lesson run (the
    deep-MLP lab's batch-of-two BatchNorm) across what its test shows, so libm's exp stays.
    """
    # losses is (N,), dlogits, logits are (N, V); dloss is the scalar weight of each row (1/N for a mean)
    N, V = logits.shape
    for n in prange(N):
        row, drow = logits[n], dlogits[n]
        mx = _row_max(row, V)
        s = 0.0
        for v in range(V):
            e = np.exp(row[v] - mx)
            drow[v] = e
            s += e
        t = targets[n]
        losses[n] = mx + np.log(s) - row[t]
        inv = dloss / s
        for v in range(V):
            drow[v] *= inv
        drow[t] -= dloss


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


@njit(cache=True, nogil=True, fastmath=FAST, error_model="numpy", inline="always")
def _scaled_softmax_row(row, n, scale, copy):
    """In place: row[:n] = softmax(scale * row[:n]), n >= 1, also written to copy[:n]; the sum is kept in float64.

    Subtracting the row's largest scaled score keeps exp() finite at any scale (scores of 1e4
    included); it is taken on the raw scores and the difference scaled, so the top key gets
    exp(0) = 1 exactly (a fused multiply-add of scale * row - mx need not give 0 there).
    A negative scale makes the smallest raw score the largest scaled one.
    `copy` may be `row` itself; the per-head attention keeps its scores in a buffer of its own and
    writes the probabilities out in the pass that normalises them (measured at T 256, causal: 51 us a
    head for normalise-then-copy, 32 us in one pass).
    """
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
        p = row[j] * inv
        row[j] = p
        copy[j] = p
