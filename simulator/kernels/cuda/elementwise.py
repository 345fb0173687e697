"""Elementwise CUDA twins of kernels/cpu/activations.py and linear.bias_add: one thread per element.

Every kernel takes (N, C) arrays (any strides) and indexes them by the flat row-major element
number, so a grid covers N * C threads. Same formulas as the CPU twins: GELU as x * sigmoid(2u),
sigmoid in two branches so exp never overflows. Backwards accumulate (`dinp +=`).
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from simulator.kernels.cuda.launch import THREADS, blocks, per_dtype

GELU_SCALE = float(np.sqrt(2.0 / np.pi))


@per_dtype
def _kernels(t):
    one, zero, k, a = t(1), t(0), t(GELU_SCALE), t(0.044715)
    a3 = t(3 * 0.044715)

    @cuda.jit(device=True)
    def sigmoid(x):
        if x >= zero:
            return one / (one + math.exp(-x))
        e = math.exp(x)
        return e / (one + e)

    def elementwise(fn):
        """A kernel out[n, c] = fn(inp[n, c]) over (N, C)."""
        f = cuda.jit(device=True)(fn)

        @cuda.jit
        def kernel(out, inp):
            i = cuda.grid(1)
            C = inp.shape[1]
            if i < inp.shape[0] * C:
                n, c = i // C, i % C
                out[n, c] = f(inp[n, c])

        return kernel

    def elementwise_grad(fn):
        """A kernel dinp[n, c] += fn(inp[n, c]) * dout[n, c] over (N, C)."""
        f = cuda.jit(device=True)(fn)

        @cuda.jit
        def kernel(dinp, inp, dout):
            i = cuda.grid(1)
            C = inp.shape[1]
            if i < inp.shape[0] * C:
                n, c = i // C, i % C
                dinp[n, c] += f(inp[n, c]) * dout[n, c]

        return kernel

    def gelu(x):
        u = k * (x + a * x * x * x)
        return x * sigmoid(u + u)  # the two-branch sigmoid: exp never overflows (the simulator would raise)

    def gelu_grad(x):
        u = k * (x + a * x * x * x)
        s = sigmoid(u + u)  # sigmoid(2u) = 0.5 (1 + tanh u)
        du = k * (one + a3 * x * x)
        return s + x * s * (one - s) * (du + du)

    def relu(x):
        return x if x > zero else zero

    def relu_grad(x):
        return one if x > zero else zero  # the subgradient at 0 is 0

    def sig(x):
        return sigmoid(x)

    def sig_grad(x):
        s = sigmoid(x)
        return s * (one - s)

    def tanh(x):
        return math.tanh(x)

    def tanh_grad(x):
        y = math.tanh(x)
        return one - y * y

    def silu(x):
        return x * sigmoid(x)

    def silu_grad(x):
        s = sigmoid(x)
        return s + x * s * (one - s)

    @cuda.jit
    def residual(out, inp1, inp2):
        i = cuda.grid(1)
        C = out.shape[1]
        if i < out.shape[0] * C:
            n, c = i // C, i % C
            out[n, c] = inp1[n, c] + inp2[n, c]

    @cuda.jit
    def add(dst, src):
        i = cuda.grid(1)
        C = dst.shape[1]
        if i < dst.shape[0] * C:
            n, c = i // C, i % C
            dst[n, c] += src[n, c]

    @cuda.jit
    def bias(out, b):
        i = cuda.grid(1)
        C = out.shape[1]
        if i < out.shape[0] * C:
            n, c = i // C, i % C
            out[n, c] += b[c]

    return {
        "gelu": (elementwise(gelu), elementwise_grad(gelu_grad)),
        "relu": (elementwise(relu), elementwise_grad(relu_grad)),
        "silu": (elementwise(silu), elementwise_grad(silu_grad)),
        "sigmoid": (elementwise(sig), elementwise_grad(sig_grad)),
        "tanh": (elementwise(tanh), elementwise_grad(tanh_grad)),
        "residual": residual, "add": add, "bias": bias,
    }


def _launch(kernel, first, *args):
    kernel[blocks(first.shape[0] * first.shape[1]), THREADS](first, *args)


def _pair(name):
    def forward(out, inp):
        _launch(_kernels(inp.dtype)[name][0], out, inp)

    def backward(dinp, inp, dout):
        _launch(_kernels(inp.dtype)[name][1], dinp, inp, dout)

    forward.__name__, backward.__name__ = f"{name}_forward", f"{name}_backward"
    forward.__doc__ = f"out = {name}(inp), elementwise over (N, C)."
    backward.__doc__ = f"dinp += {name}'(inp) * dout."
    return forward, backward


gelu_forward, gelu_backward = _pair("gelu")
relu_forward, relu_backward = _pair("relu")
silu_forward, silu_backward = _pair("silu")
sigmoid_forward, sigmoid_backward = _pair("sigmoid")
tanh_forward, tanh_backward = _pair("tanh")

# activation name -> (forward, backward), as ModelConfig.activation names them (the CPU's ACTIVATION_KERNELS)
ACTIVATION_KERNELS = {
    "gelu": (gelu_forward, gelu_backward),
    "relu": (relu_forward, relu_backward),
    "silu": (silu_forward, silu_backward),
    "sigmoid": (sigmoid_forward, sigmoid_backward),
    "tanh": (tanh_forward, tanh_backward),
}


def residual_forward(out, inp1, inp2):
    """out = inp1 + inp2 (its backward is add_inplace into each input's gradient)."""
    _launch(_kernels(out.dtype)["residual"], out, inp1, inp2)


def add_inplace(dst, src):
    """dst += src (gradient accumulation, residual backward)."""
    _launch(_kernels(dst.dtype)["add"], dst, src)


def bias_add(out, bias):
    """out[n, :] += bias."""
    _launch(_kernels(out.dtype)["bias"], out, bias)
