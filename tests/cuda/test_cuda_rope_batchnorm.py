"""RoPE and BatchNorm (train, eval, padding rows, running statistics) on the GPU against the CPU kernels."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.kernels.cpu import batchnorm as cpu_bn
from simulator.kernels.cpu import rope as cpu_rope
from tests.cuda.twins import DTYPES, close, dev, host, randn


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("T", [1, 5])
def test_rope(T, dtype, rng):
    from simulator.kernels.cuda import rope as gpu

    B, H, HS = 2, 3, 6
    cos, sin = cpu_rope.rope_tables(T + 3, HS, dtype)
    x = randn(rng, (B, H, T, HS), dtype)
    d_x, d_cos, d_sin = dev(x, cos[2:2 + T], sin[2:2 + T])  # an offset into the table (the KV-cache case)
    x_c = x.copy()
    cpu_rope.rope_forward(x_c, cos[2:2 + T], sin[2:2 + T])
    gpu.rope_forward(d_x, d_cos, d_sin)
    close(host(d_x), x_c, dtype)
    cpu_rope.rope_backward(x_c, cos[2:2 + T], sin[2:2 + T])
    gpu.rope_backward(d_x, d_cos, d_sin)
    close(host(d_x), x_c, dtype)
    close(host(d_x), x, dtype)  # the inverse rotation undoes the forward


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mask", ["all", "padded", "none"])
def test_batchnorm_train(mask, dtype, rng):
    from simulator.kernels.cuda import batchnorm as gpu

    N, C = 11, 7  # C not a multiple of the simulated 4-channel tile, N of the 4 row lanes
    x = randn(rng, (N, C), dtype, 2.0) + dtype(1)
    rowmask = {"all": np.ones(N), "padded": (np.arange(N) < 8), "none": np.zeros(N)}[mask].astype(dtype)
    w, b, dout = randn(rng, C, dtype) + dtype(1), randn(rng, C, dtype), randn(rng, (N, C), dtype)
    dinp0, dw0, db0 = randn(rng, (N, C), dtype), randn(rng, C, dtype), randn(rng, C, dtype)
    rm0, rv0 = randn(rng, C, dtype), np.abs(randn(rng, C, dtype)) + dtype(0.5)

    out_c, mean_c, var_c, rstd_c = np.empty_like(x), *(np.empty(C, dtype) for _ in range(3))
    dinp_c, dw_c, db_c, rm_c, rv_c = dinp0.copy(), dw0.copy(), db0.copy(), rm0.copy(), rv0.copy()
    cpu_bn.batchnorm_forward(out_c, mean_c, var_c, rstd_c, x, rowmask, w, b)
    cpu_bn.batchnorm_backward(dinp_c, dw_c, db_c, dout, x, rowmask, w, mean_c, rstd_c, np.empty(C, dtype),
                              np.empty(C, dtype))
    cpu_bn.batchnorm_running_update(rm_c, rv_c, mean_c, var_c, rowmask, 0.1)

    z = np.zeros(C, dtype)
    d = dev(np.zeros_like(x), z, z, z, x, rowmask, w, b, dout, dinp0, dw0, db0, z, z, rm0, rv0)
    d_out, d_mean, d_var, d_rstd, d_x, d_mask, d_w, d_b, d_dout, d_dinp, d_dw, d_db, d_s1, d_s2, d_rm, d_rv = d
    gpu.batchnorm_forward(d_out, d_mean, d_var, d_rstd, d_x, d_mask, d_w, d_b)
    gpu.batchnorm_backward(d_dinp, d_dw, d_db, d_dout, d_x, d_mask, d_w, d_mean, d_rstd, d_s1, d_s2)
    gpu.batchnorm_running_update(d_rm, d_rv, d_mean, d_var, d_mask, 0.1)
    for g, c in ((d_out, out_c), (d_mean, mean_c), (d_var, var_c), (d_rstd, rstd_c), (d_dinp, dinp_c),
                 (d_dw, dw_c), (d_db, db_c), (d_rm, rm_c), (d_rv, rv_c)):
        close(host(g), c, dtype, scale=4)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batchnorm_eval(dtype, rng):
    from simulator.kernels.cuda import batchnorm as gpu

    N, C = 9, 5
    x, dout = randn(rng, (N, C), dtype), randn(rng, (N, C), dtype)
    rm, rv = randn(rng, C, dtype), np.abs(randn(rng, C, dtype)) + dtype(0.5)
    w, b = randn(rng, C, dtype), randn(rng, C, dtype)
    dinp0, dw0, db0 = randn(rng, (N, C), dtype), randn(rng, C, dtype), randn(rng, C, dtype)
    out_c, mean_c, rstd_c = np.empty_like(x), np.empty(C, dtype), np.empty(C, dtype)
    dinp_c, dw_c, db_c = dinp0.copy(), dw0.copy(), db0.copy()
    cpu_bn.batchnorm_eval_forward(out_c, mean_c, rstd_c, x, rm, rv, w, b)
    cpu_bn.batchnorm_eval_backward(dinp_c, dw_c, db_c, dout, x, w, mean_c, rstd_c)
    z = np.zeros(C, dtype)
    d = dev(np.zeros_like(x), z, z, x, rm, rv, w, b, dout, dinp0, dw0, db0)
    d_out, d_mean, d_rstd, d_x, d_rm, d_rv, d_w, d_b, d_dout, d_dinp, d_dw, d_db = d
    gpu.batchnorm_eval_forward(d_out, d_mean, d_rstd, d_x, d_rm, d_rv, d_w, d_b)
    gpu.batchnorm_eval_backward(d_dinp, d_dw, d_db, d_dout, d_x, d_w, d_mean, d_rstd)
    for g, c in ((d_out, out_c), (d_mean, mean_c), (d_rstd, rstd_c), (d_dinp, dinp_c), (d_dw, dw_c), (d_db, db_c)):
        close(host(g), c, dtype, scale=4)


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_mode_dispatch(training, rng):
    from simulator.kernels.cuda import batchnorm as gpu
    from simulator.model import batchnorm_mode as cpu_mode

    N, C, dtype = 6, 3, np.float64
    x, dout = randn(rng, (N, C), dtype), randn(rng, (N, C), dtype)
    rowmask = (np.arange(N) < 5).astype(dtype)
    w, b = randn(rng, C, dtype), randn(rng, C, dtype)
    rm, rv = randn(rng, C, dtype), np.abs(randn(rng, C, dtype)) + dtype(0.5)
    host_arrays = [np.zeros_like(x), *(np.zeros(C, dtype) for _ in range(3)), rm, rv, x.copy(), np.zeros(C, dtype),
                   np.zeros(C, dtype)]  # out, mean, var, rstd, running mean, running var, dinp, dweight, dbias
    dev_arrays = list(dev(*host_arrays))
    for mode, arrays in ((cpu_mode, host_arrays), (gpu, dev_arrays)):
        out, mean, var, rstd, r_mean, r_var, dinp, dw, db = arrays
        xs, masks, ws, bs, douts = (a if mode is cpu_mode else dev(a) for a in (x, rowmask, w, b, dout))
        trained = mode.batchnorm_mode_forward(out, mean, var, rstd, xs, masks, ws, bs, r_mean, r_var, 0.1, training)
        assert trained is training
        scratch = np.zeros(C, dtype) if mode is cpu_mode else dev(np.zeros(C, dtype))
        scratch2 = np.zeros(C, dtype) if mode is cpu_mode else dev(np.zeros(C, dtype))
        mode.batchnorm_mode_backward(dinp, dw, db, douts, xs, masks, ws, mean, rstd, scratch, scratch2, trained)
    for i in (0, 1, 3, 4, 5, 6, 7, 8):  # var is only written in train mode
        close(host(dev_arrays[i]), host_arrays[i], dtype, scale=4)
