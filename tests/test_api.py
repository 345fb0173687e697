"""The public API as a notebook uses it: parameters, kinds, clipped and unclipped gradients, a caller's batch."""

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from simulator.api import SessionError, TrainingSession
from simulator.optim import global_norm
from tests.test_session import tiny

README = Path(__file__).resolve().parent.parent / "README.md"


def session(**optim) -> TrainingSession:
    cfg = tiny()
    return TrainingSession(replace(cfg, optim=replace(cfg.optim, **optim)))


def test_parameter_is_a_copy_and_set_parameter_writes_it_shape_checked():
    s = session()
    w = s.parameter("h0.attn.qkv.w")
    w[...] = 7.0
    assert not np.any(s.parameter("h0.attn.qkv.w") == 7.0), "a read is a copy"
    s.set_parameter("h0.attn.qkv.w", w)
    assert np.all(s.parameter("h0.attn.qkv.w") == 7.0)
    assert np.all(s.model.p["h0.attn.qkv.w"] == 7.0), "the model trains on what was written"
    with pytest.raises(SessionError, match=r"h0.attn.qkv.w has shape \(16, 48\); the new value has shape \(48, 16\)"):
        s.set_parameter("h0.attn.qkv.w", w.T)
    with pytest.raises(SessionError, match="no parameter tensor named 'nope'"):
        s.parameter("nope")


def test_set_parameter_changes_what_a_step_computes():
    a, b = session(), session()
    b.set_parameter("wte", a.parameter("wte"))  # the same values: the same step
    assert a.step().loss == b.step().loss
    b.set_parameter("wte", np.zeros_like(b.parameter("wte")))
    assert a.step().loss != b.step().loss


def test_parameter_kinds_are_the_ones_weight_decay_groups_by():
    s = session(decay_embeddings=False, decay_norms_and_biases=False)
    kinds = s.parameter_kinds()
    assert list(kinds) == s.parameter_names and set(kinds.values()) == {"matrix", "bias", "norm", "embedding"}
    assert s.parameter_kind("wte") == "embedding" and s.parameter_kind("h0.attn.qkv.b") == "bias"
    assert s.parameter_kind("h0.norm1.w") == "norm" and s.parameter_kind("h1.mlp.fc.w") == "matrix"
    s.step()  # the optimizer builds its decay mask on its first step
    mask = s.model.layout.views(s.optimizer.decay_mask)
    assert all(bool(mask[n].all()) == s.decays(n) == (kinds[n] == "matrix") for n in kinds)
    s.apply_config(replace(s.config, optim=replace(s.config.optim, decay_embeddings=True)))
    assert s.decays("wte") and not s.decays("h0.attn.qkv.b")


def test_gradient_is_the_clipped_one_and_the_unclipped_one_is_exact():
    clipped, free = session(grad_clip=0.01), session(grad_clip=0.0)
    rec = clipped.step()
    free.step()
    assert rec.clipped and rec.grad_norm > 0.01
    after = np.concatenate([clipped.gradient(n).ravel() for n in clipped.parameter_names])
    before = np.concatenate([clipped.gradient(n, clipped=False).ravel() for n in clipped.parameter_names])
    assert global_norm(after) == pytest.approx(0.01, rel=1e-5)
    assert global_norm(before) == pytest.approx(rec.grad_norm, rel=1e-6)
    for n in clipped.parameter_names:  # the same weights and batch: the unclipped gradient is the unclipped run's
        np.testing.assert_array_equal(clipped.gradient(n, clipped=False), free.gradient(n, clipped=False))
        np.testing.assert_array_equal(free.gradient(n), free.gradient(n, clipped=False))
    np.testing.assert_allclose(after, before * (0.01 / rec.grad_norm), rtol=1e-5, atol=1e-12)


def test_forward_backward_on_a_callers_batch_matches_the_step_and_leaves_training_alone():
    s, ref, same = session(), session(), session()
    # the step's own batch: run the step up to its clip phase and keep the batch and the raw gradients
    event = s.step_into()
    ids, targets = event.tensors["ids"].copy(), event.tensors["targets"].copy()
    while s.phase_names[s._cursor] != "clip":
        s.step_into()
    with pytest.raises(SessionError, match="not clipped yet"):
        s.gradient("wte")
    raw = {n: s.gradient(n, clipped=False) for n in s.parameter_names}
    params = ref.model.params.copy()
    loss = ref.forward_backward(ids, targets)
    assert loss == s._step_state["loss"], "the same weights, batch and dropout masks: the same numbers"
    for n in s.parameter_names:
        np.testing.assert_array_equal(ref.gradient(n, clipped=False), raw[n])
    with pytest.raises(SessionError, match="not clipped yet"):
        ref.gradient("wte")
    assert np.array_equal(ref.model.params, params), "no update"
    # the batch and dropout streams are where they were: the next steps are those of an untouched session
    assert [ref.step().loss for _ in range(3)] == [same.step().loss for _ in range(3)]
    with pytest.raises(SessionError, match=r"batch shape \(B, T\) = \(3, 12\)"):
        ref.forward_backward(ids[:2], targets[:2])
    with pytest.raises(SessionError, match="token ids"):
        ref.forward_backward(ids + 1000, targets)


def test_eval_batches_are_the_ones_evaluate_averages_over():
    s = session()
    s.step()
    batches = s.eval_batches("val")
    assert len(batches) == s.config.train.eval_batches
    assert all(ids.shape == targets.shape == (3, 12) and lengths is None for ids, targets, lengths in batches)
    again = s.eval_batches("val")
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(batches, again, strict=True))
    s.eval()
    mean = np.mean([s.forward_backward(*batch) for batch in batches])
    s.train()
    assert s.evaluate("val") == pytest.approx(mean, rel=1e-6)


def test_the_readme_example_runs():
    """The README's "Use the engine from Python" block, as a person would paste it."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Use the engine from Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.strip().splitlines()) <= 12
    exec(compile(code, "README.md", "exec"), {})

