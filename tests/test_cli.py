"""The headless CLI as a person uses it: run folders, resume, exit statuses, one-line errors."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from main import main
from simulator.presets import NOT_PRESETS

ROOT = Path(__file__).resolve().parent.parent

TINY = """\
name: cli-tiny
description: a very small model for tests
model: {d_model: 16, n_layer: 1, n_head: 2, seq_len: 16, dropout: 0.1}
optim: {lr: 0.003, warmup_steps: 2, decay_steps: 30}
train: {steps: 6, batch_size: 4, seed: 3, eval_every: 3, eval_batches: 1, checkpoint_every: 2}
"""


@pytest.fixture
def preset(tmp_path):
    path = tmp_path / "cli-tiny.yaml"
    path.write_text(TINY)
    return path


def run_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir())


def read_metrics(run: Path) -> list[dict]:
    return list(csv.DictReader((run / "metrics.csv").open()))


def test_train_writes_a_run_folder(preset, tmp_path, capsys):
    assert main(["train", "--preset", str(preset), "--runs", str(tmp_path / "runs"), "--quiet"]) == 0
    (run,) = run_dirs(tmp_path / "runs")
    assert run.name.startswith("cli-tiny-")
    assert {p.name for p in run.iterdir()} == {"config.yaml", "metrics.csv", "checkpoint.npz", ".lock"}
    rows = read_metrics(run)
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert list(rows[0]) == ["step", "loss", "val_loss", "lr", "grad_norm", "clipped", "tokens_per_s", "wall_time"]
    assert rows[2]["val_loss"] != "" and rows[1]["val_loss"] == ""
    assert "vocab_size: 46" in (run / "config.yaml").read_text()  # resolved from the data
    out = capsys.readouterr().out
    assert "validation loss" in out and "unigram entropy" in out


def test_resume_equals_an_uninterrupted_run(preset, tmp_path):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert main(["train", "--preset", str(preset), "--steps", "6", "--runs", str(whole), "--quiet"]) == 0
    assert main(["train", "--preset", str(preset), "--steps", "4", "--runs", str(parts), "--quiet"]) == 0
    (run,) = run_dirs(parts)
    assert main(["train", "--resume", str(run), "--steps", "2", "--quiet"]) == 0
    (ref,) = run_dirs(whole)
    assert [r["loss"] for r in read_metrics(run)] == [r["loss"] for r in read_metrics(ref)]
    with np.load(run / "checkpoint.npz") as a, np.load(ref / "checkpoint.npz") as b:
        assert np.array_equal(a["params"], b["params"]) and int(a["step"]) == 6


@pytest.mark.parametrize("argv, message", [
    (["train", "--preset", "no-such-preset"], "no-such-preset"),
    (["train", "--resume", "/nonexistent/run"], "no checkpoint there"),
    (["check", "/nonexistent/file.yaml"], "file.yaml"),
    (["train", "--preset", "tiny-gpt", "--steps", "0"], "--steps: must be at least 1"),
])
def test_mistakes_exit_2_with_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_check_names_file_line_and_key(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY.replace("n_head: 2", "n_head: 5"))
    assert main(["check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml:3" in err and "n_head" in err and "d_model" in err
    assert main(["check", str(ROOT / "presets" / "tiny-gpt.yaml")]) == 0


def test_presets_lists_names_and_descriptions(capsys):
    assert main(["presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("tiny-gpt") and "2-layer" in line for line in lines)
    assert len(lines) == len({p.stem for p in (ROOT / "presets").glob("*.yaml")} - set(NOT_PRESETS))  # not the course


def test_divergence_exits_3_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    path = tmp_path / "boom.yaml"
    path.write_text(TINY.replace("dropout: 0.1}", "dropout: 0.0, norm: none}")
                    .replace("optim: {lr: 0.003,", "optim: {name: sgd, lr: 1000000.0, grad_clip: 0.0,")
                    .replace("steps: 6", "steps: 60"))
    assert main(["train", "--preset", str(path), "--runs", str(tmp_path / "runs"), "--quiet"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "diverged at step" in err[0] and "NaN/Inf" in err[0]
    (run,) = run_dirs(tmp_path / "runs")
    with np.load(run / "checkpoint.npz") as z:
        assert np.isfinite(z["params"]).all()


def test_sample_from_a_checkpoint(preset, tmp_path, capsys):
    assert main(["train", "--preset", str(preset), "--runs", str(tmp_path), "--quiet"]) == 0
    (run,) = run_dirs(tmp_path)
    capsys.readouterr()
    args = ["sample", "--checkpoint", str(run), "--prompt", "the ", "--max-new", "20", "--seed", "4"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out == first and first.startswith("the ")
    assert main(args + ["--temperature", "0"]) == 2
    assert "temperature" in capsys.readouterr().err


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(preset, tmp_path):
    slow = tmp_path / "slow.yaml"
    slow.write_text(TINY.replace("steps: 6", "steps: 100000"))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "train", "--preset", str(slow), "--runs",
                             str(tmp_path / "runs"), "--quiet"], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until training is under way (metrics have rows)
        runs = list((tmp_path / "runs").glob("*/metrics.csv")) if (tmp_path / "runs").exists() else []
        if runs and len(runs[0].read_text().splitlines()) > 3:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted at step" in err and "Traceback" not in err
    (run,) = run_dirs(tmp_path / "runs")
    with np.load(run / "checkpoint.npz") as z:
        assert int(z["step"]) == len(read_metrics(run))


def test_train_runs_the_optimizer_race_and_sparse_lessons(capsys):
    assert main(["train", "--preset", "optimizer-race", "--steps", "20"]) == 0
    out = capsys.readouterr().out
    assert "20 steps" in out and "SGD" in out and "Adam" in out
    assert main(["train", "--preset", "ftrl-sparse", "--steps", "5"]) == 0
    out = capsys.readouterr().out
    assert "5 steps" in out and "FTRL" in out and "weights exactly zero" in out
