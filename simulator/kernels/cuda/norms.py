"""LayerNorm and RMSNorm on the GPU (twins of kernels/cpu/norms.py): block-level reductions in shared memory.

Forward: one block per row; its ROW_THREADS threads stride across the C channels, and the row's
sums meet in shared memory (a tree, log2(ROW_THREADS) steps), never by an atomic per element.
Backward: the same row blocks give dinp (two row sums: mean(dxhat), mean(dxhat xhat)); the
parameter gradients dweight and dbias are column sums over the rows, a second kernel with one
block per tile of COLS channels whose ROWS row lanes meet in shared memory. Sums run in the
data's dtype.
"""

from __future__ import annotations

import math

from numba import cuda

from simulator.kernels.cuda.launch import COLS, ROW_THREADS, ROWS, block_sum, block_sum2, blocks, column_sum, per_dtype

EPS = 1e-5


@per_dtype
def _kernels(t):
    zero, eps = t(0), t(EPS)
    R = ROW_THREADS

    @cuda.jit
    def ln_forward(out, mean, rstd, inp, weight, bias):
        buf = cuda.shared.array(R, t)
        n, tid = cuda.blockIdx.x, cuda.threadIdx.x
        C = inp.shape[1]
        acc = zero
        for c in range(tid, C, R):
            acc += inp[n, c]
        buf[tid] = acc
        block_sum(buf, tid, R)
        m = buf[0] / C
        cuda.syncthreads()  # everyone has read buf[0] before it is reused
        acc = zero
        for c in range(tid, C, R):
            d = inp[n, c] - m
            acc += d * d
        buf[tid] = acc
        block_sum(buf, tid, R)
        s = t(1) / math.sqrt(buf[0] / C + eps)
        for c in range(tid, C, R):
            out[n, c] = (inp[n, c] - m) * s * weight[c] + bias[c]
        if tid == 0:
            mean[n] = m
            rstd[n] = s

    @cuda.jit
    def ln_backward_inp(dinp, dout, inp, weight, mean, rstd):
        # dxhat = dout * w; dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
        b1 = cuda.shared.array(R, t)
        b2 = cuda.shared.array(R, t)
        n, tid = cuda.blockIdx.x, cuda.threadIdx.x
        C = inp.shape[1]
        m, s = mean[n], rstd[n]
        a1, a2 = zero, zero
        for c in range(tid, C, R):
            xhat = (inp[n, c] - m) * s
            dxhat = dout[n, c] * weight[c]
            a1 += dxhat
            a2 += dxhat * xhat
        b1[tid], b2[tid] = a1, a2
        block_sum2(b1, b2, tid, R)
        dmean, dnmean = b1[0] / C, b2[0] / C
        for c in range(tid, C, R):
            xhat = (inp[n, c] - m) * s
            dinp[n, c] += s * (dout[n, c] * weight[c] - dmean - xhat * dnmean)

    @cuda.jit
    def ln_backward_params(dweight, dbias, dout, inp, mean, rstd):
        # dbias += sum_n dout; dweight += sum_n xhat * dout: column sums, COLS channels per block
        b1 = cuda.shared.array((ROWS, COLS), t)
        b2 = cuda.shared.array((ROWS, COLS), t)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        c = cuda.blockIdx.x * COLS + tx
        N, C = inp.shape
        a1, a2 = zero, zero
        if c < C:
            for n in range(ty, N, ROWS):
                g = dout[n, c]
                a1 += g
                a2 += (inp[n, c] - mean[n]) * rstd[n] * g
        b1[ty, tx], b2[ty, tx] = a1, a2
        column_sum(b1, tx, ty, ROWS)
        column_sum(b2, tx, ty, ROWS)
        if ty == 0 and c < C:
            dbias[c] += b1[0, tx]
            dweight[c] += b2[0, tx]

    @cuda.jit
    def rms_forward(out, rstd, inp, weight):
        buf = cuda.shared.array(R, t)
        n, tid = cuda.blockIdx.x, cuda.threadIdx.x
        C = inp.shape[1]
        acc = zero
        for c in range(tid, C, R):
            acc += inp[n, c] * inp[n, c]
        buf[tid] = acc
        block_sum(buf, tid, R)
        s = t(1) / math.sqrt(buf[0] / C + eps)
        for c in range(tid, C, R):
            out[n, c] = inp[n, c] * s * weight[c]
        if tid == 0:
            rstd[n] = s

    @cuda.jit
    def rms_backward_inp(dinp, dout, inp, weight, rstd):
        # dx = rstd * (dout * w - xhat * mean(dout * w * xhat))
        buf = cuda.shared.array(R, t)
        n, tid = cuda.blockIdx.x, cuda.threadIdx.x
        C = inp.shape[1]
        s = rstd[n]
        acc = zero
        for c in range(tid, C, R):
            acc += dout[n, c] * weight[c] * inp[n, c] * s
        buf[tid] = acc
        block_sum(buf, tid, R)
        dot = buf[0] / C
        for c in range(tid, C, R):
            dinp[n, c] += s * (dout[n, c] * weight[c] - inp[n, c] * s * dot)

    @cuda.jit
    def rms_backward_params(dweight, dout, inp, rstd):
        buf = cuda.shared.array((ROWS, COLS), t)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        c = cuda.blockIdx.x * COLS + tx
        N, C = inp.shape
        acc = zero
        if c < C:
            for n in range(ty, N, ROWS):
                acc += inp[n, c] * rstd[n] * dout[n, c]
        buf[ty, tx] = acc
        column_sum(buf, tx, ty, ROWS)
        if ty == 0 and c < C:
            dweight[c] += buf[0, tx]

    return {k: v for k, v in locals().items() if k.startswith(("ln_", "rms_"))}


def layernorm_forward(out, mean, rstd, inp, weight, bias):
    """out = (inp - mean) * rstd * weight + bias, per row; caches mean and rstd."""
    _kernels(inp.dtype)["ln_forward"][inp.shape[0], ROW_THREADS](out, mean, rstd, inp, weight, bias)


def layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd):
    """Accumulates the gradients of layernorm_forward."""
    k = _kernels(inp.dtype)
    k["ln_backward_inp"][inp.shape[0], ROW_THREADS](dinp, dout, inp, weight, mean, rstd)
    k["ln_backward_params"][blocks(inp.shape[1], COLS), (COLS, ROWS)](dweight, dbias, dout, inp, mean, rstd)


def rmsnorm_forward(out, rstd, inp, weight):
    """out = inp * rstd * weight, rstd = 1 / sqrt(mean(inp^2) + eps), per row."""
    _kernels(inp.dtype)["rms_forward"][inp.shape[0], ROW_THREADS](out, rstd, inp, weight)


def rmsnorm_backward(dinp, dweight, dout, inp, weight, rstd):
    """Accumulates the gradients of rmsnorm_forward."""
    k = _kernels(inp.dtype)
    k["rms_backward_inp"][inp.shape[0], ROW_THREADS](dinp, dout, inp, weight, rstd)
    k["rms_backward_params"][blocks(inp.shape[1], COLS), (COLS, ROWS)](dweight, dout, inp, rstd)
