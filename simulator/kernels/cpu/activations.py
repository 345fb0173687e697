"""Elementwise activations (GELU with the tanh approximation, ReLU, SiLU, sigmoid, tanh), residual add, dropout."""

import numpy as np
from numba import njit, prange

from simulator.kernels.cpu.fastexp import fast_exp
from simulator.kernels.cpu.jit import wide

GELU_SCALE = np.sqrt(2.0 / np.pi)


# GELU, tanh approximation: gelu(x) = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3).
# Computed as x * sigmoid(2u), the same function (0.5 (1 + tanh u) = sigmoid(2u)), because exp is
# several times cheaper than tanh here. The constants are passed in the array's dtype so float32
# data is computed in float32 throughout.


@wide
def _gelu_forward(out, inp, k, a, one):
    # out, inp are (N, C); k = sqrt(2/pi), a = 0.044715, one = 1, all in inp's dtype (an int
    # literal would promote float32 arithmetic to float64 and run 4x slower)
    N, C = inp.shape
    for n in prange(N):
        for c in range(C):
            x = inp[n, c]
            u = k * (x + a * x * x * x)
            out[n, c] = x / (one + fast_exp(-(u + u)))


@wide
def _gelu_backward(dinp, inp, dout, k, a, one):
    N, C = inp.shape
    for n in prange(N):
        for c in range(C):
            x = inp[n, c]
            u = k * (x + a * x * x * x)
            s = one / (one + fast_exp(-(u + u)))  # sigmoid(2u) = 0.5 (1 + tanh u)
            # d/dx [x s] = s + x s (1 - s) 2 du/dx,  du/dx = k (1 + 3 a x^2)
            du = k * (one + (a + a + a) * x * x)
            dinp[n, c] += (s + x * s * (one - s) * (du + du)) * dout[n, c]


def gelu_forward(out, inp):
    """out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    t = inp.dtype.type
    _gelu_forward(out, inp, t(GELU_SCALE), t(0.044715), t(1))


def gelu_backward(dinp, inp, dout):
    """dinp += gelu'(inp) * dout."""
    t = inp.dtype.type
    _gelu_backward(dinp, inp, dout, t(GELU_SCALE), t(0.044715), t(1))


@wide
def relu_forward(out, inp):
    """out = max(x, 0)."""
    N, C = inp.shape
    for n in prange(N):
        for c in range(C):
            x = inp[n, c]
            out[n, c] = x if x > 0 else 0.0


@wide
def relu_backward(dinp, inp, dout):
    """dinp += dout where inp > 0 (the subgradient at 0 is 0)."""
    N, C = inp.shape
    for n in prange(N):
        for c in range(C):
            if inp[n, c] > 0:
                dinp[n, c] += dout[n, c]


@njit(cache=True, nogil=True)
def _sigmoid(x):
    # two branches so exp never overflows: exp(-|x|) <= 1
    if x >= 0:
        return 1.0 / (1.0 + np.exp(-x))
    e = np.exp(x)
    return e / (1.0 + e)


@wide
def sigmoid_forward(out, inp):
    """out = 1 / (1 + exp(-x))."""
    N, C = inp.shape
    for n in prange(N):
        for c in range(C):
            out[n, c] = _sigmoid(inp[n, c])


@wide
def sigmoid_backward(dinp, inp, dout):
    """dinp += s (1 - s) * dout, s = sigmoid(inp): at most 1/4, and near 0 once |x| is large (saturation)."""
    N, C = inp.shape
    for n in prange(N):
        for c in range(C):
            s = _sigmoid(inp[n, c])
            dinp[n, c] += s * (1.0 - s) * dout[n, c]


@wide
def tanh_forward(out, inp):
    """out = tanh(x)."""
    N, C = inp.shape
    for n in prange(N):
        for c in range(C):
            out[n, c] = np.tanh(inp[n, c])


@wide
def tanh_backward(dinp, inp, dout):
    """dinp += (1 - tanh(x)^2) * dout."""
    N, C = inp.shape
    for n in prange(N):
        for c in range(C):
            t = np.tanh(inp[n, c])
            dinp[n, c] += (1.0 - t * t) * dout[n, c]


@wide
def silu_forward(out, inp):
    """out = x * sigmoid(x) (SiLU, also called swish)."""
    N, C = inp.shape
    for n in prange(N):
        for c in range(C):
            x = inp[n, c]
            out[n, c] = x * _sigmoid(x)


@wide
def silu_backward(dinp, inp, dout):
    """dinp += (s + x s (1 - s)) * dout, s = sigmoid(x)."""
    N, C = inp.shape
    for n in prange(N):
        for c in range(C):
            x = inp[n, c]
            s = _sigmoid(x)
            dinp[n, c] += (s + x * s * (1.0 - s)) * dout[n, c]


# activation name -> (forward, backward), as ModelConfig.activation names them
ACTIVATION_KERNELS = {
    "gelu": (gelu_forward, gelu_backward),
    "relu": (relu_forward, relu_backward),
    "silu": (silu_forward, silu_backward),
    "sigmoid": (sigmoid_forward, sigmoid_backward),
    "tanh": (tanh_forward, tanh_backward),
}


@wide
def residual_forward(out, inp1, inp2):
    """out = inp1 + inp2 (its backward is dinp1 += dout, dinp2 += dout: see add_inplace)."""
    N, C = out.shape
    for n in prange(N):
        for c in range(C):
            out[n, c] = inp1[n, c] + inp2[n, c]


@wide
def add_inplace(dst, src):
    """dst += src (gradient accumulation, residual backward)."""
    N, C = dst.shape
    for n in prange(N):
        for c in range(C):
            dst[n, c] += src[n, c]


@wide
def dropout_forward(out, scale, inp, uniform, p):
    """Inverted dropout: keep with probability 1-p and scale by 1/(1-p); caches the per-element scale."""
    # out, scale, inp, uniform are (N, C); uniform holds U[0, 1) draws made by the caller's seeded RNG
    N, C = inp.shape
    keep = 1.0 / (1.0 - p)
    for n in prange(N):
        for c in range(C):
            s = keep if uniform[n, c] >= p else 0.0
            scale[n, c] = s
            out[n, c] = inp[n, c] * s


@wide
def dropout_classic_forward(out, scale, inp, uniform, p):
    """Classic dropout: keep with probability 1-p, no scaling (inference multiplies by 1-p instead)."""
    # out, scale, inp, uniform are (N, C); the same draws keep the same elements as dropout_forward
    N, C = inp.shape
    for n in prange(N):
        for c in range(C):
            s = 1.0 if uniform[n, c] >= p else 0.0
            scale[n, c] = s
            out[n, c] = inp[n, c] * s


@wide
def dropout_backward(dinp, dout, scale):
    """dinp += dout * scale (the same mask and factor as the forward)."""
    N, C = dout.shape
    for n in prange(N):
        for c in range(C):
            dinp[n, c] += dout[n, c] * scale[n, c]
