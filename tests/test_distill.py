"""Knowledge distillation: each term's kernel against numpy and float64 finite differences, the sum rule on a
whole student, T^2 scaling, every-other-layer initialisation, the lesson's settings and its bad teachers."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from simulator.config import ModelConfig
from simulator.distill import (
    EPS,
    Distiller,
    LossWeights,
    Projection,
    add_gradients,
    final_hidden,
    init_every_other_layer,
    layer_map,
    loss_terms,
    soft_targets,
    student_backward,
    teacher_model,
)
from simulator.kernels.cpu.distill import (
    cosine_backward,
    cosine_forward,
    hard_ce_backward,
    hard_ce_forward,
    soft_kl_backward,
    soft_kl_forward,
)
from tests.helpers import numeric_grad, random_model, rel_err

N, V, C = 5, 7, 3  # odd shapes


def _softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _data(seed=0, scale=2.0):
    rng = np.random.default_rng(seed)
    return (rng.normal(0, scale, (N, V)), rng.normal(0, scale, (N, V)), rng.integers(0, V, N).astype(np.int32),
            rng.normal(0, 1, (N, C)), rng.normal(0, 1, (N, C)))


def _total(kernel, *args):
    rows = np.zeros(N)
    kernel(rows, *args)
    return rows.sum()


def test_each_forward_matches_a_numpy_reference():
    s, t, y, hs, ht = _data()
    rows = np.zeros(N)
    hard_ce_forward(rows, s, y)
    assert np.allclose(rows, -np.log(_softmax(s)[np.arange(N), y]), rtol=1e-12)
    for T in (0.5, 1.0, 3.0):
        p, q = _softmax(t / T), _softmax(s / T)
        soft_kl_forward(rows, s, t, 1.0 / T)
        assert np.allclose(rows, (p * (np.log(p) - np.log(q))).sum(1), rtol=1e-10)
    cosine_forward(rows, hs, ht, EPS)
    cos = (hs * ht).sum(1) / np.linalg.norm(hs, axis=1) / np.linalg.norm(ht, axis=1)
    assert np.allclose(rows, 1 - cos, rtol=1e-12)


@pytest.mark.parametrize("T", [0.7, 2.0, 5.0])
def test_each_backward_matches_float64_central_differences(T):
    s, t, y, hs, ht = _data(1)
    for forward, backward, x, args in (
            (hard_ce_forward, hard_ce_backward, s, (y,)),
            (soft_kl_forward, soft_kl_backward, s, (t, 1.0 / T)),
            (cosine_forward, cosine_backward, hs, (ht, EPS))):
        start = np.full_like(x, 0.25)  # accumulate-only: the gradient lands on top of what was there
        grad = start.copy()
        backward(grad, x, *args, 0.6)
        num = numeric_grad(lambda f=forward, x=x, a=args: 0.6 * _total(f, x, *a), x)
        assert rel_err(grad - start, num) < 1e-8, forward.__name__


def test_the_projection_gradients_match_central_differences():
    rng = np.random.default_rng(2)
    hs, ht = rng.normal(0, 1, (N, 3)), rng.normal(0, 1, (N, 4))
    from simulator.config import OptimConfig
    proj = Projection(3, 4, OptimConfig(), rng, np.float64)

    def loss():
        hp = np.zeros((N, 4))
        proj.forward(hp, hs)
        return _total(cosine_forward, hp, ht, EPS)

    hp, dhp, dhs = np.zeros((N, 4)), np.zeros((N, 4)), np.zeros((N, 3))
    proj.forward(hp, hs)
    cosine_backward(dhp, hp, ht, EPS, 1.0)
    proj.backward(dhs, dhp, hs, np.zeros((N, 3)))
    assert rel_err(proj.dw, numeric_grad(loss, proj.w)) < 1e-8
    assert rel_err(dhs, numeric_grad(loss, hs)) < 1e-8


def test_kl_of_identical_distributions_is_zero_and_so_is_its_gradient():
    s, *_ = _data(3)
    rows, grad = np.ones(N), np.zeros((N, V))
    soft_kl_forward(rows, s, s.copy(), 0.5)
    soft_kl_backward(grad, s, s.copy(), 0.5, 1.0)
    assert np.abs(rows).max() < 1e-12 and np.abs(grad).max() < 1e-15
    hs = np.random.default_rng(0).normal(0, 1, (N, C))
    cosine_forward(rows, hs, 3.0 * hs, EPS)  # the cosine ignores the scale
    assert np.abs(rows).max() < 1e-12


def test_t_squared_keeps_the_soft_gradient_the_same_size_at_any_temperature():
    rng = np.random.default_rng(4)
    s, t = rng.normal(0, 1, (N, V)), rng.normal(0, 1, (N, V))
    s -= s.mean(1, keepdims=True)
    t -= t.mean(1, keepdims=True)  # zero-mean logits, as in Hinton et al.'s approximation

    def grad(T, scaled):
        g = np.zeros((N, V))
        soft_kl_backward(g, s, t, 1.0 / T, T * T if scaled else 1.0)
        return g

    # unscaled, the gradient falls as 1/T^2; times T^2 it keeps its size and tends to (z_s - z_t) / V
    size = {T: np.abs(grad(T, True)).sum() for T in (2.0, 4.0, 10.0, 100.0, 1000.0)}
    assert all(abs(v / size[1000.0] - 1) < 0.02 for v in size.values())
    assert 99 < np.abs(grad(10.0, False)).sum() / np.abs(grad(100.0, False)).sum() < 102
    assert rel_err(grad(1000.0, True), (s - t) / V) < 1e-3
    assert rel_err(grad(100.0, True), (s - t) / V) > 5 * rel_err(grad(1000.0, True), (s - t) / V)  # an O(1/T) limit


# --------------------------------------------------------------------------------------- whole student
def _pair(d_teacher=5, n_teacher=3, d_student=5, n_student=2, batch=(2, 3)):
    """A float64 teacher and student with random weights (odd widths) and a batch."""
    base = ModelConfig(d_model=5, n_layer=1, n_head=1, seq_len=4, vocab_size=V, mlp_ratio=1)
    teacher, ids, targets = random_model(replace(base, d_model=d_teacher, n_layer=n_teacher), batch, seed=1)
    student, _, _ = random_model(replace(base, d_model=d_student, n_layer=n_student), batch, seed=2)
    teacher.training = False
    return teacher, student, ids, targets


class _Session:
    """What a Distiller reads of a session, for a bare model."""

    def __init__(self, model):
        from simulator.config import RunConfig
        self.model, self.config = model, RunConfig()


def _distiller(teacher, student, ids, targets, weights):
    student.ensure_shape(*ids.shape)
    student.ids[...], student.targets[...] = ids, targets
    return Distiller(_Session(student), teacher, weights, projection_seed=3)


@pytest.mark.parametrize("d_student", [5, 3])  # the teacher's width, and narrower (a learned projection)
def test_the_gradient_of_the_sum_is_the_sum_of_the_three_gradients(d_student):
    teacher, student, ids, targets = _pair(d_student=d_student)
    w = LossWeights(alpha=0.7, beta=0.4, gamma=1.3, temperature=2.5)
    d = _distiller(teacher, student, ids, targets, w)
    total = d.forward_backward().total
    together = student.grads.copy()
    proj_together = None if d.projection is None else d.projection.grads.copy()
    apart, totals = np.zeros_like(together), 0.0
    for term in ("ce", "kl", "cos"):
        totals += d.forward_backward(w.only(term)).total
        assert np.abs(student.grads).max() > 0, term  # every term reaches the weights
        apart += student.grads
    assert rel_err(together, apart) < 1e-12 and abs(total - totals) < 1e-12
    if proj_together is not None:  # only the cosine reaches the projection
        assert rel_err(proj_together, d.projection.grads) < 1e-12


@pytest.mark.parametrize("d_student", [5, 3])
def test_the_whole_students_gradient_matches_central_differences(d_student):
    teacher, student, ids, targets = _pair(d_student=d_student)
    w = LossWeights(alpha=0.7, beta=0.4, gamma=1.3, temperature=2.5)
    d = _distiller(teacher, student, ids, targets, w)

    def loss():
        return d.terms(*d.forward()).total

    d.forward_backward()
    grads = {k: v.copy() for k, v in student.g.items()}
    for name in ("wte", "h0.attn.qkv.w", "h1.mlp.fc.b", "norm_f.w"):
        assert rel_err(grads[name], numeric_grad(loss, student.p[name])) < 1e-6, name
    if d.projection is not None:
        d.forward_backward()
        dw = d.projection.dw.copy()
        assert rel_err(dw, numeric_grad(loss, d.projection.w)) < 1e-6


def test_hidden_gradient_joins_the_head_gradient_before_the_blocks_read_it():
    teacher, student, ids, targets = _pair()
    student.forward(ids)
    student.targets[...] = targets
    rng = np.random.default_rng(5)
    dh = rng.normal(0, 1, final_hidden(student).shape)
    student.acts["dlogits"].fill(0.0)  # no loss through the logits: only dh
    student_backward(student, dh)
    only_dh = student.grads.copy()

    def loss():  # <h_final, dh>, whose gradient through the model is what dh starts
        student.forward(ids)
        return float((final_hidden(student) * dh).sum())
    assert rel_err(student.g["h0.mlp.fc.w"], numeric_grad(loss, student.p["h0.mlp.fc.w"])) < 1e-6
    assert np.abs(only_dh).max() > 0


def test_loss_terms_match_the_weighted_total():
    s, t, y, hs, ht = _data(6)
    rows = np.zeros(N)
    ce, kl, cos = loss_terms(s, t, y, hs, ht, 2.0, rows)
    assert np.isclose(kl, (lambda p, q: (p * np.log(p / q)).sum(1).mean())(_softmax(t / 2), _softmax(s / 2)))
    dl, dh = np.zeros((N, V)), np.zeros((N, C))
    add_gradients(dl, dh, s, t, y, hs, ht, LossWeights(0.0, 0.0, 0.0, 2.0))
    assert not dl.any() and not dh.any()  # a weight of 0 adds nothing
    assert np.allclose(soft_targets(t[0], [1.0, 2.0]), [_softmax(t[0]), _softmax(t[0] / 2)])


def test_distilling_with_only_the_hard_labels_steps_as_the_session_does():
    from simulator.lessons.distill import DistillConfig, _run_config, corpus
    from simulator.session import TrainingSession

    cfg = DistillConfig(seq_len=8, batch_size=2)
    rc = _run_config(cfg, 8, 1, 2, 3, 3e-3)
    plain, ours = TrainingSession(rc, corpus(0.1)), TrainingSession(rc, corpus(0.1))
    teacher = teacher_model(ours.config.model, ours.model.layout.views(ours.model.params.copy()))
    d = Distiller(ours, teacher, LossWeights(1.0, 0.0, 0.0, 2.0))
    for _ in range(3):
        rec, terms = plain.step(), d.step()
        assert abs(rec.loss - terms.ce) < 1e-6 and terms.total == terms.ce
        # the same gradient to float32 rounding (the kernels sum in another order)
        assert np.abs(plain.model.grads - ours.model.grads).max() < 1e-6 * np.abs(plain.model.grads).max()
    # Adam's first steps move each weight by about lr: a wrong gradient would show as a difference of 1e-3
    assert np.abs(plain.model.params - ours.model.params).max() < 1e-5
    assert (plain.model.ids == ours.model.ids).all()  # the same batches from the same stream


# --------------------------------------------------------------------------------------- every other layer
def test_every_other_layer_copies_the_teachers_tensors_exactly():
    teacher, student, _, _ = _pair(n_teacher=5, n_student=3)
    tensors = {k: v.copy() for k, v in teacher.p.items()}
    mapping = init_every_other_layer(student, teacher.cfg, tensors)
    assert layer_map(3) == [0, 2, 4]
    assert mapping["h1.attn.qkv.w"] == "h2.attn.qkv.w" and mapping["h2.mlp.proj.b"] == "h4.mlp.proj.b"
    assert mapping["wte"] == "wte" and mapping["norm_f.w"] == "norm_f.w"
    for name, source in mapping.items():
        assert np.array_equal(student.p[name], tensors[source]), name
    assert set(mapping) == set(student.p)


def test_every_other_layer_refuses_a_teacher_of_another_shape():
    teacher, student, _, _ = _pair(d_teacher=7)
    with pytest.raises(ValueError, match="d_model is 5, the teacher's 7"):
        init_every_other_layer(student, teacher.cfg, dict(teacher.p))
    teacher, student, _, _ = _pair(n_teacher=2, n_student=2)
    with pytest.raises(ValueError, match="at least 3"):
        init_every_other_layer(student, teacher.cfg, dict(teacher.p))


# --------------------------------------------------------------------------------------- the lesson
SMALL = dict(teacher_d_model=16, teacher_n_layer=2, teacher_n_head=2, teacher_steps=60, d_model=8, n_layer=1,
             n_head=2, seq_len=16, batch_size=4, steps=40, eval_every=20, eval_batches=2, lr=1e-2)


def _preset(tmp_path, name="d.yaml", **fields):
    from simulator.lessons.distill import DistillConfig
    from simulator.presets import dump_config
    path = tmp_path / name
    path.write_text(dump_config(DistillConfig(**{**SMALL, **fields})), encoding="utf-8")
    return path


def _run_folder(tmp_path, text=None):
    """A run folder of a tiny GPT trained 2 steps on `text` (default: the built-in corpus)."""
    from simulator.checkpoint import save_checkpoint
    from simulator.data.dataset import TextDataset
    from simulator.lessons.distill import DistillConfig, _run_config, corpus
    from simulator.session import TrainingSession

    data = corpus(0.1) if text is None else TextDataset(text, 0.1, "a small text")
    session = TrainingSession(_run_config(DistillConfig(seq_len=16, batch_size=2), 16, 2, 2, 2, 1e-3), data)
    session.run(2)
    folder = tmp_path / "teacher-run"
    folder.mkdir()
    save_checkpoint(folder, session)
    return folder


def test_the_distilled_student_comes_closer_to_its_teacher():
    from simulator.lessons.distill import DistillConfig, run, summary
    cfg = DistillConfig(**SMALL)
    frames = run(cfg)
    hard, distilled = frames[-1].points
    start = frames[0].start_val
    assert start[0] == start[1]  # the same student: same seed, same init
    assert hard.val < start[0] - 0.3 and distilled.val < start[1] - 0.3  # both learn (measured: 0.6 each)
    assert frames[-1].teacher_val < start[0] - 0.3
    # what distillation optimises: the KL to the teacher's softened outputs, far lower than the hard student's
    kl = [np.mean([f.points[i].terms.kl for f in frames[-10:]]) for i in range(2)]
    assert kl[1] < 0.7 * kl[0]  # measured: 0.007 vs 0.020
    text = summary(cfg, frames)
    assert f"{distilled.val:.4f} vs {hard.val:.4f}" in text


def test_init_from_teacher_starts_both_students_from_every_other_block():
    from simulator.lessons.distill import DistillConfig, run, teacher_of
    cfg = DistillConfig(**{**SMALL, "d_model": 16, "n_layer": 1, "init_from_teacher": True, "gamma": 0.5})
    frames = run(cfg, 1)
    tcfg, tensors = teacher_of(cfg)
    assert frames[0].start_val[0] == frames[0].start_val[1] and not frames[0].projected
    # at step 0 the student is the teacher's block 0 with its embeddings and head: its loss is that model's
    from simulator.lessons.distill import _run_config, corpus
    from simulator.session import TrainingSession
    s = TrainingSession(_run_config(cfg, 16, 1, 2, 1, 1e-3), corpus(0.1))
    init_every_other_layer(s.model, tcfg, tensors)
    assert s.evaluate("val") == frames[0].start_val[0]
    assert np.array_equal(s.model.p["h0.attn.qkv.w"], tensors["h0.attn.qkv.w"])


def test_a_teacher_run_folder_with_the_students_tokens_is_the_teacher(tmp_path, capsys):
    from simulator.cli import main
    folder = _run_folder(tmp_path)
    path = _preset(tmp_path, teacher_run=str(folder))
    assert main(["train", "--preset", str(path), "--steps", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert str(folder) in out and "d_model 16 x 2 blocks" in out


@pytest.mark.parametrize("fields, key, words", [
    ({"alpha": 0.0, "beta": 0.0, "gamma": 0.0}, "alpha", "all 0"),
    ({"temperature": 0.0}, "temperature", "must be greater than 0"),
    ({"beta": -1.0}, "beta", "must be at least 0"),
    ({"init_from_teacher": True}, "init_from_teacher", "d_model is 8, the teacher's 16"),
    ({"teacher_run": "no-such-run"}, "teacher_run", "no checkpoint there"),
])
def test_bad_settings_are_one_line_with_file_line_and_key(tmp_path, capsys, fields, key, words):
    from simulator.cli import main
    path = _preset(tmp_path, **fields)
    assert main(["train", "--preset", str(path), "--steps", "2", "--quiet"]) == 2
    err = capsys.readouterr().err
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if text.startswith(f"{key}:"))
    assert err.count("\n") == 1 and err.startswith(f"error: {path}:{line}: {key}: ") and words in err, err


def test_a_teacher_with_another_vocabulary_is_refused(tmp_path, capsys):
    from simulator.cli import main
    folder = _run_folder(tmp_path, text="abcab cabba " * 200)
    path = _preset(tmp_path, teacher_run=str(folder))
    assert main(["train", "--preset", str(path), "--steps", "2", "--quiet"]) == 2
    err = capsys.readouterr().err
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if text.startswith("teacher_run:"))
    assert err.count("\n") == 1 and err.startswith(f"error: {path}:{line}: teacher_run: ") and "vocabulary" in err, err
    assert "Traceback" not in err


def test_dark_knowledge_is_the_teachers_softened_distribution_beside_the_label():
    from simulator.lessons.distill import DistillConfig, dark_knowledge, run
    window = run(DistillConfig(**SMALL), 1)[0].window
    tokens, probs, onehot = dark_knowledge(window, 5, (1.0, 2.0, 4.0), top=6)
    target = window.vocab[int(window.targets[5])]
    assert tokens[int(np.argmax(onehot))] == target and onehot.sum() == 1
    full = soft_targets(window.logits[5], (1.0, 2.0, 4.0))
    assert np.allclose(probs[:, :6], full[:, np.argsort(-full[0], kind="stable")[:6]])
    assert (np.diff(probs[0, :6]) <= 0).all() and probs[2].max() < probs[1].max() < probs[0].max()
