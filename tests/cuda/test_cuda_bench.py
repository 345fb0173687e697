"""`bench --backend cuda`: the attention table runs on the device (the simulator here) with a byte bill equal to the
arrays it allocates and tiled and naive agreeing; without a GPU the command is one sentence and exit 2."""

from __future__ import annotations

import re

import pytest

from simulator.backend import probe
from simulator.bench import cuda as bench_cuda
from simulator.cli import main
from tests.cuda import target


def test_the_attention_bill_is_the_formula():
    T, d = 1024, 64
    vectors = 8 * T * d * 4  # q, k, v, y, dy, dq, dk, dv in float32
    assert bench_cuda.attention_bytes("tiled", T, d) == vectors + 4 * T  # and the log-sum-exps
    assert bench_cuda.attention_bytes("naive", T, d) == vectors + 2 * 4 * T * T  # probabilities and their gradient
    assert bench_cuda.attention_bytes("naive", 16384, 64) > 2 * 2 ** 30  # the T x T pair at 16 K: over 2 GiB


def test_naive_is_skipped_where_its_matrices_do_not_fit():
    point = bench_cuda.attention_point(4096, "naive", 1, free_bytes=2 ** 20)
    assert set(point) == {"skipped"} and "(needs 136 MiB)" in point["skipped"]  # 128 MiB of T x T, 8 of vectors


def test_the_table_runs_on_the_device_and_tiled_equals_naive(capsys):
    if target.MODE == "simulator":
        lengths, head = (8,), bench_cuda.SIMULATED_HEAD
    else:
        lengths, head = (256,), bench_cuda.ATTENTION_HEAD
    assert bench_cuda.run_cuda_bench(shapes=[], lengths=lengths, repeats=1) == 0
    out = capsys.readouterr().out
    assert out.startswith("device: ") and "float32 matrix rate on the device now" in out
    assert f"one causal head (d {head}, B 1)" in out
    row = next(line for line in out.splitlines() if re.match(rf"\s+{lengths[0]}\s", line))
    cells = row.split()
    tiled_ms, tiled_mib, naive_ms, naive_mib, diff = (float(cells[i].rstrip("x")) for i in (1, 2, 3, 4, 6))
    assert tiled_ms > 0 and naive_ms > 0
    assert tiled_mib == pytest.approx(bench_cuda.attention_bytes("tiled", lengths[0], head) / 2 ** 20, abs=0.005)
    assert naive_mib == pytest.approx(bench_cuda.attention_bytes("naive", lengths[0], head) / 2 ** 20, abs=0.005)
    assert diff < 1e-4  # forward and every input gradient, float32


def test_without_a_gpu_it_is_one_sentence_and_exit_2(monkeypatch, capsys):
    monkeypatch.delenv(probe.SIMULATOR_VARIABLE, raising=False)
    monkeypatch.setattr(probe, "gpu_usable", lambda: (False, "no CUDA driver library (libcuda) on this machine"))
    assert main(["bench", "--backend", "cuda"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "no CUDA GPU is usable here (no CUDA driver library" in lines[0], captured.err
