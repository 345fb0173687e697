"""Early stopping on the validation loss: the rule, restore_best, checkpoints and resume, the CLI and presets."""

from __future__ import annotations

import math
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from main import main
from simulator.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from simulator.early_stopping import EarlyStopping
from simulator.presets import find_preset, load_preset, override
from simulator.session import TrainingSession

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "presets" / "small-corpus.txt"

# small enough for seconds on two cores; it stops at step 110 (best 95) on seed 3
TINY = f"""\
name: es-tiny
description: a tiny run on the small corpus for the early-stopping tests
model: {{d_model: 32, n_layer: 1, n_head: 2, seq_len: 16}}
optim: {{name: adamw, lr: 0.01, schedule: constant}}
data: {{kind: text_file, path: {CORPUS.as_posix()}, val_fraction: 0.25}}
train:
  steps: 300
  batch_size: 8
  seed: 3
  eval_every: 5
  eval_batches: 2
  stats_every: 0
  checkpoint_every: 0
  early_stopping: {{patience: 3, min_delta: 0.0, restore_best: true}}
"""


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("es") / "es-tiny.yaml"
    path.write_text(TINY, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny_cfg(tiny_path):
    return load_preset(tiny_path)


def run_to_stop(session: TrainingSession, limit: int = 1000):
    """Steps until early stopping (or `limit`); the records."""
    return session.run(limit, lambda r: r.early_stop is None)


# ------------------------------------------------------------------ the rule
def test_the_rule_counts_evaluations_without_an_improvement_larger_than_min_delta():
    es = EarlyStopping()
    seen = [es.observe(step, loss, patience=2, min_delta=0.1, restore_best=True)
            for step, loss in ((10, 2.0), (20, 1.95), (30, 1.85), (40, 1.80), (50, 1.9))]
    # 1.95 is not 0.1 below 2.0; 1.85 is; 1.80 and 1.9 are not 0.1 below 1.85: the second of them stops it
    assert seen == ["improved", "waiting", "improved", "waiting", "stop"]
    assert (es.stopped.step, es.stopped.best_step, es.stopped.best_loss) == (50, 30, 1.85)
    assert "early stop at step 50" in es.stopped.sentence() and "best 1.8500 at step 30" in es.stopped.sentence()
    es.resume()
    assert es.stopped is None and es.waited == 0 and es.best_step == 30  # new patience, the same best
    assert es.observe(60, math.nan, 2, 0.1, True) == "waiting"  # NaN never improves
    assert es.observe(70, 1.70, 2, 0.1, True) == "improved"


def test_the_first_evaluation_is_the_first_best_and_the_state_round_trips():
    es = EarlyStopping()
    assert es.observe(5, 9.0, 1, 100.0, False) == "improved"  # min_delta does not apply to the first
    assert es.observe(10, 1.0, 1, 100.0, False) == "stop" and not es.stopped.restored
    again = EarlyStopping()
    again.load_state_arrays(es.state_arrays())
    assert again.__dict__ == es.__dict__
    fresh = EarlyStopping()
    fresh.load_state_arrays({})  # an older checkpoint: no early-stopping state
    assert fresh.best_step is None and fresh.stopped is None


# ------------------------------------------------------------------ the session
def test_restore_best_puts_back_exactly_the_weights_of_a_run_stopped_at_the_best_step(tiny_cfg):
    s = TrainingSession(tiny_cfg)
    recs = run_to_stop(s)
    stop = recs[-1].early_stop
    assert stop is not None and s.early_stop == stop and stop.restored
    vals = [(r.step, r.val_loss) for r in recs if r.val_loss is not None]
    best_step, best_val = min(vals, key=lambda sv: sv[1])
    assert (stop.best_step, stop.best_loss) == (best_step, best_val)
    every = tiny_cfg.train.early_stopping.patience * tiny_cfg.train.eval_every
    assert stop.step == best_step + every == s.step_count  # patience evaluations after the best; steps are counted
    assert all(v >= best_val for step, v in vals if step > best_step)

    plain = TrainingSession(replace(tiny_cfg, train=replace(
        tiny_cfg.train, early_stopping=replace(tiny_cfg.train.early_stopping, patience=0))))
    plain.run(best_step)
    assert np.array_equal(s.model.params, plain.model.params)  # bit for bit: the bookkeeping never perturbs a run
    assert s.evaluate() == best_val  # the same weights on the same fixed batches


def test_without_restore_best_the_weights_are_those_of_the_stop(tiny_cfg):
    cfg = override(tiny_cfg, **{"train.early_stopping.restore_best": "false"})
    s = TrainingSession(cfg)
    recs = run_to_stop(s)
    stop = recs[-1].early_stop
    assert stop is not None and not stop.restored and "weights are those of step" in stop.sentence()
    plain = TrainingSession(override(cfg, **{"train.early_stopping.patience": "0"}))
    plain.run(stop.step)
    assert np.array_equal(s.model.params, plain.model.params)


def test_a_checkpoint_before_the_stop_resumes_to_the_same_stop_and_the_same_best_weights(tiny_cfg, tmp_path):
    whole = TrainingSession(tiny_cfg)
    stop = run_to_stop(whole)[-1].early_stop
    part = TrainingSession(tiny_cfg)
    part.run(stop.best_step + 2 * tiny_cfg.train.eval_every)  # after the best, before the stop
    arrays = part.state_arrays()
    assert "early.best.params" in arrays  # the checkpoint keeps the best weights, not only the current ones
    save_checkpoint(tmp_path / "ckpt.npz", part)
    resumed = load_checkpoint(tmp_path / "ckpt.npz")
    again = run_to_stop(resumed)[-1].early_stop
    assert again == stop
    assert np.array_equal(resumed.model.params, whole.model.params)


def test_a_checkpoint_after_the_stop_keeps_the_stop_and_training_on_matches_in_process(tiny_cfg, tmp_path):
    s = TrainingSession(tiny_cfg)
    stop = run_to_stop(s)[-1].early_stop
    save_checkpoint(tmp_path / "stopped.npz", s)
    arrays = read_checkpoint(tmp_path / "stopped.npz")
    assert "early.best.params" not in arrays  # restored: the best weights are the checkpoint's weights
    back = load_checkpoint(tmp_path / "stopped.npz")
    assert back.early_stop == stop and np.array_equal(back.model.params, s.model.params)
    s.run(3)  # training on after a stop: the stop is cleared, the best is kept, with new patience
    back.run(3)
    for x in (s, back):
        assert x.early_stop is None and x.early.best_step == stop.best_step and x.early.waited == 0
    s.run(12)  # the same as in the process that stopped, evaluation by evaluation
    back.run(12)
    assert back.early.__dict__ == s.early.__dict__
    assert np.array_equal(back.model.params, s.model.params) and back.step_count == stop.step + 15


def test_early_stopping_settings_are_live(tiny_cfg):
    s = TrainingSession(override(tiny_cfg, **{"train.early_stopping.patience": "0"}))
    s.run(20)
    notes = s.apply_config(override(s.config, **{"train.early_stopping.patience": "1",
                                                 "train.early_stopping.min_delta": "5"}))
    assert notes == ["train.early_stopping.patience: 0 -> 1", "train.early_stopping.min_delta: 0.0 -> 5.0"]
    recs = run_to_stop(s, 50)
    # the first evaluation after the change is the best; the next cannot beat it by 5
    assert recs[-1].early_stop is not None and recs[-1].step == 30


# ------------------------------------------------------------------ the shipped preset
def test_overfit_early_stop_stops_where_the_validation_curve_turns():
    cfg = load_preset(find_preset("overfit-early-stop"))
    es = cfg.train.early_stopping
    assert es.patience > 0 and es.restore_best
    s = TrainingSession(cfg)
    kept = {}
    recs = s.run(cfg.train.steps, lambda r: (kept.__setitem__(r.step, s.model.params.copy())
                                             if r.val_loss is not None else None, r.early_stop is None)[1])
    stop = recs[-1].early_stop
    assert stop is not None and stop.step < cfg.train.steps  # it stopped before the 500 steps overfit trains
    vals = [(r.step, r.val_loss) for r in recs if r.val_loss is not None]
    best_step, best_val = min(vals, key=lambda sv: sv[1])
    assert (stop.best_step, stop.best_loss) == (best_step, best_val)
    assert vals[0][1] > best_val + 0.5  # it fell a long way to the best ...
    later = [v for step, v in vals if step > best_step]
    assert len(later) == es.patience and all(v > best_val - es.min_delta for v in later)
    assert later[-1] > best_val + 0.1  # ... and had turned back up when it stopped
    train_at_best = next(r.loss for r in recs if r.step == best_step)
    assert recs[-1].loss < train_at_best  # the training loss kept falling: memorising, not learning
    assert np.array_equal(s.model.params, kept[best_step])  # the weights of the best evaluation, exactly


# ------------------------------------------------------------------ the CLI
def test_cli_says_why_it_stopped_exits_0_and_resume_is_finished_unless_asked_for_more(tiny_path, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(["train", "--preset", str(tiny_path), "--runs", str(runs), "--quiet"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("early stop"))
    assert re.fullmatch(r"early stop at step 110: the validation loss has not improved for 3 evaluations; "
                        r"best \d\.\d{4} at step 95, the weights of step 95 are restored", line), line
    run = next(runs.iterdir())
    assert load_checkpoint(run).early_stop.step == 110
    rows = (run / "metrics.csv").read_text().splitlines()
    assert rows[-1].startswith("110,")  # the metrics end where the run stopped

    assert main(["train", "--resume", str(run), "--quiet"]) == 0  # already finished: nothing to train
    captured = capsys.readouterr()
    assert "the run is finished" in captured.err and "step 110:" in captured.out
    assert load_checkpoint(run).step_count == 110

    assert main(["train", "--resume", str(run), "--steps", "5", "--quiet"]) == 0
    capsys.readouterr()
    back = load_checkpoint(run)
    assert back.step_count == 115 and back.early_stop is None


@pytest.mark.parametrize("text, key", [
    ("early_stopping: {patience: -1}", "train.early_stopping.patience"),
    ("early_stopping: {patience: 2, min_delta: -0.5}", "train.early_stopping.min_delta"),
    ("early_stopping: {patience: 2, restore_best: maybe}", "train.early_stopping.restore_best"),
    ("early_stopping: {patiense: 2}", "train.early_stopping.patiense"),
    ("eval_every: 0\n  early_stopping: {patience: 2}", "train.early_stopping.patience"),
])
def test_bad_early_stopping_values_are_one_line_with_file_line_and_key(tmp_path, capsys, text, key):
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nmodel: {d_model: 16, n_layer: 1, n_head: 2, seq_len: 16}\n"
                    f"train:\n  steps: 2\n  {text}\n", encoding="utf-8")
    assert main(["train", "--preset", str(path), "--runs", str(tmp_path / "runs"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert str(path) in err and re.search(r":\d+", err) and key in err, err


# ------------------------------------------------------------------ a lesson with a validation set
def test_the_deep_mlp_lesson_stops_early_and_restores_its_best_weights():
    from simulator.config import EarlyStoppingConfig, OptimConfig
    from simulator.lessons.deep_mlp import DeepMLPConfig, DeepMLPLesson, summary

    cfg = DeepMLPConfig(name="mlp-es", n_layer=2, width=64, activation="relu", init="he", n_train=48, n_val=300,
                        batch_size=16, steps=2000, eval_every=10, seed=1,
                        optim=OptimConfig(name="adam", lr=0.01, schedule="constant"),
                        early_stopping=EarlyStoppingConfig(patience=3, min_delta=0.0, restore_best=True))
    lesson = DeepMLPLesson(cfg)
    kept, records = {}, []
    while not records or records[-1].early_stop is None and len(records) < cfg.steps:
        records.append(lesson.step())
        if records[-1].val_loss is not None and records[-1].early_stop is None:
            kept[records[-1].step] = lesson.net.params.copy()
    stop = records[-1].early_stop
    assert stop is not None and stop.step < cfg.steps  # 48 training points: it overfits, and stops
    vals = [(r.step, r.val_loss) for r in records if r.val_loss is not None]
    assert (stop.best_step, stop.best_loss) == min(vals, key=lambda sv: sv[1])
    assert stop.step == stop.best_step + cfg.early_stopping.patience * cfg.eval_every
    assert np.array_equal(lesson.net.params, kept[stop.best_step])
    assert lesson.evaluate("val")[0] == stop.best_loss
    assert stop.sentence() in summary(cfg, records)
    assert len(DeepMLPLesson(cfg).run()) == len(records)  # the lesson's own run stops at the same step


def test_a_deep_mlp_preset_with_patience_needs_eval_every(tmp_path, capsys):
    path = tmp_path / "mlp.yaml"
    path.write_text("kind: deep_mlp\nname: m\neval_every: 0\nearly_stopping:\n  patience: 2\n", encoding="utf-8")
    assert main(["train", "--preset", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{path}:5" in err and "early_stopping.patience" in err, err
