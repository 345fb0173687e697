"""Optimizers against hand-worked float64 formulas, clipping, live config, checkpoints, the bench reference."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from simulator.bench.optimizer import adamw_numpy, bench_optimizer
from simulator.config import OPTIMIZERS, OptimConfig
from simulator.model.layout import ParamLayout
from simulator.optim import OptimError, clip_gradients, make_optimizer
from simulator.optim.clip import global_norm
from simulator.optim.kernels import adam_update

# Odd sizes on purpose: 15 + 5 + 7 + 12 = 39 parameters in four groups.
LAYOUT = ParamLayout([("w", (3, 5), "matrix"), ("b", (5,), "bias"), ("g", (7,), "norm"), ("emb", (4, 3), "embedding")])
N = LAYOUT.size
MATRIX = LAYOUT.mask({"matrix"}, dtype=np.float64)
STEPS = 4


def problem(seed=0):
    """Start weights and a list of changing gradients, float64."""
    rng = np.random.default_rng(seed)
    w0 = rng.standard_normal(N)
    grads = [rng.standard_normal(N) * (1 + k) for k in range(STEPS)]
    return w0, grads


def run(cfg, w0, grads, dtype=np.float64, lrs=None):
    """Run the real optimizer; returns the weights after each step."""
    opt = make_optimizer(cfg, LAYOUT, dtype)
    w = w0.astype(dtype)
    out = []
    for t, g in enumerate(grads, start=1):
        opt.step(w, g.astype(dtype), cfg.lr if lrs is None else lrs[t - 1])
        out.append(w.astype(np.float64))
    return out, opt


# ---- the formulas, written out by hand, independent of the kernels ----

def ref_sgd(w, grads, lr, wd, mask, mu=0.0, damp=0.0, nesterov=False):
    out, buf = [], None
    for g in grads:
        g = g + wd * mask * w
        if mu:
            buf = g.copy() if buf is None else mu * buf + (1 - damp) * g
            g = g + mu * buf if nesterov else buf
        w = w - lr * g
        out.append(w)
    return out


def ref_adagrad(w, grads, lr, eps, wd, mask):
    out, s = [], np.zeros_like(w)
    for g in grads:
        g = g + wd * mask * w
        s = s + g ** 2
        w = w - lr * g / (np.sqrt(s) + eps)
        out.append(w)
    return out


def ref_rmsprop(w, grads, lr, rho, eps, wd, mask, mu=0.0):
    out, a, buf = [], np.zeros_like(w), np.zeros_like(w)
    for g in grads:
        g = g + wd * mask * w
        a = rho * a + (1 - rho) * g ** 2
        u = g / (np.sqrt(a) + eps)
        if mu:
            buf = mu * buf + u
            u = buf
        w = w - lr * u
        out.append(w)
    return out


def ref_adam(w, grads, lrs, b1, b2, eps, wd, mask, decoupled, bias_correction):
    out, m, v = [], np.zeros_like(w), np.zeros_like(w)
    for t, (g, lr) in enumerate(zip(grads, lrs, strict=True), start=1):
        if not decoupled:
            g = g + wd * mask * w
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g ** 2
        mhat = m / (1 - b1 ** t) if bias_correction else m
        vhat = v / (1 - b2 ** t) if bias_correction else v
        if decoupled:
            w = w - lr * wd * mask * w
        w = w - lr * mhat / (np.sqrt(vhat) + eps)
        out.append(w)
    return out


def ref_ftrl(w, grads, alpha, beta, l1, l2, mask):
    out, z, n = [], np.zeros_like(w), np.zeros_like(w)
    for g in grads:
        sigma = (np.sqrt(n + g ** 2) - np.sqrt(n)) / alpha
        z = z + g - sigma * w
        n = n + g ** 2
        w = np.where(np.abs(z) <= l1 * mask, 0.0,
                     -(z - np.sign(z) * l1 * mask) / ((beta + np.sqrt(n)) / alpha + l2 * mask))
        out.append(w)
    return out


CASES = {
    "sgd": (OptimConfig(name="sgd", lr=0.1, weight_decay=0.3),
            lambda w, gs: ref_sgd(w, gs, 0.1, 0.3, MATRIX)),
    "sgd+momentum field": (OptimConfig(name="sgd", lr=0.1, momentum=0.9, dampening=0.25),
                           lambda w, gs: ref_sgd(w, gs, 0.1, 0.0, MATRIX, mu=0.9, damp=0.25)),
    "momentum dampening": (OptimConfig(name="momentum", lr=0.05, momentum=0.8, dampening=0.5, weight_decay=0.2),
                           lambda w, gs: ref_sgd(w, gs, 0.05, 0.2, MATRIX, mu=0.8, damp=0.5)),
    "nesterov": (OptimConfig(name="nesterov", lr=0.05, momentum=0.9, weight_decay=0.1),
                 lambda w, gs: ref_sgd(w, gs, 0.05, 0.1, MATRIX, mu=0.9, nesterov=True)),
    "adagrad": (OptimConfig(name="adagrad", lr=0.3, eps=1e-3, weight_decay=0.2),
                lambda w, gs: ref_adagrad(w, gs, 0.3, 1e-3, 0.2, MATRIX)),
    "rmsprop": (OptimConfig(name="rmsprop", lr=0.01, rho=0.9, eps=1e-4, weight_decay=0.1),
                lambda w, gs: ref_rmsprop(w, gs, 0.01, 0.9, 1e-4, 0.1, MATRIX)),
    "rmsprop momentum": (OptimConfig(name="rmsprop", lr=0.01, rho=0.8, eps=1e-6, momentum=0.7),
                         lambda w, gs: ref_rmsprop(w, gs, 0.01, 0.8, 1e-6, 0.0, MATRIX, mu=0.7)),
    "adam": (OptimConfig(name="adam", lr=0.01, beta1=0.8, beta2=0.95, eps=1e-6, weight_decay=0.5),
             lambda w, gs: ref_adam(w, gs, [0.01] * STEPS, 0.8, 0.95, 1e-6, 0.5, MATRIX, False, True)),
    "adam no bias correction": (
        OptimConfig(name="adam", lr=0.01, beta1=0.8, beta2=0.95, eps=1e-6, bias_correction=False),
        lambda w, gs: ref_adam(w, gs, [0.01] * STEPS, 0.8, 0.95, 1e-6, 0.0, MATRIX, False, False)),
    "adam_l2": (OptimConfig(name="adam_l2", lr=0.02, beta1=0.9, beta2=0.99, eps=1e-7, weight_decay=0.5),
                lambda w, gs: ref_adam(w, gs, [0.02] * STEPS, 0.9, 0.99, 1e-7, 0.5, MATRIX, False, True)),
    "adamw": (OptimConfig(name="adamw", lr=0.02, beta1=0.9, beta2=0.99, eps=1e-7, weight_decay=0.5),
              lambda w, gs: ref_adam(w, gs, [0.02] * STEPS, 0.9, 0.99, 1e-7, 0.5, MATRIX, True, True)),
    "adamw no bias correction": (
        OptimConfig(name="adamw", lr=0.02, weight_decay=0.5, bias_correction=False),
        lambda w, gs: ref_adam(w, gs, [0.02] * STEPS, 0.9, 0.999, 1e-8, 0.5, MATRIX, True, False)),
    "adamw decay all groups": (
        OptimConfig(name="adamw", lr=0.02, weight_decay=0.5, decay_embeddings=True, decay_norms_and_biases=True),
        lambda w, gs: ref_adam(w, gs, [0.02] * STEPS, 0.9, 0.999, 1e-8, 0.5, np.ones(N), True, True)),
    "ftrl": (OptimConfig(name="ftrl", lr=0.5, ftrl_beta=1.0, l1=0.6, l2=0.3),
             lambda w, gs: ref_ftrl(w, gs, 0.5, 1.0, 0.6, 0.3, MATRIX)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_steps_match_hand_formula_float64(case):
    cfg, ref = CASES[case]
    w0, grads = problem()
    got, _ = run(cfg, w0, grads)
    want = ref(w0.copy(), grads)
    for t in range(STEPS):
        np.testing.assert_allclose(got[t], want[t], rtol=1e-12, atol=1e-12, err_msg=f"{case} step {t + 1}")
    assert not np.allclose(got[-1], w0)  # the update did something


@pytest.mark.parametrize("case", ["sgd", "nesterov", "adagrad", "rmsprop momentum", "adamw", "ftrl"])
def test_float32_kernels_match_float64_formula(case):
    cfg, ref = CASES[case]
    w0, grads = problem(1)
    got, opt = run(cfg, w0, grads, dtype=np.float32)
    assert all(buf.dtype == np.float32 for buf in opt.state.values())
    np.testing.assert_allclose(got[-1], ref(w0.copy(), grads)[-1], rtol=2e-5, atol=2e-5)


def test_every_named_optimizer_is_covered():
    assert {cfg.name for cfg, _ in CASES.values()} == set(OPTIMIZERS)


def test_decay_mask_spares_norms_biases_embeddings_by_default():
    w0, _grads = problem()
    zero = [np.zeros(N)] * 3
    got, opt = run(OptimConfig(name="adamw", lr=0.1, weight_decay=0.5), w0, zero)
    views = LAYOUT.views(got[-1])
    start = LAYOUT.views(w0)
    np.testing.assert_allclose(views["w"], start["w"] * (1 - 0.1 * 0.5) ** 3, rtol=1e-12)
    for name in ("b", "g", "emb"):
        np.testing.assert_array_equal(views[name], start[name])
    assert opt.decay_mask.dtype == np.uint8 and opt.decay_mask.sum() == 15
    got, _ = run(OptimConfig(name="adamw", lr=0.1, weight_decay=0.5, decay_embeddings=True), w0, zero)
    np.testing.assert_allclose(LAYOUT.views(got[-1])["emb"], start["emb"] * 0.95 ** 3, rtol=1e-12)
    np.testing.assert_array_equal(LAYOUT.views(got[-1])["b"], start["b"])


def test_decoupled_and_coupled_decay_differ():
    w0, grads = problem()
    base = {"lr": 0.01, "weight_decay": 1.0}
    adamw, _ = run(OptimConfig(name="adamw", **base), w0, grads)
    adam_l2, _ = run(OptimConfig(name="adam_l2", **base), w0, grads)
    adam, _ = run(OptimConfig(name="adam", **base), w0, grads)
    np.testing.assert_array_equal(adam[-1], adam_l2[-1])
    assert np.abs(adamw[-1] - adam_l2[-1]).max() > 1e-3


def test_momentum_first_step_buffer_is_the_gradient_without_dampening():
    w0, grads = problem()
    opt = make_optimizer(OptimConfig(name="momentum", lr=0.1, momentum=0.9, dampening=0.9), LAYOUT, np.float64)
    w = w0.copy()
    opt.step(w, grads[0], 0.1)
    np.testing.assert_array_equal(opt.state["buf"], grads[0])
    np.testing.assert_allclose(w, w0 - 0.1 * grads[0], rtol=1e-15)
    opt.step(w, grads[1], 0.1)
    np.testing.assert_allclose(opt.state["buf"], 0.9 * grads[0] + 0.1 * grads[1], rtol=1e-14)


def test_schedule_lr_is_what_the_step_uses():
    w0, grads = problem()
    lrs = [0.01, 0.03, 0.005, 0.02]
    got, _ = run(OptimConfig(name="adamw", weight_decay=0.2), w0, grads, lrs=lrs)
    want = ref_adam(w0.copy(), grads, lrs, 0.9, 0.999, 1e-8, 0.2, MATRIX, True, True)
    np.testing.assert_allclose(got[-1], want[-1], rtol=1e-12)


QUADRATIC_LR = {"sgd": 0.05, "momentum": 0.02, "nesterov": 0.02, "adagrad": 1.0, "rmsprop": 0.01, "adam": 0.05,
                "adamw": 0.05, "adam_l2": 0.05, "ftrl": 2.0}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_minimises_a_convex_quadratic(name):
    rng = np.random.default_rng(3)
    curv = rng.uniform(1.0, 10.0, N)
    target = rng.standard_normal(N)
    cfg = OptimConfig(name=name, lr=QUADRATIC_LR[name], momentum=0.9 if name in ("momentum", "nesterov") else 0.0,
                      schedule="constant")
    opt = make_optimizer(cfg, LAYOUT, np.float64)
    w = np.zeros(N)
    loss0 = 0.5 * np.sum(curv * (w - target) ** 2)
    steps = 3000
    for t in range(1, steps + 1):
        lr = cfg.lr if name not in ("rmsprop", "adam", "adamw", "adam_l2") else cfg.lr * (1 - t / (steps + 1))
        opt.step(w, curv * (w - target), lr)
    assert 0.5 * np.sum(curv * (w - target) ** 2) < 1e-6 * loss0
    assert np.abs(w - target).max() < 1e-3


def test_ftrl_exact_zeros_where_z_within_l1():
    rng = np.random.default_rng(5)
    cfg = OptimConfig(name="ftrl", lr=0.1, l1=1.5, l2=0.1, decay_norms_and_biases=True, decay_embeddings=True)
    opt = make_optimizer(cfg, LAYOUT, np.float64)
    w = np.zeros(N)
    for _ in range(5):
        opt.step(w, rng.standard_normal(N) + 0.6, cfg.lr)
    inside = np.abs(opt.state["z"]) <= cfg.l1
    assert 0 < inside.sum() < N  # both kinds present
    assert np.all(w[inside] == 0.0)  # exact zeros, not small numbers
    assert np.all(w[~inside] != 0.0)
    assert np.all(np.sign(w[~inside]) == -np.sign(opt.state["z"][~inside]))


def test_state_names_and_memory_bill():
    expect = {"sgd": (), "momentum": ("buf",), "nesterov": ("buf",), "adagrad": ("sum_sq",),
              "rmsprop": ("square_avg",), "adam": ("m", "v"), "adamw": ("m", "v"), "adam_l2": ("m", "v"),
              "ftrl": ("z", "n")}
    for name, names in expect.items():
        cfg = OptimConfig(name=name, momentum=0.9 if name in ("momentum", "nesterov") else 0.0)
        for dtype in (np.float32, np.float64):
            opt = make_optimizer(cfg, LAYOUT, dtype)
            assert tuple(opt.state) == names
            assert sum(b.itemsize for b in opt.state.values()) == len(names) * np.dtype(dtype).itemsize
            assert all(opt.state[k].shape == (N,) for k in names)


def test_set_config_takes_effect_next_step_and_keeps_state():
    w0, grads = problem()
    cfg = OptimConfig(name="adam", lr=0.01, beta1=0.9, beta2=0.99, eps=1e-8)
    opt = make_optimizer(cfg, LAYOUT, np.float64)
    w = w0.copy()
    opt.step(w, grads[0], 0.01)
    m_before = opt.state["m"]
    opt.set_config(dataclasses.replace(cfg, beta1=0.5, eps=1e-3, weight_decay=0.4))
    assert opt.state["m"] is m_before
    opt.step(w, grads[1], 0.01)
    # by hand: step 1 with the old betas, step 2 with the new ones over the kept moments
    m = 0.1 * grads[0]
    v = 0.01 * grads[0] ** 2
    w_ref = w0 - 0.01 * (m / 0.1) / (np.sqrt(v / 0.01) + 1e-8)
    g = grads[1] + 0.4 * MATRIX * w_ref
    m = 0.5 * m + 0.5 * g
    v = 0.99 * v + 0.01 * g ** 2
    w_ref = w_ref - 0.01 * (m / (1 - 0.5 ** 2)) / (np.sqrt(v / (1 - 0.99 ** 2)) + 1e-3)
    np.testing.assert_allclose(w, w_ref, rtol=1e-12)
    with pytest.raises(OptimError, match="cannot change from adam to sgd"):
        opt.set_config(OptimConfig(name="sgd"))


def test_sgd_momentum_switched_on_live_starts_buffer_at_gradient():
    w0, grads = problem()
    opt = make_optimizer(OptimConfig(name="sgd", lr=0.1), LAYOUT, np.float64)
    w = w0.copy()
    opt.step(w, grads[0], 0.1)
    assert tuple(opt.state) == ()
    opt.set_config(OptimConfig(name="sgd", lr=0.1, momentum=0.5))
    assert tuple(opt.state) == ("buf",) and opt.state["buf"].itemsize == 8
    opt.step(w, grads[1], 0.1)
    opt.step(w, grads[2], 0.1)
    np.testing.assert_allclose(w, w0 - 0.1 * (grads[0] + grads[1] + 0.5 * grads[1] + grads[2]), rtol=1e-12)


@pytest.mark.parametrize("name", ["momentum", "rmsprop", "adam", "ftrl"])
def test_state_dict_round_trip_is_bit_identical(name, tmp_path):
    w0, grads = problem()
    cfg = OptimConfig(name=name, lr=0.05, momentum=0.9 if name != "ftrl" else 0.0, l1=0.1)
    a = make_optimizer(cfg, LAYOUT, np.float32)
    wa = w0.astype(np.float32)
    for t in (1, 2):
        a.step(wa, grads[t - 1].astype(np.float32), cfg.lr)
    np.savez(tmp_path / "opt.npz", **a.state_dict())
    b = make_optimizer(cfg, LAYOUT, np.float32)
    b.load_state_dict(dict(np.load(tmp_path / "opt.npz")))
    assert b.steps == 2
    wb = wa.copy()
    for t in (3, 4):
        a.step(wa, grads[t - 1].astype(np.float32), cfg.lr)
        b.step(wb, grads[t - 1].astype(np.float32), cfg.lr)
    np.testing.assert_array_equal(wa, wb)
    for key in a.state:
        np.testing.assert_array_equal(a.state[key], b.state[key])


def test_load_state_dict_refuses_mismatch():
    opt = make_optimizer(OptimConfig(name="adamw"), LAYOUT, np.float32)
    d = opt.state_dict()
    other = make_optimizer(OptimConfig(name="adam"), LAYOUT, np.float32)
    with pytest.raises(ValueError, match="holds adamw optimizer state but optim.name is adam"):
        other.load_state_dict(d)
    small = make_optimizer(OptimConfig(name="adamw"), ParamLayout([("w", (2, 2), "matrix")]), np.float32)
    with pytest.raises(ValueError, match=f"has shape \\({N},\\) but the model has 4 parameters"):
        small.load_state_dict(d)
    del d["v"]
    with pytest.raises(ValueError, match="lacks v"):
        opt.load_state_dict(d)


@pytest.mark.parametrize("changes, message", [
    ({"name": "lion"}, "unknown optimizer 'lion'"),
    ({"name": "momentum"}, "optim.momentum: must be greater than 0 for optimizer momentum"),
    ({"name": "nesterov", "momentum": 0.9, "dampening": 0.1}, "optim.dampening: must be 0 for optimizer nesterov"),
    ({"name": "ftrl", "weight_decay": 0.1}, "optim.weight_decay: is not used by ftrl"),
    ({"beta2": 1.0}, "optim.beta2: must be in \\[0, 1\\), got 1.0"),
    ({"eps": float("nan")}, "optim.eps: must be greater than 0, got nan"),
    ({"name": "ftrl", "lr": 0.0}, "optim.lr: must be greater than 0, got 0.0"),
    ({"schedule": "linear"}, "unknown schedule 'linear'"),
    ({"clip_mode": "max"}, "unknown mode 'max'"),
])
def test_bad_settings_get_one_sentence(changes, message):
    with pytest.raises(OptimError, match=message):
        make_optimizer(OptimConfig(**changes), LAYOUT, np.float32)


# ---- clipping ----

def test_clip_by_norm():
    rng = np.random.default_rng(7)
    g = rng.standard_normal(N)
    norm = math.sqrt(float(np.sum(g ** 2)))
    pre, fired = clip_gradients(g, OptimConfig(grad_clip=norm / 4))
    assert fired and abs(pre - norm) < 1e-12 * norm
    assert abs(np.linalg.norm(g) - norm / 4) < 1e-12 * norm
    h = rng.standard_normal(N)
    keep = h.copy()
    pre, fired = clip_gradients(h, OptimConfig(grad_clip=1e3))
    assert not fired and abs(pre - np.linalg.norm(keep)) < 1e-12 * pre
    np.testing.assert_array_equal(h, keep)
    pre, fired = clip_gradients(h, OptimConfig(grad_clip=0.0))  # off: still reports the norm
    assert not fired and abs(pre - np.linalg.norm(keep)) < 1e-12 * pre


def test_clip_by_value():
    g = np.array([-3.0, -0.5, 0.0, 0.7, 2.5, 1.0], dtype=np.float32)
    pre, fired = clip_gradients(g, OptimConfig(grad_clip=1.0, clip_mode="value"))
    assert fired and abs(pre - math.sqrt(9 + 0.25 + 0.49 + 6.25 + 1)) < 1e-6
    np.testing.assert_array_equal(g, np.array([-1.0, -0.5, 0.0, 0.7, 1.0, 1.0], dtype=np.float32))
    pre, fired = clip_gradients(g, OptimConfig(grad_clip=1.0, clip_mode="value"))
    assert not fired


def test_global_norm_of_float32_accumulates_in_float64():
    g = np.full(3_000_001, 0.1, dtype=np.float32)
    pre, _ = clip_gradients(g, OptimConfig())
    exact = math.sqrt(3_000_001 * float(np.float32(0.1)) ** 2)
    assert abs(pre - exact) < 1e-9 * exact


def test_nonfinite_gradient_is_reported_not_clipped():
    g = np.array([1.0, np.nan, 2.0])
    pre, fired = clip_gradients(g, OptimConfig(grad_clip=0.5))
    assert math.isnan(pre) and not fired and g[0] == 1.0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_nonfinite_entry_anywhere_in_a_long_gradient_makes_the_norm_nonfinite(bad):
    # long enough that the sum runs in vector lanes and in both threads' shares
    g = np.random.default_rng(4).standard_normal(1_000_003).astype(np.float32)
    for where in (0, 777_777, g.size - 1):
        h = g.copy()
        h[where] = bad
        norm = global_norm(h)
        assert (math.isnan(norm) if np.isnan(bad) else norm == math.inf), (where, norm)


def test_global_norm_matches_numpy_in_float64_on_an_odd_length():
    g = np.random.default_rng(5).standard_normal(2_345_679).astype(np.float32)
    exact = math.sqrt(float(np.sum(g.astype(np.float64) ** 2)))
    assert abs(global_norm(g) - exact) < 1e-12 * exact


# ---- the bench's numpy reference ----

def test_bench_numpy_reference_matches_kernel():
    rng = np.random.default_rng(9)
    n = 1001
    p, g = rng.standard_normal(n), rng.standard_normal(n)
    m, v = rng.standard_normal(n) * 0.1, rng.uniform(0, 1, n)
    mask = (rng.uniform(size=n) > 0.3).astype(np.uint8)
    args = (0.01, 0.9, 0.99, 1e-8, 0.2, 0.5, 0.3)
    a = [x.copy() for x in (p, m, v)]
    adam_update(a[0], a[1], a[2], g, mask, *args[:5], True, *args[5:])
    b = [x.copy() for x in (p, m, v)]
    adamw_numpy(b[0], b[1], b[2], g, mask, *args)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-13, atol=1e-15)
    rows = bench_optimizer(n=10_000, repeats=1)
    assert [r["impl"] for r in rows] == ["numba", "numpy"]
    assert all(r["ms"] > 0 and r["gb_per_s"] > 0 for r in rows)


# ---- the sparse FTRL lesson ----

def test_ftrl_lesson_is_far_sparser_at_similar_loss():
    from simulator.lessons import load_lesson
    from simulator.lessons.sparse_ftrl import SparseLogRegLesson

    lesson = SparseLogRegLesson(load_lesson(Path(__file__).resolve().parent.parent / "presets" / "ftrl-sparse.yaml",
                                            "sparse_logreg"))
    steps = lesson.run()
    last = {p.label: p for p in steps[-1]}
    ftrl, plain, adagrad = last["FTRL l1=0.1"], last["FTRL l1=0"], last["AdaGrad"]
    assert ftrl.zero_fraction > 0.9 and adagrad.zero_fraction < 0.7
    assert ftrl.val_loss < adagrad.val_loss + 0.02
    assert max(ftrl.val_loss, adagrad.val_loss) < lesson.baseline_loss() - 0.15  # both really learned
    assert abs(plain.zero_fraction - adagrad.zero_fraction) < 0.005  # without l1, FTRL is as dense as AdaGrad
    opt = lesson.opts["FTRL l1=0.1"]
    np.testing.assert_array_equal(lesson.weights["FTRL l1=0.1"] == 0.0, np.abs(opt.state["z"]) <= opt.cfg.l1)
    assert steps[0][0].label == "FTRL l1=0.1" and steps[0][0].zero_fraction > 0.99  # from nothing, sparse at once


def test_ftrl_lesson_gradient_matches_finite_differences():
    from simulator.lessons.sparse_ftrl import SparseData, SparseLogRegConfig, log_loss, log_loss_grad

    data = SparseData(SparseLogRegConfig(n_features=37, fields=3, ids_per_field=11, val_size=5, batch_size=7))
    idx, y = data.next_batch()
    assert idx.shape == (7, 3) and idx.min() >= 0 and idx.max() < 37 and set(np.unique(y)) <= {0.0, 1.0}
    rng = np.random.default_rng(0)
    w = rng.standard_normal(37)
    grads = np.empty(37)
    log_loss_grad(grads, w, idx, y)
    eps = 1e-6
    for i in range(37):
        e = np.zeros(37)
        e[i] = eps
        num = (log_loss(w + e, idx, y) - log_loss(w - e, idx, y)) / (2 * eps)
        assert abs(grads[i] - num) / max(1.0, abs(grads[i]), abs(num)) < 1e-6
    assert np.all(grads[np.setdiff1d(np.arange(37), idx)] == 0.0)  # absent features get exactly no gradient


def test_ftrl_lesson_preset_errors_are_one_line():
    import simulator.lessons  # noqa: F401  registers the kinds
    from simulator.presets import PresetError, parse_any_text

    text = "kind: sparse_logreg\nname: x\ntrue_density: 0\noptimizers:\n  - label: a\n    optim: {name: ftrl}\n"
    with pytest.raises(PresetError, match="x.yaml:3: true_density: must be in \\(0, 1\\]"):
        parse_any_text(text, "x.yaml")
    text = "kind: sparse_logreg\nname: x\noptimizers:\n  - label: a\n    optim: {name: ftrl, weight_decay: 0.1}\n"
    with pytest.raises(PresetError, match="x.yaml:5: optimizers\\[0\\].optim.weight_decay"):
        parse_any_text(text, "x.yaml")
