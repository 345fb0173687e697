"""The naive attention's causal row blocks through BLAS (T >= 128) against a float64 numpy reference and finite
differences: blas_heads_*, which attention_heads_* take outside per_head_pays (tests/test_attention_heads.py)."""

import numpy as np
import pytest

from simulator.kernels.cpu.attention import (
    CAUSAL_BLOCK_MIN_T,
    causal_blocks,
)
from simulator.kernels.cpu.attention import blas_heads_backward as attention_heads_backward
from simulator.kernels.cpu.attention import blas_heads_forward as attention_heads_forward
from tests.test_attention_tiled import make, reference, rel_err


def test_blocks_cover_the_rows_once():
    for T in (1, 64, CAUSAL_BLOCK_MIN_T - 1, CAUSAL_BLOCK_MIN_T, 200, 257, 4096):
        blocks = causal_blocks(T, True)
        assert blocks[0][0] == 0 and blocks[-1][1] == T
        assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:], strict=False))
        assert len(blocks) == (1 if T < CAUSAL_BLOCK_MIN_T else min(8, T // 64))
    assert causal_blocks(4096, False) == [(0, 4096)]  # no mask: nothing to skip


def run_naive(q, k, v, kv_len, scale, causal, dy):
    """Forward and backward of the naive kernels, with NaN in every buffer they write (nothing may be left)."""
    B, NH, T, _ = q.shape
    y, att, datt = np.full_like(q, np.nan), np.full((B, NH, T, T), np.nan, q.dtype), np.full((B, NH, T, T), np.nan)
    datt = datt.astype(q.dtype)
    dq, dk, dv = np.full_like(q, np.nan), np.full_like(k, np.nan), np.full_like(v, np.nan)
    attention_heads_forward(y, att, q, k, v, scale, causal, kv_len)
    attention_heads_backward(dq, dk, dv, datt, dy.astype(q.dtype), q, k, v, att, scale, causal, kv_len)
    return y, att, dq, dk, dv


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", [  # (B, NH, NKV, T, HS, kv_len): 2, 4 and 5 row blocks
    (2, 2, 2, 131, 5, (131, 100)),  # MHA, padding in batch 1
    (1, 4, 2, 300, 3, (300,)),  # GQA: dK, dV take the full products
    (1, 3, 1, 321, 4, (250,)),  # MQA
])
def test_blocked_matches_reference(dtype, case):
    B, NH, NKV, T, HS, kv_len = case
    assert len(causal_blocks(T, True)) > 1
    rng = np.random.default_rng(T + NH)
    q, k, v, dy = make(rng, B, NH, NKV, T, HS, dtype)
    kv_len = np.array(kv_len, np.int32)
    want_y, _, want_dq, want_dk, want_dv = reference(q, k, v, kv_len, 0.45, True, dy)
    y, att, dq, dk, dv = run_naive(q, k, v, kv_len, 0.45, True, dy)
    tol = 1e-5 if dtype == np.float32 else 1e-10
    for name, g, w in (("y", y, want_y), ("dq", dq, want_dq), ("dk", dk, want_dk), ("dv", dv, want_dv)):
        assert rel_err(g, w) < tol, name
    assert np.all(np.triu(att, 1) == 0)  # the blocks above the diagonal read as probability 0
    assert np.allclose(att.sum(-1), 1, atol=1e-5)


def test_blocked_finite_differences():
    rng = np.random.default_rng(13)
    B, NH, NKV, T, HS = 1, 1, 1, 130, 2
    q, k, v, dy = make(rng, B, NH, NKV, T, HS, np.float64)
    kv_len = np.array([T], np.int32)
    scale, eps = 0.8, 1e-6

    def loss(q, k, v):
        y, att = np.empty_like(q), np.empty((B, NH, T, T))
        attention_heads_forward(y, att, q, k, v, scale, True, kv_len)
        return float(np.sum(y * dy))

    _, _, dq, dk, dv = run_naive(q, k, v, kv_len, scale, True, dy)
    worst = 0.0
    for x, dx in ((q, dq), (k, dk), (v, dv)):
        for idx in list(np.ndindex(x.shape))[::7]:  # every 7th entry: both blocks, both halves of the head
            keep = x[idx]
            x[idx] = keep + eps
            up = loss(q, k, v)
            x[idx] = keep - eps
            down = loss(q, k, v)
            x[idx] = keep
            num = (up - down) / (2 * eps)
            worst = max(worst, abs(dx[idx] - num) / max(1.0, abs(dx[idx]), abs(num)))
    assert worst < 1e-6


@pytest.mark.parametrize("window,n_global", [(1, 0), (50, 0), (64, 0), (300, 0), (40, 3)])
def test_blocked_local_window_matches_reference(window, n_global):
    # T 200: three row blocks; windows shorter than, equal to and longer than a block, and global tokens
    from tests.test_attention_local import reference as local_reference
    from tests.test_attention_local import tensors
    B, NH, NKV, T, HS = 2, 2, 1, 200, 3
    q, k, v, dy = tensors(B, NH, NKV, T, HS, np.float64, seed=window + n_global)
    kv_len = np.array([T, 170], np.int32)
    y, att = np.full_like(q, np.nan), np.full((B, NH, T, T), np.nan)
    dq, dk, dv = np.full_like(q, np.nan), np.full_like(k, np.nan), np.full_like(v, np.nan)
    attention_heads_forward(y, att, q, k, v, 0.6, True, kv_len, window, n_global)
    attention_heads_backward(dq, dk, dv, np.full_like(att, np.nan), dy.copy(), q, k, v, att, 0.6, True, kv_len)
    for got, want in zip((y, dq, dk, dv), local_reference(q, k, v, kv_len, 0.6, window, n_global, dy), strict=True):
        assert rel_err(got, want) < 1e-12
