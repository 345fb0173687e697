"""LoRA's low-rank path next to a frozen linear: out += s * (x A^T) B^T, and its accumulate-only backward.

Shapes: x (N, D_in), A (r, D_in), B (D_out, r), u = x A^T (N, r), out (N, D_out), s = alpha / r.
BLAS forms the two thin products; numba adds the scaled result (BLAS writes a product, it cannot add one).
"""

import numpy as np
from numba import prange

from simulator.kernels.cpu.activations import add_inplace
from simulator.kernels.cpu.jit import wide


@wide
def scaled_add(dst, s, src):
    """dst += s * src."""
    # dst, src are (N, D)
    N, D = dst.shape
    for n in prange(N):
        for d in range(D):
            dst[n, d] += s * src[n, d]


def lora_forward(out, u, x, a, b, scale, tmp):
    """out += scale * (x a^T) b^T; keeps u = x a^T for the backward."""
    # out, tmp (N, D_out); u (N, r); x (N, D_in); a (r, D_in); b (D_out, r)
    np.matmul(x, a.T, out=u)
    np.matmul(u, b.T, out=tmp)
    scaled_add(out, scale, tmp)


def lora_backward(dx, da, db, dout, x, u, a, b, scale, du, tmp, mask=None):
    """Accumulates the gradients of lora_forward: db += s dout^T u, da += (s dout b)^T x, dx += (s dout b) a.

    `x` is the input the forward multiplied (after LoRA dropout); `mask` (N, D_in), when given, is that
    dropout's per-element factor, through which dx flows back. dx is None when no input gradient is needed.
    """
    # dout (N, D_out); du (N, r) and tmp (N, D_in) are scratch, written whole
    db += scale * (dout.T @ u)  # (D_out, r): a weight-sized temporary, small
    np.matmul(dout, b, out=du)
    du *= scale  # du = d(loss)/d(u)
    da += du.T @ x  # (r, D_in)
    if dx is None:
        return
    np.matmul(du, a, out=tmp)
    if mask is not None:
        tmp *= mask
    add_inplace(dx, tmp)
