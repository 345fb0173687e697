"""Local attention (attention.mask: local, window, global tokens) in both impls.

Kernels against a float64 numpy reference that builds the mask explicitly (simulator.attention_mask),
gradients against central finite differences on odd shapes, the whole model against the numpy
reference model, the defaults bit-identical to calls without the window, and the preset checks.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from simulator.attention_mask import check_window, key_mask
from simulator.config import AttentionConfig
from simulator.kernels.cpu.attention import (
    attention_heads_backward,
    attention_heads_forward,
    blas_heads_backward,
    causal_blocks,
    window_starts,
)
from simulator.kernels.cpu.attention_tiled import tiled_attention_backward, tiled_attention_forward
from simulator.presets import PresetError, parse_preset_text
from simulator.reference import reference_loss_and_grads
from tests.helpers import analytic, numeric_grad_at, random_model
from tests.test_attention_model import TINY, params_of


def reference(q, k, v, kv_len, scale, window, n_global, dy):
    """float64 y and the gradients of sum(y * dy) with the (T, T) local mask written out."""
    q, k, v, dy = (a.astype(np.float64) for a in (q, k, v, dy))
    B, NH, T, HS = q.shape
    group = NH // k.shape[1]
    kk, vv = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
    pad = np.arange(T)[None, :] < np.asarray(kv_len)[:, None]  # (B, T) real keys
    mask = pad[:, None, None, :] & key_mask(T, "local", window, n_global)[None, None]  # (B, 1, T, T)
    s = np.where(mask, scale * q @ kk.transpose(0, 1, 3, 2), -np.inf)
    mx = s.max(-1, keepdims=True)
    e = np.exp(s - np.where(np.isfinite(mx), mx, 0.0))
    z = e.sum(-1, keepdims=True)
    p = e / np.where(z > 0, z, 1.0)
    y = p @ vv
    dp = dy @ vv.transpose(0, 1, 3, 2)
    ds = p * (dp - (dp * p).sum(-1, keepdims=True))
    dq = scale * ds @ kk
    dk = (scale * ds.transpose(0, 1, 3, 2) @ q).reshape(B, -1, group, T, HS).sum(2)
    dv = (p.transpose(0, 1, 3, 2) @ dy).reshape(B, -1, group, T, HS).sum(2)
    return y, dq, dk, dv


def run(impl, q, k, v, kv_len, scale, dy, window, n_global, tiles=(5, 3)):
    """(y, dq, dk, dv) from one impl's forward and backward."""
    B, NH, T, HS = q.shape
    y = np.zeros_like(q)
    dq, dk, dv = np.zeros_like(q), np.zeros_like(k), np.zeros_like(v)
    if impl == "tiled":
        lse = np.zeros((B, NH, T), q.dtype)
        tiled_attention_forward(y, lse, q, k, v, kv_len, scale, True, *tiles, window, n_global)
        tiled_attention_backward(dq, dk, dv, dy, q, k, v, y, lse, kv_len, scale, True, *tiles, window, n_global)
    else:
        att, datt = np.zeros((B, NH, T, T), q.dtype), np.zeros((B, NH, T, T), q.dtype)
        attention_heads_forward(y, att, q, k, v, scale, True, kv_len, window, n_global)
        attention_heads_backward(dq, dk, dv, datt, dy.copy(), q, k, v, att, scale, True, kv_len, window, n_global)
    return y, dq, dk, dv


def tensors(B, NH, NKV, T, HS, dtype, seed):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(B, NH, T, HS)).astype(dtype)
    k = rng.normal(size=(B, NKV, T, HS)).astype(dtype)
    v = rng.normal(size=(B, NKV, T, HS)).astype(dtype)
    dy = rng.normal(size=(B, NH, T, HS)).astype(dtype)
    return q, k, v, dy


# window, n_global, tiles (tile_q, tile_k): windows shorter than, equal to and longer than a tile, and T
CASES = [(1, 0, (5, 3)), (4, 0, (5, 3)), (4, 2, (4, 4)), (7, 3, (3, 5)), (9, 0, (8, 4)), (40, 1, (5, 3)),
         (3, 6, (2, 2))]


@pytest.mark.parametrize("impl", ["naive", "tiled"])
@pytest.mark.parametrize("window,n_global,tiles", CASES)
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
def test_local_attention_matches_the_explicit_mask(impl, window, n_global, tiles, dtype, tol):
    B, NH, NKV, T, HS = 2, 4, 2, 23, 5  # GQA, odd T and head size
    q, k, v, dy = tensors(B, NH, NKV, T, HS, dtype, seed=window * 10 + n_global)
    kv_len = np.array([T, 15], np.int32)  # the second row padded
    scale = 0.7
    got = run(impl, q, k, v, kv_len, scale, dy, window, n_global, tiles)
    want = reference(q, k, v, kv_len, scale, window, n_global, dy)
    for name, a, b in zip(("y", "dq", "dk", "dv"), got, want, strict=True):
        assert np.abs(a - b).max() / max(1.0, np.abs(b).max()) < tol, f"{impl} {name}"
    assert np.abs(got[0] - reference(q, k, v, kv_len, scale, T, 0, dy)[0]).max() > 1e-3 or window >= T, \
        "the window changed nothing: the case does not test it"


