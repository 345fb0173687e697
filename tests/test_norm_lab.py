"""The normalization and stability lab in the GPT: BatchNorm, activations, dropout modes, inits, modes, records.

Model checks follow tests/test_model.py: float64, large random weights, central
differences with relative error below 1e-5, and equality with the numpy
reference to 1e-10.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from simulator.checkpoint import load_checkpoint, save_checkpoint
from simulator.config import ModelConfig, OptimConfig, RunConfig, TrainConfig
from simulator.gradcheck import check_gradients
from simulator.model.gpt import GPT
from simulator.model.params import build_layout, init_params
from simulator.observe import dead_fraction, saturated_fraction
from simulator.presets import load_preset, override
from simulator.reference import reference_loss_and_grads
from simulator.session import SessionError, TrainingSession
from tests.helpers import analytic, random_model, rel_err

TINY = ModelConfig(vocab_size=11, d_model=10, n_layer=2, n_head=2, seq_len=5, mlp_ratio=2)
B, T = 3, 5
FD_TOL = 1e-5



def build(cfg, seed=0, batch=(B, T)):
    return random_model(cfg, batch, np.float64, seed)


def worst_fd(model, ids, targets, grads, seed=1) -> dict[str, float]:
    """Worst relative error per tensor: its largest-gradient coordinate and two random ones."""
    rng = np.random.default_rng(seed)
    worst = {}
    for spec in model.layout:
        g, w = grads[spec.name].reshape(-1), model.p[spec.name].reshape(-1)
        picks = {int(np.argmax(np.abs(g)))} | {int(i) for i in rng.choice(g.size, 2, replace=False)}
        errs = []
        for i in picks:
            old, vals = w[i], []
            for x in (old + 1e-6, old - 1e-6):
                w[i] = x
                vals.append(model.forward(ids, targets))
            w[i] = old
            errs.append(rel_err(g[i], (vals[0] - vals[1]) / 2e-6))
        worst[spec.name] = max(errs)
    return worst


def random_running(model, seed=5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    for name, buf in model.buffers.items():
        buf[...] = rng.uniform(0.3, 2.0, buf.shape) if name.endswith("var") else rng.normal(0.0, 0.5, buf.shape)
    return {k: v.copy() for k, v in model.buffers.items()}


# ---------------------------------------------------------------- gradients

@pytest.mark.parametrize("position,training,activation", [("pre", True, "silu"), ("post", True, "tanh"),
                                                           ("pre", False, "sigmoid"), ("post", False, "relu")])
def test_batchnorm_model_matches_finite_differences(position, training, activation):
    cfg = replace(TINY, norm="batchnorm", norm_position=position, activation=activation)
    model, ids, targets = build(cfg, seed=len(activation))
    model.training = training
    if not training:
        random_running(model)
    _, _, grads = analytic(model, ids, targets)
    assert np.abs(grads["h0.norm1.w"]).max() > 1e-3
    bad = {k: e for k, e in worst_fd(model, ids, targets, grads).items() if e >= FD_TOL}
    assert not bad, f"batchnorm/{position}/training={training}: {bad}"


@pytest.mark.parametrize("activation", ["silu", "sigmoid", "tanh"])
def test_new_activations_match_finite_differences(activation):
    cfg = replace(TINY, activation=activation, norm="rmsnorm", norm_position="post")
    model, ids, targets = build(cfg, seed=2, batch=(2, 1))  # T = 1
    _, _, grads = analytic(model, ids, targets)
    bad = {k: e for k, e in worst_fd(model, ids, targets, grads).items() if e >= FD_TOL}
    assert not bad, f"{activation}: {bad}"


@pytest.mark.parametrize("norm,position,activation,training", [
    ("batchnorm", "pre", "gelu", True), ("batchnorm", "post", "silu", True), ("batchnorm", "pre", "tanh", False),
    ("batchnorm", "post", "sigmoid", False), ("layernorm", "pre", "silu", True), ("rmsnorm", "post", "tanh", True)])
def test_model_equals_reference_float64(norm, position, activation, training):
    cfg = replace(TINY, norm=norm, norm_position=position, activation=activation, tie_embeddings=position == "pre")
    model, ids, targets = build(cfg, seed=11)
    model.training = training
    running = None if training else random_running(model)
    loss, logits, grads = analytic(model, ids, targets)
    params = {k: v.copy() for k, v in model.p.items()}
    rloss, rlogits, rgrads = reference_loss_and_grads(params, cfg, ids, targets, running=running)
    assert abs(loss - rloss) < 1e-10 and np.abs(logits - rlogits).max() < 1e-10
    for name in grads:
        assert np.abs(grads[name] - rgrads[name]).max() < 1e-10, name


def test_classic_dropout_gradients_and_reference():
    cfg = replace(TINY, dropout=0.3, dropout_mode="classic")
    model, ids, targets = build(cfg, seed=4)
    state = np.random.default_rng(9).bit_generator.state

    def reset():
        model.dropout_rng.bit_generator.state = state

    reset()
    loss, _, grads = analytic(model, ids, targets)
    mask = model.acts["h0.mlp.mask"]
    assert set(np.unique(mask)) == {0.0, 1.0}, "classic dropout keeps without scaling"
    sites = ["x0"] + [f"h{i}.{b}" for i in range(2) for b in ("attn", "mlp")]
    masks = {s: model.acts[f"{s}.mask"].copy() for s in sites}
    rloss, _, rgrads = reference_loss_and_grads({k: v.copy() for k, v in model.p.items()}, cfg, ids, targets, masks)
    assert abs(loss - rloss) < 1e-10 and max(np.abs(rgrads[k] - grads[k]).max() for k in grads) < 1e-10
    # eval: every unit on, scaled by 1 - p; the backward goes through the same factor
    model.training = False
    loss, _, grads = analytic(model, ids, targets)
    assert np.all(model.acts["h1.attn.mask"] == 0.7)
    masks = {k: np.full(v.shape, 0.7) for k, v in masks.items()}
    rloss, _, rgrads = reference_loss_and_grads({k: v.copy() for k, v in model.p.items()}, cfg, ids, targets, masks)
    assert abs(loss - rloss) < 1e-10 and max(np.abs(rgrads[k] - grads[k]).max() for k in grads) < 1e-10


# ---------------------------------------------------------------- dropout expectation

@pytest.mark.parametrize("mode", ["inverted", "classic"])
def test_dropout_keeps_the_expected_activation_between_train_and_eval(mode):
    p = 0.3
    model = GPT(replace(TINY, dropout=p, dropout_mode=mode, d_model=40, seq_len=50), np.float64)
    model.ensure_shape(50, 50)  # 100,000 elements per draw
    x = model.acts["x0"]
    values = np.random.default_rng(123).uniform(0.5, 1.5, x.shape)  # not the dropout stream's seed
    means = {}
    for training in (True, False):
        model.training = training
        x[...] = values
        model._apply_dropout("x0")
        means[training] = x.mean()
    # the train-mode mean averages 100,000 independent kept-or-dropped values: its standard deviation
    # is at most scale * max(value) * sqrt(p (1 - p) / n); four of those is a generous margin
    scale = 1.0 / (1.0 - p) if mode == "inverted" else 1.0
    sigma = scale * values.max() * np.sqrt(p * (1 - p) / values.size)
    assert abs(means[True] - means[False]) < 4 * sigma
    expected_eval = values.mean() * (1.0 if mode == "inverted" else 1.0 - p)
    assert abs(means[False] - expected_eval) < 1e-12, "eval mode is deterministic"


# ---------------------------------------------------------------- running statistics in the model

def test_model_running_statistics_move_in_train_mode_only():
    cfg = replace(TINY, norm="batchnorm", batchnorm_momentum=0.25)
    model, ids, targets = build(cfg, seed=6)
    assert set(model.buffers) == {f"{s}.running_{k}" for s in ("h0.norm1", "h0.norm2", "h1.norm1", "h1.norm2",
                                                                "norm_f") for k in ("mean", "var")}
    assert all(np.all(v == (0.0 if k.endswith("mean") else 1.0)) for k, v in model.buffers.items())
    model.forward(ids, targets)
    x = model.acts["x0"]  # the input of the first norm (pre-norm)
    assert np.allclose(model.buffers["h0.norm1.running_mean"], 0.25 * x.mean(axis=0), atol=1e-14)
    assert np.allclose(model.buffers["h0.norm1.running_var"], 0.75 + 0.25 * x.var(axis=0, ddof=1), atol=1e-14)
    model.training = False
    before = {k: v.copy() for k, v in model.buffers.items()}
    model.forward(ids, targets)
    assert all(np.array_equal(before[k], model.buffers[k]) for k in before), "eval mode must not move them"


# ---------------------------------------------------------------- session mode

def run_cfg(**model) -> RunConfig:
    return RunConfig(model=ModelConfig(d_model=12, n_layer=2, n_head=2, seq_len=8, mlp_ratio=2, **model),
                     optim=OptimConfig(lr=3e-3, warmup_steps=0, decay_steps=50),
                     train=TrainConfig(batch_size=3, seed=3, eval_every=0, stats_every=1))


@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm", "batchnorm"])
def test_eval_mode_changes_batchnorm_and_nothing_else(norm):
    """The model.eval() question: with dropout 0, LayerNorm and RMSNorm train identically in both modes."""
    a, b = TrainingSession(run_cfg(norm=norm)), TrainingSession(run_cfg(norm=norm))
    b.eval()
    assert (a.mode, b.mode) == ("train", "eval")
    la = [a.step().loss for _ in range(3)]
    lb = [b.step().loss for _ in range(3)]
    assert b.last_record.mode == "eval" and a.last_record.mode == "train"
    if norm == "batchnorm":
        assert la != lb and abs(la[0] - lb[0]) > 1e-3
        assert all(np.all(v == (0.0 if k.endswith("mean") else 1.0)) for k, v in b.model.buffers.items())
    else:
        assert la == lb and np.array_equal(a.model.params, b.model.params)
    b.train()
    assert b.mode == "train" and b.step().mode == "train"


def test_eval_mode_turns_dropout_off_and_mode_cannot_switch_mid_step():
    a, b = TrainingSession(run_cfg(dropout=0.4)), TrainingSession(run_cfg(dropout=0.4))
    c = TrainingSession(run_cfg())
    b.eval()
    c.eval()
    assert b.step().loss == c.step().loss, "eval mode: dropout off, so the rate does not matter"
    assert a.step().loss != b.last_record.loss
    a.step_into()
    with pytest.raises(SessionError, match="finish the current step"):
        a.eval()
    a.step()
    a.eval()
    a.evaluate()
    assert a.mode == "eval" and a.model.training is False, "evaluation returns to the session's mode"


def test_batchnorm_state_in_checkpoints_and_resume_is_bit_identical(tmp_path):
    cfg = run_cfg(norm="batchnorm")
    whole = TrainingSession(cfg)
    for _ in range(4):
        whole.step()
    part = TrainingSession(cfg)
    part.step(), part.step()
    arrays = part.state_arrays()
    assert "buffer.h0.norm1.running_mean" in arrays and arrays["buffer.norm_f.running_var"].shape == (12,)
    save_checkpoint(tmp_path, part)
    resumed = load_checkpoint(tmp_path)
    assert all(np.array_equal(resumed.model.buffers[k], part.model.buffers[k]) for k in part.model.buffers)
    resumed.step(), resumed.step()
    assert np.array_equal(resumed.model.params, whole.model.params)
    assert all(np.array_equal(resumed.model.buffers[k], whole.model.buffers[k]) for k in whole.model.buffers)
    assert resumed.evaluate() == whole.evaluate()
    del arrays["buffer.h1.norm2.running_var"]
    with pytest.raises(SessionError, match="no h1.norm2.running_var"):
        TrainingSession(cfg).load_state_arrays(arrays)


def test_gradcheck_of_a_batchnorm_session_in_both_modes():
    s = TrainingSession(run_cfg(norm="batchnorm", norm_position="post"))
    s.step()
    for mode in ("train", "eval"):
        getattr(s, mode)()
        buffers = {k: v.copy() for k, v in s.model.buffers.items()}
        rows = check_gradients(s, n_per_tensor=1)
        assert max(r.rel_err for r in rows) < 1e-6, mode
        assert all(np.array_equal(buffers[k], s.model.buffers[k]) for k in buffers), "the session is untouched"


def test_sampling_uses_the_running_statistics():
    s = TrainingSession(run_cfg(norm="batchnorm"))
    s.step()
    ids = np.array([1, 2, 3])
    logits = s.next_logits(ids)
    twin = GPT(s.config.model, s.model.dtype)
    twin.params[...] = s.model.params
    twin.training = False
    twin.forward(ids[None, :])
    assert not np.allclose(twin.logits()[0, -1], logits, atol=1e-4), "fresh running statistics differ"
    for k, v in s.model.buffers.items():
        twin.buffers[k][...] = v
    twin.forward(ids[None, :])
    assert np.array_equal(twin.logits()[0, -1].astype(np.float64), logits)


# ---------------------------------------------------------------- initialization

def test_init_schemes():
    cfg = ModelConfig(vocab_size=20, d_model=64, n_layer=8, n_head=4, seq_len=16, init_std=0.05)
    layout = build_layout(cfg)

    def init(**kw):
        params = np.zeros(layout.size)
        views = layout.views(params)
        init_params(views, layout, replace(cfg, **kw), np.random.default_rng(0))
        return views

    g = init(init="gpt2")
    assert g["h3.attn.proj.w"].std() == pytest.approx(0.05 / 4.0, rel=0.05)  # sqrt(2 * 8) = 4
    assert g["h3.mlp.proj.w"].std() == pytest.approx(0.05 / 4.0, rel=0.05)
    assert g["h3.mlp.fc.w"].std() == pytest.approx(0.05, rel=0.05)
    x = init(init="xavier")["h0.mlp.fc.w"]  # (64, 256): uniform within sqrt(6 / 320)
    bound = np.sqrt(6.0 / 320)
    assert np.abs(x).max() <= bound and np.abs(x).max() > 0.95 * bound
    assert init(init="xavier_normal")["h0.mlp.fc.w"].std() == pytest.approx(np.sqrt(2.0 / 320), rel=0.05)
    assert init(init="he")["h0.mlp.proj.w"].std() == pytest.approx(np.sqrt(2.0 / 256), rel=0.05)
    z, c = init(init="zeros"), init(init="constant", init_constant=0.3)
    for name in ("h0.attn.qkv.w", "h5.mlp.proj.w"):
        assert np.all(z[name] == 0.0) and np.all(c[name] == 0.3)
    assert c["wte"].std() == pytest.approx(0.05, rel=0.05), "embeddings stay random: tokens must differ"
    assert np.all(c["h0.norm1.w"] == 1.0) and np.all(c["h0.mlp.fc.b"] == 0.0)


# ---------------------------------------------------------------- records

def test_record_carries_gamma_beta_identity_path_and_unit_statistics():
    s = TrainingSession(run_cfg(norm="layernorm", norm_position="post", activation="sigmoid"))
    before = s.model.params.copy()
    rec = s.step()
    views = s.model.layout.views(before)
    w = views["h1.norm2.w"]
    assert rec.norm_params["h1.norm2.w"] == pytest.approx((w.mean(), w.std(), w.min(), w.max()))
    assert set(rec.norm_params) == {sp.name for sp in s.model.layout if sp.kind == "norm"}
    assert set(rec.identity_fraction) == {"h0.attn", "h0.mlp", "h1.attn", "h1.mlp"}
    # by hand for the first sublayer: LayerNorm's linear part applied to the stream x0, with the statistics
    # of x0 + attn (what the norm used) against those of x0 alone (had the branch added nothing)
    A = s.model.acts
    x = A["x0"].astype(np.float64)
    xc = views["h0.norm1.w"] * (x - x.mean(axis=1, keepdims=True))
    own = 1.0 / np.sqrt((x - x.mean(axis=1, keepdims=True)).var(axis=1) + 1e-5)
    want = np.linalg.norm(xc * A["h0.norm1.rstd"][:, None]) / np.linalg.norm(xc * own[:, None])
    assert rec.identity_fraction["h0.attn"] == pytest.approx(want, rel=1e-6)
    assert all(0.5 < v < 1.1 for v in rec.identity_fraction.values())
    assert set(rec.saturated_fraction) == {"h0", "h1"} and rec.dead_fraction == {}
    assert rec.saturated_fraction["h0"] == saturated_fraction(A["h0.act"], "sigmoid")
    pre = TrainingSession(run_cfg(norm="layernorm", activation="relu")).step()
    assert pre.identity_fraction == dict.fromkeys(("h0.attn", "h0.mlp", "h1.attn", "h1.mlp"), 1.0)
    assert set(pre.dead_fraction) == {"h0", "h1"} and pre.saturated_fraction == {}
    bn = TrainingSession(run_cfg(norm="batchnorm")).step()
    assert set(bn.running_stats) == {"h0.norm1", "h0.norm2", "h1.norm1", "h1.norm2", "norm_f"}
    assert pre.running_stats == {}


def test_saturation_and_dead_units_by_hand():
    out = np.array([[0.001, 0.5, 0.999], [0.2, 0.995, 0.3]])
    assert saturated_fraction(out, "sigmoid") == pytest.approx(3 / 6)
    assert saturated_fraction(np.array([[-0.995, 0.0], [0.98, 1.0]]), "tanh") == pytest.approx(2 / 4)
    pre = np.array([[-1.0, 2.0, 0.0], [-0.5, -1.0, 0.0]])  # unit 1 fires once: alive; units 0 and 2 never
    assert dead_fraction(pre, "relu") == pytest.approx(2 / 3)
    assert dead_fraction(pre, "gelu") is None and saturated_fraction(out, "relu") is None


# ---------------------------------------------------------------- lessons (shipped presets, shortened)

def lesson(name: str, steps: int, **dotted):
    """The shipped preset run for `steps` steps with one evaluation at the end and statistics at the end."""
    cfg = override(load_preset(name), **{"train.steps": steps, "train.eval_every": steps, "train.stats_every": steps,
                                         **dotted})
    session = TrainingSession(cfg)
    return session, session.run(steps)


def test_prenorm_deep_and_postnorm_deep_differ_only_in_the_norm_position():
    # What the two runs show (post-norm stalls on the unigram line, pre-norm's identity fractions are all 1,
    # post-norm's multiply to almost nothing) are the claims of their lesson cards, run by tests/test_cards.py
    pre, post = load_preset("prenorm-deep"), load_preset("postnorm-deep")
    assert pre.model.n_layer == post.model.n_layer == 12 and post.optim.warmup_steps == 0
    assert pre.model == replace(post.model, norm_position="pre") and pre.optim == post.optim


# overfit vs overfit-dropout (the train/validation gap with and without dropout): their lesson cards' claims


def test_symmetric_init_keeps_every_unit_identical():
    session, records = lesson("symmetric-init", 30, **{"train.stats_every": 10})
    heavy = [r for r in records if r.unit_spread]
    assert len(heavy) == 4 and all(v == 0.0 for r in heavy for v in r.unit_spread.values())
    fc = session.model.p["h0.mlp.fc.w"].astype(np.float64)
    assert np.ptp(fc, axis=1).max() == 0.0 and np.ptp(fc) > 0, "the weights moved, all units alike"
    assert records[-1].loss < records[0].loss - 0.3
    broken = lesson("symmetric-init", 10, **{"model.init": "normal"})[1][-1]
    assert min(broken.unit_spread.values()) > 0.01
