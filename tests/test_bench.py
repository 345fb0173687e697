"""The bench in one place: the PyTorch child imports nothing of ours, runs in the user's environment, says so."""

import ast
import json
import subprocess
import sys
from types import SimpleNamespace

import pytest

import simulator
from simulator.bench import step
from simulator.bench.attention import TORCH_ATTENTION_CHILD, bench_attention, format_rows
from simulator.bench.products import TORCH_PRODUCTS_CHILD, bench_products, step_products
from simulator.bench.step import TORCH_CHILD, TORCH_PYTHON_VARIABLE, Shape, bench_torch, run_bench

MICRO = Shape("micro", 11, 16, 1, 2, 8, 2)


@pytest.mark.parametrize("child", [TORCH_CHILD, TORCH_ATTENTION_CHILD, TORCH_PRODUCTS_CHILD])
def test_the_torch_child_imports_only_torch_and_the_standard_library(child):
    imported = set()
    for node in ast.walk(ast.parse(child.read_text(encoding="utf-8"))):
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


def test_the_attention_bench_puts_torch_beside_tiled_forward_and_backward(monkeypatch):
    seen = {}

    def fake_run(cmd, env, **kwargs):
        seen.update(cmd=cmd, env=env)
        out = {"rows": [{"T": 32, "fwd_ms": 1.0, "fwd_bwd_ms": 1e6}], "torch": "x", "threads": 2}
        return SimpleNamespace(returncode=0, stdout=json.dumps(out) + "\n", stderr="")

    monkeypatch.delenv(TORCH_PYTHON_VARIABLE, raising=False)
    monkeypatch.setattr(step.importlib_util, "find_spec", lambda name: object())
    monkeypatch.setattr(subprocess, "run", fake_run)
    rows = bench_attention(Ts=(32, 64), d=8, backward_max_T=32)
    assert seen["cmd"] == [sys.executable, str(TORCH_ATTENTION_CHILD), "8", "32"], "only the T with a backward"
    assert seen["env"] == simulator.USER_ENVIRON
    assert rows[0]["torch_fwd_bwd_ms"] == 1e6 and rows[1]["torch_fwd_bwd_ms"] is None
    table = format_rows(rows).splitlines()
    ours = rows[0]["tiled_fwd_ms"] + rows[0]["tiled_bwd_ms"]
    assert f"{1e6 / ours:.2f}x" in table[2] and "PyTorch x, 2 threads" in table[-1]


def test_the_attention_bench_without_torch_says_so(monkeypatch):
    monkeypatch.delenv(TORCH_PYTHON_VARIABLE, raising=False)
    monkeypatch.setattr(step.importlib_util, "find_spec", lambda name: None)
    table = format_rows(bench_attention(Ts=(16,), d=4))
    assert table.splitlines()[-1] == "torch f+b: torch not installed"


def test_each_models_peak_memory_is_measured_in_a_process_of_its_own():
    from simulator.bench.step import bench_memory, memory_cells

    ballast = bytearray(600 * 1024 * 1024)  # this process large, its pages resident: the child must not count them
    ballast[::4096] = b"\x01" * len(range(0, len(ballast), 4096))
    m = bench_memory(MICRO)
    assert isinstance(m, dict), m
    assert 10 < m["start_mb"] <= m["peak_mb"] < 550  # the engine's imports, then the model on top; not ours
    del ballast
    assert memory_cells(m).split()[0] == f"{m['peak_mb']:.0f}"
    assert memory_cells({"start_mb": 100.0, "peak_mb": 150.4}) == "    150 (   +50)"
    assert memory_cells("torch not installed") == "torch not installed"
    assert memory_cells({"seconds": 1.0}) == "-"  # a torch child that did not say


def test_the_bench_prints_a_memory_row_per_model(monkeypatch, capsys):
    monkeypatch.delenv(TORCH_PYTHON_VARIABLE, raising=False)
    monkeypatch.setattr(step.importlib_util, "find_spec", lambda name: None)
    monkeypatch.setattr(step, "bench_memory", lambda s: {"start_mb": 120.0, "peak_mb": 130.0})
    run_bench(shapes=[MICRO], extra=False)
    out = capsys.readouterr().out.splitlines()
    head = next(i for i, line in enumerate(out) if line.startswith("peak resident memory"))
    assert out[head + 2].split() == ["micro", "130", "(", "+10)", "torch", "not", "installed"]


def test_the_products_are_the_step_s_linears_forward_and_backward():
    products = step_products(MICRO)
    assert len(products) == 3 * (4 * MICRO.L + 1)  # X W, dY W^T, X^T dY of every linear and the head
    attention = 3 * MICRO.L * 4 * MICRO.B * MICRO.T * MICRO.T * MICRO.d  # what step_flops adds for attention
    assert sum(2 * m * k * n for m, k, n, _layout in products) == step.step_flops(MICRO) - attention


def test_the_products_bench_hands_torch_the_same_products_in_the_users_environment(monkeypatch):
    seen = {}

    def fake_run(cmd, env, **kwargs):
        seen.update(cmd=cmd, env=env)
        out = {"seconds": 0.5, "torch": "x", "threads": 2}
        return SimpleNamespace(returncode=0, stdout=json.dumps(out) + "\n", stderr="")

    monkeypatch.delenv(TORCH_PYTHON_VARIABLE, raising=False)
    monkeypatch.setattr(step.importlib_util, "find_spec", lambda name: object())
    monkeypatch.setattr(subprocess, "run", fake_run)
    r = bench_products(MICRO, 2)
    assert r["torch"] == 0.5 and 0 < r["engine"] < 1
    assert seen["cmd"][1] == str(TORCH_PRODUCTS_CHILD) and seen["env"] == simulator.USER_ENVIRON
    assert [tuple(p) for p in json.loads(seen["cmd"][2])] == step_products(MICRO) and seen["cmd"][3] == "2"
