"""The host's statistics kernels (simulator/kernels/cpu/stats.py) against numpy's float64 formulas."""

import math

import numpy as np
import pytest

from simulator.kernels.cpu import stats

RNG = np.random.default_rng(7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_squared_sums_match_numpy(dtype):
    n = 10_007  # odd: no lane count divides it
    g, p, b = (RNG.standard_normal(n).astype(dtype) for _ in range(3))
    want = [float(np.dot(x.astype(np.float64), x.astype(np.float64)))
            for x in (g, p, p.astype(np.float64) - b.astype(np.float64))]
    assert np.allclose(stats.squared_sums(g, p, b), want, rtol=1e-12, atol=0)
    assert stats.squared_sums(g, p, p)[2] == 0.0  # no update: a zero norm, not rounding noise


def test_squared_sums_keep_nan_and_inf():
    g, p = np.ones(1001, np.float32), np.ones(1001, np.float32)
    for i in (0, 500, 1000):
        bad = g.copy()
        bad[i] = np.nan
        assert math.isnan(stats.squared_sums(bad, p, p)[0])
        bad[i] = np.inf
        assert stats.squared_sums(bad, p, p)[0] == math.inf


def test_squared_sum_of_a_strided_column_block():
    w = RNG.standard_normal((37, 3 * 19)).astype(np.float32)  # a qkv.w: [q | k | v]
    for c0 in (0, 19, 38):
        block = w[:, c0:c0 + 19]
        assert not block.flags.c_contiguous or c0 == 0
        want = float((block.astype(np.float64) ** 2).sum())
        assert stats.squared_sum(block) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_moments_match_numpy(dtype):
    x = (3.0 + 0.01 * RNG.standard_normal(4099)).astype(dtype)  # a large mean: a one-pass variance would lose it
    x[17] = -5.0
    x64 = x.astype(np.float64)
    mean, std, top = stats.moments(x)
    assert mean == pytest.approx(x64.mean(), rel=1e-13)
    assert std == pytest.approx(x64.std(), rel=1e-10)
    assert top == 5.0


def test_moments_keep_nan_and_inf():
    x = np.zeros(513, np.float32)
    x[100] = np.nan
    assert all(math.isnan(v) for v in stats.moments(x))
    x[100] = np.inf
    mean, std, top = stats.moments(x)
    assert mean == math.inf and math.isnan(std) and top == math.inf  # numpy's mean, std and max of |x|
    assert all(math.isnan(v) for v in stats.moments(np.zeros(0, np.float32)))


def _softmax_rows(B, NH, T, S, dtype):
    """Causal softmax rows: the zeros above the diagonal, as attention keeps them."""
    s = RNG.standard_normal((B, NH, T, S)) * 3
    s = np.where(np.arange(S)[None, :] <= np.arange(T)[:, None], s, -np.inf)
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    return (p / p.sum(axis=-1, keepdims=True)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_attention_row_statistics_match_numpy(dtype):
    P = _softmax_rows(3, 2, 13, 13, dtype)
    P[1, 1, 5] = 0.0  # a row without keys (padding): entropy 0, top 0
    entropy, top = np.empty((3, 2, 13)), np.empty((3, 2, 13))
    stats.attention_row_statistics(P, entropy, top)
    P64 = P.astype(np.float64)
    want = -(P64 * np.log(np.where(P64 > 0, P64, 1.0))).sum(axis=-1)
    assert np.allclose(entropy, want, rtol=1e-12, atol=1e-15)
    assert np.array_equal(top, P64.max(axis=-1))
    assert entropy[0, 0, 0] == 0.0 and top[0, 0, 0] == 1.0  # the first row sees one key
    assert entropy[1, 1, 5] == 0.0 and top[1, 1, 5] == 0.0


def test_attention_row_statistics_keep_a_nan_row_to_itself():
    P = _softmax_rows(1, 2, 7, 7, np.float32)
    P[0, 1, 3, 2] = np.nan
    entropy, top = np.empty((1, 2, 7)), np.empty((1, 2, 7))
    stats.attention_row_statistics(P, entropy, top)
    assert math.isnan(entropy[0, 1, 3]) and math.isnan(top[0, 1, 3])
    assert np.isfinite(np.delete(entropy.ravel(), 7 + 3)).all() and np.isfinite(np.delete(top.ravel(), 7 + 3)).all()
