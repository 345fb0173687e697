"""The BERT-style encoder: the segment kernel, the whole encoder's gradients, its forward against numpy."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.config import AttentionConfig, ModelConfig
from simulator.encoder.kernels import segment_embedding_backward, segment_embedding_forward
from simulator.encoder.model import Encoder
from tests.helpers import numeric_grad, rel_err

CFG = ModelConfig(vocab_size=11, d_model=6, n_layer=2, n_head=2, seq_len=7, attention=AttentionConfig(mask="none"))


def test_the_segment_kernel_adds_its_rows_and_its_backward_matches_finite_differences():
    rng = np.random.default_rng(0)
    B, T, C = 3, 5, 7  # odd shapes
    base = rng.normal(size=(B, T, C))
    seg = rng.integers(0, 2, (B, T)).astype(np.int32)
    wse = rng.normal(size=(2, C))
    out = base.copy()
    segment_embedding_forward(out, seg, wse)
    np.testing.assert_allclose(out, base + wse[seg], rtol=0, atol=1e-15)
    dout = rng.normal(size=(B, T, C))
    dwse = np.full((2, C), 0.5)  # the backward adds onto what is there
    segment_embedding_backward(dwse, dout, seg)

    def loss():
        o = base.copy()
        segment_embedding_forward(o, seg, wse)
        return float(np.sum(o * dout))

    assert rel_err(dwse - 0.5, numeric_grad(loss, wse)) < 1e-8


def random_encoder(gather: bool, seed: int = 0, cfg: ModelConfig = CFG):
    """A float64 encoder with large random weights and a padded, masked batch of (3, 7)."""
    rng = np.random.default_rng(seed)
    m = Encoder(cfg, np.float64, gather=gather)
    for layout, views in ((m.layout, m.p), (m.extra_layout, m.q)):
        for spec in layout:
            w = rng.normal(0.0, 0.4, spec.shape)
            views[spec.name][...] = 1.0 + w if spec.kind == "norm" and spec.name.endswith(".w") else w
    B, T = 3, cfg.seq_len
    lengths = np.array([T, T - 2, T - 1], np.int32)
    ids = rng.integers(4, cfg.vocab_size, (B, T)).astype(np.int32)
    ids[np.arange(T)[None, :] >= lengths[:, None]] = 0
    seg = (np.arange(T)[None, :] >= 3).astype(np.int32).repeat(B, 0)
    chosen = (rng.random((B, T)) < 0.4) & (np.arange(T)[None, :] < lengths[:, None]) & (np.arange(T)[None, :] > 0)
    chosen[0, 1] = True
    targets = rng.integers(0, cfg.vocab_size, (B, T)).astype(np.int32)
    labels = np.array([0, 1, 1], np.int32)
    batch = (ids, seg, lengths, chosen, targets, labels)
    return m, batch


def total_loss(m, batch) -> float:
    m.run_forward(*batch)
    return m.mlm_loss_and_dlogits() + m.pair_loss_and_dlogits()


@pytest.mark.parametrize("gather", [True, False])
def test_every_gradient_of_the_encoder_matches_float64_finite_differences(gather):
    m, batch = random_encoder(gather)
    total_loss(m, batch)
    m.backward()
    grads = {**{k: v.copy() for k, v in m.g.items()}, **{k: v.copy() for k, v in m.gq.items()}}
    rng = np.random.default_rng(1)
    checked = 0
    for name, x in {**m.p, **m.q}.items():
        flat = x.reshape(-1)
        # the encoder's own tensors (segment table, pooler, classifier) in full; 4 entries of each GPT tensor
        picks = range(flat.size) if name in m.q else rng.choice(flat.size, min(4, flat.size), replace=False)
        for i in picks:
            old = flat[i]
            flat[i] = old + 1e-6
            up = total_loss(m, batch)
            flat[i] = old - 1e-6
            down = total_loss(m, batch)
            flat[i] = old
            num = (up - down) / 2e-6
            assert rel_err(grads[name].reshape(-1)[i], num) < 1e-6, (name, i)
            checked += 1
    assert checked > 100


def test_gathered_and_full_mlm_heads_agree_and_unchosen_positions_get_zero_gradient_at_their_logits():
    full, batch = random_encoder(gather=False)
    gathered, _ = random_encoder(gather=True)
    loss_full, loss_gathered = total_loss(full, batch), total_loss(gathered, batch)
    assert abs(loss_full - loss_gathered) < 1e-12
    chosen = batch[3].reshape(-1)
    dlogits = full.acts["dlogits"]
    assert np.all(dlogits[~chosen] == 0.0) and np.all(np.abs(dlogits[chosen]).sum(axis=1) > 0)
    full.backward()
    gathered.backward()
    for name in full.g:
        assert rel_err(full.g[name], gathered.g[name]) < 1e-12, name
    for name in full.gq:
        assert rel_err(full.gq[name], gathered.gq[name]) < 1e-12, name


# ------------------------------------------------------------------------------------- numpy reference
def _layernorm(x, w, b):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-5) * w + b


def _gelu(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def reference_forward(m: Encoder, ids, seg, lengths):
    """The encoder in plain numpy: bidirectional attention over each row's real tokens, pre-norm blocks."""
    P, Q, cfg = m.p, m.q, m.cfg
    B, T = ids.shape
    C, NH = cfg.d_model, cfg.n_head
    HS = C // NH
    x = P["wte"][ids] + P["wpe"][:T][None] + Q["wse"][seg]
    hidden = np.arange(T)[None, None, None, :] >= lengths[:, None, None, None]  # padding keys, never causal
    for i in range(cfg.n_layer):
        h = _layernorm(x, P[f"h{i}.norm1.w"], P[f"h{i}.norm1.b"])
        qkv = h @ P[f"h{i}.attn.qkv.w"] + P[f"h{i}.attn.qkv.b"]
        q, k, v = (qkv[..., j * C:(j + 1) * C].reshape(B, T, NH, HS).transpose(0, 2, 1, 3) for j in range(3))
        s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(HS)
        s = np.where(hidden, -np.inf, s)
        p = np.exp(s - s.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        y = (p @ v).transpose(0, 2, 1, 3).reshape(B, T, C)
        x = x + y @ P[f"h{i}.attn.proj.w"] + P[f"h{i}.attn.proj.b"]
        h = _layernorm(x, P[f"h{i}.norm2.w"], P[f"h{i}.norm2.b"])
        x = x + _gelu(h @ P[f"h{i}.mlp.fc.w"] + P[f"h{i}.mlp.fc.b"]) @ P[f"h{i}.mlp.proj.w"] + P[f"h{i}.mlp.proj.b"]
    x = _layernorm(x, P["norm_f.w"], P["norm_f.b"])
    logits = x @ P["wte"].T
    pooled = np.tanh(x[:, 0] @ Q["pool.w"] + Q["pool.b"])
    return logits, pooled @ Q["cls.w"] + Q["cls.b"], p


def test_the_forward_with_mask_none_matches_a_numpy_reference():
    m, batch = random_encoder(gather=False, seed=3)
    ids, seg, lengths = batch[:3]
    m.run_forward(*batch)
    logits, pair_logits, att = reference_forward(m, ids, seg, lengths)
    assert rel_err(m.logits(), logits) < 1e-10
    assert rel_err(m.head["pair_logits"], pair_logits) < 1e-10
    # bidirectional: [CLS] (position 0) attends to every real token, and to no padding
    cls = m.cls_attention(m.cfg.n_layer - 1)  # (B, NH, T)
    assert rel_err(cls, att[:, :, 0]) < 1e-10
    for b, n in enumerate(lengths):
        assert np.all(cls[b, :, n - 1] > 0) and np.all(cls[b, :, n:] == 0)


def test_a_later_token_changes_earlier_positions_and_padding_changes_nothing():
    m, batch = random_encoder(gather=False, seed=4)
    ids, seg, lengths, *rest = batch
    m.run_forward(*batch)
    before = m.logits().copy()
    changed = ids.copy()
    changed[0, -1] = (ids[0, -1] + 1 - 4) % 7 + 4  # the last real token of row 0
    changed[1, -1] = 5  # a padding position of row 1
    m.run_forward(changed, seg, lengths, *rest)
    after = m.logits()
    assert np.abs(after[0, 0] - before[0, 0]).max() > 1e-6  # not causal: position 0 sees the last token
    n = lengths[1]
    assert np.array_equal(after[1, :n], before[1, :n])  # padding is hidden from every real position
