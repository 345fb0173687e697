"""Worked examples: the textbook's numbers exactly, by formula and by the engine's kernels; the CLI prints them."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.cli import main
from simulator.lessons import worked_examples as explain
from simulator.lessons.leaf_flower import leaf_flower_update


def run_cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_zscore_textbook_numbers():
    zs = explain.zscores([20, 50, 60, 80, 90])
    assert zs.mean == 60 and zs.variance == 600  # (1600 + 100 + 0 + 400 + 900) / 5
    assert zs.std == pytest.approx(24.494897, abs=1e-6)
    assert [round(z, 2) for z in zs.z] == [-1.63, -0.41, 0.0, 0.82, 1.22]
    assert np.allclose(zs.kernel_z, zs.z, atol=1e-7), "the LayerNorm kernel (eps 1e-5) agrees with the formula"


def test_explain_zscore_prints_exactly_the_issue_numbers(capsys):
    code, out, _ = run_cli(capsys, "explain", "zscore", "20", "50", "60", "80", "90")
    assert code == 0
    lines = out.splitlines()
    assert lines[1].startswith("mean      60  ") and lines[2].startswith("variance  600  ")
    assert lines[3].startswith("std       24.49  ")
    assert lines[4].startswith("z-scores  -1.63 -0.41 0 0.82 1.22  ")
    assert lines[5].endswith(": -1.63 -0.41 0 0.82 1.22")


@pytest.mark.parametrize("argv,message", [(["5"], "at least two values"), (["3", "3", "3"], "all values are equal")])
def test_explain_zscore_mistakes_exit_2_with_a_sentence(capsys, argv, message):
    code, _, err = run_cli(capsys, "explain", "zscore", *argv)
    assert code == 2 and message in err and err.count("\n") == 1


def test_norms_table_columns_versus_rows():
    nt = explain.norms_table()
    # BatchNorm: each subject over the two students: (90, 60) -> mean 75, std 15 -> +1, -1
    assert np.allclose(nt.batchnorm, [[1, 1, 1], [-1, -1, -1]], atol=1e-6)
    assert np.allclose(nt.column_mean, [75, 65, 55]) and np.allclose(nt.column_std, [15, 15, 15])
    # LayerNorm: each student over the three subjects: (90, 80, 70) -> mean 80, std sqrt(200/3)
    z = 10 / np.sqrt(200 / 3)
    assert np.allclose(nt.layernorm, [[z, 0, -z], [z, 0, -z]], atol=1e-6)
    assert np.allclose(nt.row_mean, [80, 50])
    # the two kernels normalize different axes: columns of one, rows of the other, have mean 0 and std 1
    assert np.allclose(nt.batchnorm.mean(axis=0), 0) and np.allclose(nt.layernorm.mean(axis=1), 0)
    assert np.allclose(nt.layernorm.std(axis=1), 1, atol=1e-6) and not np.allclose(nt.layernorm.std(axis=0), 1)


def test_explain_norms_shows_both_side_by_side(capsys):
    code, out, _ = run_cli(capsys, "explain", "norms")
    assert code == 0
    assert "BatchNorm: each column" in out and "LayerNorm: each row" in out
    row = next(line for line in out.splitlines() if line.strip().startswith("student 1") and "1.22" in line)
    assert row.split()[2:5] == ["1", "1", "1"] and row.split()[5:10] == ["1.22", "0", "-1.22", "80", "8.16"]
    code, out, _ = run_cli(capsys, "explain", "norms", "1,2", "3,6", "5,10")
    assert code == 0 and "col 1" in out and "-1.22" in out
    code, _, err = run_cli(capsys, "explain", "norms", "1,2", "3,x")
    assert code == 2 and "row 2 ('3,x') is not a comma-separated list of numbers" in err
    code, _, err = run_cli(capsys, "explain", "norms", "1,2", "3")
    assert code == 2 and "same number of values" in err


@pytest.mark.parametrize("loss", ["cross_entropy", "l1"])
def test_explain_mlp_shows_the_update_numbers(capsys, loss):
    code, out, _ = run_cli(capsys, "explain", "mlp", "--loss", loss)
    assert code == 0
    u = leaf_flower_update(loss, 0.5)
    assert f"= -0.7 - 0.5 x ({explain.num(u.grad, 6)}) = {explain.num(u.new, 6)}" in out
    assert f"{explain.num(u.loss, 4)} -> {explain.num(u.loss_after, 4)}" in out
    assert "|1 - 0.6| + |0 - 0.4| = 0.8" in out
    if loss == "l1":
        p0, p1 = u.before["p"]
        assert f"|1 - {explain.num(p0, 4)}| + |0 - {explain.num(p1, 4)}| = {explain.num(u.loss, 4)}" in out
    else:
        assert f"-ln {explain.num(u.before['p'][0], 4)} = {explain.num(u.loss, 4)}" in out


def test_explain_deep_runs_a_lesson_and_names_a_wrong_preset(capsys):
    code, out, _ = run_cli(capsys, "explain", "deep", "deep-sigmoid", "--steps", "3")
    assert code == 0 and "l0.w" in out and "step 3:" in out
    code, _, err = run_cli(capsys, "explain", "deep", "tiny-gpt")
    assert code == 2 and "not a deep_mlp preset" in err


def test_num_prints_like_a_textbook():
    assert [explain.num(x) for x in (60.0, 600.0, 24.4949, -0.0001, 0.5, -1.633)] == \
        ["60", "600", "24.49", "0", "0.5", "-1.63"]
