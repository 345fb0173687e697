"""BatchNorm over rows on the GPU (twin of kernels/cpu/batchnorm.py): per-channel statistics over valid rows.

Each statistic is a column sum over the N rows: one block per tile of COLS channels, whose ROWS
row lanes stride down the rows (neighbouring threads read neighbouring channels) and meet in
shared memory. Forward: one kernel for count, mean, then the squared deviations (two passes, so
float32 does not cancel), then an elementwise kernel writes out. Backward: one column kernel
sums dxhat and dxhat * xhat (and the parameter gradients) and leaves their means over the valid
rows in the scratch dsum, dxsum; an elementwise kernel adds dinp. Same conventions as the CPU:
padding rows are normalized but do not move the statistics, running statistics by PyTorch's EMA
with the unbiased variance.
"""

from __future__ import annotations

import math

from numba import cuda

from simulator.kernels.cuda.launch import COLS, ROWS, THREADS, blocks, column_sum, per_dtype

EPS = 1e-5


@per_dtype
def _kernels(t):
    zero, one, eps = t(0), t(1), t(EPS)

    @cuda.jit(device=True)
    def valid_rows(rowmask, ty):
        """How many rows are valid (every thread gets the count; it is small work next to the sums)."""
        cnt = 0
        for n in range(ty, rowmask.shape[0], ROWS):
            if rowmask[n] != 0:
                cnt += 1
        return cnt

    @cuda.jit
    def stats(mean, var, rstd, inp, rowmask):
        buf = cuda.shared.array((ROWS, COLS), t)
        cbuf = cuda.shared.array((ROWS, COLS), t)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        c = cuda.blockIdx.x * COLS + tx
        N, C = inp.shape
        acc = zero
        if c < C:
            for n in range(ty, N, ROWS):
                if rowmask[n] != 0:
                    acc += inp[n, c]
        buf[ty, tx] = acc
        cbuf[ty, tx] = t(valid_rows(rowmask, ty))
        column_sum(buf, tx, ty, ROWS)
        column_sum(cbuf, tx, ty, ROWS)
        count = cbuf[0, tx]
        if count == zero:  # no valid row: mean 0, variance 0
            count = one
        m = buf[0, tx] / count
        cuda.syncthreads()
        acc = zero
        if c < C:
            for n in range(ty, N, ROWS):
                if rowmask[n] != 0:
                    d = inp[n, c] - m
                    acc += d * d
        buf[ty, tx] = acc
        column_sum(buf, tx, ty, ROWS)
        if ty == 0 and c < C:
            v = buf[0, tx] / count  # biased: what the normalization uses
            mean[c] = m
            var[c] = v
            rstd[c] = one / math.sqrt(v + eps)

    @cuda.jit
    def normalize(out, inp, mean, rstd, weight, bias):
        i = cuda.grid(1)
        N, C = inp.shape
        if i < N * C:
            n, c = i // C, i % C
            out[n, c] = (inp[n, c] - mean[c]) * rstd[c] * weight[c] + bias[c]

    return {"stats": stats, "normalize": normalize}


@per_dtype
def _backward_kernels(t):
    zero, one = t(0), t(1)

    @cuda.jit
    def sums(dsum, dxsum, dweight, dbias, dout, inp, rowmask, weight, mean, rstd, means):
        # column sums over every row of dxhat, dxhat * xhat, dout, xhat * dout, and the valid-row count;
        # means: leave dsum, dxsum divided by the count (the train-mode backward reads their means)
        b = cuda.shared.array((5, ROWS, COLS), t)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        c = cuda.blockIdx.x * COLS + tx
        N, C = inp.shape
        a0, a1, a2, a3, cnt = zero, zero, zero, zero, zero
        for n in range(ty, N, ROWS):
            if means and rowmask[n] != 0:
                cnt += one
            if c < C:
                g = dout[n, c]
                xhat = (inp[n, c] - mean[c]) * rstd[c]
                a0 += g * weight[c]
                a1 += g * weight[c] * xhat
                a2 += g
                a3 += xhat * g
        b[0, ty, tx], b[1, ty, tx], b[2, ty, tx], b[3, ty, tx], b[4, ty, tx] = a0, a1, a2, a3, cnt
        cuda.syncthreads()
        s = ROWS // 2
        while s > 0:
            if ty < s:
                for k in range(5):
                    b[k, ty, tx] += b[k, ty + s, tx]
            cuda.syncthreads()
            s //= 2
        if ty == 0 and c < C:
            count = b[4, 0, tx] if means else one
            if count == zero:
                count = one
            dsum[c] = b[0, 0, tx] / count
            dxsum[c] = b[1, 0, tx] / count
            dbias[c] += b[2, 0, tx]
            dweight[c] += b[3, 0, tx]

    @cuda.jit
    def dinp_train(dinp, dout, inp, rowmask, weight, mean, rstd, dmean, dxmean):
        # valid rows: dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)); padding rows: dx = rstd dxhat
        i = cuda.grid(1)
        N, C = inp.shape
        if i < N * C:
            n, c = i // C, i % C
            dxhat = dout[n, c] * weight[c]
            if rowmask[n] != 0:
                xhat = (inp[n, c] - mean[c]) * rstd[c]
                dinp[n, c] += rstd[c] * (dxhat - dmean[c] - xhat * dxmean[c])
            else:
                dinp[n, c] += rstd[c] * dxhat

    @cuda.jit
    def dinp_eval(dinp, dout, weight, rstd):
        i = cuda.grid(1)
        N, C = dout.shape
        if i < N * C:
            n, c = i // C, i % C
            dinp[n, c] += dout[n, c] * weight[c] * rstd[c]

    @cuda.jit
    def running(running_mean, running_var, mean, var, rowmask, momentum):
        # one thread per channel; each counts the valid rows (N is small next to a kernel launch)
        c = cuda.grid(1)
        if c < running_mean.shape[0]:
            count = 0.0
            for n in range(rowmask.shape[0]):
                if rowmask[n] != 0:
                    count += 1.0
            if count == 0.0:
                return  # an all-padding batch says nothing about the data
            unbias = count / (count - 1.0) if count > 1.0 else 1.0
            running_mean[c] = (1.0 - momentum) * running_mean[c] + momentum * mean[c]
            running_var[c] = (1.0 - momentum) * running_var[c] + momentum * var[c] * unbias

    @cuda.jit
    def eval_stats(mean, rstd, running_mean, running_var):
        c = cuda.grid(1)
        if c < mean.shape[0]:
            mean[c] = running_mean[c]
            rstd[c] = one / math.sqrt(running_var[c] + t(EPS))

    return {"sums": sums, "dinp_train": dinp_train, "dinp_eval": dinp_eval, "running": running,
            "eval_stats": eval_stats}


