"""The CUDA tiled attention (forward, backward) and the head layouts against the CPU's, with GQA, padding, T = 1."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.kernels.cpu import attention as cpu_layout
from simulator.kernels.cpu import attention_tiled as cpu
from tests.cuda.twins import close, dev, host, randn

# (B, NH, NKV, T, HS, causal, kv_len, tiles, dtype): GQA with partial tiles and a padded row; MHA without a
# causal mask and a row of padding only (kv_len 0) under the CPU's default tiles (capped on the GPU); MQA at T = 1
CASES = [
    (2, 4, 2, 7, 5, True, [7, 4], (3, 2), np.float32),
    (2, 4, 2, 7, 5, True, [7, 4], (3, 2), np.float64),
    (2, 2, 2, 5, 4, False, [3, 0], (256, 64), np.float64),
    (1, 3, 1, 1, 6, True, [1], (2, 2), np.float32),
]


@pytest.mark.parametrize("B,NH,NKV,T,HS,causal,kv_len,tiles,dtype", CASES)
def test_tiled_attention(B, NH, NKV, T, HS, causal, kv_len, tiles, dtype, rng):
    from simulator.kernels.cuda import attention as gpu

    q, dy = randn(rng, (B, NH, T, HS), dtype), randn(rng, (B, NH, T, HS), dtype)
    k, v = randn(rng, (B, NKV, T, HS), dtype), randn(rng, (B, NKV, T, HS), dtype)
    kvl = np.array(kv_len, np.int32)
    scale = 1.0 / np.sqrt(HS)
    dq0, dk0, dv0 = randn(rng, q.shape, dtype), randn(rng, k.shape, dtype), randn(rng, v.shape, dtype)
    y_c, lse_c = np.empty_like(q), np.empty((B, NH, T), dtype)
    dq_c, dk_c, dv_c = dq0.copy(), dk0.copy(), dv0.copy()
    cpu.tiled_attention_forward(y_c, lse_c, q, k, v, kvl, scale, causal, *tiles)
    cpu.tiled_attention_backward(dq_c, dk_c, dv_c, dy, q, k, v, y_c, lse_c, kvl, scale, causal, *tiles)

    d_q, d_k, d_v, d_dy, d_kvl, d_dq, d_dk, d_dv = dev(q, k, v, dy, kvl, dq0, dk0, dv0)
    d_y, d_lse = dev(np.full_like(q, np.nan), np.full((B, NH, T), np.nan, dtype))  # every entry must be written
    gpu.tiled_attention_forward(d_y, d_lse, d_q, d_k, d_v, d_kvl, scale, causal, *tiles)
    gpu.tiled_attention_backward(d_dq, d_dk, d_dv, d_dy, d_q, d_k, d_v, d_y, d_lse, d_kvl, scale, causal, *tiles)
    close(host(d_y), y_c, dtype, scale=4)
    close(host(d_lse), lse_c, dtype, scale=4)  # -inf for the rows without keys
    for g, c in ((d_dq, dq_c), (d_dk, dk_c), (d_dv, dv_c)):
        close(host(g), c, dtype, scale=8)
    if 0 in kv_len:
        assert np.all(host(d_y)[kv_len.index(0)] == 0)


def test_tiled_attention_refuses_large_heads():
    from simulator.kernels.cuda import attention as gpu

    hs = gpu.MAX_HEAD_SIZE + 1
    q = np.zeros((1, 1, 2, hs), np.float32)
    with pytest.raises(ValueError, match="head size"):
        gpu.tiled_attention_forward(q, np.zeros((1, 1, 2), np.float32), q, q, q, np.array([2], np.int32), 1.0,
                                    True, 4, 4)


def test_nan_score_reaches_output(rng):
    """As on the CPU: a NaN in q gives NaN in that row's y and lse, not a quiet 0 (a diverged run names the op)."""
    from simulator.kernels.cuda import attention as gpu

    q, k, v = (randn(rng, (1, 1, 3, 4), np.float32) for _ in range(3))
    q[0, 0, 2, 1] = np.nan
    kvl = np.array([3], np.int32)
    y_c, lse_c = np.empty_like(q), np.empty((1, 1, 3), np.float32)
    cpu.tiled_attention_forward(y_c, lse_c, q, k, v, kvl, 0.5, True, 2, 2)
    d_y, d_lse = dev(np.zeros_like(q), np.zeros((1, 1, 3), np.float32))
    gpu.tiled_attention_forward(d_y, d_lse, *dev(q, k, v, kvl), 0.5, True, 2, 2)
    assert np.isnan(y_c[0, 0, 2]).all() and np.isnan(host(d_y)[0, 0, 2]).all()
    close(host(d_y), y_c, np.float32)
    close(host(d_lse), lse_c, np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_head_layouts(dtype, rng):
    from simulator.kernels.cuda import attention as gpu

    B, T, NH, NKV, HS = 2, 3, 4, 2, 3
    C, CK = NH * HS, NKV * HS
    qkv = randn(rng, (B, T, C + 2 * CK), dtype)
    q, k, v = np.empty((B, NH, T, HS), dtype), np.empty((B, NKV, T, HS), dtype), np.empty((B, NKV, T, HS), dtype)
    cpu_layout.split_heads(q, k, v, qkv)
    d_qkv, d_q, d_k, d_v = dev(qkv, np.zeros_like(q), np.zeros_like(k), np.zeros_like(v))
    gpu.split_heads(d_q, d_k, d_v, d_qkv)
    for g, c in ((d_q, q), (d_k, k), (d_v, v)):
        assert np.array_equal(host(g), c)
    dqkv0 = randn(rng, qkv.shape, dtype)
    dqkv_c = dqkv0.copy()
    cpu_layout.merge_qkv_grad(dqkv_c, q, k, v)
    d_dqkv = dev(dqkv0)
    gpu.merge_qkv_grad(d_dqkv, d_q, d_k, d_v)
    close(host(d_dqkv), dqkv_c, dtype)
    out_c = np.empty((B, T, C), dtype)
    cpu_layout.merge_heads(out_c, q)
    d_out = dev(np.zeros((B, T, C), dtype))
    gpu.merge_heads(d_out, d_q)
    assert np.array_equal(host(d_out), out_c)
    dyh_c = q.copy()
    cpu_layout.split_heads_grad(dyh_c, out_c)
    gpu.split_heads_grad(d_q, d_out)
    close(host(d_q), dyh_c, dtype)


@pytest.mark.parametrize("scale,causal,kv_len", [(0.7, True, [5, 3]), (-0.4, False, [0, 4])])
def test_attention_softmax(scale, causal, kv_len, rng):
    """The naive attention's masked softmax: a negative scale (the max is the smallest raw score), padding."""
    from simulator.kernels.cuda import attention as gpu

    dtype = np.float64
    att, datt = randn(rng, (2, 2, 5, 5), dtype, 3.0), randn(rng, (2, 2, 5, 5), dtype)
    kvl = np.array(kv_len, np.int32)
    att_c, datt_c = att.copy(), datt.copy()
    cpu_layout.attention_softmax_forward(att_c, scale, causal, kvl)
    cpu_layout.attention_softmax_backward(datt_c, att_c, scale, causal, kvl)
    d_att, d_datt, d_kvl = dev(att, datt, kvl)
    gpu.attention_softmax_forward(d_att, scale, causal, d_kvl)
    gpu.attention_softmax_backward(d_datt, d_att, scale, causal, d_kvl)
    close(host(d_att), att_c, dtype)
    close(host(d_datt), datt_c, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_naive_attention_forward_backward(dtype, rng):
    """attention_forward / attention_backward (the fused qkv in, the (T, T) probabilities kept), GQA, padding."""
    from simulator.kernels.cuda import attention as gpu

    B, NH, NKV, T, HS = 2, 4, 2, 5, 3
    C, CK = NH * HS, NKV * HS
    scale, kvl = 1.0 / np.sqrt(HS), np.array([5, 3], np.int32)
    qkv, dout = randn(rng, (B, T, C + 2 * CK), dtype), randn(rng, (B, T, C), dtype)
    dqkv0 = randn(rng, qkv.shape, dtype)
    shapes = dict(q=(B, NH, T, HS), k=(B, NKV, T, HS), v=(B, NKV, T, HS), att=(B, NH, T, T), yh=(B, NH, T, HS))
    host_bufs = {n: np.zeros(s, dtype) for n, s in shapes.items()}
    out_c, dqkv_c = np.zeros((B, T, C), dtype), dqkv0.copy()
    cpu_layout.attention_forward(out_c, host_bufs["q"], host_bufs["k"], host_bufs["v"], host_bufs["att"],
                                 host_bufs["yh"], qkv, scale, True, kvl)
    grads = {n: np.zeros(shapes[n], dtype) for n in ("q", "k", "v", "att", "yh")}
    cpu_layout.attention_backward(dqkv_c, grads["q"], grads["k"], grads["v"], grads["att"], grads["yh"], dout,
                                  host_bufs["q"], host_bufs["k"], host_bufs["v"], host_bufs["att"], scale)

    d = {n: dev(np.full(s, np.nan, dtype)) for n, s in shapes.items()}  # every entry must be written
    dg = {n: dev(np.full(shapes[n], np.nan, dtype)) for n in ("q", "k", "v", "att", "yh")}  # scratch: stale
    d_out, d_qkv, d_dout, d_dqkv, d_kvl = dev(np.zeros((B, T, C), dtype), qkv, dout, dqkv0, kvl)
    gpu.attention_forward(d_out, d["q"], d["k"], d["v"], d["att"], d["yh"], d_qkv, scale, True, d_kvl)
    gpu.attention_backward(d_dqkv, dg["q"], dg["k"], dg["v"], dg["att"], dg["yh"], d_dout, d["q"], d["k"], d["v"],
                           d["att"], scale)
    close(host(d_out), out_c, dtype, scale=4)
    close(host(d["att"]), host_bufs["att"], dtype, scale=4)
    close(host(d_dqkv), dqkv_c, dtype, scale=8)


# local attention: (B, NH, NKV, T, HS, window, n_global, kv_len, tiles, dtype); windows shorter and longer
# than a tile, global tokens, a padded row, tile pairs skipped whole
LOCAL_CASES = [
    (1, 2, 1, 11, 3, 3, 0, [11], (2, 2), np.float64),
    (2, 2, 2, 9, 4, 2, 2, [9, 6], (3, 2), np.float32),
]


@pytest.mark.parametrize("B,NH,NKV,T,HS,window,n_global,kv_len,tiles,dtype", LOCAL_CASES)
def test_local_attention_tiled_and_naive(B, NH, NKV, T, HS, window, n_global, kv_len, tiles, dtype, rng):
    from simulator.kernels.cuda import attention as gpu

    q, dy = randn(rng, (B, NH, T, HS), dtype), randn(rng, (B, NH, T, HS), dtype)
    k, v = randn(rng, (B, NKV, T, HS), dtype), randn(rng, (B, NKV, T, HS), dtype)
    kvl, scale = np.array(kv_len, np.int32), 1.0 / np.sqrt(HS)
    y_c, lse_c = np.empty_like(q), np.empty((B, NH, T), dtype)
    dq_c, dk_c, dv_c = np.zeros_like(q), np.zeros_like(k), np.zeros_like(v)
    cpu.tiled_attention_forward(y_c, lse_c, q, k, v, kvl, scale, True, *tiles, window, n_global)
    cpu.tiled_attention_backward(dq_c, dk_c, dv_c, dy, q, k, v, y_c, lse_c, kvl, scale, True, *tiles, window,
                                 n_global)
    d_q, d_k, d_v, d_dy, d_kvl, d_dq, d_dk, d_dv = dev(q, k, v, dy, kvl, *(np.zeros_like(a) for a in (q, k, v)))
    d_y, d_lse = dev(np.full_like(q, np.nan), np.full((B, NH, T), np.nan, dtype))
    gpu.tiled_attention_forward(d_y, d_lse, d_q, d_k, d_v, d_kvl, scale, True, *tiles, window, n_global)
    gpu.tiled_attention_backward(d_dq, d_dk, d_dv, d_dy, d_q, d_k, d_v, d_y, d_lse, d_kvl, scale, True, *tiles,
                                 window, n_global)
    close(host(d_y), y_c, dtype, scale=4)
    close(host(d_lse), lse_c, dtype, scale=4)
    for g, c in ((d_dq, dq_c), (d_dk, dk_c), (d_dv, dv_c)):
        close(host(g), c, dtype, scale=8)
    # the naive twin: the same probabilities as the CPU's, 0 outside the window
    att_c, yh_c = np.zeros((B, NH, T, T), dtype), np.zeros_like(q)
    cpu_layout.attention_heads_forward(yh_c, att_c, q, k, v, scale, True, kvl, window, n_global)
    d_att, d_yh = dev(np.full((B, NH, T, T), np.nan, dtype), np.zeros_like(q))
    gpu.attention_heads_forward(d_yh, d_att, d_q, d_k, d_v, scale, True, d_kvl, window, n_global)
    close(host(d_att), att_c, dtype, scale=4)
    close(host(d_yh), yh_c, dtype, scale=4)
    assert np.all(host(d_att)[0, 0, T - 1, n_global:T - window] == 0) and np.abs(y_c - yh_c).max() < 1e-5
