"""Choosing the backend (`train.backend`, the CLI's --backend) and checkpoints that fit either backend."""

from __future__ import annotations

import csv
from dataclasses import replace

import numpy as np
import pytest

from main import main
from simulator.backend import backend_problem, probe
from simulator.checkpoint import load_checkpoint, save_checkpoint
from simulator.config import AttentionConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
from simulator.session import SessionError, TrainingSession

TINY = """\
name: backend-tiny
model: {d_model: 8, n_layer: 1, n_head: 2, seq_len: 5, dropout: 0.0}
optim: {lr: 0.01}
train: {steps: 1, batch_size: 2, seed: 3, eval_every: 0, eval_batches: 1, stats_every: 0, dtype: float64%s}
"""


@pytest.fixture
def no_gpu(monkeypatch):
    """A machine without a usable GPU, and without NUMBA_ENABLE_CUDASIM asked for."""
    monkeypatch.delenv(probe.SIMULATOR_VARIABLE, raising=False)
    monkeypatch.setattr(probe, "gpu_usable", lambda: (False, "no CUDA driver library (libcuda) on this machine"))


def _preset(tmp_path, extra=""):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY % extra)
    return path


def _one_line_error(capsys, starts):
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith(starts), err
    return err


@pytest.mark.parametrize("how", ["flag", "preset"])
def test_cuda_without_a_gpu_is_one_sentence_and_exit_2(no_gpu, tmp_path, capsys, how):
    argv = ["train", "--preset", str(_preset(tmp_path, ", backend: cuda" if how == "preset" else "")),
            "--runs", str(tmp_path / "runs"), "--quiet"] + (["--backend", "cuda"] if how == "flag" else [])
    assert main(argv) == 2
    err = _one_line_error(capsys, "error: train.backend is cuda, but no CUDA GPU is usable here (no CUDA driver")
    assert "NUMBA_ENABLE_CUDASIM=1" in err
    assert not (tmp_path / "runs").exists()  # refused before a run folder was made


