"""A run folder keeps its integrity: one writer, metrics never ahead of the checkpoint, config.yaml agreeing with
the checkpoint, no stale temporary files, safe names, stop signals, and kill -9 at random moments."""

import csv
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from main import main
from simulator.checkpoint import load_checkpoint, read_checkpoint
from simulator.runfolder import TEMP_GLOB as TEMP
from simulator.runfolder import RunLock, folder_name, reconcile_metrics

ROOT = Path(__file__).resolve().parent.parent

TINY = """\
name: rf-tiny
model: {d_model: 16, n_layer: 1, n_head: 2, seq_len: 16}
optim: {lr: 0.003, warmup_steps: 2, decay_steps: 500}
train: {steps: 6, batch_size: 4, seed: 3, eval_every: 0, eval_batches: 1, stats_every: 0, checkpoint_every: 1}
"""


def make_run(tmp_path, steps=6, text=TINY) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    preset = tmp_path / "rf.yaml"
    preset.write_text(text)
    assert main(["train", "--preset", str(preset), "--runs", str(tmp_path / "runs"), "--steps", str(steps),
                 "--quiet"]) == 0
    (run,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    return run


def metric_steps(run: Path) -> list[int]:
    return [int(r["step"]) for r in csv.DictReader((run / "metrics.csv").open())]


def losses(run: Path) -> list[str]:
    return [r["loss"] for r in csv.DictReader((run / "metrics.csv").open())]


def cli(*args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, PYTHONPATH=str(ROOT)))


def test_a_second_writer_is_refused_naming_the_holder(tmp_path, capsys):
    run = make_run(tmp_path)
    lock = RunLock(run).acquire()
    try:
        assert main(["train", "--resume", str(run), "--steps", "2", "--quiet"]) == 2
        err = capsys.readouterr().err
        assert f"in use by process {os.getpid()}" in err and err.count("\n") == 1
    finally:
        lock.release()
    assert main(["train", "--resume", str(run), "--steps", "2", "--quiet"]) == 0


def test_the_lock_of_a_killed_process_is_free(tmp_path):
    run = make_run(tmp_path, steps=1)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[1]);"
                               "from simulator.runfolder import RunLock; RunLock(sys.argv[2]).acquire();"
                               "print('held', flush=True); time.sleep(60)", str(ROOT), str(run)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(Exception, match="in use by process"):
        RunLock(run).acquire()
    holder.kill()
    holder.wait()
    RunLock(run).acquire().release()  # stale-safe: the kernel dropped the dead process's lock


def test_resume_drops_metrics_rows_past_the_checkpoint(tmp_path):
    whole = make_run(tmp_path / "a", steps=9)
    run = make_run(tmp_path / "b", steps=6)
    with (run / "metrics.csv").open("a") as f:  # what a kill between a row and its checkpoint leaves
        f.write("7,9.9,,0.001,1,0,1,1\n8,9.9,,0.001,1,0,1,1\n9,9.")
    assert main(["train", "--resume", str(run), "--steps", "3", "--quiet"]) == 0
    assert metric_steps(run) == list(range(1, 10))
    assert losses(run) == losses(whole)


