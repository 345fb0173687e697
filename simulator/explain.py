"""Worked examples with the textbook's numbers: z-scores, BatchNorm vs LayerNorm on a grades table, one MLP step.

Each example is computed twice where the engine has a kernel for it: by the
textbook formula (no epsilon) and by the engine's own kernel (with its
epsilon 1e-5), and the text shows both agree, so the numbers a person reads
are the engine's. `python main.py explain ...` prints these texts; the app's
panels show the same dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.kernels.cpu.batchnorm import batchnorm_forward
from simulator.kernels.cpu.norms import layernorm_forward
from simulator.mlp_lab import LEAF_FLOWER_CLASSES, LEAF_FLOWER_FEATURES, WorkedUpdate, l1_loss, leaf_flower_update

GRADES_SUBJECTS = ("math", "physics", "art")
GRADES = ((90.0, 80.0, 70.0), (60.0, 50.0, 40.0))  # students (rows) x subjects (columns)


class ExplainError(ValueError):
    """A worked example asked for with values it cannot use (one sentence)."""


def num(x: float, digits: int = 2) -> str:
    """A number as a textbook prints it: at most `digits` decimals, no trailing zeros, never '-0'."""
    text = f"{x:.{digits}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def nums(xs, digits: int = 2) -> str:
    """Numbers separated by spaces, each as `num` prints it."""
    return " ".join(num(float(x), digits) for x in xs)


# ------------------------------------------------------------------------------------------- z-score
@dataclass(frozen=True)
class ZScores:
    """A list of values standardized: z = (x - mean) / std, with the population variance."""

    values: tuple[float, ...]
    mean: float
    variance: float  # mean of the squared deviations (divide by n)
    std: float
    z: tuple[float, ...]
    kernel_z: tuple[float, ...]  # the engine's layernorm_forward on the same row (gamma 1, beta 0, eps 1e-5)


def zscores(values) -> ZScores:
    """The z-scores of `values`, by the formula and by the LayerNorm kernel."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size < 2:
        raise ExplainError("z-scores need at least two values")
    mean = float(x.mean())
    variance = float(np.mean((x - mean) ** 2))
    if variance == 0.0:
        raise ExplainError("all values are equal, so the standard deviation is 0 and z-scores are undefined")
    std = float(np.sqrt(variance))
    out, m, r = np.zeros((1, x.size)), np.zeros(1), np.zeros(1)
    layernorm_forward(out, m, r, x[None, :], np.ones(x.size), np.zeros(x.size))
    return ZScores(tuple(x.tolist()), mean, variance, std, tuple(((x - mean) / std).tolist()), tuple(out[0].tolist()))


def zscore_text(values) -> str:
    """What `explain zscore` prints."""
    zs = zscores(values)
    n = len(zs.values)
    squares = nums([(v - zs.mean) ** 2 for v in zs.values])
    return "\n".join([
        f"values    {nums(zs.values)}",
        f"mean      {num(zs.mean)}  (sum / {n})",
        f"variance  {num(zs.variance)}  (mean of the squared deviations {squares};"
        f" dividing by n - 1 instead gives {num(zs.variance * n / (n - 1))})",
        f"std       {num(zs.std)}  (square root of the variance)",
        f"z-scores  {nums(zs.z)}  ((x - mean) / std)",
        f"the engine's LayerNorm kernel on this row (gamma 1, beta 0, eps 1e-5): {nums(zs.kernel_z)}",
    ])


# ----------------------------------------------------------------------------- BatchNorm vs LayerNorm
@dataclass(frozen=True)
class NormsTable:
    """A students x subjects table normalized both ways, by the engine's kernels (gamma 1, beta 0)."""

    table: np.ndarray  # (students, subjects)
    batchnorm: np.ndarray  # each column (a subject across students) to mean 0, variance 1
    layernorm: np.ndarray  # each row (one student across subjects) to mean 0, variance 1
    column_mean: np.ndarray
    column_std: np.ndarray
    row_mean: np.ndarray
    row_std: np.ndarray


def norms_table(rows=GRADES) -> NormsTable:
    """BatchNorm (train mode, over the rows) and LayerNorm (over each row) of a table."""
    t = np.asarray(rows, dtype=np.float64)
    if t.ndim != 2 or t.shape[0] < 2 or t.shape[1] < 2:
        raise ExplainError("the table needs at least two rows of at least two numbers, all rows the same length")
    N, C = t.shape
    bn, mean, var, rstd = np.zeros((N, C)), np.zeros(C), np.zeros(C), np.zeros(C)
    batchnorm_forward(bn, mean, var, rstd, t, np.ones(N), np.ones(C), np.zeros(C))
    ln, rm, rr = np.zeros((N, C)), np.zeros(N), np.zeros(N)
    layernorm_forward(ln, rm, rr, t, np.ones(C), np.zeros(C))
    return NormsTable(t, bn, ln, t.mean(axis=0), t.std(axis=0), t.mean(axis=1), t.std(axis=1))


