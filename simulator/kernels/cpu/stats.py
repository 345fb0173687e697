"""One-pass reductions for the StepRecord's heavy statistics on the host (simulator/observe.py).

A statistics step wants a few numbers per tensor: the norms of each gradient, weight and update,
each activation site's mean / std / max|x|, and per row of the watched layer's attention its entropy
and top probability. Through numpy each of those was a float64 copy of the tensor and a pass or
three over it (measured at the tiny preset: 10 ms a statistics step, as long as the step itself);
these kernels read each tensor once, in float64 as numpy's statistics accumulate.

They run serially (a statistics step's tensors are small; waking the thread pool would cost more)
under fastmath without nnan and ninf, so the sums run in vector lanes and a NaN or inf still
reaches the number shown. The maxima keep a NaN explicitly: a comparison drops it.

The device has its own (simulator/kernels/cuda/stats.py): segmented over the flat buffers, because
there each launch and copy costs more than the work. These take one array per call.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from simulator.kernels.cpu.jit import FAST


@njit(cache=True, nogil=True, fastmath=FAST)
def squared_sums(g, p, before):
    """(sum g^2, sum p^2, sum (p - before)^2), float64: a gradient's, its weight's and its update's squared norms."""
    # g, p, before are (N,)
    sg = sp = sd = 0.0
    for i in range(p.shape[0]):
        gi, pi = np.float64(g[i]), np.float64(p[i])
        d = pi - np.float64(before[i])
        sg += gi * gi
        sp += pi * pi
        sd += d * d
    return sg, sp, sd


@njit(cache=True, nogil=True, fastmath=FAST)
def squared_sum(x):
    """sum x^2 in float64 over a 2-D block of any strides (a q, k or v column block of qkv.w)."""
    # x is (R, C)
    s = 0.0
    for r in range(x.shape[0]):
        for c in range(x.shape[1]):
            v = np.float64(x[r, c])
            s += v * v
    return s


@njit(cache=True, nogil=True, fastmath=FAST)
def moments(x):
    """(mean, std, max|x|) of x, float64; std as numpy's (population, about the mean: two passes). NaN if any is."""
    # x is (N,)
    n = x.shape[0]
    total, top, nan = 0.0, 0.0, False
    for i in range(n):
        v = np.float64(x[i])
        a = abs(v)
        nan |= v != v
        top = a if a > top else top
        total += v
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = total / n
    centred = 0.0
    for i in range(n):
        d = np.float64(x[i]) - mean
        centred += d * d
    return mean, math.sqrt(centred / n), math.nan if nan else top


@njit(cache=True, nogil=True, fastmath=FAST)
def attention_row_statistics(probs, entropy, top):
    """Per attention row: entropy[b, h, i] = -sum_j p log p (nats; p = 0 adds nothing) and top[b, h, i] = max_j p.

    A row with a NaN gets NaN for both (a diverged run shows as such)."""
    # probs is (B, NH, T, S); entropy, top are (B, NH, T) float64
    B, NH, T, S = probs.shape
    for b in range(B):
        for h in range(NH):
            for i in range(T):
                e, m, nan = 0.0, 0.0, False
                for j in range(S):
                    p = np.float64(probs[b, h, i, j])
                    nan |= p != p
                    if p > 0.0:
                        e -= p * math.log(p)
                        m = p if p > m else m
                entropy[b, h, i] = math.nan if nan else e
                top[b, h, i] = math.nan if nan else m
