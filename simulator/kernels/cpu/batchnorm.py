"""BatchNorm over rows: per-channel statistics across the batch (and time), with running statistics.

A row is one position of one sequence (N = B*T rows of C channels), so for a
transformer BatchNorm averages each channel over every position of every
sequence in the batch, where LayerNorm averages each row over its channels.

Train mode normalizes with the statistics of the valid rows of this batch;
`rowmask` (N,) holds 1 for a valid row and 0 for padding, which is still
normalized (with the valid rows' statistics) but does not move them. Eval
mode normalizes with the running statistics instead, which makes it a fixed
per-channel affine map.

Running statistics follow PyTorch's convention: after each train-mode batch,
`running = (1 - momentum) * running + momentum * batch`, with the *unbiased*
batch variance (times M / (M - 1) for M valid rows) in `running_var`, while
the normalization itself uses the biased one. They start at mean 0 and
variance 1, are buffers (no gradient) and move only in train mode.
"""

import numpy as np
from numba import njit

EPS = 1e-5


@njit(cache=True, nogil=True)
def batchnorm_forward(out, mean, var, rstd, inp, rowmask, weight, bias):
    """Train mode: out = (inp - mean) * rstd * weight + bias, statistics over the valid rows; caches them."""
    # out, inp are (N, C); rowmask is (N,); mean, var, rstd, weight, bias are (C,)
    N, C = inp.shape
    mean[:] = 0.0
    var[:] = 0.0
    count = 0.0
    for n in range(N):
        if rowmask[n] != 0:
            count += 1.0
            for c in range(C):
                mean[c] += inp[n, c]
    if count == 0.0:  # no valid row: nothing to normalize by; treat as mean 0, variance 0
        count = 1.0
    for c in range(C):
        mean[c] /= count
    # two passes (mean first, then squared deviations) so float32 does not cancel
    for n in range(N):
        if rowmask[n] != 0:
            for c in range(C):
                d = inp[n, c] - mean[c]
                var[c] += d * d
    for c in range(C):
        var[c] /= count  # biased: the variance of this batch, as the normalization uses it
        rstd[c] = 1.0 / np.sqrt(var[c] + EPS)
    for n in range(N):
        for c in range(C):
            out[n, c] = (inp[n, c] - mean[c]) * rstd[c] * weight[c] + bias[c]


@njit(cache=True, nogil=True)
def batchnorm_backward(dinp, dweight, dbias, dout, inp, rowmask, weight, mean, rstd, dsum, dxsum):
    """Accumulates the gradients of batchnorm_forward; dsum, dxsum (C,) are scratch."""
    # forward: xhat = (x - mean) * rstd; out = xhat * w + b; mean and rstd over the M valid rows
    # dxhat = dout * w; valid rows: dx = rstd * (dxhat - sum(dxhat) / M - xhat * sum(dxhat * xhat) / M)
    # padded rows do not move the statistics: dx = rstd * dxhat. Both sums run over every row,
    # because every row's output depends on the statistics.
    N, C = inp.shape
    dsum[:] = 0.0
    dxsum[:] = 0.0
    count = 0.0
    for n in range(N):
        if rowmask[n] != 0:
            count += 1.0
        for c in range(C):
            xhat = (inp[n, c] - mean[c]) * rstd[c]
            dxhat = dout[n, c] * weight[c]
            dsum[c] += dxhat
            dxsum[c] += dxhat * xhat
            dbias[c] += dout[n, c]
            dweight[c] += xhat * dout[n, c]
    if count == 0.0:
        count = 1.0
    for n in range(N):
        valid = rowmask[n] != 0
        for c in range(C):
            xhat = (inp[n, c] - mean[c]) * rstd[c]
            dxhat = dout[n, c] * weight[c]
            if valid:
                dinp[n, c] += rstd[c] * (dxhat - dsum[c] / count - xhat * dxsum[c] / count)
            else:
                dinp[n, c] += rstd[c] * dxhat


@njit(cache=True, nogil=True)
def batchnorm_running_update(running_mean, running_var, mean, var, rowmask, momentum):
    """running = (1 - momentum) * running + momentum * batch, with the unbiased batch variance."""
    # running_mean, running_var, mean, var are (C,); rowmask is (N,); var is the biased batch variance
    count = 0.0
    for n in range(rowmask.shape[0]):
        if rowmask[n] != 0:
            count += 1.0
    if count == 0.0:
        return  # an all-padding batch says nothing about the data
    # M / (M - 1) turns the batch variance into an estimate of the population's; one row has none
    unbias = count / (count - 1.0) if count > 1.0 else 1.0
    for c in range(running_mean.shape[0]):
        running_mean[c] = (1.0 - momentum) * running_mean[c] + momentum * mean[c]
        running_var[c] = (1.0 - momentum) * running_var[c] + momentum * var[c] * unbias


@njit(cache=True, nogil=True)
def batchnorm_eval_forward(out, mean, rstd, inp, running_mean, running_var, weight, bias):
    """Eval mode: out = (inp - running_mean) / sqrt(running_var + eps) * weight + bias; caches mean and rstd."""
    # out, inp are (N, C); mean, rstd, running_mean, running_var, weight, bias are (C,)
    N, C = inp.shape
    for c in range(C):
        mean[c] = running_mean[c]
        rstd[c] = 1.0 / np.sqrt(running_var[c] + EPS)
    for n in range(N):
        for c in range(C):
            out[n, c] = (inp[n, c] - mean[c]) * rstd[c] * weight[c] + bias[c]


@njit(cache=True, nogil=True)
def batchnorm_eval_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd):
    """Accumulates the gradients of batchnorm_eval_forward (the statistics are constants here)."""
    # forward: xhat = (x - mean) * rstd with fixed mean, rstd; dx = dout * w * rstd
    N, C = inp.shape
    for n in range(N):
        for c in range(C):
            xhat = (inp[n, c] - mean[c]) * rstd[c]
            dbias[c] += dout[n, c]
            dweight[c] += xhat * dout[n, c]
            dinp[n, c] += dout[n, c] * weight[c] * rstd[c]
