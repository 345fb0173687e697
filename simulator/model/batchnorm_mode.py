"""BatchNorm's two modes over arrays: train normalizes by the batch and moves the running statistics,
eval normalizes by the running statistics; the backward differentiates whichever the forward ran.

Arrays only (no model object), so the GPT and the deep-MLP lesson share one dispatch. Shapes: inp,
out, dout, dinp (N, C) rows; rowmask (N,) 1 for a real row, 0 for padding; everything else (C,).
"""

from __future__ import annotations

from simulator.kernels.cpu.batchnorm import (
    batchnorm_backward,
    batchnorm_eval_backward,
    batchnorm_eval_forward,
    batchnorm_forward,
    batchnorm_running_update,
)


def batchnorm_mode_forward(out, mean, var, rstd, inp, rowmask, weight, bias, running_mean, running_var,
                           momentum: float, training: bool) -> bool:
    """out = BatchNorm(inp) in train or eval mode; returns `training`, which the backward must be given."""
    if training:
        batchnorm_forward(out, mean, var, rstd, inp, rowmask, weight, bias)
        batchnorm_running_update(running_mean, running_var, mean, var, rowmask, momentum)
    else:  # mean and rstd receive the running statistics the output used, for the backward
        batchnorm_eval_forward(out, mean, rstd, inp, running_mean, running_var, weight, bias)
    return training


def batchnorm_mode_backward(dinp, dweight, dbias, dout, inp, rowmask, weight, mean, rstd, dsum, dxsum,
                            trained: bool) -> None:
    """Gradients of the forward that ran: through the batch statistics if `trained`, else through a fixed affine map."""
    if trained:
        batchnorm_backward(dinp, dweight, dbias, dout, inp, rowmask, weight, mean, rstd, dsum, dxsum)
    else:
        batchnorm_eval_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd)
