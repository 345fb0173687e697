"""The bench in one place: the PyTorch child imports nothing of ours, runs in the user's environment, says so."""

import ast
import json
import subprocess
import sys
from types import SimpleNamespace

import simulator
from simulator.bench import step
from simulator.bench.step import TORCH_CHILD, TORCH_PYTHON_VARIABLE, Shape, bench_torch, run_bench

MICRO = Shape("micro", 11, 16, 1, 2, 8, 2)


def test_the_torch_child_imports_only_torch_and_the_standard_library():
    imported = set()
    for node in ast.walk(ast.parse(TORCH_CHILD.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "a relative import would reach the engine"
            imported.add(node.module.split(".")[0])
    assert "torch" in imported
    assert imported - {"torch", "__future__"} <= set(sys.stdlib_module_names)


def test_the_torch_child_gets_the_users_environment_and_the_shape_as_arguments(monkeypatch):
    seen = {}

    def fake_run(cmd, env, **kwargs):
        seen.update(cmd=cmd, env=env)
        out = {"seconds": 0.01, "torch": "x", "threads": 2, "env": {}}
        return SimpleNamespace(returncode=0, stdout=json.dumps(out) + "\n", stderr="")

    monkeypatch.delenv(TORCH_PYTHON_VARIABLE, raising=False)
    monkeypatch.setattr(step.importlib_util, "find_spec", lambda name: object())
    monkeypatch.setattr(subprocess, "run", fake_run)
    assert bench_torch(MICRO, 3)["seconds"] == 0.01
    assert seen["cmd"] == [sys.executable, str(TORCH_CHILD), "11", "16", "1", "2", "8", "2", "3"]
    assert seen["env"] == simulator.USER_ENVIRON, "not the environment the engine set for itself"
    assert seen["env"].get("OMP_WAIT_POLICY") == simulator.USER_ENVIRON.get("OMP_WAIT_POLICY")


def test_the_torch_child_runs_under_the_interpreter_the_variable_names(monkeypatch):
    seen = {}

    def fake_run(cmd, env, **kwargs):
        seen.update(cmd=cmd)
        out = {"seconds": 0.02, "torch": "x", "threads": 2, "env": {}}
        return SimpleNamespace(returncode=0, stdout=json.dumps(out) + "\n", stderr="")

    monkeypatch.setenv(TORCH_PYTHON_VARIABLE, "/opt/their-torch/bin/python")
    monkeypatch.setattr(step.importlib_util, "find_spec", lambda name: None)  # not in our interpreter
    monkeypatch.setattr(subprocess, "run", fake_run)
    assert bench_torch(MICRO, 3)["seconds"] == 0.02
    assert seen["cmd"][:2] == ["/opt/their-torch/bin/python", str(TORCH_CHILD)]


def test_a_missing_torch_interpreter_is_one_sentence_in_the_table(monkeypatch, tmp_path):
    monkeypatch.setenv(TORCH_PYTHON_VARIABLE, str(tmp_path / "no-python"))
    assert bench_torch(MICRO, 3).startswith("torch failed: ")


def test_the_bench_prints_its_machine_and_no_quoted_torch_numbers(monkeypatch, capsys):
    monkeypatch.delenv(TORCH_PYTHON_VARIABLE, raising=False)
    monkeypatch.setattr(step.importlib_util, "find_spec", lambda name: None)  # as here: torch is absent
    run_bench(shapes=[MICRO], extra=False)
    out = capsys.readouterr().out
    assert "CPU: " in out and "engine environment: " in out and "torch child environment" in out
    assert "blas: " in out and " threads" in out, "the BLAS library, its kernel and threads (threadpoolctl)"
    row = next(line for line in out.splitlines() if line.startswith("micro"))
    assert row.endswith("torch not installed")
