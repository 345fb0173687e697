"""The encoder-decoder: the cross-attention op against numpy and against float64 finite differences, the whole
model's gradient, the task's alignments, and the lesson (seeded, its claims, one-line mistakes)."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.config import AttentionConfig, ModelConfig
from simulator.seq2seq.cross_attention import (
    WEIGHTS,
    allocate,
    cache_shapes,
    cross_attention_backward,
    cross_attention_forward,
    reference_forward,
    scratch_shapes,
    weight_shapes,
)
from simulator.seq2seq.model import EncoderDecoder, weighted_loss

B, TD, TE, C, NH = 3, 5, 7, 6, 3  # odd shapes: no two alike, a head size of 2
LENGTHS = np.array([7, 3, 1], np.int32)  # padding on the key side


def _op_inputs(dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B * TD, C)).astype(dtype)
    m = rng.normal(size=(B * TE, C)).astype(dtype)
    W = {k: rng.normal(0, 0.5, s).astype(dtype) for k, s in weight_shapes(C).items()}
    return x, m, W


def _forward(x, m, m_len, W):
    dtype = x.dtype
    cache = allocate(cache_shapes(B, TD, TE, C, NH), dtype)
    out = np.zeros((B * TD, C), dtype)
    cross_attention_forward(out, x, m, m_len, W, cache)
    return out, cache


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
def test_cross_attention_forward_matches_numpy(dtype, tol):
    x, m, W = _op_inputs(dtype)
    lengths = np.array([7, 3, 0], np.int32)  # a row with no source reads nothing (its output is the bias)
    out, cache = _forward(x, m, lengths, W)
    ref, p = reference_forward(x, m, lengths, W, B, TD, TE, NH)
    assert np.max(np.abs(out - ref)) < tol * max(1.0, np.max(np.abs(ref)))
    assert np.max(np.abs(cache["att"] - p)) < tol
    assert np.all(cache["att"][1, :, :, 3:] == 0) and np.all(cache["att"][2] == 0)  # padding keys: probability 0
    np.testing.assert_allclose(cache["att"][:2].sum(-1), 1.0, atol=tol)


def test_cross_attention_backward_matches_finite_differences():
    x, m, W = _op_inputs(np.float64, seed=1)
    R = np.random.default_rng(2).normal(size=(B * TD, C))  # loss = sum(out * R), so d(out) = R

    def loss(x, m, W):
        return float(np.sum(_forward(x, m, LENGTHS, W)[0] * R))

    out, cache = _forward(x, m, LENGTHS, W)
    dx, dm = np.full_like(x, 0.25), np.full_like(m, -0.5)  # the backward adds: start from something
    dW = {k: np.zeros_like(v) for k, v in W.items()}
    cross_attention_backward(dx, dm, dW, R, x, m, LENGTHS, W, cache, allocate(scratch_shapes(B, TD, TE, C, NH),
                                                                              np.float64))
    dx -= 0.25
    dm += 0.5
    eps = 1e-6

    def numeric(arr):
        g = np.zeros_like(arr)
        for i in range(arr.size):
            old = arr.flat[i]
            arr.flat[i] = old + eps
            up = loss(x, m, W)
            arr.flat[i] = old - eps
            down = loss(x, m, W)
            arr.flat[i] = old
            g.flat[i] = (up - down) / (2 * eps)
        return g

    for name, analytic, arr in [("x", dx, x), ("m", dm, m)] + [(k, dW[k], W[k]) for k in WEIGHTS]:
        num = numeric(arr)
        assert np.max(np.abs(analytic - num)) < 1e-7 * max(1.0, np.max(np.abs(num))), name
    # padding keys pass nothing back to the encoder: rows of m past each source's length
    dm3 = dm.reshape(B, TE, C)
    assert np.all(dm3[1, 3:] == 0) and np.all(dm3[2, 1:] == 0) and np.any(dm3[0, 6] != 0)


def _tiny(norm_position="pre", norm="layernorm"):
    common = dict(vocab_size=11, d_model=6, n_head=2, norm=norm, norm_position=norm_position, init_std=0.5)
    enc = ModelConfig(n_layer=1, seq_len=5, attention=AttentionConfig(mask="none"), **common)
    dec = ModelConfig(n_layer=2, seq_len=4, **common)
    return enc, dec


@pytest.mark.parametrize("norm_position, norm", [("pre", "layernorm"), ("post", "layernorm"), ("pre", "rmsnorm")])
def test_the_whole_encoder_decoder_gradient_matches_finite_differences(norm_position, norm):
    enc, dec = _tiny(norm_position, norm)
    model = EncoderDecoder(enc, dec, np.float64)
    model.init_weights(np.random.default_rng(3))
    rng = np.random.default_rng(4)
    src, src_len = rng.integers(4, 11, (3, 5)).astype(np.int32), np.array([5, 2, 4], np.int32)
    tgt_in, tgt_out = rng.integers(1, 11, (3, 4)).astype(np.int32), rng.integers(2, 11, (3, 4)).astype(np.int32)
    tgt_len = np.array([4, 3, 1], np.int32)
    w = (np.arange(4)[None, :] < tgt_len[:, None]).reshape(-1) / tgt_len.sum()

    def loss(grads=False):
        model.encode(src, src_len)
        model.decode(tgt_in, tgt_len)
        return weighted_loss(model.decoder, tgt_out, w, grads)

    loss(True)
    model.backward()
    checked = 0
    for part in (model.encoder, model.decoder):
        analytic = part.grads.copy()
        picks = np.random.default_rng(5)
        for spec in part.layout:
            for i in picks.choice(spec.size, size=min(3, spec.size), replace=False):
                k = spec.offset + int(i)
                old = part.params[k]
                part.params[k] = old + 1e-6
                up = loss()
                part.params[k] = old - 1e-6
                down = loss()
                part.params[k] = old
                num = (up - down) / 2e-6
                assert abs(analytic[k] - num) < 1e-6 * max(1.0, abs(num)), (spec.name, int(i), analytic[k], num)
                checked += 1
    assert checked > 100
    assert np.any(model.decoder.g["h1.cross.kv.w"] != 0) and np.any(model.encoder.g["h0.attn.qkv.w"] != 0)
