"""Dropout on the GPU with masks from Philox4x32-10 (philox.py), computed where they are used.

The CPU kernels take the caller's uniform draws; here the draw of element i is Philox's word for
(seed, call, i) (philox.py says how), so no uniform array exists and any grid draws the same mask.
`dropout_forward(out, scale, inp, seed, call, p)` equals the CPU's `dropout_forward(out, scale,
inp, philox.uniforms(seed, call, N * C), p)` element for element. One thread handles the four
elements of one Philox call (one counter gives four words).
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from simulator.kernels.cuda.launch import THREADS, blocks, per_dtype
from simulator.kernels.cuda.philox import INV_2_24, M0, M1, MASK32, ROUNDS, W0, W1

_U = np.uint64
_M0, _M1, _W0, _W1, _MASK, _S32, _S8, _TWO = _U(M0), _U(M1), _U(W0), _U(W1), _U(MASK32), _U(32), _U(8), _U(2)


@cuda.jit(device=True)
def philox_word(group, lane, k0, k1, d0, d1):
    """Word `lane` (0..3) of Philox4x32-10 with counter (group lo, group hi, d0, d1) and key (k0, k1)."""
    c0, c1, c2, c3 = group & _MASK, group >> _S32, d0, d1
    for r in range(ROUNDS):
        if r > 0:
            k0 = (k0 + _W0) & _MASK
            k1 = (k1 + _W1) & _MASK
        p0 = _M0 * c0
        p1 = _M1 * c2
        c0, c1, c2, c3 = (p1 >> _S32) ^ c1 ^ k0, p1 & _MASK, (p0 >> _S32) ^ c3 ^ k1, p0 & _MASK
    if lane == 0:
        return c0
    if lane == 1:
        return c1
    if lane == 2:
        return c2
    return c3


@cuda.jit
def _uniform_kernel(u, k0, k1, d0, d1):
    # u is flat (n,); one thread per group of four elements
    g = cuda.grid(1)
    n = u.shape[0]
    for lane in range(4):
        i = g * 4 + lane
        if i < n:
            w = philox_word(_U(g), lane, k0, k1, d0, d1)
            u[i] = np.float64(w >> _S8) * INV_2_24


@per_dtype
def _kernels(t):
    zero = t(0)

    @cuda.jit
    def forward(out, scale, inp, k0, k1, d0, d1, p, keep):
        # out, scale, inp are (N, C); keep is the kept elements' factor (1/(1-p) inverted, 1 classic)
        g = cuda.grid(1)
        C = inp.shape[1]
        n_el = inp.shape[0] * C
        for lane in range(4):
            i = g * 4 + lane
            if i < n_el:
                n, c = i // C, i % C
                u = np.float64(philox_word(_U(g), lane, k0, k1, d0, d1) >> _S8) * INV_2_24
                s = keep if u >= p else zero
                scale[n, c] = s
                out[n, c] = inp[n, c] * s

    @cuda.jit
    def backward(dinp, dout, scale):
        i = cuda.grid(1)
        C = dout.shape[1]
        if i < dout.shape[0] * C:
            n, c = i // C, i % C
            dinp[n, c] += dout[n, c] * scale[n, c]

    return forward, backward


def _words(seed: int, call: int):
    seed, call = int(seed) & 0xFFFFFFFFFFFFFFFF, int(call) & 0xFFFFFFFFFFFFFFFF
    return _U(seed & MASK32), _U(seed >> 32), _U(call & MASK32), _U(call >> 32)


def dropout_uniform(u, seed: int, call: int):
    """Writes the uniforms dropout call `call` draws into u (flat, (n,)): philox.uniforms on the device."""
    _uniform_kernel[blocks((u.shape[0] + 3) // 4), THREADS](u, *_words(seed, call))


def _forward(out, scale, inp, seed, call, p, keep):
    n_el = inp.shape[0] * inp.shape[1]
    fwd = _kernels(inp.dtype)[0]
    fwd[blocks((n_el + 3) // 4), THREADS](out, scale, inp, *_words(seed, call), float(p), inp.dtype.type(keep))


def dropout_forward(out, scale, inp, seed: int, call: int, p: float):
    """Inverted dropout: keep where u >= p, scaled by 1/(1-p); caches the per-element factor in scale."""
    _forward(out, scale, inp, seed, call, p, 1.0 / (1.0 - p))


def dropout_classic_forward(out, scale, inp, seed: int, call: int, p: float):
    """Classic dropout: the same kept elements as dropout_forward, unscaled."""
    _forward(out, scale, inp, seed, call, p, 1.0)


def dropout_backward(dinp, dout, scale):
    """dinp += dout * scale (the forward's mask and factor)."""
    bwd = _kernels(dout.dtype)[1]
    bwd[blocks(dout.shape[0] * dout.shape[1]), THREADS](dinp, dout, scale)
