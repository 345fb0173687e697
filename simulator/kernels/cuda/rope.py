"""Rotary position embedding on the GPU (twin of kernels/cpu/rope.py): one thread per channel pair, in place."""

from __future__ import annotations

from numba import cuda

from simulator.kernels.cuda.launch import THREADS, blocks


@cuda.jit
def _rotate(x, cos, sin, sign):
    # x is (B, H, T, HS); pairs (i, i + HS/2); sign +1 rotates by the angle, -1 by minus it (the backward)
    j = cuda.grid(1)
    B, H, T, HS = x.shape
    half = HS // 2
    if j < B * H * T * half:
        i = j % half
        t = (j // half) % T
        bh = j // (half * T)
        b, h = bh // H, bh % H
        x1, x2 = x[b, h, t, i], x[b, h, t, i + half]
        c, s = cos[t, i], sin[t, i] * sign
        x[b, h, t, i] = x1 * c - x2 * s
        x[b, h, t, i + half] = x2 * c + x1 * s


def _launch(x, cos, sin, sign):
    B, H, T, HS = x.shape
    _rotate[blocks(B * H * T * (HS // 2)), THREADS](x, cos, sin, x.dtype.type(sign))


def rope_forward(x, cos, sin):
    """In place: rotates each channel pair (i, i + HS/2) of x[b, h, t] by the angle of position t."""
    _launch(x, cos, sin, 1)


def rope_backward(dx, cos, sin):
    """In place: dx (the gradient of the rotated x) becomes the gradient of x, by the inverse rotation."""
    _launch(dx, cos, sin, -1)