def _col_grid(C):
    return blocks(C, COLS), (COLS, ROWS)


def batchnorm_forward(out, mean, var, rstd, inp, rowmask, weight, bias):
    """Train mode: out = (inp - mean) * rstd * weight + bias, statistics over the valid rows; caches them."""
    N, C = inp.shape
    k = _kernels(inp.dtype)
    k["stats"][_col_grid(C)](mean, var, rstd, inp, rowmask)
    k["normalize"][blocks(N * C), THREADS](out, inp, mean, rstd, weight, bias)


def batchnorm_backward(dinp, dweight, dbias, dout, inp, rowmask, weight, mean, rstd, dsum, dxsum):
    """Accumulates the gradients of batchnorm_forward; dsum, dxsum (C,) are scratch."""
    N, C = inp.shape
    k = _backward_kernels(inp.dtype)
    k["sums"][_col_grid(C)](dsum, dxsum, dweight, dbias, dout, inp, rowmask, weight, mean, rstd, True)
    k["dinp_train"][blocks(N * C), THREADS](dinp, dout, inp, rowmask, weight, mean, rstd, dsum, dxsum)


def batchnorm_running_update(running_mean, running_var, mean, var, rowmask, momentum):
    """running = (1 - momentum) * running + momentum * batch, with the unbiased batch variance."""
    k = _backward_kernels(running_mean.dtype)
    k["running"][blocks(running_mean.shape[0]), THREADS](running_mean, running_var, mean, var, rowmask,
                                                          float(momentum))


def batchnorm_eval_forward(out, mean, rstd, inp, running_mean, running_var, weight, bias):
    """Eval mode: normalizes by the running statistics; caches mean and rstd."""
    N, C = inp.shape
    _backward_kernels(inp.dtype)["eval_stats"][blocks(C), THREADS](mean, rstd, running_mean, running_var)
    _kernels(inp.dtype)["normalize"][blocks(N * C), THREADS](out, inp, mean, rstd, weight, bias)


def batchnorm_eval_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, scratch1=None, scratch2=None):
    """Accumulates the gradients of batchnorm_eval_forward (the statistics are constants).

    scratch1, scratch2 (C,) hold the column sums the parameter gradients come from (allocated here
    when not given: the CPU twin has no scratch arguments).
    """
    N, C = inp.shape
    if scratch1 is None:
        scratch1 = cuda.device_array(C, inp.dtype)
    if scratch2 is None:
        scratch2 = cuda.device_array(C, inp.dtype)
    k = _backward_kernels(inp.dtype)
    # means=False: the row mask is not read (mean stands in for it), the sums stay sums
    k["sums"][_col_grid(C)](scratch1, scratch2, dweight, dbias, dout, inp, mean, weight, mean, rstd, False)
    k["dinp_eval"][blocks(N * C), THREADS](dinp, dout, weight, rstd)



def batchnorm_mode_forward(out, mean, var, rstd, inp, rowmask, weight, bias, running_mean, running_var,
                           momentum: float, training: bool) -> bool:
    """Twin of model/batchnorm_mode.py's dispatch: train mode normalizes by the batch and moves the running
    statistics, eval mode uses them; returns `training` for the backward."""
    if training:
        batchnorm_forward(out, mean, var, rstd, inp, rowmask, weight, bias)
        batchnorm_running_update(running_mean, running_var, mean, var, rowmask, momentum)
    else:
        batchnorm_eval_forward(out, mean, rstd, inp, running_mean, running_var, weight, bias)
    return training


def batchnorm_mode_backward(dinp, dweight, dbias, dout, inp, rowmask, weight, mean, rstd, dsum, dxsum,
                            trained: bool) -> None:
    """Gradients of the forward that ran (dsum, dxsum are scratch in both modes)."""
    if trained:
        batchnorm_backward(dinp, dweight, dbias, dout, inp, rowmask, weight, mean, rstd, dsum, dxsum)
    else:
        batchnorm_eval_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, dsum, dxsum)