def test_auto_without_a_gpu_trains_on_the_cpu_and_says_so(no_gpu, tmp_path, capsys):
    argv = ["train", "--preset", str(_preset(tmp_path)), "--backend", "auto", "--runs", str(tmp_path / "runs"),
            "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out  # the summary's last line
    assert out.endswith("backend: cpu (CPU (numba; no usable GPU: no CUDA driver library (libcuda) on this "
                        "machine))\n"), out
    cfg = RunConfig(train=TrainConfig(backend="auto"))
    assert TrainingSession(cfg).backend_name == "cpu"


def test_a_bad_backend_name_and_lora_on_cuda_are_refused_at_config_time(tmp_path, capsys):
    assert main(["check", str(_preset(tmp_path, ", backend: gpu"))]) == 2
    _one_line_error(capsys, f"error: {tmp_path / 'tiny.yaml'}:4: train.backend: 'gpu' is not one of cpu, cuda, auto")
    path = tmp_path / "lora.yaml"
    path.write_text((TINY % ", backend: cuda").replace("dropout: 0.0}", "dropout: 0.0, lora: {rank: 2}}"))
    assert main(["check", str(path)]) == 2
    _one_line_error(capsys, f"error: {path}:")
    problem = backend_problem(RunConfig(model=ModelConfig(init_from="runs/base"), train=TrainConfig(backend="cuda")))
    assert problem is not None and "model.init_from" in problem.sentence() and problem.path == "train.backend"
    assert backend_problem(RunConfig(model=ModelConfig(init_from="runs/base"))) is None  # the CPU runs it
    with pytest.raises(SessionError, match="cuda cannot run LoRA"):
        TrainingSession(RunConfig(model=ModelConfig(d_model=8, n_head=2, n_layer=1, seq_len=5,
                                                    lora=replace(ModelConfig().lora, rank=2)),
                                  train=TrainConfig(backend="cuda")))


def _config(backend):
    return RunConfig(
        name="t",
        model=ModelConfig(d_model=8, n_layer=1, n_head=2, seq_len=5, dropout=0.0,
                          attention=AttentionConfig(impl="tiled", n_kv_head=1)),
        optim=OptimConfig(name="adamw", lr=1e-2, grad_clip=0.5, weight_decay=0.1),
        train=TrainConfig(batch_size=2, seed=3, eval_every=0, stats_every=0, dtype="float64", backend=backend))


@pytest.mark.parametrize("first,then", [("cuda", "cpu"), ("cpu", "cuda")])
def test_a_checkpoint_resumes_on_the_other_backend(tmp_path, first, then):
    whole = TrainingSession(_config("cpu"))
    want = [whole.step().loss for _ in range(2)]
    s = TrainingSession(_config(first))
    got = [s.step().loss]
    path = save_checkpoint(tmp_path / "checkpoint.npz", s)
    resumed = load_checkpoint(path, backend=then)
    assert resumed.backend_name == then and resumed.step_count == 1
    got.append(resumed.step().loss)
    assert np.allclose(got, want, rtol=1e-10, atol=0), (got, want)
    for name in whole.parameter_names:
        assert np.allclose(resumed.parameter(name), whole.parameter(name), rtol=1e-10, atol=1e-12), name
    state = resumed.optimizer.state_dict()
    for key, value in whole.optimizer.state_dict().items():  # m, v (host copies) and the counters
        if value.dtype.kind in "fi":
            assert np.allclose(state[key], value, rtol=1e-10, atol=1e-14), key


def test_cli_trains_on_cuda_and_resumes_on_the_cpu(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(["train", "--preset", str(_preset(tmp_path)), "--backend", "cuda", "--runs", str(runs),
                 "--quiet"]) == 0
    assert "\nbackend: cuda (" in capsys.readouterr().out
    (run,) = [p for p in runs.iterdir() if p.is_dir()]
    assert "backend: cuda" in (run / "config.yaml").read_text()
    assert main(["train", "--resume", str(run), "--backend", "cpu", "--steps", "1"]) == 0
    out, err = capsys.readouterr()
    assert out.endswith("backend: cpu (CPU (numba))\n") and err.startswith("backend: cpu (CPU (numba))\n"), (out, err)
    assert "backend: cpu" in (run / "config.yaml").read_text()  # the folder says where the run continues
    steps = [row["step"] for row in csv.DictReader((run / "metrics.csv").open())]
    assert steps == ["1", "2"], steps


def test_a_gpu_whose_numba_cuda_does_not_load(monkeypatch):
    """The driver sees a GPU but numba-cuda is broken: cuda says so in one sentence, auto falls back to the CPU."""
    import sys

    import simulator.backend as backend

    monkeypatch.setattr(backend, "cuda_usable", lambda: (True, "GPU"))
    monkeypatch.setattr(backend, "_BUILT", {})
    monkeypatch.setitem(sys.modules, "simulator.backend.cuda", None)  # importing it now raises ImportError
    with pytest.raises(backend.BackendError, match=r"^train.backend is cuda, but numba-cuda does not load "):
        backend.get_backend("cuda")
    auto = backend.get_backend("auto")
    assert auto.name == "cpu" and auto.description.startswith("CPU (numba; the GPU is not usable: numba-cuda")


def test_early_stopping_restores_the_same_best_weights_on_either_backend():
    """The best weights are kept as host copies and put back into the device buffers."""
    from simulator.config import EarlyStoppingConfig

    def stopped(backend):
        cfg = _config(backend)
        # min_delta 1: no later evaluation improves enough, so the first is the best and patience 2 stops at step 3
        es = EarlyStoppingConfig(patience=2, min_delta=1.0, restore_best=True)
        cfg = replace(cfg, train=replace(cfg.train, eval_every=1, early_stopping=es))
        s = TrainingSession(cfg)
        recs = s.run(10)
        return s, recs

    cpu, cpu_recs = stopped("cpu")
    gpu, gpu_recs = stopped("cuda")
    assert len(cpu_recs) == len(gpu_recs) == 3 and gpu_recs[-1].early_stop.best_step == 1
    first = TrainingSession(_config("cpu"))
    first.step()
    for name in cpu.parameter_names:
        assert np.array_equal(cpu.parameter(name), first.parameter(name)), name  # the weights of step 1 ...
        assert np.allclose(gpu.parameter(name), first.parameter(name), rtol=1e-10, atol=1e-12), name  # ... on cuda