def test_resume_refuses_a_config_yaml_that_disagrees_with_the_checkpoint(tmp_path, capsys):
    run = make_run(tmp_path)
    original = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(original.replace("d_model: 16", "d_model: 32"))
    assert main(["train", "--resume", str(run), "--steps", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "disagrees with the checkpoint at model.d_model" in err and "--accept-checkpoint-config" in err
    (run / "config.yaml").write_text("::: not yaml [")
    assert main(["train", "--resume", str(run), "--steps", "1", "--quiet"]) == 2
    assert "does not load" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--steps", "1", "--quiet", "--accept-checkpoint-config"]) == 0
    assert (run / "config.yaml").read_text() == original


def test_stale_temporary_checkpoints_go_and_files_share_one_mode(tmp_path):
    run = make_run(tmp_path)
    stale = run / ".checkpoint-abc123.tmp"
    stale.write_bytes(b"x" * 1000)
    assert main(["train", "--resume", str(run / "checkpoint.npz"), "--steps", "1", "--quiet"]) == 0  # the file
    assert not stale.exists()
    modes = {p.name: p.stat().st_mode & 0o777 for p in run.iterdir() if not p.name.startswith(".")}
    assert len(set(modes.values())) == 1, modes


def test_a_preset_name_cannot_put_the_run_outside_runs(tmp_path):
    for name in ("../../escape", "/tmp/abs", "..", "a/b\\c"):
        assert "/" not in folder_name(name) and "\\" not in folder_name(name) and not folder_name(name).startswith(".")
    run = make_run(tmp_path, steps=1, text=TINY.replace("name: rf-tiny", "name: ../../escape"))
    assert run.parent == tmp_path / "runs" and run.name.startswith("escape-")


@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_and_sighup_save_and_stop_like_ctrl_c(tmp_path, sig, status):
    preset = tmp_path / "rf.yaml"
    preset.write_text(TINY.replace("steps: 6", "steps: 100000"))
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "train", "--preset", str(preset), "--runs",
                             str(tmp_path / "runs"), "--quiet"], env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        found = list((tmp_path / "runs").glob("*/metrics.csv")) if (tmp_path / "runs").exists() else []
        if found and len(found[0].read_text().splitlines()) > 3:
            break
        time.sleep(0.1)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == status, err
    assert "interrupted at step" in err and "Traceback" not in err
    run = found[0].parent
    assert int(read_checkpoint(run)["step"]) == len(metric_steps(run))


def test_kill_9_at_random_moments_never_loses_or_duplicates_a_step(tmp_path):
    """20 kills at random moments (a checkpoint every step; most while training, some in start-up); after each the
    folder is consistent, and resuming to the end gives exactly the losses of an uninterrupted run."""
    total = 600
    whole = make_run(tmp_path / "whole", steps=total)
    run = make_run(tmp_path / "killed", steps=2)
    rng = random.Random(7)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    seen = set()
    for i in range(20):
        done = int(read_checkpoint(run)["step"])
        if done >= total:
            break
        rows = len(metric_steps(run))
        proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "train", "--resume", str(run), "--steps",
                                 str(total - done), "--quiet"], env=env, stderr=subprocess.DEVNULL)
        if i % 4 == 3:  # in start-up: kernels loading, the lock taken, the metrics being rewound
            time.sleep(rng.uniform(0.0, 1.0))
        else:  # while training: between a row, its checkpoint's temp file and the rename
            deadline = time.time() + 60
            while len(metric_steps(run)) <= rows and proc.poll() is None and time.time() < deadline:
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.3))
        proc.kill()
        proc.wait()
        arrays = read_checkpoint(run)  # loads, whatever moment the kill hit
        assert all(np.isfinite(a).all() for a in arrays.values() if a.dtype.kind == "f")
        step = int(arrays["step"])
        seen.add(step)
        assert metric_steps(run)[-1] >= step  # rows are written before their checkpoint ...
        reconcile_metrics(run / "metrics.csv", step)  # ... and resume drops those ahead of it
        assert metric_steps(run) == list(range(1, step + 1))
    assert len(seen) >= 10, f"the kills did not land mid-training: {sorted(seen)}"
    done = load_checkpoint(run).step_count
    if done < total:
        assert main(["train", "--resume", str(run), "--steps", str(total - done), "--quiet"]) == 0
    assert metric_steps(run) == list(range(1, total + 1))
    assert losses(run) == losses(whole)


def test_file_system_errors_are_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    (tmp_path / "afile").write_text("x")
    preset = tmp_path / "rf.yaml"
    preset.write_text(TINY)
    assert main(["train", "--preset", str(preset), "--runs", str(tmp_path / "afile"), "--quiet"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    run = make_run(tmp_path, steps=2)
    before = (run / "checkpoint.npz").read_bytes()

    def full_disk(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr("simulator.runfolder.os.fsync", full_disk)
    assert main(["train", "--resume", str(run), "--steps", "3", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "previous checkpoint is intact" in err and err.count("\n") == 1
    assert (run / "checkpoint.npz").read_bytes() == before and not list(run.glob(TEMP))


def test_steps_below_one_and_preset_with_resume_are_refused(tmp_path, capsys):
    run = make_run(tmp_path, steps=1)
    for argv in (["train", "--preset", "optimizer-race", "--steps", "0"], ["train", "--steps", "-1"],
                 ["train", "--resume", str(run), "--steps", "0"], ["train", "--resume", str(run), "--preset", "x"]):
        assert main(argv + ["--quiet"]) == 2, argv
        assert capsys.readouterr().err.count("\n") == 1
