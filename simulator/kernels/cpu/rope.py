"""Positional encodings that are not parameters: the fixed sinusoid table and rotary embeddings (RoPE).

Sinusoidal (Vaswani et al. 2017): pe[t, 2i] = sin(t w_i), pe[t, 2i+1] = cos(t w_i) with
w_i = 10000^(-2i/C), added to the token embedding (the model scales it by init_std, see
GPT.set_max_positions). It is a fixed function of t, so it exists past the trained length too.

RoPE (Su et al. 2021): each head's q and k are rotated, pair of channels by pair, by an angle
t w_i with w_i = 10000^(-2i/HS), so the score q_t . k_s depends on t - s only. Pairs are
(i, i + HS/2), the "rotate half" layout of GPT-NeoX and LLaMA. A rotation is orthogonal: its
backward is the rotation by minus the angle. Tables are computed in float64, then cast.
"""

import numpy as np
from numba import prange

from simulator.kernels.cpu.jit import wide

BASE = 10000.0


def sinusoid_table(n_pos: int, C: int, dtype) -> np.ndarray:
    """The (n_pos, C) sinusoidal encoding of positions 0 .. n_pos-1."""
    angle = np.arange(n_pos, dtype=np.float64)[:, None] * BASE ** (-np.arange(0, C, 2) / C)  # (n_pos, ceil(C/2))
    pe = np.empty((n_pos, C), np.float64)
    pe[:, 0::2] = np.sin(angle)
    pe[:, 1::2] = np.cos(angle[:, :C // 2])  # an odd C ends on a sine
    return pe.astype(dtype)


def rope_tables(n_pos: int, head_size: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of the rotary angles, each (n_pos, head_size // 2)."""
    half = head_size // 2
    angle = np.arange(n_pos, dtype=np.float64)[:, None] * BASE ** (-2.0 * np.arange(half) / head_size)
    return np.cos(angle).astype(dtype), np.sin(angle).astype(dtype)


@wide
def rope_forward(x, cos, sin):
    """In place: rotates each channel pair (i, i + HS/2) of x[b, h, t] by the angle of position t."""
    # x is (B, H, T, HS) with HS even; cos, sin are (>= T, HS/2), row t for x's position t (slice for an offset)
    B, H, T, HS = x.shape
    half = HS // 2
    for bh in prange(B * H):
        b, h = bh // H, bh % H
        for t in range(T):
            for i in range(half):
                x1, x2 = x[b, h, t, i], x[b, h, t, i + half]
                c, s = cos[t, i], sin[t, i]
                x[b, h, t, i] = x1 * c - x2 * s
                x[b, h, t, i + half] = x2 * c + x1 * s


@wide
def rope_backward(dx, cos, sin):
    """In place: dx (the gradient of the rotated x) becomes the gradient of x, by the inverse rotation."""
    # dx is (B, H, T, HS); cos, sin as in rope_forward
    B, H, T, HS = dx.shape
    half = HS // 2
    for bh in prange(B * H):
        b, h = bh // H, bh % H
        for t in range(T):
            for i in range(half):
                d1, d2 = dx[b, h, t, i], dx[b, h, t, i + half]
                c, s = cos[t, i], sin[t, i]
                dx[b, h, t, i] = d1 * c + d2 * s
                dx[b, h, t, i + half] = d2 * c - d1 * s
