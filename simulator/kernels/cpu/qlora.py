"""QLoRA's frozen linear: y = x W + b with W held only as packed NF4 codes and block scales, dequantized one
tile at a time into a small scratch that BLAS then multiplies.

W is (D_in, D_out), stored flat in row-major order as 4-bit codes (code f in byte f // 2, the even one in the
high nibble) with one absmax scale per `block` consecutive weights (simulator/quant/nf4.py). A tile is a block
of columns of W (the forward: out[:, c0:c1] = x W[:, c0:c1]) or a block of rows (the backward:
dx[:, r0:r1] = dout W[r0:r1, :]^T), BLAS writing each product into its columns of the result: each output
element is one whole dot product, so nothing is summed across tiles and the result is the dense product's up
to BLAS's own rounding. The frozen weight has no gradient; the adapters' gradients do not read W at all
(kernels/cpu/lora.py).

Shapes: x (N, D_in), out (N, D_out), dout (N, D_out), dx (N, D_in), scratch (at least tile * max(D_in, D_out)),
prod (at least N * tile: a backward that adds into a gradient already there).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from simulator.kernels.cpu.linear import bias_add

TILE = 64  # columns (forward) or rows (backward) of W dequantized at once


@njit(cache=True, nogil=True)
def dequantize_tile(out, packed, absmax, scale_codes, scale_absmax, scale_mean, scale_block, levels, block, cols,
                    r0, c0):
    """out = W[r0:r0 + R, c0:c0 + C], decoded from the packed codes and the block scales.

    The scales are `absmax` (nb,) float32, or, when `absmax` is empty, double-quantized: scale b is
    float32(scale_codes[b] * scale_absmax[b // scale_block] / 127 + scale_mean), as nf4.dequantize_scales
    writes it, so a tile equals the same rows and columns of nf4.dequantize(q) bit for bit.
    """
    # out (R, C) float32 or float64; packed (n // 2,) uint8; levels (16,) float32; W has `cols` columns
    R, C = out.shape
    double = absmax.shape[0] == 0
    for i in range(R):
        start = (r0 + i) * cols + c0  # flat index of the row's first element in the tile
        stop = start + C
        f = start
        while f < stop:  # one run of elements sharing a block scale at a time
            b = f // block
            end = min(stop, (b + 1) * block)
            if double:
                s = np.float32(scale_codes[b] * (scale_absmax[b // scale_block] / 127.0) + scale_mean)
            else:
                s = absmax[b]
            j = f - start
            for g in range(f, end):
                byte = packed[g >> 1]
                code = (byte >> (4 - 4 * (g & 1))) & 15  # even: the high nibble
                out[i, j] = levels[code] * s
                j += 1
            f = end


def tile_of(q, scratch: np.ndarray, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """W[r0:r1, c0:c1] of quantized weight `q` (nf4.Quantized of a (D_in, D_out) tensor), decoded into scratch."""
    out = scratch[:(r1 - r0) * (c1 - c0)].reshape(r1 - r0, c1 - c0)
    absmax, codes, absmax2 = (q.absmax, _NO_CODES, _NO_SCALES) if q.scale_codes is None else \
        (_NO_SCALES, q.scale_codes, q.scale_absmax)
    dequantize_tile(out, q.packed, absmax, codes, absmax2, np.float32(q.scale_mean), q.scale_block, q.levels, q.block,
                    q.shape[1], r0, c0)
    return out


_NO_SCALES = np.zeros(0, np.float32)
_NO_CODES = np.zeros(0, np.int8)


@njit(cache=True, nogil=True)
def add_columns(dst, src, c0):
    """dst[:, c0:c0 + C] += src: a tile's product added into its columns of a gradient that holds one already."""
    # dst (N, D); src (N, C), contiguous
    N, C = src.shape
    for n in range(N):
        d, s = dst[n], src[n]
        for j in range(C):
            d[c0 + j] += s[j]


def qlora_linear_forward(out, x, q, bias, scratch, tile: int | None = None):
    """Writes out = x W (+ bias), W decoded `tile` columns at a time, each product written by BLAS straight
    into its columns of `out` (a column block of a row-major array is a BLAS matrix with ldc = D_out)."""
    # out (N, D_out); x (N, D_in); q: W (D_in, D_out) as NF4; bias (D_out,) or None
    d_in, d_out = q.shape
    tile = tile or TILE
    for c0 in range(0, d_out, tile):
        c1 = min(d_out, c0 + tile)
        np.matmul(x, tile_of(q, scratch, 0, d_in, c0, c1), out=out[:, c0:c1])  # (N, c1 - c0)
    if bias is not None:
        bias_add(out, bias)


def qlora_linear_backward(dx, dout, q, scratch, prod, add: bool, tile: int | None = None):
    """dx = dout W^T (add: dx += dout W^T), W decoded `tile` rows at a time; the frozen weight and its bias get
    no gradient. `add` False is for a dx that holds no gradient yet (the caller's word, as linear_backward's):
    BLAS writes each tile's columns of dx; with `add`, it writes them into `prod` (N, tile), added from there."""
    # dx (N, D_in); dout (N, D_out); W (D_in, D_out); prod (at least N * tile)
    d_in, d_out = q.shape
    tile = tile or TILE
    N = dout.shape[0]
    for r0 in range(0, d_in, tile):
        r1 = min(d_in, r0 + tile)
        w = tile_of(q, scratch, r0, r1, 0, d_out).T  # (d_out, r1 - r0)
        if add:
            p = prod[:N * (r1 - r0)].reshape(N, r1 - r0)
            np.matmul(dout, w, out=p)
            add_columns(dx, p, r0)
        else:
            np.matmul(dout, w, out=dx[:, r0:r1])
