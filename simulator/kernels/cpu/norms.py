"""LayerNorm and RMSNorm over the last axis, with learnable gain (and bias for LayerNorm).

The row sums (kept in float64) run under fastmath, so LLVM may reorder them into vector lanes
(measured, 2048 x 256 float32: LayerNorm forward 0.65 -> 0.22 ms, backward 0.86 -> 0.32 ms).
"""

import numpy as np
from numba import njit, prange

from simulator.kernels.cpu.jit import FAST, wide

EPS = 1e-5


@wide(fastmath=FAST)
def layernorm_forward(out, mean, rstd, inp, weight, bias):
    """out = (inp - mean) * rstd * weight + bias, per row; caches mean and rstd."""
    # out, inp are (N, C); mean, rstd are (N,); weight, bias are (C,)
    N, C = inp.shape
    for n in prange(N):
        m = 0.0
        for c in range(C):
            m += inp[n, c]
        m /= C
        v = 0.0
        for c in range(C):
            d = inp[n, c] - m
            v += d * d
        s = 1.0 / np.sqrt(v / C + EPS)
        for c in range(C):
            out[n, c] = (inp[n, c] - m) * s * weight[c] + bias[c]
        mean[n] = m
        rstd[n] = s


@njit(cache=True, nogil=True, fastmath=FAST, error_model="numpy")
def layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd):
    """Accumulates the gradients of layernorm_forward."""
    # forward: xhat = (x - mean) * rstd; out = xhat * w + b
    # dxhat = dout * w; dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
    N, C = inp.shape
    for n in range(N):
        m, s = mean[n], rstd[n]
        dnorm_mean = 0.0
        dnorm_norm_mean = 0.0
        for c in range(C):
            xhat = (inp[n, c] - m) * s
            dxhat = dout[n, c] * weight[c]
            dnorm_mean += dxhat
            dnorm_norm_mean += dxhat * xhat
        dnorm_mean /= C
        dnorm_norm_mean /= C
        for c in range(C):
            xhat = (inp[n, c] - m) * s
            dxhat = dout[n, c] * weight[c]
            dbias[c] += dout[n, c]
            dweight[c] += xhat * dout[n, c]
            dinp[n, c] += s * (dxhat - dnorm_mean - xhat * dnorm_norm_mean)


@wide(fastmath=FAST)
def rmsnorm_forward(out, rstd, inp, weight):
    """out = inp * rstd * weight, rstd = 1 / sqrt(mean(inp^2) + eps), per row."""
    # out, inp are (N, C); rstd is (N,); weight is (C,)
    N, C = inp.shape
    for n in prange(N):
        ms = 0.0
        for c in range(C):
            ms += inp[n, c] * inp[n, c]
        s = 1.0 / np.sqrt(ms / C + EPS)
        for c in range(C):
            out[n, c] = inp[n, c] * s * weight[c]
        rstd[n] = s


@njit(cache=True, nogil=True, fastmath=FAST, error_model="numpy")
def rmsnorm_backward(dinp, dweight, dout, inp, weight, rstd):
    """Accumulates the gradients of rmsnorm_forward."""
    # forward: xhat = x * rstd; out = xhat * w
    # dxhat = dout * w; dx = rstd * (dxhat - xhat * mean(dxhat * xhat))
    N, C = inp.shape
    for n in range(N):
        s = rstd[n]
        dot = 0.0
        for c in range(C):
            dot += dout[n, c] * weight[c] * inp[n, c] * s
        dot /= C
        for c in range(C):
            xhat = inp[n, c] * s
            dweight[c] += xhat * dout[n, c]
            dinp[n, c] += s * (dout[n, c] * weight[c] - xhat * dot)
