"""TrainingSession: determinism, step == step_into, resume equality, divergence, live changes, checkpoints."""

import ast
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from simulator.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from simulator.config import ModelConfig, OptimConfig, RunConfig, TrainConfig
from simulator.session import NeedsRebuild, SessionError, TrainingSession


def tiny(**train) -> RunConfig:
    return RunConfig(
        name="t",
        model=ModelConfig(d_model=16, n_layer=2, n_head=2, seq_len=12, dropout=0.1),
        optim=OptimConfig(lr=3e-3, warmup_steps=3, decay_steps=40, grad_clip=1.0, weight_decay=0.1),
        train=TrainConfig(batch_size=3, seed=5, eval_every=4, eval_batches=2, stats_every=3, **train))


def losses(session, n):
    return [session.step().loss for _ in range(n)]


def test_same_seed_same_losses_bit_for_bit():
    a, b = TrainingSession(tiny()), TrainingSession(tiny())
    assert losses(a, 6) == losses(b, 6)
    assert np.array_equal(a.model.params, b.model.params)
    c = TrainingSession(replace(tiny(), train=replace(tiny().train, seed=6)))
    assert losses(c, 2) != [r for r in losses(TrainingSession(tiny()), 2)]


def test_step_is_step_into_run_to_the_end():
    a, b = TrainingSession(tiny()), TrainingSession(tiny())
    for _ in range(3):
        rec_a = a.step()
        names = []
        while True:
            ev = b.step_into()
            names.append(ev.name)
            if ev.last:
                break
        assert names == a.phase_names
        assert b.last_record.loss == rec_a.loss
    assert np.array_equal(a.model.params, b.model.params)


def test_phase_order_is_forward_loss_reverse_backward_clip_update():
    s = TrainingSession(tiny())
    names = s.phase_names
    fwd = [n[len("forward."):] for n in names if n.startswith("forward.")]
    bwd = [n[len("backward."):] for n in names if n.startswith("backward.")]
    assert bwd == fwd[::-1]
    assert names[0] == "batch" and names[-2:] == ["clip", "update"]
    assert names.index("loss") == len(fwd) + 1


def test_record_fields_are_computed_from_the_step():
    s = TrainingSession(tiny())
    first = s.step()
    assert first.step == 1 and np.isfinite(first.loss) and first.tokens == 3 * 12
    assert set(first.grad_norms) == {spec.name for spec in s.model.layout}  # heavy stats on step 1
    g = s.model.layout.views(s.model.grads)["h0.attn.qkv.w"]
    assert first.grad_norms["h0.attn.qkv.w"] == pytest.approx(float(np.linalg.norm(g.astype(np.float64))))
    assert first.attention.shape == (12, 12)
    assert np.allclose(first.attention.sum(axis=1), 1.0, atol=1e-5)
    assert np.all(np.triu(first.attention, k=1) == 0)  # causal
    assert "h1.norm2" in first.activations and "x0" in first.activations
    second = s.step()
    assert second.grad_norms == {} and second.val_loss is None
    s.step()
    fourth = s.step()
    assert fourth.val_loss is not None and np.isfinite(fourth.val_loss)


def test_evaluate_and_generation_do_not_disturb_training():
    a, b = TrainingSession(tiny()), TrainingSession(tiny())
    a.step()
    b.step()
    b.evaluate()
    b.next_logits(np.array([1, 2, 3]))
    assert losses(a, 3) == losses(b, 3)


def test_next_logits_matches_a_full_forward():
    s = TrainingSession(replace(tiny(), model=replace(tiny().model, dropout=0.0)))
    s.step()
    ids = np.array([[4, 1, 7, 2, 9]], dtype=np.int32)
    logits = s.next_logits(ids[0])
    from simulator.model.gpt import GPT
    twin = GPT(s.config.model, s.model.dtype)
    twin.params[...] = s.model.params
    twin.training = False
    twin.forward(ids)
    assert np.allclose(logits, twin.logits()[0, -1], atol=1e-6)