@pytest.mark.parametrize("impl", ["naive", "tiled"])
def test_local_gradients_match_central_finite_differences(impl):
    B, NH, NKV, T, HS = 1, 3, 1, 13, 3  # MQA, odd everything
    q, k, v, dy = tensors(B, NH, NKV, T, HS, np.float64, seed=5)
    kv_len = np.array([11], np.int32)
    window, n_global, scale = 4, 2, 0.9

    def loss():
        return float((run(impl, q, k, v, kv_len, scale, dy, window, n_global, (4, 3))[0] * dy).sum())

    _, dq, dk, dv = run(impl, q, k, v, kv_len, scale, dy, window, n_global, (4, 3))
    rng = np.random.default_rng(0)
    for x, g in ((q, dq), (k, dk), (v, dv)):
        picked = rng.choice(x.size, 12, replace=False)
        for i, numeric in zip(picked, numeric_grad_at(loss, x, picked), strict=True):
            gi = g.reshape(-1)[i]
            assert abs(gi - numeric) < 1e-7 * max(1.0, abs(numeric)), (impl, i, gi, numeric)
    assert np.abs(dk).max() > 1e-2 and np.abs(dk[0, 0, 11:]).max() == 0  # padded keys get nothing


@pytest.mark.parametrize("impl", ["naive", "tiled"])
def test_defaults_are_bit_identical_to_the_call_without_a_window(impl):
    q, k, v, dy = tensors(2, 2, 2, 19, 8, np.float32, seed=1)
    kv_len = np.array([19, 10], np.int32)
    B, NH, T, HS = q.shape
    outs = []
    for extra in ((), (0, 0)):
        y = np.zeros_like(q)
        if impl == "tiled":
            lse = np.zeros((B, NH, T), q.dtype)
            tiled_attention_forward(y, lse, q, k, v, kv_len, 0.3, True, 4, 4, *extra)
        else:
            att = np.zeros((B, NH, T, T), q.dtype)
            attention_heads_forward(y, att, q, k, v, 0.3, True, kv_len, *extra)
        outs.append(y)
    assert np.array_equal(outs[0], outs[1])


def test_a_window_as_long_as_the_sequence_is_causal_attention():
    q, k, v, dy = tensors(1, 2, 2, 17, 4, np.float64, seed=2)
    kv_len = np.array([17], np.int32)
    for impl in ("naive", "tiled"):
        full = run(impl, q, k, v, kv_len, 0.5, dy, 17, 0)
        y = np.zeros_like(q)
        lse = np.zeros((1, 2, 17))
        tiled_attention_forward(y, lse, q, k, v, kv_len, 0.5, True, 5, 3)
        assert np.abs(full[0] - y).max() < 1e-13, impl


def test_the_kernels_refuse_a_window_without_the_causal_mask():
    with pytest.raises(ValueError, match="causal"):
        check_window(False, 4, 0)
    with pytest.raises(ValueError, match="need a window"):
        check_window(True, 0, 2)
    q, k, v, _ = tensors(1, 1, 1, 6, 2, np.float64, seed=0)
    with pytest.raises(ValueError):
        tiled_attention_forward(np.zeros_like(q), np.zeros((1, 1, 6)), q, k, v, np.array([6], np.int32), 1.0,
                                False, 2, 2, 3, 0)


@pytest.mark.parametrize("impl", ["naive", "tiled"])
def test_a_local_model_equals_the_numpy_reference(impl):
    tiles = dict(tile_q=3, tile_k=2) if impl == "tiled" else {}
    cfg = replace(TINY, positional="rope",
                  attention=AttentionConfig(impl=impl, mask="local", window=3, global_tokens=1, n_kv_head=3, **tiles))
    lengths = np.array([7, 5, 2], np.int32)
    model, ids, targets = random_model(cfg, (3, 7), np.float64, 4)
    loss, logits, grads = analytic(model, ids, targets, lengths)
    rloss, rlogits, rgrads = reference_loss_and_grads(params_of(model), cfg, ids, targets, lengths=lengths)
    assert abs(loss - rloss) < 1e-10 and np.abs(logits - rlogits).max() < 1e-10
    for name in grads:
        assert np.abs(grads[name] - rgrads[name]).max() < 1e-10, name
    causal = replace(cfg, attention=replace(cfg.attention, mask="causal", window=0, global_tokens=0))
    closs, _, _ = reference_loss_and_grads(params_of(model), causal, ids, targets, lengths=lengths)
    assert abs(closs - rloss) > 1e-6, "the window did not change the loss: the check says nothing"


