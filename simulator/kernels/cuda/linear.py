"""Linear layer y = x W + b on the GPU: the tiled GEMM for the products, a column reduction for the bias.

The same signatures and contract as kernels/cpu/linear.py. The GEMM can add its product, so
linear_backward needs no scratch to add into dinp; it keeps the CPU's word on dinp all the same:
given dscratch (the caller says dinp already holds a gradient) it adds, without it it writes,
because the caller may hand over a buffer that holds stale numbers rather than zeros (the GPT's
scratch `dy`, a gradient buffer that the arena has not cleared yet). dscratch itself is not used.
"""

from __future__ import annotations

from numba import cuda

from simulator.kernels.cuda.elementwise import bias_add
from simulator.kernels.cuda.gemm import gemm
from simulator.kernels.cuda.launch import COLS, ROWS, blocks, column_sum, per_dtype, transposed


@per_dtype
def _bias_backward(t):
    @cuda.jit
    def kernel(dbias, dout):
        # dout is (N, OC): a block owns COLS columns; its ROWS row lanes stride down the rows
        # (neighbouring threads read neighbouring columns) and meet in shared memory
        buf = cuda.shared.array((ROWS, COLS), t)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        o = cuda.blockIdx.x * COLS + tx
        N, OC = dout.shape
        acc = t(0)
        if o < OC:
            for n in range(ty, N, ROWS):
                acc += dout[n, o]
        buf[ty, tx] = acc
        column_sum(buf, tx, ty, ROWS)
        if ty == 0 and o < OC:
            dbias[o] += buf[0, tx]

    return kernel


def bias_backward(dbias, dout):
    """dbias += the column sums of dout (a block reduction per column tile, no atomics)."""
    _bias_backward(dout.dtype)[blocks(dout.shape[1], COLS), (COLS, ROWS)](dbias, dout)


def _base(w):
    """(array, transposed): a transposed 2-D view is read through its base layout by the GEMM.

    On the device such a view comes from launch.transposed (a DeviceNDArray's `.T` is a copy)."""
    if w.shape[0] > 1 and w.shape[1] > 1 and w.strides[0] < w.strides[1]:  # a transposed view of a C-contiguous array
        return transposed(w), True
    return w, False


def linear_forward(out, inp, weight, bias):
    """Writes out = inp @ weight (+ bias); weight is (C, OC) or a transposed view of an (OC, C) array
    (launch.transposed on the device)."""
    w, tw = _base(weight)
    gemm(out, inp, w, trans_b=tw)
    if bias is not None:
        bias_add(out, bias)


def linear_backward(dinp, dweight, dbias, dout, inp, weight, dscratch=None):
    """Accumulates dinp += dout @ weight.T (writes it without dscratch), dweight += inp.T @ dout, dbias += sum dout."""
    # dinp is (N, C) or None, dweight is (C, OC) (or a transposed view), dout is (N, OC); dscratch: see above
    w, tw = _base(weight)
    if dinp is not None:
        gemm(dinp, dout, w, trans_b=not tw, accumulate=dscratch is not None)  # (N, OC) @ (OC, C)
    dw, tdw = _base(dweight)
    if tdw:  # dweight is W^T's view: accumulate (inp^T dout)^T = dout^T inp into its base
        gemm(dw, dout, inp, trans_a=True, accumulate=True)
    else:
        gemm(dw, inp, dout, trans_a=True, accumulate=True)
    if dbias is not None:
        bias_backward(dbias, dout)
