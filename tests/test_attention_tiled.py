"""Tiled attention kernels and the tile-by-tile stepper against a plain float64 numpy reference."""

import math

import numpy as np
import pytest

from simulator.kernels.cpu.attention_tiled import (
    BACKWARD_TILE_K,
    BACKWARD_TILE_Q,
    TILE_K,
    TILE_Q,
    tiled_attention_backward,
    tiled_attention_forward,
)
from simulator.lessons.flash_trace import (
    AttentionTraceError,
    TiledAttentionTrace,
    naive_attention_traffic,
    tiled_attention_traffic,
)


def reference(q, k, v, kv_len, scale, causal, dy):
    """float64 y, lse and the gradients of sum(y * dy), forming the full (T, T) matrices."""
    q, k, v, dy = (a.astype(np.float64) for a in (q, k, v, dy))
    B, NH, T, HS = q.shape
    group = NH // k.shape[1]
    kk, vv = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)  # (B, NH, T, HS)
    visible = np.arange(T)[None, :] < np.asarray(kv_len)[:, None]  # (B, T) keys that are not padding
    mask = np.broadcast_to(visible[:, None, None, :], (B, NH, T, T))
    if causal:
        mask = mask & np.tril(np.ones((T, T), bool))
    s = np.where(mask, scale * q @ kk.transpose(0, 1, 3, 2), -np.inf)
    mx = s.max(-1, keepdims=True)
    mx = np.where(np.isfinite(mx), mx, 0.0)
    e = np.exp(s - mx)
    z = e.sum(-1, keepdims=True)  # 0 for a row without keys
    p = e / np.where(z > 0, z, 1.0)
    y = p @ vv
    lse = np.where(z[..., 0] > 0, mx[..., 0] + np.log(np.where(z[..., 0] > 0, z[..., 0], 1.0)), -np.inf)
    dp = dy @ vv.transpose(0, 1, 3, 2)
    ds = p * (dp - (dp * p).sum(-1, keepdims=True))
    dq = scale * ds @ kk
    dk = (scale * ds.transpose(0, 1, 3, 2) @ q).reshape(B, -1, group, T, HS).sum(2)
    dv = (p.transpose(0, 1, 3, 2) @ dy).reshape(B, -1, group, T, HS).sum(2)
    return y, lse, dq, dk, dv


