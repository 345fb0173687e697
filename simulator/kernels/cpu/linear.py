"""Linear layer y = x W + b: BLAS for the products, numba for the bias."""

import numpy as np
from numba import njit, prange

from simulator.kernels.cpu.activations import add_inplace
from simulator.kernels.cpu.jit import wide


@wide
def bias_add(out, bias):
    """out[n, :] += bias."""
    # out is (N, OC), bias is (OC,)
    N, OC = out.shape
    for n in prange(N):
        for o in range(OC):
            out[n, o] += bias[o]


@njit(cache=True, nogil=True)
def bias_backward(dbias, dout):
    """dbias += sum of dout over rows."""
    # dbias is (OC,), dout is (N, OC)
    N, OC = dout.shape
    for n in range(N):
        for o in range(OC):
            dbias[o] += dout[n, o]


def linear_forward(out, inp, weight, bias):
    """Writes out = inp @ weight (+ bias)."""
    # out is (N, OC), inp is (N, C), weight is (C, OC) (may be a transposed view), bias is (OC,) or None
    np.matmul(inp, weight, out=out)
    if bias is not None:
        bias_add(out, bias)


def linear_backward(dinp, dweight, dbias, dout, inp, weight, dscratch=None):
    """Accumulates dinp += dout @ weight.T, dweight += inp.T @ dout and dbias += the column sums of dout."""
    # dinp is (N, C) or None (input needs no gradient), dweight is (C, OC) or None (a frozen weight), dout is
    # (N, OC), dscratch (N, C).
    # BLAS writes its product and cannot add it: given dscratch, the product is formed there and added into
    # dinp; without, it is written into dinp, which is the same sum for a dinp that holds no gradient yet
    # (0 + x == x): the caller's word (the GPT asks its GradientArena whether anything reached dinp yet)
    if dinp is not None and dscratch is not None:
        np.matmul(dout, weight.T, out=dscratch)
        add_inplace(dinp, dscratch)
    elif dinp is not None:
        np.matmul(dout, weight.T, out=dinp)
    if dweight is not None:  # None: a frozen weight (LoRA), which needs no gradient
        dweight += inp.T @ dout  # (C, OC); a weight-sized temporary, small next to the product
    if dbias is not None:
        bias_backward(dbias, dout)