def test_live_change_applies_next_step_structural_change_asks_for_rebuild():
    s = TrainingSession(tiny())
    s.step()
    new = replace(s.config, optim=replace(s.config.optim, lr=0.5, warmup_steps=0))
    notes = s.apply_config(new)
    assert any(n.startswith("optim.lr: 0.003 -> 0.5") for n in notes)
    from simulator.optim import lr_at
    assert lr_at(1, new.optim) != lr_at(1, tiny().optim)
    assert s.step().lr == lr_at(1, new.optim)
    with pytest.raises(NeedsRebuild, match="model.n_layer"):
        s.apply_config(replace(s.config, model=replace(s.config.model, n_layer=3)))
    weights = s.model.params.copy()
    notes = s.apply_config(replace(s.config, optim=replace(s.config.optim, name="sgd", weight_decay=0.0)))
    assert any("optim.name: adamw -> sgd" in n and "starts fresh" in n for n in notes)
    assert np.array_equal(s.model.params, weights) and tuple(s.optimizer.state) == ()
    s.step()
    s.step_into()
    with pytest.raises(SessionError, match="finish the current step"):
        s.apply_config(new)


def test_divergence_stops_before_the_update_and_names_the_first_bad_tensor():
    s = TrainingSession(tiny())
    s.step()
    s.model.p["h1.mlp.fc.w"][0, 0] = np.inf  # poison one weight of block 1's MLP
    before = s.model.params.copy()
    rec = s.step()
    assert rec.nonfinite is not None
    assert rec.nonfinite.phase == "forward.block1.mlp" and rec.nonfinite.tensor == "h1.mlp"
    assert rec.nonfinite.step == 1 and s.step_count == 1 and s.diverged is rec.nonfinite
    assert np.array_equal(s.model.params, before, equal_nan=True)  # the update was not applied
    assert "step 2" in rec.nonfinite.sentence() and "h1.mlp" in rec.nonfinite.sentence()


def test_divergence_from_a_huge_learning_rate_keeps_the_last_good_weights():
    cfg = tiny()
    cfg = replace(cfg, model=replace(cfg.model, norm="none", dropout=0.0),
                  optim=replace(cfg.optim, name="sgd", lr=1e6, warmup_steps=0, grad_clip=0.0))
    s = TrainingSession(cfg)
    for _ in range(50):
        good = s.model.params.copy()
        rec = s.step()
        if rec.nonfinite is not None:
            break
    assert rec.nonfinite is not None, "an lr of 1e6 without norms should blow up within 50 steps"
    assert np.array_equal(s.model.params, good) and np.isfinite(s.model.params).all()


def test_checkpoint_resume_is_bit_identical(tmp_path):
    whole = TrainingSession(tiny())
    expected = losses(whole, 10)
    part = TrainingSession(tiny())
    got = losses(part, 6)
    save_checkpoint(tmp_path, part)
    resumed = load_checkpoint(tmp_path)
    got += losses(resumed, 4)
    assert got == expected
    assert np.array_equal(resumed.model.params, whole.model.params)
    assert all(np.array_equal(resumed.optimizer.state[k], whole.optimizer.state[k]) for k in whole.optimizer.state)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    s = TrainingSession(tiny())
    path = save_checkpoint(tmp_path, s)
    good = path.read_bytes()
    s.step()

    def crash(f, **arrays):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, s)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.npz"]


def test_bad_checkpoints_are_refused_with_a_sentence(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint there"):
        load_checkpoint(tmp_path)
    (tmp_path / "checkpoint.npz").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match=r"not a checkpoint \(not an .npz archive\)"):
        load_checkpoint(tmp_path)
    np.savez(tmp_path / "other.npz", params=np.zeros(3))
    with pytest.raises(CheckpointError, match="not a transformer-sim checkpoint"):
        load_checkpoint(tmp_path / "other.npz")
    s = TrainingSession(tiny())
    path = save_checkpoint(tmp_path, s)
    with np.load(path) as z:
        arrays = dict(z)
    arrays["params"] = arrays["params"][:-5]
    np.savez(path, **arrays)
    with pytest.raises(CheckpointError, match="belongs to another model"):
        load_checkpoint(path)


