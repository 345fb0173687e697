"""Philox4x32-10 (Salmon et al. 2011, "Parallel random numbers: as easy as 1, 2, 3"): dropout's generator.

Counter-based: the random word for an element is a pure function of (key, counter), so a GPU
thread computes its own element's draw with no state, any launch geometry gives the same mask,
and a seed reproduces every mask. This module is the numpy definition (no numba.cuda import),
the CUDA kernels in `dropout.py` compute the same words, and a test checks both against the
published known-answer vectors of Random123.

Dropout's draw for flat element i of a call: key = the 64-bit seed (low word, high word),
counter = (i // 4 low, i // 4 high, call low, call high) with `call` a 64-bit number the caller
advances once per dropout call (a step number times the sites, plus the site); the draw is output
word i % 4, turned into a uniform in [0, 1) by its top 24 bits: u = (word >> 8) / 2^24, which is
exact in float32 and float64 alike, so both dtypes keep the same elements.
"""

from __future__ import annotations

import numpy as np

M0, M1 = 0xD2511F53, 0xCD9E8D57  # the multipliers
W0, W1 = 0x9E3779B9, 0xBB67AE85  # the Weyl key increments (golden ratio, sqrt(3) - 1)
MASK32 = 0xFFFFFFFF
ROUNDS = 10
INV_2_24 = 1.0 / 16777216.0


def philox4x32(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 on uint64 arrays (or scalars) holding 32-bit words; returns the four output words."""
    u = np.uint64
    c0, c1, c2, c3 = (np.asarray(c, u) for c in (c0, c1, c2, c3))
    k0, k1 = u(k0), u(k1)
    mask = u(MASK32)
    for r in range(ROUNDS):
        if r:
            k0, k1 = (k0 + u(W0)) & mask, (k1 + u(W1)) & mask
        p0, p1 = u(M0) * c0, u(M1) * c2  # 32 x 32 -> 64 bits: no overflow in uint64
        c0, c1, c2, c3 = ((p1 >> u(32)) ^ c1 ^ k0), (p1 & mask), ((p0 >> u(32)) ^ c3 ^ k1), (p0 & mask)
    return c0, c1, c2, c3


def uniforms(seed: int, call: int, n: int, dtype=np.float32) -> np.ndarray:
    """The n uniforms in [0, 1) dropout call `call` under `seed` draws, as `dropout.py` computes them."""
    i = np.arange(n, dtype=np.uint64)
    group, lane = i >> np.uint64(2), i & np.uint64(3)
    seed, call = int(seed) & 0xFFFFFFFFFFFFFFFF, int(call) & 0xFFFFFFFFFFFFFFFF
    words = philox4x32(group & np.uint64(MASK32), group >> np.uint64(32), np.full(n, call & MASK32, np.uint64),
                       np.full(n, call >> 32, np.uint64), seed & MASK32, seed >> 32)
    word = np.choose(lane.astype(np.intp), words)
    return ((word >> np.uint64(8)).astype(np.float64) * INV_2_24).astype(dtype)