@pytest.mark.parametrize("text,parts", [
    ("  attention:\n    mask: local\n", ["p.yaml:4: model.attention.window: mask local needs a window of at least 1"]),
    ("  attention:\n    mask: local\n    window: -2\n", ["p.yaml:5: model.attention.window: must be at least 0"]),
    ("  attention:\n    window: 8\n", ["p.yaml:4: model.attention.window: 8 is set but model.attention.mask is causal",
                                       "mask: local"]),
    ("  seq_len: 16\n  attention:\n    mask: local\n    window: 4\n    global_tokens: 16\n",
     ["p.yaml:7: model.attention.global_tokens: 16 global tokens in a context of model.seq_len 16"]),
    ("  attention:\n    mask: none\n    global_tokens: 2\n", ["model.attention.global_tokens: 2 is set but",
                                                              "is none"]),
])
def test_local_attention_mistakes_are_one_line(text, parts):
    with pytest.raises(PresetError) as info:
        parse_preset_text("name: x\nmodel:\n" + text, "p.yaml")
    message = str(info.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, message


def test_auto_builds_the_cpu_backend_for_a_feature_cuda_lacks():
    from simulator.backend import backend_setting
    from simulator.config import LoraConfig, ModelConfig, RunConfig, TrainConfig

    lora = ModelConfig(lora=LoraConfig(rank=2))
    assert backend_setting(RunConfig(model=lora, train=TrainConfig(backend="auto"))) == "cpu"
    assert backend_setting(RunConfig(model=lora, train=TrainConfig(backend="cuda"))) == "cuda"  # refused elsewhere
    local = ModelConfig(attention=AttentionConfig(mask="local", window=8))
    assert backend_setting(RunConfig(model=local, train=TrainConfig(backend="auto"))) == "auto"  # the twins run it


def test_the_cli_says_one_line_and_exits_2_on_a_bad_window(tmp_path, capsys):
    from simulator.cli import main

    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nmodel:\n  attention:\n    mask: local\n    window: 0\n", encoding="utf-8")
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "bad.yaml:5: model.attention.window: mask local needs a window" in err, err


def run_windowed_blas(q, k, v, kv_len, scale, dy, window):
    """The BLAS path's forward and backward under a window, every output and datt NaN first; returns datt too."""
    B, NH, T, HS = q.shape
    y, att = np.full_like(q, np.nan), np.full((B, NH, T, T), np.nan, q.dtype)
    dq, dk, dv = np.full_like(q, np.nan), np.full_like(k, np.nan), np.full_like(v, np.nan)
    datt = np.full_like(att, np.nan)
    attention_heads_forward(y, att, q, k, v, scale, True, kv_len, window, 0)
    blas_heads_backward(dq, dk, dv, datt, dy.copy(), q, k, v, att, scale, True, kv_len, window, 0)
    return (y, dq, dk, dv), datt


@pytest.mark.parametrize("NKV", [4, 2])  # MHA and GQA (a key/value head sums its query group)
@pytest.mark.parametrize("window", [1, 20, 70, 300])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
def test_the_blas_backward_under_a_window_skips_the_keys_before_it_and_matches_the_explicit_mask(NKV, window,
                                                                                                 dtype, tol):
    B, NH, T, HS = 2, 4, 131, 5  # two row blocks of odd length
    q, k, v, dy = tensors(B, NH, NKV, T, HS, dtype, seed=window + NKV)
    kv_len = np.array([T, 90], np.int32)  # the second row padded
    got, datt = run_windowed_blas(q, k, v, kv_len, 0.7, dy, window)
    want = reference(q, k, v, kv_len, 0.7, window, 0, dy)
    for name, a, b in zip(("y", "dq", "dk", "dv"), got, want, strict=True):
        assert np.abs(a - b).max() / max(1.0, np.abs(b).max()) < tol, name
    (r0, r1), lo = causal_blocks(T, True)[1], window_starts(causal_blocks(T, True), window, 0)[1]
    assert np.isnan(datt[:, :, r0:r1, :lo]).all(), "the keys before the window were computed"
    assert not np.isnan(datt[:, :, r0:r1, lo:r1]).any()
    assert (lo > 0) == (window < r0)


def test_the_blas_backward_under_a_window_matches_central_finite_differences():
    B, NH, NKV, T, HS = 1, 2, 1, 130, 3
    q, k, v, dy = tensors(B, NH, NKV, T, HS, np.float64, seed=3)
    kv_len, window, scale = np.array([T], np.int32), 9, 0.9

    def loss():
        return float((run_windowed_blas(q, k, v, kv_len, scale, dy, window)[0][0] * dy).sum())

    (_, dq, dk, dv), _ = run_windowed_blas(q, k, v, kv_len, scale, dy, window)
    rng = np.random.default_rng(1)
    for x, g in ((q, dq), (k, dk), (v, dv)):
        picked = rng.choice(x.size, 10, replace=False)
        for i, numeric in zip(picked, numeric_grad_at(loss, x, picked), strict=True):
            gi = g.reshape(-1)[i]
            assert abs(gi - numeric) < 1e-7 * max(1.0, abs(numeric)), (i, gi, numeric)