def rel_err(a, b):
    """max |a - b| / max(1, |a|, |b|), ignoring positions where both are the same infinity."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    same_inf = np.isinf(a) & (a == b)
    a, b = np.where(same_inf, 0, a), np.where(same_inf, 0, b)
    return float(np.max(np.abs(a - b) / np.maximum(1, np.maximum(np.abs(a), np.abs(b))), initial=0.0))


BACKWARDS = ["tiles", "rows"]  # the tile kernels, and blocks of tile_q query rows through BLAS (attention_rows.py)


def run_tiled(q, k, v, kv_len, scale, causal, dy, tile_q, tile_k, grads0=None, backward="tiles"):
    """Forward then backward through the tiled kernels; gradients accumulate onto grads0 when given."""
    B, NH, T, _ = q.shape
    y, lse = np.empty_like(q), np.empty((B, NH, T), q.dtype)
    tiled_attention_forward(y, lse, q, k, v, kv_len, scale, causal, tile_q, tile_k)
    dq, dk, dv = grads0 if grads0 is not None else (np.zeros_like(q), np.zeros_like(k), np.zeros_like(v))
    tiled_attention_backward(dq, dk, dv, dy.astype(q.dtype), q, k, v, y, lse, kv_len, scale, causal, tile_q, tile_k,
                             by_rows=backward == "rows", rows=tile_q)
    return y, lse, dq, dk, dv


def make(rng, B, NH, NKV, T, HS, dtype):
    """Random q, k, v and an upstream gradient dy."""
    q = rng.standard_normal((B, NH, T, HS)).astype(dtype)
    k = rng.standard_normal((B, NKV, T, HS)).astype(dtype)
    v = rng.standard_normal((B, NKV, T, HS)).astype(dtype)
    dy = rng.standard_normal((B, NH, T, HS))
    return q, k, v, dy


TOL = {np.float32: 1e-5, np.float64: 1e-10}
CASES = [  # (B, NH, NKV, T, HS, kv_len, tile_q, tile_k)
    (2, 4, 2, 37, 13, (37, 30), 16, 16),  # GQA, T not a multiple of the tile, padding in batch 1
    (2, 4, 1, 37, 13, (25, 37), 3, 16),  # MQA, uneven tiles
    (1, 2, 2, 37, 13, (37,), 16, 3),
    (2, 2, 1, 19, 7, (19, 11), 1, 1),  # one-row, one-key tiles
    (1, 4, 2, 19, 7, (12,), 64, 64),  # tile larger than T
    (2, 2, 2, 1, 5, (1, 1), 3, 3),  # T = 1
    (1, 2, 1, 24, 9, (24,), 8, 8),  # tiles dividing T exactly
    (1, 2, 1, 300, 16, (300,), TILE_Q, TILE_K),  # the default tile sizes, several tiles deep
    (1, 2, 1, 300, 16, (290,), BACKWARD_TILE_Q, BACKWARD_TILE_K),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("backward", BACKWARDS)
def test_matches_reference(dtype, causal, case, backward):
    B, NH, NKV, T, HS, kv_len, tile_q, tile_k = case
    rng = np.random.default_rng(T * 7 + HS + tile_q)
    q, k, v, dy = make(rng, B, NH, NKV, T, HS, dtype)
    kv_len = np.array(kv_len, np.int32)
    scale = 1 / math.sqrt(HS)
    want = reference(q, k, v, kv_len, scale, causal, dy)
    got = run_tiled(q, k, v, kv_len, scale, causal, dy, tile_q, tile_k, backward=backward)
    for name, g, w in zip(("y", "lse", "dq", "dk", "dv"), got, want, strict=True):
        assert g.dtype == dtype
        assert rel_err(g, w) < TOL[dtype], name


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("backward", BACKWARDS)
def test_unscaled_and_large_scores(causal, backward):
    # scale 1.0 with large inputs: scores in the thousands, the online max must keep exp in range
    rng = np.random.default_rng(3)
    q, k, v, dy = make(rng, 1, 2, 1, 29, 6, np.float64)
    q *= 150
    kv_len = np.array([29], np.int32)
    want = reference(q, k, v, kv_len, 1.0, causal, dy)
    got = run_tiled(q, k, v, kv_len, 1.0, causal, dy, 4, 5, backward=backward)
    assert np.abs(want[1]).max() > 1000  # exp without the running max would overflow
    for g, w in zip(got, want, strict=True):
        assert rel_err(g, w) < 1e-10


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("backward", BACKWARDS)
def test_row_without_keys_outputs_zero_and_gets_no_gradient(dtype, causal, backward):
    # batch 0 has kv_len 0: every query row has no key; batch 1 is normal and must be unaffected
    rng = np.random.default_rng(5)
    q, k, v, dy = make(rng, 2, 2, 1, 11, 5, dtype)
    kv_len = np.array([0, 11], np.int32)
    grads0 = tuple(rng.standard_normal(a.shape).astype(dtype) for a in (q, k, v))
    before = tuple(g.copy() for g in grads0)
    y, lse, dq, dk, dv = run_tiled(q, k, v, kv_len, 0.5, causal, dy, 4, 3, grads0, backward)
    assert np.all(y[0] == 0) and np.all(lse[0] == -np.inf)
    for g, g0 in zip((dq, dk, dv), before, strict=True):
        assert np.array_equal(g[0], g0[0])
    want = reference(q, k, v, kv_len, 0.5, causal, dy)
    for g, g0, w in zip((dq, dk, dv), before, want[2:], strict=True):
        assert rel_err(g[1] - g0[1], w[1]) < TOL[dtype] * 10
    assert np.all(np.isfinite(y[1])) and np.all(np.isfinite(lse[1]))


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("backward", BACKWARDS)
def test_padded_keys_get_no_gradient_and_gradients_accumulate(causal, backward):
    rng = np.random.default_rng(7)
    q, k, v, dy = make(rng, 2, 4, 2, 17, 6, np.float64)
    kv_len = np.array([9, 17], np.int32)
    grads0 = tuple(rng.standard_normal(a.shape) for a in (q, k, v))
    before = tuple(g.copy() for g in grads0)
    _, _, dq, dk, dv = run_tiled(q, k, v, kv_len, 0.4, causal, dy, 5, 4, grads0, backward)
    assert np.array_equal(dk[0, :, 9:], before[1][0, :, 9:])
    assert np.array_equal(dv[0, :, 9:], before[2][0, :, 9:])
    want = reference(q, k, v, kv_len, 0.4, causal, dy)
    for g, g0, w in zip((dq, dk, dv), before, want[2:], strict=True):
        assert rel_err(g - g0, w) < 1e-10
    # the padded keys still change nothing in the output
    k2, v2 = k.copy(), v.copy()
    k2[0, :, 9:] += 3.0
    v2[0, :, 9:] -= 2.0
    y1 = run_tiled(q, k, v, kv_len, 0.4, causal, dy, 5, 4)[0]
    y2 = run_tiled(q, k2, v2, kv_len, 0.4, causal, dy, 5, 4)[0]
    assert np.array_equal(y1, y2)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("backward", BACKWARDS)
def test_finite_differences(causal, backward):
    rng = np.random.default_rng(11)
    B, NH, NKV, T, HS = 1, 2, 1, 5, 3
    q, k, v, dy = make(rng, B, NH, NKV, T, HS, np.float64)
    kv_len = np.array([4], np.int32)
    scale, eps = 0.7, 1e-6

    def loss(q, k, v):
        y, lse = np.empty_like(q), np.empty((B, NH, T))
        tiled_attention_forward(y, lse, q, k, v, kv_len, scale, causal, 2, 3)
        return float(np.sum(y * dy))

    _, _, dq, dk, dv = run_tiled(q, k, v, kv_len, scale, causal, dy, 2, 3, backward=backward)
    worst = 0.0
    for x, dx in ((q, dq), (k, dk), (v, dv)):
        for idx in np.ndindex(x.shape):
            keep = x[idx]
            x[idx] = keep + eps
            up = loss(q, k, v)
            x[idx] = keep - eps
            down = loss(q, k, v)
            x[idx] = keep
            num = (up - down) / (2 * eps)
            worst = max(worst, abs(dx[idx] - num) / max(1.0, abs(dx[idx]), abs(num)))
    assert worst < 1e-6
    assert np.all(dk[0, :, 4:] == 0) and np.abs(dk).max() > 1e-3


# ---- the stepper -------------------------------------------------------------------------


def softmax_attention(q, k, v, scale, causal):
    """Plain (T, HS) reference for one head."""
    s = scale * q @ k.T
    if causal:
        s = np.where(np.tril(np.ones(s.shape, bool)), s, -np.inf)
    p = np.exp(s - s.max(1, keepdims=True))
    return (p / p.sum(1, keepdims=True)) @ v


@pytest.mark.parametrize("loop_order", ["kv_outer", "q_outer"])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("T, tiles", [(23, (4, 5)), (1, (3, 3)), (16, (16, 16)), (10, (1, 7))])
def test_trace_ends_at_the_reference(loop_order, causal, T, tiles):
    rng = np.random.default_rng(T)
    q, k, v = (rng.standard_normal((T, 6)) for _ in range(3))
    trace = TiledAttentionTrace(q, k, v, 0.4, causal, *tiles, loop_order=loop_order)
    steps = list(trace)
    n_q, n_k = -(-T // tiles[0]), -(-T // tiles[1])
    assert len(steps) == n_q * n_k == trace.n_steps
    assert trace.step() is None and trace.done
    want = softmax_attention(q, k, v, 0.4, causal)
    assert np.abs(trace.output - want).max() < 1e-12
    # every row's last visit leaves that row's final output, m and l
    for st in steps:
        r0, r1 = st.q_rows
        assert st.scores.shape == (r1 - r0, st.k_cols[1] - st.k_cols[0])
        assert st.out.shape == (r1 - r0, 6) and st.m.shape == st.l.shape == (r1 - r0,)
    last = {}
    for st in steps:
        last[st.q_tile] = st
    for st in last.values():
        assert np.abs(st.out - want[st.q_rows[0]:st.q_rows[1]]).max() < 1e-12
    # skipped tiles lie wholly above the diagonal and move nothing
    for prev, st in zip([None] + steps[:-1], steps, strict=True):
        assert st.skipped == (causal and st.k_cols[0] > st.q_rows[1] - 1)
        if st.skipped:
            assert np.all(st.scores == -np.inf)
            assert prev is not None and st.floats == prev.floats
        assert st.bytes == 4 * st.floats
    total = tiled_attention_traffic(T, 6, causal=causal, tile_q=tiles[0], tile_k=tiles[1], loop_order=loop_order)
    assert steps[-1].floats == total.floats


def test_trace_partial_output_is_attention_over_the_keys_seen():
    rng = np.random.default_rng(2)
    q, k, v = (rng.standard_normal((12, 4)) for _ in range(3))
    trace = TiledAttentionTrace(q, k, v, 0.5, False, 12, 5, loop_order="q_outer")
    st = trace.step()
    assert st.k_cols == (0, 5)
    want = softmax_attention(q, k[:5], v[:5], 0.5, False)
    assert np.abs(st.out - want).max() < 1e-12
    s = 0.5 * q @ k[:5].T
    assert np.abs(st.m - s.max(1)).max() < 1e-12
    assert np.abs(st.l - np.exp(s - s.max(1, keepdims=True)).sum(1)).max() < 1e-12


def test_trace_tile_sizes_from_fast_memory():
    rng = np.random.default_rng(4)
    q, k, v = (rng.standard_normal((50, 8)) for _ in range(3))
    trace = TiledAttentionTrace(q, k, v, fast_memory_floats=256)
    assert (trace.tile_q, trace.tile_k) == (8, 8)  # Bc = M / 4d = 8, Br = min(Bc, d) = 8
    trace = TiledAttentionTrace(q, k, v, fast_memory_floats=96)
    assert (trace.tile_q, trace.tile_k) == (3, 3)
    with pytest.raises(AttentionTraceError, match="fast_memory_floats"):
        TiledAttentionTrace(q, k, v, fast_memory_floats=31)  # less than one row each of Q, K, V, O
    with pytest.raises(AttentionTraceError, match="tile"):
        TiledAttentionTrace(q, k, v, tile_q=8, tile_k=16, fast_memory_floats=256)
    with pytest.raises(AttentionTraceError, match="q, k and v"):
        TiledAttentionTrace(q, k[:, :4], v)


def test_traffic_counts_by_hand():
    # N = 8, d = 2, 4 x 4 tiles, no mask, Algorithm 1: O, l, m initialised in slow memory (8*2 + 16),
    # K and V read once (32), each of the 4 pairs reads Q_i, O_i, l_i, m_i (8+8+8) and writes O_i, l_i, m_i (16)
    t = tiled_attention_traffic(8, 2, causal=False, tile_q=4, tile_k=4, loop_order="kv_outer")
    assert (t.reads, t.writes) == (32 + 4 * 24, 32 + 4 * 16)
    # FlashAttention-2 order: Q read once, K and V once per query tile, O and lse written once
    t = tiled_attention_traffic(8, 2, causal=False, tile_q=4, tile_k=4, loop_order="q_outer")
    assert (t.reads, t.writes) == (16 + 2 * 32, 16 + 8)
    n = naive_attention_traffic(8, 2)  # read Q, K write S; read S write P; read P, V write O
    assert (n.reads, n.writes) == (32 + 64 + 64 + 16, 64 + 64 + 16)


def slope(xs, ys):
    """Least-squares slope of log y against log x."""
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def test_traffic_scaling():
    d, M = 64, 16384
    ns = [2048, 4096, 8192, 16384]
    naive = [naive_attention_traffic(n, d).floats for n in ns]
    assert abs(slope(ns, naive) - 2) < 0.15
    for causal in (False, True):
        tiled = [tiled_attention_traffic(n, d, M, causal=causal).floats for n in ns]
        assert abs(slope(ns, tiled) - 2) < 0.15
        ms = [4096, 8192, 16384, 32768, 65536]
        by_m = [tiled_attention_traffic(8192, d, m, causal=causal).floats for m in ms]
        assert abs(slope(ms, by_m) + 1) < 0.15
    # the point of it all: with 256 KiB of fast memory (M = 65536 floats) the tiled count is 5x below the naive one
    assert tiled_attention_traffic(8192, d, 65536).floats < naive_attention_traffic(8192, d).floats / 4
