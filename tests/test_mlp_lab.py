"""The deep-MLP lab: gradients by finite differences, the lesson presets' effects, the leaf/flower MLP by hand."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from simulator.config import OptimConfig
from simulator.lessons import deep_mlp, load_lesson
from simulator.lessons.deep_mlp import DeepMLP, DeepMLPConfig, DeepMLPLesson
from simulator.lessons.leaf_flower import (
    l1_loss,
    leaf_flower_examples,
    leaf_flower_network,
    leaf_flower_update,
    tiny_backward,
    tiny_forward,
    tiny_loss,
)
from simulator.presets import PresetError, load_any, parse_any_text
from tests.helpers import rel_err


def load_mlp_lesson(path) -> DeepMLPConfig:
    return load_lesson(path, "deep_mlp")


def lesson_summary(cfg: DeepMLPConfig, steps: int) -> str:
    return deep_mlp.summary(cfg, deep_mlp.run(cfg, steps))


SMALL = DeepMLPConfig(n_layer=2, width=5, n_classes=3, n_train=20, n_val=20, batch_size=6, steps=5, eval_every=0)


def random_net(cfg: DeepMLPConfig, seed=0):
    net = DeepMLP(cfg, np.float64)
    rng = np.random.default_rng(seed)
    for spec in net.layout:
        w = rng.normal(0.0, 0.7, spec.shape)
        net.p[spec.name][...] = 1.0 + w if spec.name.endswith("norm.w") else w
    x = rng.normal(0.0, 1.0, (6, 2))
    y = rng.integers(0, cfg.n_classes, 6).astype(np.int32)
    return net, x, y


@pytest.mark.parametrize("activation,norm,residual,training", [
    ("sigmoid", "none", False, True), ("tanh", "layernorm", True, True), ("silu", "batchnorm", False, True),
    ("gelu", "batchnorm", True, False), ("tanh", "batchnorm", True, True)])
def test_deep_mlp_gradients_match_finite_differences(activation, norm, residual, training):
    cfg = replace(SMALL, activation=activation, norm=norm, residual=residual)
    net, x, y = random_net(cfg, seed=len(activation) + residual)
    net.training = training
    rng = np.random.default_rng(3)
    for name, buf in net.buffers.items():
        buf[...] = rng.uniform(0.5, 2.0, buf.shape) if name.endswith("var") else rng.normal(0.0, 0.5, buf.shape)
    net.forward(x, y)
    net.backward()
    grads = net.grads.copy()
    assert np.abs(grads).max() > 1e-2
    worst = 0.0
    for k in range(net.params.size):
        old = net.params[k]
        net.params[k] = old + 1e-6
        up = net.forward(x, y)
        net.params[k] = old - 1e-6
        down = net.forward(x, y)
        net.params[k] = old
        worst = max(worst, rel_err(grads[k], (up - down) / 2e-6))
    assert worst < 1e-6, f"{activation}/{norm}/residual={residual}/training={training}: {worst:.3g}"


def test_stream_gradient_norms_are_those_of_each_layer_output():
    cfg = replace(SMALL, activation="tanh", residual=True)
    net, x, y = random_net(cfg)
    net.forward(x, y)
    net.backward()
    # dL/dh of the last hidden layer is dlogits @ out.w^T, computed here independently
    logits = net.acts[6]["logits"].astype(np.float64)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(6), y] -= 1.0
    assert net.stream_grad_norms[-1] == pytest.approx(np.linalg.norm(p / 6 @ net.p["out.w"].T), rel=1e-12)


# -------------------------------------------------------------------------------- lessons (presets)

def test_deep_sigmoid_gradients_vanish_toward_the_input():
    lesson = DeepMLPLesson(load_mlp_lesson("deep-sigmoid"))
    records = lesson.run(60)
    g = records[0].grad_norms  # input layer first
    assert len(g) == 22 and g[0] < 1e-10 * g[-1]
    rising = sum(b > a for a, b in zip(g[:-1], g[1:], strict=True))
    assert rising == len(g) - 1, "each layer nearer the output has the larger gradient"
    ratios = np.array(g[1:-1]) / np.array(g[:-2])
    assert np.all(ratios > 1.5), "geometric: every layer multiplies the gradient by the same kind of factor"
    assert lesson.evaluate("val")[1] < 0.45, "three classes: it stays near chance (1/3)"


def test_deep_exploding_goes_nan_and_clipping_stops_it():
    plain = DeepMLPLesson(load_mlp_lesson("deep-exploding"))
    records = plain.run()
    assert records[-1].nonfinite and len(records) <= 5 and plain.diverged
    s = records[0].stream_grad_norms  # the backward signal grows layer by layer toward the input
    assert s[0] > 1e4 * s[-1] and records[0].grad_norm > 1e4
    clipped_cfg = load_mlp_lesson("deep-exploding-clipped")
    assert replace(clipped_cfg, name=plain.cfg.name, description=plain.cfg.description,
                   optim=plain.cfg.optim) == plain.cfg, "the same run but for clipping"
    clipped = DeepMLPLesson(clipped_cfg)
    records = clipped.run(100)
    assert len(records) == 100 and not any(r.nonfinite for r in records)
    assert all(math.isfinite(r.loss) for r in records) and sum(r.clipped for r in records) > 90
    assert np.isfinite(clipped.net.params).all()


def test_layernorm_residual_he_trains_the_same_depth():
    lesson = DeepMLPLesson(load_mlp_lesson("deep-residual-layernorm"))
    records = lesson.run(150)
    g = records[0].grad_norms
    assert max(g[:-1]) < 100 * min(g[:-1]), "no layer's gradient vanishes or explodes"
    loss, accuracy = lesson.evaluate("val")
    assert accuracy > 0.9 and loss < 0.3


def test_batchnorm_with_batch_two_fails_where_layernorm_learns():
    bn, ln = DeepMLPLesson(load_mlp_lesson("batchnorm-batch2")), DeepMLPLesson(load_mlp_lesson("layernorm-batch2"))
    rb, rl = bn.run(), ln.run()
    assert bn.cfg.batch_size == ln.cfg.batch_size == 2
    train_bn, train_ln = np.mean([r.loss for r in rb[-100:]]), np.mean([r.loss for r in rl[-100:]])
    assert train_bn > train_ln + 0.5, "batch statistics of two examples: it trains badly"
    acc_bn, acc_ln = bn.evaluate("val")[1], ln.evaluate("val")[1]
    assert acc_bn < 0.65 and acc_ln > 0.9
    # LayerNorm: train mode and eval mode are the same function; BatchNorm's are not
    assert abs(ln.evaluate("val")[0] - ln.evaluate("val", training=True)[0]) < 1e-5
    assert abs(bn.evaluate("val")[0] - bn.evaluate("val", training=True)[0]) > 0.01
    first = DeepMLPLesson(load_mlp_lesson("batchnorm-batch2"))
    first.step()  # train mode: in a batch of two, a normalized unit is +-d / sqrt(d^2 + eps), d = half the gap
    A = first.net.acts[2]
    xhat = (A["z0"] - A["mean0"]) * A["rstd0"]  # the normalized value, before gamma and beta
    d = (A["z0"][0] - A["z0"][1]).astype(np.float64) / 2
    assert np.allclose(xhat[0], d / np.sqrt(d * d + 1e-5), atol=1e-4) and np.allclose(xhat[1], -xhat[0], atol=1e-4)
    assert np.mean(np.abs(xhat) > 0.99) > 0.8, "so nearly every unit is just +1 or -1"


def test_large_normal_init_saturates_sigmoids_and_relu_units_die():
    cfg = replace(SMALL, n_layer=6, width=32, n_train=200, batch_size=64, activation="sigmoid")
    calm = DeepMLPLesson(replace(cfg, init="xavier")).step()
    hot = DeepMLPLesson(replace(cfg, init="normal", init_std=2.0)).step()
    assert len(hot.saturated) == 7 and hot.dead == []
    assert max(hot.saturated) > 0.2 and max(calm.saturated) < 0.05
    relu = DeepMLPLesson(replace(cfg, activation="relu", init="normal", init_std=1.0)).step()
    assert relu.saturated == [] and len(relu.dead) == 7 and max(relu.dead) > 0.05


def test_every_deep_mlp_preset_loads_and_mistakes_are_named(tmp_path):
    for name in ("deep-sigmoid", "deep-exploding", "deep-exploding-clipped", "deep-residual-layernorm",
                 "batchnorm-batch2", "layernorm-batch2"):
        cfg = load_any(name)
        assert isinstance(cfg, DeepMLPConfig) and cfg.name == name and len(cfg.description.splitlines()) >= 3
    with pytest.raises(PresetError, match=r"<preset>:2: norm: 'groupnorm' is not one of none, layernorm, batchnorm"):
        parse_any_text("kind: deep_mlp\nnorm: groupnorm\n")
    with pytest.raises(PresetError, match=r"batch_size: 50 is larger than n_train 40"):
        parse_any_text("kind: deep_mlp\nbatch_size: 50\nn_train: 40\n")
    with pytest.raises(PresetError, match=r"optim.lr: must be greater than 0"):
        parse_any_text("kind: deep_mlp\noptim: {name: sgd, lr: 0}\n")
    with pytest.raises(PresetError, match="^n_classes: must be at least 2"):
        DeepMLPLesson(replace(SMALL, n_classes=1))
    with pytest.raises(PresetError, match="not a deep_mlp preset"):
        load_mlp_lesson("tiny-gpt")


def test_lesson_summary_reads_like_the_lesson():
    text = lesson_summary(replace(load_mlp_lesson("deep-exploding")), 5)
    assert "l0.w" in text and "out.w" in text and "NaN/Inf" in text
    text = lesson_summary(replace(load_mlp_lesson("deep-exploding-clipped")), 5)
    assert "clipping fired on 5 of 5 steps" in text and "accuracy" in text


def test_same_seed_same_run():
    cfg = replace(SMALL, optim=OptimConfig(name="adam", lr=0.01, schedule="constant"))
    a, b = DeepMLPLesson(cfg).run(), DeepMLPLesson(cfg).run()
    assert [r.loss for r in a] == [r.loss for r in b] and len(a) == 5


# -------------------------------------------------------------------------------------- leaf or flower

def test_leaf_flower_forward_by_hand():
    params = leaf_flower_network()
    x, y = leaf_flower_examples()["leaf"]
    out = tiny_forward(params, x)
    # z1_0 = 0.2*0.5 + 0.8*(-0.6) + 0.1*0.4 + 0.3*0.2 + 0.1 = -0.18
    assert out["z1"] == pytest.approx([-0.18, 0.38, -0.19], abs=1e-12)
    h = 1 / (1 + np.exp(-np.array([-0.18, 0.38, -0.19])))
    z2 = np.array([h @ [0.8, -0.7, 0.5], h @ [-0.6, 0.9, -0.4]])
    assert out["z2"] == pytest.approx(z2, abs=1e-12)
    assert out["p"][0] == pytest.approx(1 / (1 + np.exp(z2[1] - z2[0])), abs=1e-12)
    assert tiny_loss(out["p"], y, "cross_entropy") == pytest.approx(-np.log(out["p"][0]), abs=1e-12)


@pytest.mark.parametrize("loss", ["cross_entropy", "l1"])
def test_leaf_flower_gradients_match_finite_differences(loss):
    params = leaf_flower_network()
    for example in ("leaf", "flower"):
        x, y = leaf_flower_examples()[example]
        grads = tiny_backward(params, tiny_forward(params, x), y, loss)
        for name, w in params.items():
            for idx in np.ndindex(w.shape):
                old = w[idx]
                w[idx] = old + 1e-6
                up = tiny_loss(tiny_forward(params, x)["p"], y, loss)
                w[idx] = old - 1e-6
                down = tiny_loss(tiny_forward(params, x)["p"], y, loss)
                w[idx] = old
                assert rel_err(grads[name][idx], (up - down) / 2e-6) < 1e-8, (loss, example, name, idx)


@pytest.mark.parametrize("loss", ["cross_entropy", "l1"])
def test_leaf_flower_update_is_new_equals_old_minus_lr_grad(loss):
    u = leaf_flower_update(loss, lr=0.5)
    assert u.weight == ("W2", 1, 0) and u.old == -0.7
    h1, (p0, p1) = u.before["h"][1], u.before["p"]
    want = (p0 - 1) * h1 if loss == "cross_entropy" else -2 * p0 * p1 * h1  # by hand for target (1, 0)
    assert u.grad == pytest.approx(want, abs=1e-15)
    assert u.new == pytest.approx(u.old - 0.5 * u.grad, abs=1e-15)
    assert u.after["p"][0] > p0 and u.loss_after < u.loss, "one step towards the right answer"
    assert u.loss == pytest.approx(-math.log(p0) if loss == "cross_entropy" else (1 - p0) + p1, abs=1e-15)


def test_l1_loss_textbook_example():
    assert l1_loss([0.6, 0.4], [1.0, 0.0]) == pytest.approx(0.8, abs=1e-15)
    assert l1_loss([0.5, 0.5], [0.0, 1.0]) == pytest.approx(1.0, abs=1e-15)
    with pytest.raises(PresetError, match="^loss: must be one of cross_entropy, l1"):
        leaf_flower_update("mse")
