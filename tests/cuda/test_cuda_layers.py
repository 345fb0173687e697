"""Embedding, the tiled GEMM, the linear layer, LayerNorm / RMSNorm and the fused softmax + cross-entropy
against their CPU twins (odd sizes: C = 19 over 8 simulated row threads, T = 1, tiles cut at the edges)."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.kernels.cpu import embedding as cpu_emb
from simulator.kernels.cpu import linear as cpu_lin
from simulator.kernels.cpu import norms as cpu_norms
from simulator.kernels.cpu import softmax as cpu_sm
from tests.cuda.twins import DTYPES, close, dev, host, randn


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("T", [1, 5])
def test_embedding(T, dtype, rng):
    from simulator.kernels.cuda import embedding as gpu

    B, C, V = 2, 7, 5
    ids = rng.integers(0, V, (B, T)).astype(np.int32)
    ids[0, 0] = ids[1, 0]  # a token read twice: its gradient rows add
    wte, wpe = randn(rng, (V, C), dtype), randn(rng, (T + 2, C), dtype)
    dout = randn(rng, (B, T, C), dtype)
    dwte0, dwpe0 = randn(rng, (V, C), dtype), randn(rng, (T + 2, C), dtype)
    out_c, dwte_c, dwpe_c = np.empty((B, T, C), dtype), dwte0.copy(), dwpe0.copy()
    cpu_emb.embedding_forward(out_c, ids, wte, wpe)
    cpu_emb.embedding_backward(dwte_c, dwpe_c[:T], dout, ids)
    d_out, d_ids, d_wte, d_wpe, d_dout, d_dwte, d_dwpe = dev(np.zeros((B, T, C), dtype), ids, wte, wpe, dout,
                                                             dwte0, dwpe0)
    gpu.embedding_forward(d_out, d_ids, d_wte, d_wpe)
    gpu.embedding_backward(d_dwte, d_dwpe[:T], d_dout, d_ids)  # a slice of the table, as the model passes
    close(host(d_out), out_c, dtype)
    close(host(d_dwte), dwte_c, dtype)
    close(host(d_dwpe), dwpe_c, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
def test_gemm_transposes_and_accumulate(ta, tb, dtype, rng):
    from simulator.kernels.cuda.gemm import gemm

    M, N, K = 9, 10, 17  # none a multiple of the tile (8 simulated, 16 on a GPU); K spans three tiles
    a = randn(rng, (K, M) if ta else (M, K), dtype)
    b = randn(rng, (N, K) if tb else (K, N), dtype)
    want = (a.T if ta else a) @ (b.T if tb else b)
    c0 = randn(rng, (M, N), dtype)
    d_c, d_a, d_b = dev(c0, a, b)
    gemm(d_c, d_a, d_b, ta, tb, accumulate=True)
    close(host(d_c), c0 + want, dtype, scale=4)
    gemm(d_c, d_a, d_b, ta, tb)
    close(host(d_c), want, dtype, scale=4)
    with pytest.raises(ValueError, match="do not chain"):
        gemm(d_c, d_b, d_a, ta, tb)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tied", [False, True])
def test_linear_forward_backward(tied, dtype, rng):
    """tied: the weight is a transposed view (the head reading wte.T), so is its gradient; tied also runs
    without dscratch, where dinp holds stale numbers and both twins write it (the CPU contract)."""
    from simulator.kernels.cuda import linear as gpu

    N, C, OC = 7, 6, 5
    x, dout = randn(rng, (N, C), dtype), randn(rng, (N, OC), dtype)
    w_store = randn(rng, (OC, C) if tied else (C, OC), dtype)
    bias = None if tied else randn(rng, OC, dtype)
    dw0, dinp0 = randn(rng, w_store.shape, dtype), randn(rng, (N, C), dtype)
    db0 = None if tied else randn(rng, OC, dtype)
    from simulator.kernels.cuda.launch import transposed

    view = transposed if tied else (lambda a: a)  # a device array's own .T is a copy on a GPU

    out_c, dinp_c, dw_c = np.empty((N, OC), dtype), dinp0.copy(), dw0.copy()
    db_c = None if tied else db0.copy()
    cpu_lin.linear_forward(out_c, x, view(w_store), bias)
    scratch = None if tied else np.empty((N, C), dtype)
    cpu_lin.linear_backward(dinp_c, view(dw_c), db_c, dout, x, view(w_store), scratch)

    d_out, d_x, d_dout, d_w, d_dw, d_dinp = dev(np.zeros((N, OC), dtype), x, dout, w_store, dw0, dinp0)
    d_b, d_db = (None, None) if tied else dev(bias, db0)
    gpu.linear_forward(d_out, d_x, view(d_w), d_b)
    gpu.linear_backward(d_dinp, view(d_dw), d_db, d_dout, d_x, view(d_w), None if tied else dev(scratch))
    close(host(d_out), out_c, dtype, scale=4)
    close(host(d_dinp), dinp_c, dtype, scale=4)
    close(host(d_dw), dw_c, dtype, scale=4)
    if not tied:
        close(host(d_db), db_c, dtype, scale=4)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N,C", [(1, 19), (5, 19), (3, 3)])
def test_layernorm(N, C, dtype, rng):
    from simulator.kernels.cuda import norms as gpu

    x = randn(rng, (N, C), dtype, 2.0) + dtype(0.5)
    w, b, dout = randn(rng, C, dtype) + dtype(1), randn(rng, C, dtype), randn(rng, (N, C), dtype)
    dinp0, dw0, db0 = randn(rng, (N, C), dtype), randn(rng, C, dtype), randn(rng, C, dtype)
    out_c, mean_c, rstd_c = np.empty_like(x), np.empty(N, dtype), np.empty(N, dtype)
    dinp_c, dw_c, db_c = dinp0.copy(), dw0.copy(), db0.copy()
    cpu_norms.layernorm_forward(out_c, mean_c, rstd_c, x, w, b)
    cpu_norms.layernorm_backward(dinp_c, dw_c, db_c, dout, x, w, mean_c, rstd_c)
    d = dev(np.zeros_like(x), np.zeros(N, dtype), np.zeros(N, dtype), x, w, b, dout, dinp0, dw0, db0)
    d_out, d_mean, d_rstd, d_x, d_w, d_b, d_dout, d_dinp, d_dw, d_db = d
    gpu.layernorm_forward(d_out, d_mean, d_rstd, d_x, d_w, d_b)
    gpu.layernorm_backward(d_dinp, d_dw, d_db, d_dout, d_x, d_w, d_mean, d_rstd)
    for g, c in ((d_out, out_c), (d_mean, mean_c), (d_rstd, rstd_c), (d_dinp, dinp_c), (d_dw, dw_c), (d_db, db_c)):
        close(host(g), c, dtype, scale=4)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N,C", [(1, 19), (5, 19)])
def test_rmsnorm(N, C, dtype, rng):
    from simulator.kernels.cuda import norms as gpu

    x, w, dout = randn(rng, (N, C), dtype, 2.0), randn(rng, C, dtype) + dtype(1), randn(rng, (N, C), dtype)
    dinp0, dw0 = randn(rng, (N, C), dtype), randn(rng, C, dtype)
    out_c, rstd_c, dinp_c, dw_c = np.empty_like(x), np.empty(N, dtype), dinp0.copy(), dw0.copy()
    cpu_norms.rmsnorm_forward(out_c, rstd_c, x, w)
    cpu_norms.rmsnorm_backward(dinp_c, dw_c, dout, x, w, rstd_c)
    d_out, d_rstd, d_x, d_w, d_dout, d_dinp, d_dw = dev(np.zeros_like(x), np.zeros(N, dtype), x, w, dout, dinp0, dw0)
    gpu.rmsnorm_forward(d_out, d_rstd, d_x, d_w)
    gpu.rmsnorm_backward(d_dinp, d_dw, d_dout, d_x, d_w, d_rstd)
    for g, c in ((d_out, out_c), (d_rstd, rstd_c), (d_dinp, dinp_c), (d_dw, dw_c)):
        close(host(g), c, dtype, scale=4)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_and_fused_cross_entropy(dtype, rng):
    from simulator.kernels.cuda import softmax as gpu

    N, V = 4, 21
    logits = randn(rng, (N, V), dtype, 3.0)
    logits[1] += dtype(1e3)  # any scale: the row max is subtracted
    targets = rng.integers(0, V, N).astype(np.int32)
    dprobs, dlog0 = randn(rng, (N, V), dtype), randn(rng, (N, V), dtype)
    losses_c, dlogits_c, ce_c = np.empty(N, dtype), np.empty((N, V), dtype), np.empty(N, dtype)
    probs_c, dsm_c = np.empty((N, V), dtype), dlog0.copy()
    cpu_sm.crossentropy_softmax_backward(losses_c, dlogits_c, logits, targets, 1.0 / N)
    cpu_sm.crossentropy_forward(ce_c, logits, targets)
    cpu_sm.softmax_forward(probs_c, logits)
    cpu_sm.softmax_backward(dsm_c, dprobs, probs_c)
    d_logits, d_targets, d_dprobs, d_dsm = dev(logits, targets, dprobs, dlog0)
    d_losses, d_dlogits, d_ce, d_probs = dev(np.zeros(N, dtype), np.zeros((N, V), dtype), np.zeros(N, dtype),
                                             np.zeros((N, V), dtype))
    gpu.crossentropy_softmax_backward(d_losses, d_dlogits, d_logits, d_targets, 1.0 / N)
    gpu.crossentropy_forward(d_ce, d_logits, d_targets)
    gpu.softmax_forward(d_probs, d_logits)
    gpu.softmax_backward(d_dsm, d_dprobs, d_probs)
    for g, c in ((d_losses, losses_c), (d_dlogits, dlogits_c), (d_ce, ce_c), (d_probs, probs_c), (d_dsm, dsm_c)):
        close(host(g), c, dtype, scale=4)
