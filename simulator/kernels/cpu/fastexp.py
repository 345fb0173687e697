"""`fast_exp(x)`: exp that LLVM can vectorise for float32; libm's exp for float64.

libm's expf is a call LLVM will not vectorise, so elementwise float32 kernels built on it (GELU,
the softmaxes) run one element at a time. This is Cephes' expf: exp(v) = 2^k p(f) with
k = round(v / ln 2), f = v - k ln 2 (in two parts, so f stays exact), p a degree-7 polynomial, and 2^k
built from its exponent bits by an LLVM bitcast, all branch-free. Relative error about 1e-7 (float32
rounding). Inputs are clamped to [-88, 88.3]: at -88, k = -127 and the exponent bits of 2^k are
all zero, so anything below (-inf included: a masked score) gives exactly 0.0; exp(100) gives
exp(88.3) = 2.2e38, not inf; NaN stays NaN.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload


@intrinsic
def _float32_from_bits(typingctx, bits):
    """Reinterprets an int32's bits as a float32 (no conversion)."""
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


def fast_exp(x):
    """exp(x); inside numba kernels, float32 arguments take the vectorisable path."""
    return math.exp(x)


@overload(fast_exp, inline="always")  # compiled into each caller, under its own fastmath flags
def _fast_exp(x):
    if x != types.float32:
        return lambda x: math.exp(x)

    def exp32(x):
        lo, hi = np.float32(-88.0), np.float32(88.3)
        # clamp without hiding NaN: a comparison with NaN is false, so NaN passes through
        v = lo if x < lo else x
        v = hi if v > hi else v
        kf = np.floor(v * np.float32(1.4426950408889634) + np.float32(0.5))  # stays float32
        f = v - kf * np.float32(0.693359375) - kf * np.float32(-2.12194440e-4)
        p = np.float32(1.9875691500e-4)
        p = p * f + np.float32(1.3981999507e-3)
        p = p * f + np.float32(8.3334519073e-3)
        p = p * f + np.float32(4.1665795894e-2)
        p = p * f + np.float32(1.6666665459e-1)
        p = p * f + np.float32(5.0000001201e-1)
        p = p * f * f + f + np.float32(1.0)
        k = np.int32(kf) if v == v else np.int32(0)  # NaN: any scale (p is NaN already)
        return p * _float32_from_bits((k + np.int32(127)) << np.int32(23))

    return exp32
