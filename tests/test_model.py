"""The whole GPT: float64 finite differences for every wiring, agreement with the numpy reference, gradcheck.

Weights are drawn large (std 0.4, gains around 1) so every nonlinearity is in
play and gradients are far from zero; a tiny init would make every check pass.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest

from simulator.config import ModelConfig, OptimConfig, RunConfig, TrainConfig
from simulator.gradcheck import GradCheckError, check_gradients
from simulator.model.gpt import GPT
from simulator.optim import make_optimizer
from simulator.reference import reference_loss_and_grads, reference_train_step
from simulator.session import TrainingSession
from tests.helpers import analytic, random_model, rel_err

TINY = ModelConfig(vocab_size=11, d_model=12, n_layer=2, n_head=3, seq_len=5, mlp_ratio=2)
B, T = 2, 5
MODEL_FD_TOL = 1e-5
WIRINGS = list(itertools.product(("layernorm", "rmsnorm", "none"), ("pre", "post"), (True, False)))



def build(cfg, dtype=np.float64, seed=0, batch=(B, T)):
    return random_model(cfg, batch, dtype, seed)


def fd_check(model, ids, targets, grads, n_random=2, seed=1, before=None) -> dict[str, float]:
    """Worst relative error per tensor over its largest-gradient coordinate and a few random ones."""
    rng = np.random.default_rng(seed)
    worst = {}
    for spec in model.layout:
        g = grads[spec.name].reshape(-1)
        w = model.p[spec.name].reshape(-1)
        picks = {int(np.argmax(np.abs(g)))} | {int(i) for i in rng.choice(g.size, n_random, replace=False)}
        errs = []
        for i in picks:
            old = w[i]
            vals = []
            for x in (old + 1e-6, old - 1e-6):
                w[i] = x
                if before:
                    before()
                vals.append(model.forward(ids, targets))
            w[i] = old
            errs.append(rel_err(g[i], (vals[0] - vals[1]) / 2e-6))
        worst[spec.name] = max(errs)
    return worst


def assert_fd(worst: dict[str, float], tol=MODEL_FD_TOL, what=""):
    bad = {k: e for k, e in worst.items() if e >= tol}
    assert not bad, f"{what}: gradient disagrees with finite differences on {bad}"


# ------------------------------------------------------------ finite differences

@pytest.mark.parametrize("norm,position,residual", WIRINGS)
def test_model_gradient_matches_finite_differences(norm, position, residual):
    # activation and head alternate across the 12 wirings so each meets both settings
    k = WIRINGS.index((norm, position, residual))
    cfg = replace(TINY, norm=norm, norm_position=position, residual=residual,
                  activation=("gelu", "relu")[k % 2], tie_embeddings=k % 4 < 2)
    model, ids, targets = build(cfg, seed=k)
    _, _, grads = analytic(model, ids, targets)
    assert any(np.abs(g).max() > 1e-2 for g in grads.values()), "gradients too small for the check to mean anything"
    assert_fd(fd_check(model, ids, targets, grads), what=f"{norm}/{position}/residual={residual}")


@pytest.mark.parametrize("activation,tie", [("gelu", False), ("relu", True)])
def test_model_gradient_fd_short_batch(activation, tie):
    """T = 1 and T < seq_len: rows of wpe past T get no gradient."""
    cfg = replace(TINY, activation=activation, tie_embeddings=tie)
    for batch in ((3, 1), (1, 3)):
        model, ids, targets = build(cfg, batch=batch)
        _, _, grads = analytic(model, ids, targets)
        assert np.all(grads["wpe"][batch[1]:] == 0)
        assert_fd(fd_check(model, ids, targets, grads), what=f"batch {batch}")


@pytest.mark.parametrize("norm,position,residual", [("layernorm", "pre", True), ("rmsnorm", "post", True),
                                                     ("layernorm", "post", False), ("none", "pre", True)])
def test_model_gradient_fd_with_dropout(norm, position, residual):
    """With the dropout stream reset to one state before every forward, the masks are fixed and FD applies."""
    cfg = replace(TINY, dropout=0.3, norm=norm, norm_position=position, residual=residual)
    model, ids, targets = build(cfg)
    state = np.random.default_rng(7).bit_generator.state

    def reset():
        model.dropout_rng.bit_generator.state = state

    loss, _, grads = analytic(model, ids, targets, before=reset)
    assert np.mean(model.acts["h0.attn.mask"] == 0) > 0.1, "dropout did not drop anything"
    assert_fd(fd_check(model, ids, targets, grads, before=reset), what="dropout 0.3")
    # the reference, given the masks the model drew, agrees too
    masks = {site: model.acts[f"{site}.mask"].copy()
             for site in ["x0"] + [f"h{i}.{b}" for i in range(cfg.n_layer) for b in ("attn", "mlp")]}
    rloss, _, rgrads = reference_loss_and_grads({k: v.copy() for k, v in model.p.items()}, cfg, ids, targets, masks)
    assert abs(loss - rloss) < 1e-10
    assert max(np.abs(rgrads[k] - grads[k]).max() for k in grads) < 1e-10


def test_backward_is_repeatable_and_dropout_off_in_eval():
    cfg = replace(TINY, dropout=0.5)
    model, ids, targets = build(cfg)
    model.training = False
    first = analytic(model, ids, targets)
    second = analytic(model, ids, targets)  # gradients are zeroed at the start of each backward
    assert first[0] == second[0]
    assert all(np.array_equal(first[2][k], second[2][k]) for k in first[2])
    rloss, _, _ = reference_loss_and_grads({k: v.copy() for k, v in model.p.items()}, cfg, ids, targets)
    assert abs(first[0] - rloss) < 1e-10, "eval mode must not drop anything"


@pytest.mark.parametrize("norm,position,residual", [*WIRINGS, ("batchnorm", "pre", True), ("batchnorm", "post", True)])
def test_zero_grad_is_the_one_place_gradients_start(norm, position, residual):
    """Poisoning every gradient and every backward scratch buffer with NaN before a backward changes nothing.

    The head's backward (the first) zeroes the gradients (each activation gradient
    reads as zero until an op adds to it or writes it whole); every scratch buffer
    an op reads must be written whole first. So nothing left from an earlier step,
    or from another layer, can leak into a gradient.
    """
    for impl, dropout in (("naive", 0.0), ("tiled", 0.3)):
        cfg = replace(TINY, norm=norm, norm_position=position, residual=residual, dropout=dropout,
                      positional="rope", attention=replace(TINY.attention, impl=impl))
        model, ids, targets = build(cfg)
        model.dropout_rng = np.random.default_rng(3)
        model.forward(ids, targets)
        model.loss_and_dlogits()
        model.backward()
        clean = model.grads.copy()
        model.dropout_rng = np.random.default_rng(3)
        model.forward(ids, targets)
        model.loss_and_dlogits()
        model.grads.fill(np.nan)
        model.grads_acts.flat.fill(np.nan)
        for name in ("dy", "dact", "dscratch", "dq", "dk", "dv", "datt"):
            if name in model.acts:
                model.acts[name].fill(np.nan)
        model.backward()
        assert np.array_equal(model.grads, clean), (impl, dropout)


# ------------------------------------------------------------------- reference

@pytest.mark.parametrize("norm,position,residual", WIRINGS)
def test_model_equals_reference_float64(norm, position, residual):
    for activation, tie in itertools.product(("gelu", "relu"), (True, False)):
        cfg = replace(TINY, norm=norm, norm_position=position, residual=residual, activation=activation,
                      tie_embeddings=tie)
        model, ids, targets = build(cfg, seed=3)
        loss, logits, grads = analytic(model, ids, targets)
        rloss, rlogits, rgrads = reference_loss_and_grads({k: v.copy() for k, v in model.p.items()}, cfg, ids, targets)
        what = f"{norm}/{position}/residual={residual}/{activation}/tied={tie}"
        assert set(rgrads) == set(grads), what
        assert abs(loss - rloss) < 1e-10, f"{what}: loss {loss} vs reference {rloss}"
        assert np.abs(logits - rlogits).max() < 1e-10, f"{what}: logits"
        for name in grads:
            assert np.abs(grads[name] - rgrads[name]).max() < 1e-10, f"{what}: gradient of {name}"


@pytest.mark.parametrize("norm,position", [("layernorm", "pre"), ("rmsnorm", "post"), ("none", "pre")])
def test_float32_model_close_to_float64_reference(norm, position):
    cfg = replace(TINY, norm=norm, norm_position=position)
    model64, ids, targets = build(cfg)
    model = GPT(cfg, np.float32)
    model.params[...] = model64.params
    loss, logits, grads = analytic(model, ids, targets)
    rloss, rlogits, rgrads = reference_loss_and_grads({k: v.copy() for k, v in model64.p.items()}, cfg, ids, targets)
    assert logits.dtype == np.float32
    assert abs(loss - rloss) < 1e-5 * max(1.0, abs(rloss))
    assert rel_err(logits, rlogits) < 1e-5
    for name, g in grads.items():
        scale = max(np.abs(rgrads[name]).max(), 1e-3)  # float32 error is relative to the tensor's largest entry
        assert np.abs(g - rgrads[name]).max() / scale < 1e-4, f"float32 gradient of {name}"


# ------------------------------------------------------------------- gradcheck

def tiny_session(**model):
    cfg = RunConfig(model=ModelConfig(d_model=12, n_layer=2, n_head=3, seq_len=8, mlp_ratio=2, **model),
                    train=TrainConfig(batch_size=2, stats_every=0, eval_every=0))
    return TrainingSession(cfg)


def test_gradcheck_on_a_fresh_session_and_leaves_it_untouched():
    session = tiny_session(dropout=0.2, norm="rmsnorm")
    session.step()
    model = session.model
    before = {"params": model.params.copy(), "grads": model.grads.copy(), "acts": model.acts.flat.copy(),
              "ids": model.ids.copy(), "data": session.data_rng.bit_generator.state,
              "dropout": model.dropout_rng.bit_generator.state}
    rows = check_gradients(session, n_per_tensor=2)
    assert {r.tensor for r in rows} == {s.name for s in model.layout}
    assert len(rows) == 2 * len(model.layout)
    worst = max(rows, key=lambda r: r.rel_err)
    assert worst.rel_err < 1e-6, worst
    assert max(abs(r.analytic) for r in rows) > 1e-2
    assert np.array_equal(model.params, before["params"]) and np.array_equal(model.grads, before["grads"])
    assert np.array_equal(model.acts.flat, before["acts"]) and np.array_equal(model.ids, before["ids"])
    assert session.data_rng.bit_generator.state == before["data"]
    assert model.dropout_rng.bit_generator.state == before["dropout"]
    assert model.params.dtype == np.float32


def test_gradcheck_before_any_step_and_on_chosen_tensors():
    session = tiny_session(norm="layernorm", norm_position="post", tie_embeddings=False)
    rows = check_gradients(session, n_per_tensor=3, tensors=["lm_head.w", "h1.mlp.fc.w"], seed=4)
    assert [r.tensor for r in rows] == ["lm_head.w"] * 3 + ["h1.mlp.fc.w"] * 3
    assert len({(r.tensor, r.index) for r in rows}) == 6
    assert all(r.rel_err < 1e-6 for r in rows), rows


def test_gradcheck_names_an_unknown_tensor():
    session = tiny_session()
    with pytest.raises(GradCheckError, match="no tensor named 'h9.attn.qkv.w'"):
        check_gradients(session, tensors=["h9.attn.qkv.w"])


def test_reference_train_step_equals_engine_adamw_step():
    """The bench's call form: a state dict, decay on the layout's matrices; two steps against the engine's."""
    model, ids, targets = build(TINY)
    state = {"params": {k: v.copy() for k, v in model.p.items()}, "m": None, "v": None, "t": 0}
    optim = OptimConfig(name="adamw", lr=1e-2, weight_decay=0.1, beta1=0.9, beta2=0.95, eps=1e-8)
    opt = make_optimizer(optim, model.layout, np.float64)
    for t in (1, 2):
        rloss = reference_train_step(state, TINY, ids, targets, 1e-2, 0.9, 0.95, 1e-8, 0.1, decay_mask=model.layout)
        loss, _, _ = analytic(model, ids, targets)
        opt.step(model.params, model.grads, 1e-2)
        assert abs(loss - rloss) < 1e-12 and state["t"] == t
    for name, w in model.p.items():
        assert np.abs(state["params"][name] - w).max() < 1e-9, f"{name} after two AdamW steps"
    assert not np.allclose(state["params"]["h0.attn.qkv.w"], build(TINY)[0].p["h0.attn.qkv.w"])
