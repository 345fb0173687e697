"""The attention lab inside the model: GQA/MQA, masks, scale, positions, padding, tiled impl, lessons.

Every option is checked three ways: against the numpy reference (1e-10 in float64), against
finite differences of the whole model, and where it has a meaning of its own (padding, entropy,
saturation, stability) against a hand-worked expectation. Weights are drawn large (std 0.4) so
every nonlinearity is in play.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import numpy as np
import pytest

from simulator.config import AttentionConfig, DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
from simulator.data import load_dataset
from simulator.data.lines import PAD, LinesDataset
from simulator.kernels.cpu.attention import attention_heads_backward, attention_heads_forward
from simulator.kernels.cpu.attention_tiled import tiled_attention_backward, tiled_attention_forward
from simulator.kernels.cpu.rope import rope_backward, rope_forward, rope_tables
from simulator.model.gpt import GPT
from simulator.observe import attention_entropy, attention_probs, attention_saturation
from simulator.presets import PresetError, load_preset, override, parse_preset_text
from simulator.reference import reference_loss_and_grads, rotate_pairs
from simulator.session import TrainingSession
from tests.helpers import analytic, random_model, rel_err

# C = 36 (not a multiple of 8), 6 heads of size 6 (even, for rope): GQA with 3 or 2 kv heads, MQA with 1
TINY = ModelConfig(vocab_size=11, d_model=36, n_layer=2, n_head=6, seq_len=7, mlp_ratio=2)
B, T = 3, 7
LENGTHS = np.array([7, 4, 1], dtype=np.int32)  # one full row, one half padded, one with a single real token


def attn(**kw) -> AttentionConfig:
    return AttentionConfig(**kw)



def build(cfg, dtype=np.float64, seed=0, batch=(B, T)):
    return random_model(cfg, batch, dtype, seed)


def params_of(model):
    return {k: v.copy() for k, v in model.p.items()}


# ------------------------------------------------------------------- reference

OPTIONS = list(itertools.product(("causal", "none"), ("sqrt_dk", "none"), (None, 3, 1),
                                 ("learned", "sinusoidal", "none", "rope")))


@pytest.mark.parametrize("impl", ["naive", "tiled"])
def test_every_attention_option_equals_the_reference_float64(impl):
    for k, (mask, scale, n_kv, pos) in enumerate(OPTIONS):
        tiles = dict(tile_q=3, tile_k=2) if impl == "tiled" else {}  # T = 7: uneven tiles
        cfg = replace(TINY, positional=pos, tie_embeddings=k % 2 == 0,
                      attention=attn(impl=impl, mask=mask, scale=scale, n_kv_head=n_kv, **tiles))
        lengths = LENGTHS if k % 3 else None
        model, ids, targets = build(cfg, seed=k)
        loss, logits, grads = analytic(model, ids, targets, lengths)
        rloss, rlogits, rgrads = reference_loss_and_grads(params_of(model), cfg, ids, targets, lengths=lengths)
        what = f"{impl}/{mask}/{scale}/n_kv={n_kv}/{pos}/lengths={lengths}"
        assert set(grads) == set(rgrads), what
        assert abs(loss - rloss) < 1e-10, f"{what}: loss {loss} vs {rloss}"
        assert np.abs(logits - rlogits).max() < 1e-10, what
        for name in grads:
            assert np.abs(grads[name] - rgrads[name]).max() < 1e-10, f"{what}: gradient of {name}"


def test_layout_follows_n_kv_head_and_positional():
    C, HS = TINY.d_model, TINY.head_size
    for n_kv, width in ((None, 3 * C), (3, C + 2 * 3 * HS), (1, C + 2 * HS)):
        model = GPT(replace(TINY, attention=attn(n_kv_head=n_kv)), np.float32)
        assert model.p["h0.attn.qkv.w"].shape == (C, width) and model.p["h1.attn.qkv.b"].shape == (width,)
    mha, mqa = (GPT(replace(TINY, attention=attn(n_kv_head=n)), np.float32) for n in (None, 1))
    assert mha.layout.size - mqa.layout.size == TINY.n_layer * (C + 1) * 2 * (C - HS)
    for pos in ("sinusoidal", "none", "rope"):
        assert "wpe" not in GPT(replace(TINY, positional=pos), np.float32).p, pos
    assert GPT(TINY, np.float32).p["wpe"].shape == (TINY.seq_len, C)


# --------------------------------------------------------- finite differences

FD_CASES = [  # impl, mask, scale, n_kv_head, positional, padded
    ("naive", "none", "sqrt_dk", 3, "rope", True),
    ("tiled", "causal", "none", 1, "sinusoidal", False),
    ("tiled", "none", "sqrt_dk", 2, "none", True),
    ("naive", "causal", "none", 2, "rope", False),
]


@pytest.mark.parametrize("impl,mask,scale,n_kv,pos,padded", FD_CASES)
def test_whole_model_gradient_matches_finite_differences(impl, mask, scale, n_kv, pos, padded):
    cfg = replace(TINY, positional=pos, tie_embeddings=not padded,
                  attention=attn(impl=impl, mask=mask, scale=scale, n_kv_head=n_kv, tile_q=4, tile_k=3))
    lengths = LENGTHS if padded else None
    model, ids, targets = build(cfg, seed=11)
    _, _, grads = analytic(model, ids, targets, lengths)
    rng = np.random.default_rng(1)
    for spec in model.layout:  # the largest-gradient coordinate of each tensor and two random ones
        g, w = grads[spec.name].reshape(-1), model.p[spec.name].reshape(-1)
        for i in {int(np.argmax(np.abs(g)))} | {int(i) for i in rng.choice(g.size, 2, replace=False)}:
            old = w[i]
            w[i] = old + 1e-6
            up = model.forward(ids, targets, lengths)
            w[i] = old - 1e-6
            down = model.forward(ids, targets, lengths)
            w[i] = old
            numeric = (up - down) / 2e-6
            assert rel_err(g[i], numeric) < 1e-5, f"{spec.name}[{i}]: analytic {g[i]} vs numeric {numeric}"
    assert max(np.abs(g).max() for g in grads.values()) > 1e-2, "gradients too small for the check to mean anything"


# ------------------------------------------------------------------ tiled impl

def session_cfg(**model) -> RunConfig:
    return RunConfig(model=ModelConfig(d_model=24, n_layer=2, n_head=4, seq_len=16, **model),
                     optim=OptimConfig(lr=3e-3, warmup_steps=2, decay_steps=50),
                     train=TrainConfig(batch_size=4, seed=3, eval_every=0, stats_every=5))


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-10), ("float32", 2e-5)])
def test_training_with_tiled_gives_the_losses_of_naive(dtype, tol):
    losses, records = {}, {}
    for impl in ("naive", "tiled"):  # tiled with tiles that do not divide T = 16, and its tuned defaults
        cfg = session_cfg(attention=attn(impl=impl, n_kv_head=2, tile_q=5 if impl == "tiled" else 0))
        s = TrainingSession(replace(cfg, train=replace(cfg.train, dtype=dtype)))
        recs = s.run(15)  # statistics at steps 1, 5, 10, 15
        losses[impl], records[impl] = [r.loss for r in recs], recs[-1]
    a, b = losses["naive"], losses["tiled"]
    assert a[-1] < a[0] - 0.2, "the runs should learn"
    assert max(abs(x - y) / abs(x) for x, y in zip(a, b, strict=True)) < tol, (a, b)
    naive, tiled = records["naive"], records["tiled"]  # the tiled record's map is recomputed from its lse
    assert tiled.attention.shape == (16, 16) and np.abs(tiled.attention - naive.attention).max() < 10 * tol
    assert tiled.attention_entropy.shape == (4,) and np.all(tiled.attention_entropy > 0)
    assert np.abs(tiled.attention_entropy - naive.attention_entropy).max() < 100 * tol
    size = np.dtype(dtype).itemsize  # per token: k and v, 2 layers, kv heads, head size 6
    assert tiled.kv_cache_bytes == {"model": 2 * 2 * 2 * 6 * size, "MHA": 2 * 2 * 4 * 6 * size,
                                    "GQA": 2 * 2 * 2 * 6 * size, "MQA": 2 * 2 * 1 * 6 * size}
    assert set(tiled.qkv_grad_norms) == {"h0", "h1"} and all(min(g) > 0 for g in tiled.qkv_grad_norms.values())


def test_tiled_attention_probs_and_entropy_equal_naive():
    cfg = replace(TINY, attention=attn(n_kv_head=3))
    naive, ids, targets = build(cfg, seed=5)
    tiled = GPT(replace(cfg, attention=attn(n_kv_head=3, impl="tiled", tile_q=2, tile_k=3)), np.float64)
    tiled.params[...] = naive.params
    for m in (naive, tiled):
        m.forward(ids, targets, LENGTHS)
    for layer in range(TINY.n_layer):
        assert np.abs(attention_probs(tiled, layer) - attention_probs(naive, layer)).max() < 1e-12
        assert np.abs(attention_entropy(tiled, layer) - attention_entropy(naive, layer)).max() < 1e-12


def test_entropy_of_uniform_attention_is_the_mean_log_of_the_keys():
    """Zero query weights give every visible key the same score: row t of a causal head has entropy log(t+1)."""
    cfg = replace(TINY, n_layer=1)
    model, ids, targets = build(cfg)
    model.p["h0.attn.qkv.w"][:, :cfg.d_model] = 0.0
    model.p["h0.attn.qkv.b"][:cfg.d_model] = 0.0
    model.forward(ids, targets, LENGTHS)
    want = sum(math.log(t + 1) for n in LENGTHS for t in range(n)) / LENGTHS.sum()
    assert np.allclose(attention_entropy(model, 0), want, atol=1e-12)
    assert np.all(attention_saturation(model, 0) == 0)


def test_lse_stays_inside_the_op_so_an_empty_row_is_not_a_divergence():
    """A row with no real token gives lse = -inf (defined); the tensors the ops hand out stay finite."""
    cfg = replace(TINY, attention=attn(impl="tiled", mask="none"))
    model, ids, targets = build(cfg, dtype=np.float32)
    model.ensure_shape(B, T)
    model.set_lengths(np.array([7, 0, 3]))
    model.ids[...] = ids
    handed_out = [t for op in model.ops for t in op.forward().values()]
    assert np.isneginf(model.acts["h0.lse"][1]).all()
    assert all(np.isfinite(t).all() for t in handed_out)


# --------------------------------------------------------------------- kernels

@pytest.mark.parametrize("causal", [True, False])
def test_naive_heads_kernels_do_gqa_padding_and_both_masks_as_the_tiled_ones(causal):
    """The tiled kernels are checked against a float64 reference elsewhere; the naive pair must agree with them."""
    rng = np.random.default_rng(8)
    q, dy = rng.standard_normal((2, 2, 4, 9, 5))  # (B, NH, T, HS)
    k, v = rng.standard_normal((2, 2, 2, 9, 5))  # (B, NKV, T, HS): groups of two query heads
    kv_len = np.array([6, 0], np.int32)  # padding, and a row of nothing but padding (outputs 0)
    yh, att = np.empty_like(q), np.empty((2, 4, 9, 9))
    attention_heads_forward(yh, att, q, k, v, 0.4, causal, kv_len)
    y2, lse = np.empty_like(q), np.empty((2, 4, 9))
    tiled_attention_forward(y2, lse, q, k, v, kv_len, 0.4, causal, 4, 3)
    assert np.abs(yh - y2).max() < 1e-12 and np.all(yh[1] == 0) and np.all(att[0, :, :, 6:] == 0)
    grads = [np.zeros_like(a) for a in (q, k, v)]  # BLAS products: added onto gradients that hold none yet
    attention_heads_backward(*grads, np.empty_like(att), dy, q, k, v, att, 0.4)
    tiled = [np.zeros_like(a) for a in (q, k, v)]
    tiled_attention_backward(*tiled, dy, q, k, v, y2, lse, kv_len, 0.4, causal, 4, 3)
    for got, want in zip(grads, tiled, strict=True):
        assert np.abs(got - want).max() < 1e-12
    assert np.all(grads[1][0, :, 6:] == 0) and np.all(grads[2][0, :, 6:] == 0), "padded keys got gradient"


def test_rope_kernels_rotate_by_position_and_the_backward_is_the_transpose():
    rng = np.random.default_rng(4)
    HS, T = 6, 7
    cos, sin = rope_tables(T + 3, HS, np.float64)
    x = rng.standard_normal((2, 3, T, HS))
    y = x.copy()
    rope_forward(y, cos[:T], sin[:T])
    assert np.abs(y - rotate_pairs(x)).max() < 1e-12, "kernel and reference disagree"
    assert np.allclose(np.linalg.norm(y, axis=-1), np.linalg.norm(x, axis=-1)), "a rotation keeps lengths"
    d = rng.standard_normal(x.shape)
    dx = d.copy()
    rope_backward(dx, cos[:T], sin[:T])
    assert abs(np.sum(y * d) - np.sum(x * dx)) < 1e-12, "<R x, d> must equal <x, R^T d>"
    # the same q and k at every position: after rotation q_t . k_s depends on t - s only
    qk = np.broadcast_to(rng.standard_normal((2, 1, 1, HS)), (2, 1, T, HS)).copy()
    rope_forward(qk, cos[:T], sin[:T])
    scores = qk[0, 0] @ qk[1, 0].T  # (T, T)
    for offset in range(-T + 1, T):
        assert np.ptp(np.diagonal(scores, offset)) < 1e-12
    shifted = x[:, :, :4].copy()  # four rows at positions 3..6 (the offset a KV-cache decoder uses)
    rope_forward(shifted, cos[3:7], sin[3:7])
    placed = np.zeros((2, 3, 7, HS))
    placed[:, :, 3:7] = x[:, :, :4]
    assert np.abs(shifted - rotate_pairs(placed)[:, :, 3:7]).max() < 1e-12


# -------------------------------------------------------------------- padding

@pytest.mark.parametrize("mask,impl", [("causal", "naive"), ("none", "tiled"), ("none", "naive")])
def test_padded_loss_equals_the_unpadded_rows_run_alone(mask, impl):
    cfg = replace(TINY, attention=attn(mask=mask, impl=impl, n_kv_head=2))
    model, ids, targets = build(cfg, seed=2)
    loss = model.forward(ids, targets, LENGTHS)
    total = 0.0
    for b, n in enumerate(LENGTHS):  # each row alone, cut to its real tokens: nothing to pad
        model.forward(ids[b:b + 1, :n], targets[b:b + 1, :n])
        total += model.acts["losses"].sum(dtype=np.float64)
    assert abs(loss - total / LENGTHS.sum()) < 1e-12


@pytest.mark.parametrize("mask,impl", [("causal", "tiled"), ("none", "naive"), ("none", "tiled")])
def test_pads_receive_no_gradient_and_give_none(mask, impl):
    cfg = replace(TINY, tie_embeddings=False, attention=attn(mask=mask, impl=impl))
    model, ids, targets = build(cfg, seed=4)
    _, _, grads = analytic(model, ids, targets, LENGTHS)
    real = np.arange(T)[None, :] < LENGTHS[:, None]  # (B, T)
    dstream = model.grads_acts["x0"].reshape(B, T, -1)  # the gradient that reached the embeddings
    assert np.all(dstream[~real] == 0), "a pad position received gradient"
    assert np.any(dstream[real] != 0)
    other = ids.copy(), targets.copy()  # whatever sits in the pad positions changes nothing
    rng = np.random.default_rng(9)
    for a in other:
        a[~real] = rng.integers(0, cfg.vocab_size, (~real).sum())
    _, _, grads2 = analytic(model, *other, LENGTHS)
    assert all(np.array_equal(grads[k], grads2[k]) for k in grads)
    pad_only = np.setdiff1d(other[0][~real], ids[real])  # tokens that occur only in pad positions
    assert np.all(grads2["wte"][pad_only] == 0)


def test_lines_dataset_pads_each_line_and_reports_lengths():
    text = "ab\n\ncdefg\nh\nijklmnopqrstu\nvw\nxy\n"
    ds = LinesDataset(text, 0.34, "t")  # 6 lines (the blank one skipped): the last 2 are validation
    assert (ds.lines("train"), ds.lines("val")) == (4, 2) and ds.pad_id == ds.tokenizer.encode(PAD)[0]
    x, y = np.zeros((40, 6), np.int32), np.zeros((40, 6), np.int32)
    lengths = ds.sample_batch("train", np.random.default_rng(0), x, y)
    dec = ds.tokenizer.decode
    for b in range(40):
        n = lengths[b]
        row, nxt = dec(x[b, :n]), dec(y[b, :n])
        assert row[1:] == nxt[:-1] and np.all(x[b, n:] == ds.pad_id) and np.all(y[b, n:] == ds.pad_id)
        whole = row.startswith("\n") and nxt.endswith("\n") and nxt[:-1] in ("ab", "cdefg", "h")
        window = n == 6 and row + nxt[-1] in "\nijklmnopqrstu\n"  # the long line gives full windows of itself
        assert whole or window, (row, nxt)
    assert set(lengths) == {2, 3, 6}
    with pytest.raises(Exception, match="U\\+0000"):
        LinesDataset("a\x00b\n", 0.5)


def test_a_session_trains_on_padded_lines():
    cfg = session_cfg()
    cfg = replace(cfg, data=DataConfig(kind="lines"), model=replace(cfg.model, seq_len=24),
                  train=replace(cfg.train, batch_size=6, eval_every=3, eval_batches=2))
    s = TrainingSession(cfg)
    assert isinstance(s.dataset, LinesDataset) and s.tokenizer.vocab_size == load_dataset(cfg.data).vocab_size
    recs, padded = [], []
    for _ in range(6):
        recs.append(s.step())
        padded.append(s.model.kv_len.min() < 24)
    assert any(padded) and np.all(np.isfinite([r.loss for r in recs])) and recs[-1].val_loss is not None
    assert recs[-1].loss < recs[0].loss
    assert np.array_equal(s.model.acts["rowmask"].reshape(6, 24), np.arange(24)[None] < s.model.kv_len[:, None])


# ------------------------------------------------------------------- stability

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_attention_softmax_is_stable_at_scores_of_1e4(dtype):
    rng = np.random.default_rng(3)
    q = rng.choice([-1.0, 1.0], (1, 2, 5, 4)) * 50.0  # q.k up to 1e4 with k of size 50 too
    k = rng.choice([-1.0, 1.0], (1, 1, 5, 4)) * 50.0
    k[0, 0, 2] = q[0, 0, 4]  # query 4 of head 0 scores 1e4 on key 2
    v = rng.standard_normal((1, 1, 5, 4))
    q, k, v = (a.astype(dtype) for a in (q, k, v))
    s = (q.astype(np.float64) @ k[:, [0, 0]].astype(np.float64).transpose(0, 1, 3, 2))
    s = np.where(np.tri(5, dtype=bool), s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    want = (p / p.sum(-1, keepdims=True)) @ v[:, [0, 0]].astype(np.float64)
    assert np.abs(s[np.isfinite(s)]).max() == 1e4
    yh, att = np.empty_like(q), np.empty((1, 2, 5, 5), dtype)
    attention_heads_forward(yh, att, q, k, v, 1.0, True)
    y2, lse = np.empty_like(q), np.empty((1, 2, 5), dtype)
    tiled_attention_forward(y2, lse, q, k, v, np.array([5], np.int32), 1.0, True, 2, 2)
    for got in (yh, y2):
        assert np.isfinite(got).all() and np.abs(got - want).max() < 1e-5
    assert np.isfinite(lse).all() and np.allclose(att.sum(-1), 1.0)


def test_a_model_with_scores_of_1e4_stays_finite_and_matches_the_reference():
    """Unscaled scores from huge weights: the naive and the tiled model still agree with the reference."""
    cfg = replace(TINY, attention=attn(scale="none", n_kv_head=3), norm="none")
    model, ids, targets = build(cfg, seed=6)
    for name in ("h0.attn.qkv.w", "h1.attn.qkv.w"):
        model.p[name][...] *= 25.0
    model.forward(ids, targets)
    q, k = model.acts["h0.q"], model.acts["h0.k"]
    assert np.abs(q @ np.repeat(k, 2, axis=1).transpose(0, 1, 3, 2)).max() > 1e4, "scores should reach 1e4"
    loss, logits, grads = analytic(model, ids, targets)
    rloss, rlogits, _ = reference_loss_and_grads(params_of(model), cfg, ids, targets)
    assert np.isfinite(loss) and all(np.isfinite(g).all() for g in grads.values())
    assert abs(loss - rloss) < 1e-9 * max(1.0, abs(rloss)) and rel_err(logits, rlogits) < 1e-9
    tiled = GPT(replace(cfg, attention=attn(scale="none", n_kv_head=3, impl="tiled")), np.float64)
    tiled.params[...] = model.params
    assert abs(tiled.forward(ids, targets) - loss) < 1e-9 * max(1.0, abs(loss))


# ----------------------------------------------------------------- validation

@pytest.mark.parametrize("text,parts", [
    ("model:\n  n_head: 4\n  attention:\n    n_kv_head: 3\n", ["model.attention.n_kv_head: 3 does not divide",
                                                            "model.n_head 4", "use one of 1, 2, 4"]),
    ("model:\n  d_model: 12\n  n_head: 4\n  positional: rope\n", ["model.positional: rope rotates pairs",
                                                                  "head size must be even", "= 3"]),
    ("model:\n  attention:\n    impl: flash\n", ["model.attention.impl: 'flash' is not one of naive, tiled"]),
    ("model:\n  attention:\n    tile_q: -1\n", ["model.attention.tile_q: must be at least 0"]),
    ("model:\n  positional: alibi\n", ["is not one of learned, sinusoidal, none, rope"]),
])
def test_preset_mistakes_in_attention_are_one_clear_line(text, parts):
    with pytest.raises(PresetError) as info:
        parse_preset_text("name: x\n" + text, "p.yaml")
    message = str(info.value)
    assert message.startswith("p.yaml:") and "\n" not in message
    for part in parts:
        assert part in message, message


# --------------------------------------------------------------------- lessons

def honest_loss(session, n=24) -> float:
    """Mean next-token loss from the past only, as generation sees it, on the start of the validation text."""
    val = session.dataset.val_ids[:n + 1]
    out = []
    for t in range(1, n + 1):
        z = session.next_logits(val[:t])
        out.append(np.log(np.exp(z - z.max()).sum()) + z.max() - z[val[t]])
    return float(np.mean(out))


def test_mask_leak_lesson_collapses_the_training_loss_and_ruins_generation():
    short = {"model.d_model": 32, "model.n_layer": 1, "train.watch_layer": 0, "model.seq_len": 24, "optim.lr": 0.01,
             "optim.warmup_steps": 10, "optim.min_lr": 0.0, "train.stats_every": 0, "train.eval_every": 0}
    base = override(load_preset("mask-leak"), **short)
    assert base.model.attention.mask == "none"
    result = {}
    for mask in ("none", "causal"):
        s = TrainingSession(override(base, **{"model.attention.mask": mask}))
        train = np.mean([r.loss for r in s.run(150)[-10:]])
        result[mask] = (train, honest_loss(s))
    (leak_train, leak_honest), (causal_train, causal_honest) = result["none"], result["causal"]
    assert leak_train < 0.5 * causal_train, result  # reads the answer
    assert leak_honest > leak_train + 1.0 and leak_honest > causal_honest + 0.5, result  # cannot generate


def test_unscaled_attention_lesson_saturates_the_softmax():
    short = {"model.n_layer": 1, "train.batch_size": 8, "train.stats_every": 1, "train.eval_every": 0}
    base = override(load_preset("unscaled-attention"), **short)
    assert base.model.attention.scale == "none" and base.model.head_size >= 128
    out = {}
    for scale in ("none", "sqrt_dk"):
        s = TrainingSession(override(base, **{"model.attention.scale": scale}))
        rec = s.step()
        dscores = np.abs(s.model.acts["datt"].astype(np.float64)).sum(-1)[:, :, 1:]  # layer 0's dL/dscores per row
        out[scale] = (float(rec.attention_entropy.mean()), float(rec.attention_saturated.mean()),
                      float(np.median(dscores)))
    (ent_none, sat_none, ds_none), (ent_sqrt, sat_sqrt, ds_sqrt) = out["none"], out["sqrt_dk"]
    assert ent_none < 0.4 and ent_sqrt > 1.5, out  # entropy near zero: one key per query
    assert sat_none > 0.4 and sat_sqrt < 0.05, out
    assert ds_none < ds_sqrt / 10, out  # the typical row passes almost no gradient on to q and k