def test_simulator_imports_neither_tkinter_nor_matplotlib():
    root = Path(__file__).resolve().parent.parent / "simulator"
    offenders = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in ("tkinter", "matplotlib", "ui")]
    assert offenders == []


@pytest.mark.parametrize("name", ["adam", "adamw", "adam_l2"])
def test_an_optimizer_switched_to_mid_run_updates_exactly_as_a_fresh_one(name):
    """Three SGD steps, then a switch: the first Adam update is a fresh Adam's first update (t = 1), not t = 4."""
    from simulator.optim import lr_at, make_optimizer
    s = TrainingSession(tiny())
    s.apply_config(replace(s.config, optim=replace(s.config.optim, name="sgd", weight_decay=0.0)))
    losses(s, 3)
    s.apply_config(replace(s.config, optim=replace(s.config.optim, name=name, beta2=0.999)))
    fresh = make_optimizer(s.config.optim, s.model.layout, s.model.dtype)
    for _ in range(2):  # the first two updates after the switch: t = 1, then t = 2 for both
        assert s.phase_names[-1] == "update"
        for _ in s.phase_names[:-1]:  # every phase before the update
            s.step_into()
        weights, grads = s.model.params.copy(), s.model.grads.copy()
        fresh.step(weights, grads, lr_at(s.step_count, s.config.optim))
        s.step_into()
        assert np.array_equal(s.model.params, weights), "the switched-to optimizer is not a fresh one"
    assert s.optimizer.steps == 2 and s.step_count == 5


@pytest.mark.parametrize("impl", ["naive", "tiled"])
def test_a_nan_weight_in_attention_is_named_where_it_first_shows_with_either_kernel(impl):
    """A NaN in a query weight reaches the attention output (the tiled kernel once dropped it and reported 0)."""
    s = TrainingSession(replace(tiny(), model=replace(tiny().model, dropout=0.0,
                                                      attention=replace(tiny().model.attention, impl=impl))))
    s.step()
    w = s.parameter("h0.attn.qkv.w")
    w[0, 1] = np.nan
    s.set_parameter("h0.attn.qkv.w", w)
    rec = s.step()
    assert not np.isfinite(rec.loss)
    assert rec.nonfinite is not None and rec.nonfinite.tensor == "h0.attn", rec.nonfinite.sentence()


def test_on_statistics_reads_a_steps_own_tensors_before_its_evaluation_overwrites_them():
    """The hook runs after the heavy statistics and before the evaluation: what it reads is the training batch's
    (the same as in a run without evaluation), where reading after the step gives the last evaluation batch's."""
    seen = {}

    def run(eval_every):
        s = TrainingSession(replace(tiny(), train=replace(tiny().train, eval_every=eval_every, stats_every=4)))
        s.on_statistics = lambda: seen.setdefault(eval_every, []).append(
            (s.step_count, s.attention_map(1, 0).copy(), s.activation("h0.attn").copy()))
        for _ in range(4):
            s.step()
        return s

    with_eval = run(4)  # step 4 has statistics and an evaluation
    run(0)
    assert [x[0] for x in seen[4]] == [x[0] for x in seen[0]] == [1, 4]
    for (_, att_e, act_e), (_, att_0, act_0) in zip(seen[4], seen[0], strict=True):
        assert np.array_equal(att_e, att_0) and np.array_equal(act_e, act_0)
    assert not np.array_equal(with_eval.activation("h0.attn"), seen[4][-1][2])  # after the step: the eval batch's
