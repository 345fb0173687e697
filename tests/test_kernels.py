"""CPU kernels: forwards against plain numpy (float32 and float64), backwards against float64 finite differences.

Every backward is checked with a random upstream gradient (L = sum(out * dout)),
on odd shapes (T = 1, C = 13, several heads), and for the accumulate contract
(kernels/cpu/__init__.py): given gradients that already hold random values, a
backward ends with those values plus the gradient, so a kernel that writes
instead of adding fails. The BLAS-product kernels are checked onto zero as well,
the one case in which they may write.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulator import reference as ref
from simulator.kernels.cpu import activations as act
from simulator.kernels.cpu.attention import (
    attention_backward,
    attention_forward,
    attention_softmax_backward,
    attention_softmax_forward,
    merge_heads,
    merge_qkv_grad,
    split_heads,
    split_heads_grad,
)
from simulator.kernels.cpu.embedding import embedding_backward, embedding_forward
from simulator.kernels.cpu.linear import bias_add, bias_backward, linear_backward, linear_forward
from simulator.kernels.cpu.norms import layernorm_backward, layernorm_forward, rmsnorm_backward, rmsnorm_forward
from simulator.kernels.cpu.softmax import (
    crossentropy_forward,
    crossentropy_softmax_backward,
    softmax_backward,
    softmax_forward,
)
from tests.helpers import numeric_grad, rel_err

DTYPES = [np.float64, np.float32]
FD_TOL = 1e-6
SHAPES = [(1, 1, 13), (2, 5, 13), (3, 1, 7)]  # (B, T, C): T = 1, C not a multiple of 8
ATTN_SHAPES = [(2, 5, 3, 4), (1, 1, 2, 3), (2, 7, 1, 5)]  # (B, T, NH, HS)


def ftol(dtype) -> float:
    """Tolerance of a forward against float64 numpy: float32 keeps about 7 digits."""
    return 1e-12 if dtype == np.float64 else 2e-6


def randn(rng, *shape, dtype=np.float64, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


# ------------------------------------------------------------------- embedding

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,T,C", SHAPES)
def test_embedding_forward_matches_numpy(dtype, B, T, C):
    rng = np.random.default_rng(1)
    V, maxT = 6, T + 2
    ids = rng.integers(0, V, (B, T)).astype(np.int32)
    wte, wpe = randn(rng, V, C, dtype=dtype), randn(rng, maxT, C, dtype=dtype)
    out = np.full((B, T, C), np.nan, dtype)
    embedding_forward(out, ids, wte, wpe)
    assert rel_err(out, wte[ids] + wpe[:T]) < ftol(dtype)


@pytest.mark.parametrize("B,T,C", SHAPES)
def test_embedding_backward_fd_and_accumulates(B, T, C):
    rng = np.random.default_rng(2)
    V, maxT = 4, T + 2
    ids = rng.integers(0, V, (B, T)).astype(np.int32)
    ids[0, 0] = ids[-1, -1] = 1  # a repeated token: its row must collect both gradients
    wte, wpe, dout = randn(rng, V, C), randn(rng, maxT, C), randn(rng, B, T, C)
    out = np.empty((B, T, C))

    def loss():
        embedding_forward(out, ids, wte, wpe)
        return float(np.sum(out * dout))

    dwte0, dwpe0 = randn(rng, V, C), randn(rng, maxT, C)
    dwte, dwpe = dwte0.copy(), dwpe0.copy()
    embedding_backward(dwte, dwpe, dout, ids)
    assert rel_err(dwte - dwte0, numeric_grad(loss, wte)) < FD_TOL
    assert rel_err(dwpe - dwpe0, numeric_grad(loss, wpe)) < FD_TOL
    assert np.array_equal(dwpe[T:], dwpe0[T:]), "rows of wpe beyond T were touched"


# ---------------------------------------------------------------------- linear

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_forward_matches_numpy(dtype, with_bias):
    rng = np.random.default_rng(3)
    N, C, OC = 7, 13, 5
    x, w = randn(rng, N, C, dtype=dtype), randn(rng, C, OC, dtype=dtype)
    b = randn(rng, OC, dtype=dtype) if with_bias else None
    out = np.full((N, OC), np.nan, dtype)
    linear_forward(out, x, w, b)
    want = x.astype(np.float64) @ w + (b if with_bias else 0)
    assert rel_err(out, want) < 10 * ftol(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_forward_with_transposed_weight_view(dtype):
    """The tied head multiplies by wte.T, a non-contiguous view."""
    rng = np.random.default_rng(4)
    wte, x = randn(rng, 11, 13, dtype=dtype), randn(rng, 3, 13, dtype=dtype)
    out = np.empty((3, 11), dtype)
    linear_forward(out, x, wte.T, None)
    assert rel_err(out, x.astype(np.float64) @ wte.T.astype(np.float64)) < 10 * ftol(dtype)


@pytest.mark.parametrize("N", [1, 6])
def test_linear_backward_fd_and_accumulates(N):
    rng = np.random.default_rng(5)
    C, OC = 13, 6
    x, w, b, dout = randn(rng, N, C), randn(rng, C, OC), randn(rng, OC), randn(rng, N, OC)
    out = np.empty((N, OC))

    def loss():
        linear_forward(out, x, w, b)
        return float(np.sum(out * dout))

    g0 = [randn(rng, N, C), randn(rng, C, OC), randn(rng, OC)]
    dx, dw, db = (g.copy() for g in g0)
    linear_backward(dx, dw, db, dout, x, w, np.full((N, C), np.nan))  # dscratch: its contents do not matter
    assert rel_err(dx - g0[0], numeric_grad(loss, x)) < FD_TOL
    assert rel_err(dw - g0[1], numeric_grad(loss, w)) < FD_TOL
    assert rel_err(db - g0[2], numeric_grad(loss, b)) < FD_TOL
    fresh = np.zeros((N, C))  # a gradient that holds none yet: without dscratch the product goes straight in
    linear_backward(fresh, dw, db, dout, x, w)
    assert rel_err(fresh, numeric_grad(loss, x)) < FD_TOL
    through_scratch = g0[0].copy()
    linear_backward(through_scratch, dw, db, dout, x, w, np.empty((N, C)))
    assert np.array_equal(through_scratch, g0[0] + fresh), "the two paths must give the same sum"


def test_linear_backward_without_dinp_or_bias():
    rng = np.random.default_rng(6)
    x, w, dout = randn(rng, 4, 13), randn(rng, 13, 3), randn(rng, 4, 3)
    dw = np.zeros((13, 3))
    linear_backward(None, dw, None, dout, x, w)
    assert rel_err(dw, x.T @ dout) < 1e-12


@pytest.mark.parametrize("dtype", DTYPES)
def test_bias_add_and_backward(dtype):
    rng = np.random.default_rng(7)
    out, bias, dout = randn(rng, 5, 13, dtype=dtype), randn(rng, 13, dtype=dtype), randn(rng, 5, 13, dtype=dtype)
    want = out.astype(np.float64) + bias
    bias_add(out, bias)
    assert rel_err(out, want) < ftol(dtype)
    db0 = randn(rng, 13, dtype=dtype)
    db = db0.copy()
    bias_backward(db, dout)
    assert rel_err(db, db0.astype(np.float64) + dout.sum(axis=0, dtype=np.float64)) < 10 * ftol(dtype)


# ----------------------------------------------------------------------- norms

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N,C", [(1, 13), (6, 13), (4, 5)])
def test_layernorm_forward_matches_numpy(dtype, N, C):
    rng = np.random.default_rng(8)
    x, w, b = randn(rng, N, C, dtype=dtype, scale=3), randn(rng, C, dtype=dtype), randn(rng, C, dtype=dtype)
    out, mean, rstd = np.empty((N, C), dtype), np.empty(N, dtype), np.empty(N, dtype)
    layernorm_forward(out, mean, rstd, x, w, b)
    x64 = x.astype(np.float64)
    want, _ = ref.layernorm_fwd(x64, w.astype(np.float64), b.astype(np.float64))
    assert rel_err(out, want) < 10 * ftol(dtype)
    assert rel_err(mean, x64.mean(axis=1)) < 10 * ftol(dtype)
    assert rel_err(rstd, 1 / np.sqrt(x64.var(axis=1) + 1e-5)) < 10 * ftol(dtype)


@pytest.mark.parametrize("N,C", [(1, 13), (5, 13), (3, 2)])
def test_layernorm_backward_fd_and_accumulates(N, C):
    rng = np.random.default_rng(9)
    x, w, b, dout = randn(rng, N, C, scale=2), randn(rng, C), randn(rng, C), randn(rng, N, C)
    out, mean, rstd = np.empty((N, C)), np.empty(N), np.empty(N)

    def loss():
        layernorm_forward(out, mean, rstd, x, w, b)
        return float(np.sum(out * dout))

    loss()
    g0 = [randn(rng, N, C), randn(rng, C), randn(rng, C)]
    dx, dw, db = (g.copy() for g in g0)
    layernorm_backward(dx, dw, db, dout, x, w, mean, rstd)
    assert rel_err(dx - g0[0], numeric_grad(loss, x)) < FD_TOL
    assert rel_err(dw - g0[1], numeric_grad(loss, w)) < FD_TOL
    assert rel_err(db - g0[2], numeric_grad(loss, b)) < FD_TOL


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N,C", [(1, 13), (6, 13)])
def test_rmsnorm_forward_matches_numpy(dtype, N, C):
    rng = np.random.default_rng(10)
    x, w = randn(rng, N, C, dtype=dtype, scale=3), randn(rng, C, dtype=dtype)
    out, rstd = np.empty((N, C), dtype), np.empty(N, dtype)
    rmsnorm_forward(out, rstd, x, w)
    x64 = x.astype(np.float64)
    want = x64 / np.sqrt((x64 ** 2).mean(axis=1, keepdims=True) + 1e-5) * w
    assert rel_err(out, want) < 10 * ftol(dtype)
    assert rel_err(rstd, 1 / np.sqrt((x64 ** 2).mean(axis=1) + 1e-5)) < 10 * ftol(dtype)


@pytest.mark.parametrize("N,C", [(1, 13), (5, 13), (3, 2)])
def test_rmsnorm_backward_fd_and_accumulates(N, C):
    rng = np.random.default_rng(11)
    x, w, dout = randn(rng, N, C, scale=2), randn(rng, C), randn(rng, N, C)
    out, rstd = np.empty((N, C)), np.empty(N)

    def loss():
        rmsnorm_forward(out, rstd, x, w)
        return float(np.sum(out * dout))

    loss()
    dx0, dw0 = randn(rng, N, C), randn(rng, C)
    dx, dw = dx0.copy(), dw0.copy()
    rmsnorm_backward(dx, dw, dout, x, w, rstd)
    assert rel_err(dx - dx0, numeric_grad(loss, x)) < FD_TOL
    assert rel_err(dw - dw0, numeric_grad(loss, w)) < FD_TOL


# ----------------------------------------------------------------- activations

def gelu_numpy(x):
    """The tanh form, written out here (the kernel computes x * sigmoid(2u), the same function)."""
    x = x.astype(np.float64)
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_gelu_and_relu_forward_match_numpy(dtype):
    rng = np.random.default_rng(12)
    x = randn(rng, 5, 13, dtype=dtype, scale=3)
    x[0, :4] = [0.0, -30.0, 30.0, 1e-3]  # zero, saturated both ways, tiny
    out = np.empty_like(x)
    act.gelu_forward(out, x)
    assert out.dtype == dtype
    assert rel_err(out, gelu_numpy(x)) < 10 * ftol(dtype)
    act.relu_forward(out, x)
    assert np.array_equal(out, np.maximum(x, 0))


@pytest.mark.parametrize("kernel", sorted(act.ACTIVATION_KERNELS))
@pytest.mark.parametrize("N,C", [(1, 13), (4, 13)])
def test_activation_backward_fd_and_accumulates(kernel, N, C):
    rng = np.random.default_rng(13)
    x, dout = randn(rng, N, C, scale=2), randn(rng, N, C)
    x[np.abs(x) < 1e-3] = 0.5  # keep ReLU's kink away from the finite-difference step
    fwd, bwd = act.ACTIVATION_KERNELS[kernel]
    out = np.empty_like(x)

    def loss():
        fwd(out, x)
        return float(np.sum(out * dout))

    dx0 = randn(rng, N, C)
    dx = dx0.copy()
    bwd(dx, x, dout)
    assert rel_err(dx - dx0, numeric_grad(loss, x)) < FD_TOL


def test_gelu_backward_float32_matches_float64():
    rng = np.random.default_rng(14)
    x, dout = randn(rng, 4, 13, scale=3), randn(rng, 4, 13)
    d64, d32 = np.zeros_like(x), np.zeros((4, 13), np.float32)
    act.gelu_backward(d64, x, dout)
    act.gelu_backward(d32, x.astype(np.float32), dout.astype(np.float32))
    assert rel_err(d32, d64) < 1e-5


@pytest.mark.parametrize("dtype", DTYPES)
def test_residual_forward_and_add_inplace(dtype):
    rng = np.random.default_rng(15)
    a, b = randn(rng, 3, 13, dtype=dtype), randn(rng, 3, 13, dtype=dtype)
    out = np.full_like(a, np.nan)
    act.residual_forward(out, a, b)
    assert rel_err(out, a.astype(np.float64) + b) < ftol(dtype)
    dst = a.copy()
    act.add_inplace(dst, b)  # the residual backward: each input's gradient += dout
    assert np.array_equal(dst, out)


# --------------------------------------------------------------------- dropout

@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout_mask_fraction_scale_and_expectation(p):
    rng = np.random.default_rng(16)
    N, C = 200, 51
    x = np.ones((N, C), np.float32) * 2.0
    uniform = rng.random((N, C), dtype=np.float32)
    out, scale = np.empty_like(x), np.empty_like(x)
    act.dropout_forward(out, scale, x, uniform, p)
    dropped = scale == 0
    assert abs(dropped.mean() - p) < 0.02, f"dropped {dropped.mean():.3f} of the entries with p={p}"
    assert np.allclose(scale[~dropped], 1 / (1 - p), rtol=1e-6)
    assert np.array_equal(dropped, uniform < p)
    assert np.array_equal(out, x * scale)
    assert abs(out.mean() - 2.0) < 0.05, "inverted dropout must preserve the expectation"
    dout = rng.standard_normal((N, C)).astype(np.float32)
    dx0 = rng.standard_normal((N, C)).astype(np.float32)
    dx = dx0.copy()
    act.dropout_backward(dx, dout, scale)
    assert np.allclose(dx - dx0, dout * scale, atol=1e-6)
    assert np.all(dx[dropped] == dx0[dropped]), "a dropped entry passed gradient"


def test_dropout_zero_rate_is_identity_and_backward_fd():
    rng = np.random.default_rng(17)
    x, uniform = randn(rng, 3, 13), rng.random((3, 13))
    out, scale = np.empty_like(x), np.empty_like(x)
    act.dropout_forward(out, scale, x, uniform, 0.0)
    assert np.array_equal(out, x)
    dout = randn(rng, 3, 13)

    def loss():
        act.dropout_forward(out, scale, x, uniform, 0.3)  # the same draws: the same mask every call
        return float(np.sum(out * dout))

    loss()
    dx = np.zeros_like(x)
    act.dropout_backward(dx, dout, scale)
    assert rel_err(dx, numeric_grad(loss, x)) < FD_TOL


# --------------------------------------------------------- softmax, cross-entropy

def softmax_numpy(z):
    z = z.astype(np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_and_crossentropy_forward_match_numpy(dtype):
    rng = np.random.default_rng(18)
    N, V = 5, 11
    z = randn(rng, N, V, dtype=dtype, scale=3)
    t = rng.integers(0, V, N).astype(np.int32)
    probs, losses = np.empty_like(z), np.empty(N, dtype)
    softmax_forward(probs, z)
    assert rel_err(probs, softmax_numpy(z)) < 10 * ftol(dtype)
    crossentropy_forward(losses, z, t)
    assert rel_err(losses, -np.log(softmax_numpy(z)[np.arange(N), t])) < 10 * ftol(dtype)


def test_softmax_backward_fd_and_accumulates():
    rng = np.random.default_rng(19)
    z, dprobs = randn(rng, 4, 11), randn(rng, 4, 11)
    probs = np.empty_like(z)

    def loss():
        softmax_forward(probs, z)
        return float(np.sum(probs * dprobs))

    loss()
    dz0 = randn(rng, 4, 11)
    dz = dz0.copy()
    softmax_backward(dz, dprobs, probs)
    assert rel_err(dz - dz0, numeric_grad(loss, z)) < FD_TOL


@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_crossentropy_equals_separate_kernels(dtype):
    rng = np.random.default_rng(20)
    N, V = 6, 11
    z = randn(rng, N, V, dtype=dtype, scale=2)
    t = rng.integers(0, V, N).astype(np.int32)
    losses, fused_losses = np.empty(N, dtype), np.empty(N, dtype)
    crossentropy_forward(losses, z, t)
    dz = np.full_like(z, np.nan)  # written, not accumulated
    crossentropy_softmax_backward(fused_losses, dz, z, t, 1.0 / N)
    assert rel_err(fused_losses, losses) < 10 * ftol(dtype)
    probs = np.empty_like(z)
    softmax_forward(probs, z)
    want = (probs.astype(np.float64) - np.eye(V)[t]) / N
    assert rel_err(dz, want) < 10 * ftol(dtype)


def test_fused_crossentropy_gradient_fd():
    rng = np.random.default_rng(21)
    N, V = 5, 11
    z = randn(rng, N, V, scale=2)
    t = rng.integers(0, V, N).astype(np.int32)
    losses = np.empty(N)

    def loss():
        crossentropy_forward(losses, z, t)
        return float(losses.mean())

    dz = np.empty_like(z)
    crossentropy_softmax_backward(losses, dz, z, t, 1.0 / N)
    assert rel_err(dz, numeric_grad(loss, z)) < FD_TOL


@pytest.mark.parametrize("dtype", DTYPES)
def test_crossentropy_with_huge_logits_stays_finite(dtype):
    V = 7
    z = np.zeros((3, V), dtype)
    z[:, 0] = 1e4
    z[2, 3] = -1e4
    t = np.array([0, 1, 3], np.int32)
    losses, dz, probs = np.empty(3, dtype), np.empty_like(z), np.empty_like(z)
    crossentropy_forward(losses, z, t)
    assert np.all(np.isfinite(losses))
    assert rel_err(losses, [0.0, 1e4, 2e4]) < 1e-6
    crossentropy_softmax_backward(losses, dz, z, t, 1.0)
    assert np.all(np.isfinite(dz))
    assert rel_err(dz[1], np.eye(V)[0] - np.eye(V)[1]) < 1e-6  # all mass on token 0, target 1
    softmax_forward(probs, z)
    assert np.all(np.isfinite(probs)) and rel_err(probs[:, 0], 1.0) < 1e-6


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("where", [0, 5, 40])  # the first logit, one inside the eight-lane max, one in its tail
def test_a_nan_logit_makes_its_rows_loss_nan_and_leaves_the_other_rows_alone(dtype, where):
    rng = np.random.default_rng(8)
    N, V = 4, 43
    z, t = randn(rng, N, V, dtype=dtype), np.array([1, 2, 3, 4], np.int32)
    losses, dz = np.empty(N, dtype), np.empty_like(z)
    crossentropy_softmax_backward(losses, dz, z, t, 1.0 / N)
    want_losses, want_dz = losses.copy(), dz.copy()
    z[2, where] = np.nan
    crossentropy_softmax_backward(losses, dz, z, t, 1.0 / N)
    assert np.isnan(losses[2]) and np.isnan(dz[2]).all()
    rows = [0, 1, 3]
    assert np.array_equal(losses[rows], want_losses[rows]) and np.array_equal(dz[rows], want_dz[rows])


# ------------------------------------------------------------------- attention

def attention_numpy(qkv, NH, scale, causal):
    """y (B, T, C) and probabilities (B, NH, T, T) in float64, from the fused projection (B, T, 3C)."""
    B, T, C3 = qkv.shape
    C = C3 // 3
    q, k, v = (qkv[..., i * C:(i + 1) * C].astype(np.float64).reshape(B, T, NH, -1).transpose(0, 2, 1, 3)
               for i in range(3))
    s = scale * q @ k.transpose(0, 1, 3, 2)
    if causal:
        s = np.where(np.tril(np.ones((T, T), bool)), s, -np.inf)
    p = softmax_numpy(s)
    return (p @ v).transpose(0, 2, 1, 3).reshape(B, T, C), p


def attention_buffers(B, T, NH, HS, dtype=np.float64):
    """out, q, k, v, att, yh in the kernel's argument order."""
    shp = (B, NH, T, HS)
    return (np.empty((B, T, NH * HS), dtype), np.empty(shp, dtype), np.empty(shp, dtype), np.empty(shp, dtype),
            np.empty((B, NH, T, T), dtype), np.empty(shp, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,T,NH,HS", ATTN_SHAPES)
@pytest.mark.parametrize("causal", [True, False])
def test_attention_forward_matches_numpy(dtype, B, T, NH, HS, causal):
    rng = np.random.default_rng(22)
    qkv = randn(rng, B, T, 3 * NH * HS, dtype=dtype)
    out, q, k, v, att, yh = attention_buffers(B, T, NH, HS, dtype)
    scale = 1 / math.sqrt(HS)
    attention_forward(out, q, k, v, att, yh, qkv, scale, causal)
    y, p = attention_numpy(qkv, NH, scale, causal)
    assert rel_err(out, y) < 10 * ftol(dtype)
    assert rel_err(att, p) < 10 * ftol(dtype)
    if causal:
        assert np.all(att[..., np.triu(np.ones((T, T), bool), k=1)] == 0), "a future key got probability"


@pytest.mark.parametrize("B,T,NH,HS", ATTN_SHAPES)
def test_attention_backward_fd_and_accumulates(B, T, NH, HS):
    rng = np.random.default_rng(23)
    C = NH * HS
    qkv, dout = randn(rng, B, T, 3 * C), randn(rng, B, T, C)
    out, q, k, v, att, yh = attention_buffers(B, T, NH, HS)
    scale = 1 / math.sqrt(HS)

    def loss():
        attention_forward(out, q, k, v, att, yh, qkv, scale, True)
        return float(np.sum(out * dout))

    loss()
    dqkv0 = randn(rng, B, T, 3 * C)
    dqkv = dqkv0.copy()
    scratch = [np.full(s.shape, np.nan) for s in (q, k, v, att, yh)]  # dq, dk, dv, datt, dyh
    attention_backward(dqkv, *scratch, dout, q, k, v, att, scale)
    assert rel_err(dqkv - dqkv0, numeric_grad(loss, qkv)) < FD_TOL


def test_attention_causal_mask_blocks_the_future():
    """Changing keys/values at t >= t0 leaves outputs before t0 unchanged, and their gradient is 0 there."""
    rng = np.random.default_rng(24)
    B, T, NH, HS, t0 = 2, 6, 3, 4, 3
    C = NH * HS
    qkv = randn(rng, B, T, 3 * C)
    out, q, k, v, att, yh = attention_buffers(B, T, NH, HS)
    attention_forward(out, q, k, v, att, yh, qkv, 0.5, True)
    before = out.copy()
    qkv2 = qkv.copy()
    qkv2[:, t0:, C:] += 10 * rng.standard_normal((B, T - t0, 2 * C))  # future keys and values only
    attention_forward(out, q, k, v, att, yh, qkv2, 0.5, True)
    assert np.array_equal(out[:, :t0], before[:, :t0])
    assert not np.allclose(out[:, t0:], before[:, t0:])
    dout = randn(rng, B, T, C)
    dout[:, t0:] = 0.0  # only the past carries gradient
    dqkv = np.zeros_like(qkv)
    scratch = [np.empty(s.shape) for s in (q, k, v, att, yh)]
    attention_backward(dqkv, *scratch, dout, q, k, v, att, 0.5)
    assert np.all(dqkv[:, t0:] == 0), "a future position received gradient"
    assert np.any(dqkv[:, :t0] != 0)


def test_attention_softmax_kernels_fd():
    """The in-place masked softmax and its backward on raw scores, with a scale."""
    rng = np.random.default_rng(25)
    B, NH, T, scale = 2, 3, 5, 0.37
    scores, dprobs = randn(rng, B, NH, T, T), randn(rng, B, NH, T, T)
    att = np.empty_like(scores)

    def loss():
        att[...] = scores
        attention_softmax_forward(att, scale, True)
        return float(np.sum(att * dprobs))

    loss()
    datt = dprobs.copy()
    attention_softmax_backward(datt, att, scale)
    want = numeric_grad(loss, scores)
    assert rel_err(datt, want) < FD_TOL
    assert np.all(datt[..., np.triu(np.ones((T, T), bool), k=1)] == 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_head_layout_kernels_are_exact_and_adjoint(dtype):
    rng = np.random.default_rng(26)
    B, T, NH, HS = 2, 5, 3, 4
    C = NH * HS
    qkv = randn(rng, B, T, 3 * C, dtype=dtype)
    q, k, v = (np.empty((B, NH, T, HS), dtype) for _ in range(3))
    split_heads(q, k, v, qkv)
    for i, part in enumerate((q, k, v)):
        want = qkv[..., i * C:(i + 1) * C].reshape(B, T, NH, HS).transpose(0, 2, 1, 3)
        assert np.array_equal(part, want)
    dqkv0 = randn(rng, B, T, 3 * C, dtype=dtype)
    dqkv = dqkv0.copy()
    merge_qkv_grad(dqkv, q, k, v)  # the backward of a permutation is its inverse, added on
    assert np.array_equal(dqkv, dqkv0 + qkv)
    yh, out = randn(rng, B, NH, T, HS, dtype=dtype), np.empty((B, T, C), dtype)
    merge_heads(out, yh)
    assert np.array_equal(out, yh.transpose(0, 2, 1, 3).reshape(B, T, C))
    back0 = randn(rng, B, NH, T, HS, dtype=dtype)
    back = back0.copy()
    split_heads_grad(back, out)
    assert np.array_equal(back, back0 + yh)


@pytest.mark.parametrize("NKV", [3, 1])  # key/value heads: as many as the query heads, and MQA's one
@pytest.mark.parametrize("compiled", ["serial", "parallel"])
def test_split_heads_reads_each_head_of_q_k_and_v_from_the_fused_rows(NKV, compiled):
    rng = np.random.default_rng(27)
    B, T, NH, HS = 2, 7, 3, 5
    C, CK = NH * HS, NKV * HS
    qkv = randn(rng, B, T, C + 2 * CK, dtype=np.float32)
    q, k, v = np.full((B, NH, T, HS), np.nan, np.float32), np.full((B, NKV, T, HS), np.nan, np.float32), \
        np.full((B, NKV, T, HS), np.nan, np.float32)
    getattr(split_heads, compiled)(q, k, v, qkv)
    for part, lo, n in ((q, 0, NH), (k, C, NKV), (v, C + CK, NKV)):
        want = qkv[..., lo:lo + n * HS].reshape(B, T, n, HS).transpose(0, 2, 1, 3)
        assert np.array_equal(part, want)


def test_serial_and_parallel_compiles_agree_bit_for_bit(monkeypatch):
    """`@wide` kernels run serially on small arrays: force each path through a whole step and compare."""
    from simulator.config import ModelConfig
    from simulator.kernels.cpu import jit
    from simulator.model.gpt import GPT

    def step(threshold):
        monkeypatch.setattr(jit, "PARALLEL_MIN_ELEMENTS", threshold)
        for norm, activation in (("layernorm", "gelu"), ("rmsnorm", "silu")):
            cfg = ModelConfig(vocab_size=23, d_model=24, n_layer=2, n_head=3, seq_len=9, norm=norm,
                              activation=activation)
            m = GPT(cfg, np.float32)
            m.init_weights(np.random.default_rng(0))
            ids = np.random.default_rng(1).integers(0, 23, (3, 9))
            yield m.forward(ids, np.roll(ids, -1, axis=1))
            m.loss_and_dlogits()
            m.backward()
            yield m.grads.copy()

    serial, parallel = list(step(1 << 60)), list(step(0))
    for a, b in zip(serial, parallel, strict=True):
        assert np.array_equal(a, b)


def test_fast_exp_is_exp_to_float32_rounding_and_keeps_nan():
    from numba import njit

    from simulator.kernels.cpu.fastexp import fast_exp

    @njit
    def apply(out, x):
        for i in range(x.size):
            out[i] = fast_exp(x[i])

    x = np.linspace(-87.0, 88.0, 200_001).astype(np.float32)
    out = np.empty_like(x)
    apply(out, x)
    ref = np.exp(x.astype(np.float64))
    assert np.max(np.abs(out - ref) / ref) < 2e-7
    special = np.array([np.nan, -np.inf, -200.0, 0.0, 200.0], np.float32)
    got = np.empty_like(special)
    apply(got, special)
    assert np.isnan(got[0]) and 0 <= got[1] < 1e-37 and 0 <= got[2] < 1e-37 and got[3] == 1.0
    assert np.isfinite(got[4]) and got[4] > 1e38  # clamped, not inf
    x64 = np.linspace(-30.0, 30.0, 61)
    out64 = np.empty_like(x64)
    apply(out64, x64)
    assert np.max(np.abs(out64 - np.exp(x64)) / np.exp(x64)) < 1e-15  # float64 takes libm, not the polynomial


def test_attention_softmax_rows_sum_to_one_at_scores_of_1e15():
    """The top key gets exp(0) = 1 exactly, so a row of huge scores never sums to 0 (a diverging run's scores)."""
    rng = np.random.default_rng(27)
    att = (1e15 * rng.standard_normal((2, 3, 64, 64))).astype(np.float32)
    attention_softmax_forward(att, 0.35355338, True)
    assert np.all(np.isfinite(att))
    assert np.allclose(att.sum(axis=-1, dtype=np.float64), 1.0, atol=1e-5)
