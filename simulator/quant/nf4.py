"""NF4 (Dettmers et al. 2023, QLoRA): 16 levels at quantiles of the standard normal, block-wise absmax
scales, two codes per byte, optional double quantization of the scales; and int4 absmax for comparison.

Levels. A weight tensor of a trained network is close to normal, and each block of 64 weights divided by
its absolute maximum lies in [-1, 1]. NF4 puts its levels where a normal's probability mass is: 8
positive levels at the quantiles Phi^-1(q) for q = linspace(delta, 1/2, 9) without the last (1/2), 7
negative ones the same way with 8 points, and an exact 0, each side divided by its largest, so -1 and
+1 are both levels. delta = 1 - (1/32 + 1/30) / 2 keeps the outermost quantile finite. The table is
asymmetric (8 positive, 7 negative levels) so that zero - padding, pruned weights - is exact.

Storage. Codes are 4 bits; codes 2i and 2i+1 of a tensor share byte i (the even one in the high
nibble, as bitsandbytes packs them). One float32 absmax per block of 64: 4 + 32/64 = 4.5 bits per
weight. Double quantization stores those scales again in 8 bits (their mean subtracted, then a
symmetric absmax int8 grid per block of 256 scales, one float32 absmax each): 4 + 8/64 + 32/(64*256)
= 4.127 bits per weight. (bitsandbytes quantizes the scales with its dynamic 8-bit float map; a
linear int8 grid is the simpler stand-in here, and its error is reported, not assumed.)

Shape alphabet: n weights, nb = n / block blocks, nb2 = ceil(nb / block2) scale blocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from numba import prange

from simulator.i18n import _
from simulator.kernels.cpu.jit import wide

BLOCK = 64  # weights per absmax scale (QLoRA's)
SCALE_BLOCK = 256  # scales per second-level scale, under double quantization
OFFSET = 1.0 - 0.5 * (1.0 / 32.0 + 1.0 / 30.0)  # 0.9677083: the outermost quantile used


class QuantError(ValueError):
    """A tensor that cannot be quantized as asked (one sentence)."""


def nf4_levels() -> np.ndarray:
    """The 16 NF4 levels, ascending, from -1 to 1 with an exact 0 (float32, as the paper's table)."""
    ppf = NormalDist().inv_cdf
    pos = [ppf(q) for q in np.linspace(OFFSET, 0.5, 9)[:-1]]  # 8 positive quantiles
    neg = [-ppf(q) for q in np.linspace(OFFSET, 0.5, 8)[:-1]]  # 7 negative ones
    pos, neg = np.array(pos) / max(pos), np.array(neg) / -min(neg)
    return np.sort(np.concatenate([pos, [0.0], neg])).astype(np.float32)


def int4_levels() -> np.ndarray:
    """The uniform absmax 4-bit grid: k / 7 for k = -7 .. 7 (15 levels, symmetric, zero exact)."""
    return (np.arange(-7, 8) / 7.0).astype(np.float32)


def midpoints(levels: np.ndarray) -> np.ndarray:
    """The decision boundaries between neighbouring levels: a value goes to the level it is nearest to."""
    return ((levels[:-1].astype(np.float64) + levels[1:]) / 2).astype(np.float32)


# ------------------------------------------------------------------------------------------ kernels
@wide
def quantize_blockwise(packed, absmax, w, mids, block):
    """Codes of w's nearest levels after each block is divided by its absmax, two per byte; the absmaxes."""
    # packed (n // 2,) uint8; absmax (nb,) float32; w (n,); mids (L - 1,) ascending; block even, divides n
    nb = absmax.shape[0]
    for b in prange(nb):
        start = b * block
        m = 0.0
        for i in range(block):
            m = max(m, abs(w[start + i]))
        absmax[b] = m
        inv = 1.0 / m if m > 0 else 0.0  # an all-zero block: every code is zero's
        for i in range(0, block, 2):
            x0 = w[start + i] * inv
            x1 = w[start + i + 1] * inv
            hi = 0
            lo = 0
            # code = how many boundaries lie below the value; counted without branches, which vectorises
            # (measured, 2^24 weights: 0.89 GB/s, against 0.18 GB/s for a binary search)
            for k in range(mids.shape[0]):
                hi += np.int32(x0 > mids[k])
                lo += np.int32(x1 > mids[k])
            packed[(start + i) // 2] = (hi << 4) | lo


@wide
def dequantize_blockwise(out, packed, absmax, levels, block):
    """out = level of each code times its block's absmax (the inverse of quantize_blockwise)."""
    # out (n,) float32; packed (n // 2,) uint8; absmax (nb,); levels (16,)
    nb = absmax.shape[0]
    half = block // 2
    for b in prange(nb):
        s = absmax[b]
        for j in range(half):
            byte = packed[b * half + j]
            out[b * block + 2 * j] = levels[byte >> 4] * s
            out[b * block + 2 * j + 1] = levels[byte & 15] * s


@wide
def quantize_scales(codes, absmax2, centred, block2):
    """Symmetric int8 absmax codes of the (mean-subtracted) scales, per block of block2; the last may be short."""
    # codes (nb,) int8; absmax2 (nb2,) float32; centred (nb,)
    nb = centred.shape[0]
    for b in prange(absmax2.shape[0]):
        stop = min(nb, (b + 1) * block2)
        m = 0.0
        for i in range(b * block2, stop):
            m = max(m, abs(centred[i]))
        absmax2[b] = m
        inv = 127.0 / m if m > 0 else 0.0
        for i in range(b * block2, stop):
            codes[i] = np.int8(np.rint(centred[i] * inv))


@wide
def dequantize_scales(out, codes, absmax2, mean, block2):
    """out = code * absmax2 / 127 + mean: the scales back from quantize_scales."""
    # out (nb,) float32; codes (nb,) int8; absmax2 (nb2,)
    nb = out.shape[0]
    for i in prange(nb):
        out[i] = codes[i] * (absmax2[i // block2] / 127.0) + mean


# ------------------------------------------------------------------------------------------ tensors
@dataclass
class Quantized:
    """One tensor in 4-bit codes: packed codes, its scales (plain or double-quantized), its shape and grid."""

    shape: tuple[int, ...]
    packed: np.ndarray  # (n // 2,) uint8
    levels: np.ndarray  # (16,) or (15,) float32: the grid the codes index
    block: int
    absmax: np.ndarray | None  # (nb,) float32, without double quantization
    scale_codes: np.ndarray | None = None  # (nb,) int8, with it
    scale_absmax: np.ndarray | None = None  # (nb2,) float32
    scale_mean: float = 0.0
    scale_block: int = SCALE_BLOCK

    @property
    def nbytes(self) -> int:
        """Bytes held: codes and scales (the 16 levels are one shared table, not counted)."""
        parts = (self.packed, self.absmax, self.scale_codes, self.scale_absmax)
        return sum(p.nbytes for p in parts if p is not None) + (4 if self.scale_codes is not None else 0)

    def scales(self) -> np.ndarray:
        """The block absmaxes as the dequantization uses them (decoded when double-quantized)."""
        if self.scale_codes is None:
            return self.absmax
        out = np.empty(self.scale_codes.shape[0], np.float32)
        dequantize_scales(out, self.scale_codes, self.scale_absmax, np.float32(self.scale_mean), self.scale_block)
        return out


def quantize(w: np.ndarray, levels: np.ndarray | None = None, block: int = BLOCK, double: bool = False,
             scale_block: int = SCALE_BLOCK, name: str = "tensor") -> Quantized:
    """A float tensor in 4-bit codes of `levels` (NF4's by default) with block-wise absmax scales."""
    levels = nf4_levels() if levels is None else np.asarray(levels, np.float32)
    flat = np.ascontiguousarray(w, dtype=np.float32).reshape(-1)
    if block < 2 or block % 2:
        raise QuantError(_("block size must be an even number of at least 2 (two codes share a byte), got {block}")
                         .format(block=block))
    if flat.size % block:
        raise QuantError(_("{name}: block size {block} does not divide its {n} weights {shape}; use a divisor of {n}")
                         .format(name=name, block=block, n=flat.size, shape=tuple(w.shape)))
    packed = np.empty(flat.size // 2, np.uint8)
    absmax = np.empty(flat.size // block, np.float32)
    quantize_blockwise(packed, absmax, flat, midpoints(levels), block)
    q = Quantized(tuple(w.shape), packed, levels, block, absmax)
    if double:
        mean = np.float32(absmax.mean(dtype=np.float64))
        q.scale_codes = np.empty(absmax.size, np.int8)
        q.scale_absmax = np.empty(-(-absmax.size // scale_block), np.float32)
        quantize_scales(q.scale_codes, q.scale_absmax, absmax - mean, scale_block)
        q.absmax, q.scale_mean, q.scale_block = None, float(mean), scale_block
    return q


def dequantize(q: Quantized, out: np.ndarray | None = None) -> np.ndarray:
    """The float32 tensor the codes stand for (into `out`, of q's shape, when given)."""
    n = q.packed.size * 2
    out = np.empty(q.shape, np.float32) if out is None else out
    dequantize_blockwise(out.reshape(n), q.packed, q.scales(), q.levels, q.block)
    return out


def bits_per_weight(q: Quantized) -> float:
    """Stored bits per weight, scales included."""
    return 8.0 * q.nbytes / (2 * q.packed.size)


def roundtrip(tensors: dict[str, np.ndarray], names, levels: np.ndarray | None = None, block: int = BLOCK,
              double: bool = False) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """The tensors with `names` quantized and dequantized again (copies), and each one's mean squared error."""
    out, mse = dict(tensors), {}
    for name in names:
        w = tensors[name]
        back = dequantize(quantize(w, levels, block, double, name=name)).astype(w.dtype)
        mse[name] = float(np.mean((back.astype(np.float64) - w) ** 2))
        out[name] = back
    return out, mse
