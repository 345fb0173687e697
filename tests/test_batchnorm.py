"""BatchNorm kernels: finite differences in train and eval mode, padding, running statistics by hand."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.kernels.cpu.batchnorm import (
    EPS,
    batchnorm_backward,
    batchnorm_eval_backward,
    batchnorm_eval_forward,
    batchnorm_forward,
    batchnorm_running_update,
)
from simulator.reference import batchnorm_bwd, batchnorm_fwd
from tests.helpers import numeric_grad, rel_err

FD_EPS = 1e-6
TOL = 1e-6


def case(N, C, seed=0, padded=()):
    rng = np.random.default_rng(seed)
    x = rng.normal(0.5, 2.0, (N, C))
    w = 1.0 + rng.normal(0.0, 0.5, C)
    b = rng.normal(0.0, 0.5, C)
    mask = np.ones(N)
    mask[list(padded)] = 0.0
    dout = rng.normal(0.0, 1.0, (N, C))  # a random upstream gradient: loss = sum(out * dout)
    return x, w, b, mask, dout


def train_forward(x, w, b, mask):
    N, C = x.shape
    out, mean, var, rstd = np.zeros((N, C)), np.zeros(C), np.zeros(C), np.zeros(C)
    batchnorm_forward(out, mean, var, rstd, x, mask, w, b)
    return out, mean, var, rstd


def train_grads(x, w, b, mask, dout):
    N, C = x.shape
    _, mean, _, rstd = train_forward(x, w, b, mask)
    dx, dw, db = np.zeros((N, C)), np.zeros(C), np.zeros(C)
    batchnorm_backward(dx, dw, db, dout, x, mask, w, mean, rstd, np.zeros(C), np.zeros(C))
    return dx, dw, db


def eval_forward(x, w, b, rm, rv):
    N, C = x.shape
    out, mean, rstd = np.zeros((N, C)), np.zeros(C), np.zeros(C)
    batchnorm_eval_forward(out, mean, rstd, x, rm, rv, w, b)
    return out, mean, rstd


def numeric(loss, arrays):
    """Central differences of loss() with respect to every entry of each array (perturbed in place)."""
    return [numeric_grad(loss, a, FD_EPS) for a in arrays]


@pytest.mark.parametrize("N,C,padded", [(7, 5, ()), (9, 3, (2, 8)), (2, 11, ()), (4, 1, (0,))])
def test_train_mode_gradients_match_finite_differences(N, C, padded):
    x, w, b, mask, dout = case(N, C, seed=N * C, padded=padded)
    dx, dw, db = train_grads(x, w, b, mask, dout)
    nx, nw, nb = numeric(lambda: float(np.sum(train_forward(x, w, b, mask)[0] * dout)), [x, w, b])
    assert np.abs(dx).max() > 1e-2, "gradient too small for the check to mean anything"
    for name, a, n in (("dinp", dx, nx), ("dweight", dw, nw), ("dbias", db, nb)):
        assert rel_err(a, n) < TOL, f"train mode {name}: {rel_err(a, n):.3g}"


def test_eval_mode_gradients_match_finite_differences():
    x, w, b, _, dout = case(6, 7, seed=3)
    rng = np.random.default_rng(4)
    rm, rv = rng.normal(0.0, 1.0, 7), rng.uniform(0.2, 3.0, 7)
    out, mean, rstd = eval_forward(x, w, b, rm, rv)
    dx, dw, db = np.zeros_like(x), np.zeros(7), np.zeros(7)
    batchnorm_eval_backward(dx, dw, db, dout, x, w, mean, rstd)
    nx, nw, nb = numeric(lambda: float(np.sum(eval_forward(x, w, b, rm, rv)[0] * dout)), [x, w, b])
    for name, a, n in (("dinp", dx, nx), ("dweight", dw, nw), ("dbias", db, nb)):
        assert rel_err(a, n) < TOL, f"eval mode {name}: {rel_err(a, n):.3g}"
    # eval mode is a fixed affine map per channel
    assert np.allclose(out, (x - rm) / np.sqrt(rv + EPS) * w + b, rtol=1e-13, atol=1e-13)


def test_backward_accumulates():
    x, w, b, mask, dout = case(5, 4, seed=9)
    once = train_grads(x, w, b, mask, dout)
    _, mean, _, rstd = train_forward(x, w, b, mask)
    dx, dw, db = np.ones_like(x), np.ones(4), np.ones(4)
    batchnorm_backward(dx, dw, db, dout, x, mask, w, mean, rstd, np.zeros(4), np.zeros(4))
    for a, o in zip((dx, dw, db), once, strict=True):
        assert np.allclose(a, o + 1.0, rtol=0, atol=1e-12)
    rng = np.random.default_rng(10)
    rm, rv = rng.normal(0.0, 1.0, 4), rng.uniform(0.2, 3.0, 4)
    _, mean, rstd = eval_forward(x, w, b, rm, rv)
    once = np.zeros_like(x), np.zeros(4), np.zeros(4)
    batchnorm_eval_backward(*once, dout, x, w, mean, rstd)
    twice = np.ones_like(x), np.ones(4), np.ones(4)
    batchnorm_eval_backward(*twice, dout, x, w, mean, rstd)
    for a, o in zip(twice, once, strict=True):
        assert np.allclose(a, o + 1.0, rtol=0, atol=1e-12), "eval mode"


def test_train_mode_equals_numpy_reference_and_normalizes_each_column():
    x, w, b, mask, dout = case(8, 6, seed=2)
    out, mean, var, rstd = train_forward(x, w, b, mask)
    ref, cache = batchnorm_fwd(x, w, b)
    assert np.abs(out - ref).max() < 1e-12
    assert np.allclose(mean, x.mean(axis=0), atol=1e-13) and np.allclose(var, x.var(axis=0), atol=1e-12)
    xhat = (out - b) / w
    assert np.allclose(xhat.mean(axis=0), 0.0, atol=1e-12)
    assert np.allclose(xhat.var(axis=0), x.var(axis=0) / (x.var(axis=0) + EPS), atol=1e-12)
    rdx, rdw, rdb = batchnorm_bwd(dout, cache)
    dx, dw, db = train_grads(x, w, b, mask, dout)
    assert max(np.abs(dx - rdx).max(), np.abs(dw - rdw).max(), np.abs(db - rdb).max()) < 1e-12


def test_padded_rows_are_normalized_but_do_not_move_the_statistics():
    x, w, b, mask, dout = case(6, 3, seed=5, padded=(1, 4))
    out, mean, var, _ = train_forward(x, w, b, mask)
    valid = mask == 1
    assert np.allclose(mean, x[valid].mean(axis=0), atol=1e-13)
    assert np.allclose(var, x[valid].var(axis=0), atol=1e-12)
    x2 = x.copy()
    x2[[1, 4]] = 1e3  # whatever sits in the padding
    out2 = train_forward(x2, w, b, mask)[0]
    assert np.array_equal(out2[valid], out[valid])
    # a padded row's own output still uses the valid rows' statistics
    assert np.allclose(out[1], (x[1] - mean) / np.sqrt(var + EPS) * w + b, atol=1e-12)


def test_running_statistics_two_steps_by_hand():
    """PyTorch's convention: running = (1 - momentum) running + momentum batch; unbiased variance."""
    C, momentum = 3, 0.1
    rm, rv = np.zeros(C), np.ones(C)  # the documented start
    x1 = np.array([[1.0, 2.0, 0.0], [3.0, 2.0, 0.0], [5.0, 2.0, 3.0], [7.0, 2.0, 1.0]])
    x2 = np.array([[0.0, 4.0, 1.0], [2.0, 0.0, 1.0], [9.0, 9.0, 9.0]])
    mask2 = np.array([1.0, 1.0, 0.0])  # the last row of the second batch is padding
    for x, mask in ((x1, np.ones(4)), (x2, mask2)):
        _, mean, var, _ = train_forward(x, np.ones(C), np.zeros(C), mask)
        batchnorm_running_update(rm, rv, mean, var, mask, momentum)
        if x is x1:
            # batch 1: means (4, 2, 1); unbiased variances (20/3, 0, 6/3 = 2)
            assert np.allclose(rm, [0.4, 0.2, 0.1], atol=1e-15)
            assert np.allclose(rv, [0.9 + 0.1 * 20 / 3, 0.9, 0.9 + 0.1 * 2.0], atol=1e-15)
    # batch 2 (two valid rows): means (1, 2, 1); unbiased variances (2, 8, 0)
    assert np.allclose(rm, [0.9 * 0.4 + 0.1 * 1, 0.9 * 0.2 + 0.1 * 2, 0.9 * 0.1 + 0.1 * 1], atol=1e-15)
    assert np.allclose(rv, [0.9 * (0.9 + 0.1 * 20 / 3) + 0.1 * 2, 0.9 * 0.9 + 0.1 * 8, 0.9 * (0.9 + 0.2)],
                       atol=1e-15)


def test_running_update_edge_cases():
    rm, rv = np.array([1.0]), np.array([2.0])
    batchnorm_running_update(rm, rv, np.array([5.0]), np.array([3.0]), np.zeros(4), 0.5)  # all padding: no news
    assert (rm[0], rv[0]) == (1.0, 2.0)
    batchnorm_running_update(rm, rv, np.array([5.0]), np.array([0.0]), np.array([1.0]), 0.5)  # one row: no unbias
    assert (rm[0], rv[0]) == (3.0, 1.0)


def test_float32_close_to_float64():
    x, w, b, mask, dout = case(33, 9, seed=7, padded=(3,))
    out64 = train_forward(x, w, b, mask)[0]
    x32, mask32, w32, b32 = (a.astype(np.float32) for a in (x, mask, w, b))
    N, C = x.shape
    out, mean, var, rstd = (np.zeros((N, C), np.float32), np.zeros(C, np.float32), np.zeros(C, np.float32),
                            np.zeros(C, np.float32))
    batchnorm_forward(out, mean, var, rstd, x32, mask32, w32, b32)
    assert np.abs(out - out64).max() < 1e-5