def _grid(title: str, header: list[str], rows: list[list[str]]) -> list[str]:
    cells = [header] + rows
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [title]
    for r in cells:
        lines.append("  " + "  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)))
    return lines


def norms_text(rows=GRADES) -> str:
    """What `explain norms` prints: the table, then BatchNorm's and LayerNorm's results side by side."""
    nt = norms_table(rows)
    N, C = nt.table.shape
    subjects = list(GRADES_SUBJECTS) if C == len(GRADES_SUBJECTS) else [f"col {j + 1}" for j in range(C)]
    students = [f"student {i + 1}" for i in range(N)]
    lines = _grid("grades (students x subjects):", [""] + subjects,
                  [[students[i]] + [num(v) for v in nt.table[i]] for i in range(N)])
    lines.append("")
    left = _grid("BatchNorm: each column (one subject across students)", [""] + subjects,
                 [[students[i]] + [num(v) for v in nt.batchnorm[i]] for i in range(N)]
                 + [["mean"] + [num(v) for v in nt.column_mean], ["std"] + [num(v) for v in nt.column_std]])
    right = _grid("LayerNorm: each row (one student across subjects)", subjects + ["mean", "std"],
                  [[num(v) for v in nt.layernorm[i]] + [num(nt.row_mean[i]), num(nt.row_std[i])] for i in range(N)]
                  + [[""] * (C + 2)] * 2)
    width = max(len(s) for s in left) + 4
    lines += [a.ljust(width) + b for a, b in zip(left, right, strict=True)]
    lines += ["", "BatchNorm compares students (each grade against the class in that subject): it needs a batch.",
              "LayerNorm compares subjects (each grade against the same student's others): one row is enough.",
              "Both by the engine's kernels with gamma 1, beta 0 and eps 1e-5; std divides by n."]
    return "\n".join(lines)


# --------------------------------------------------------------------------------- leaf or flower
def mlp_text(loss: str = "cross_entropy", lr: float = 0.5) -> str:
    """What `explain mlp` prints: one SGD step of the leaf/flower network, number by number."""
    u: WorkedUpdate = leaf_flower_update(loss, lr)
    b, a = u.before, u.after
    name, i, j = u.weight
    leaf, flower = LEAF_FLOWER_CLASSES
    lines = [
        "leaf or flower? a 4-3-2 MLP: inputs (R, G, B, volume), 3 sigmoid hidden units, softmax over (leaf, flower)",
        f"input x ({', '.join(LEAF_FLOWER_FEATURES)}) = ({nums(b['x'], 4)}), a {u.example}: target ({leaf}, {flower})"
        f" = ({nums(u.target)})",
        f"hidden  z1 = x W1 + b1 = ({nums(b['z1'], 4)});  h = sigmoid(z1) = ({nums(b['h'], 4)})",
        f"output  z2 = h W2 + b2 = ({nums(b['z2'], 4)});  p = softmax(z2) = ({leaf} {num(b['p'][0], 4)}, "
        f"{flower} {num(b['p'][1], 4)})",
    ]
    p0, p1 = b["p"]
    h = b["h"][i]
    if loss == "cross_entropy":
        lines.append(f"loss (cross-entropy) = -ln p_{leaf} = -ln {num(p0, 4)} = {num(u.loss, 4)}")
        why = f"(p_{leaf} - 1) x h{i} = ({num(p0, 4)} - 1) x {num(h, 4)}"
    else:
        lines.append(f"loss (L1) = |1 - p_{leaf}| + |0 - p_{flower}| = |1 - {num(p0, 4)}| + |0 - {num(p1, 4)}| = "
                     f"{num(u.loss, 4)}")
        why = f"-2 p_{leaf} p_{flower} x h{i} = -2 x {num(p0, 4)} x {num(p1, 4)} x {num(h, 4)}"
    lines += [
        f"gradient of {name}[{i},{j}] (hidden unit {i} -> {LEAF_FLOWER_CLASSES[j]}) = {why} = {num(u.grad, 6)}",
        f"update: new = old - lr x grad = {num(u.old, 4)} - {num(u.lr, 4)} x ({num(u.grad, 6)}) = {num(u.new, 6)}",
        f"after the step (every weight updated the same way): p_{leaf} {num(p0, 4)} -> {num(a['p'][0], 4)}, "
        f"loss {num(u.loss, 4)} -> {num(u.loss_after, 4)}",
        f"the textbook's L1 example: |1 - 0.6| + |0 - 0.4| = {num(l1_loss([0.6, 0.4], [1.0, 0.0]))}",
    ]
    return "\n".join(lines)
