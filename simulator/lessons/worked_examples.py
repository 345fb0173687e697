"""Worked examples with the textbook's numbers: z-scores and BatchNorm vs LayerNorm on a grades table.

Each example is computed twice where the engine has a kernel for it: by the
textbook formula (no epsilon) and by the engine's own kernel (with its
epsilon 1e-5), and the text shows both agree, so the numbers a person reads
are the engine's. `python main.py explain ...` prints these texts; the app's
tab shows the same texts. (The leaf/flower MLP step is its own lesson: `leaf_flower.py`.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.i18n import N_, _
from simulator.kernels.cpu.batchnorm import batchnorm_forward
from simulator.kernels.cpu.norms import layernorm_forward
from simulator.lessons import Lesson, register
from simulator.rules import non_empty
from simulator.textcols import display_width, pad
from simulator.yamlconfig import ParseContext

GRADES_SUBJECTS = (N_("math"), N_("physics"), N_("art"))

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
        raise ExplainError(_("z-scores need at least two values"))
    mean = float(x.mean())
    variance = float(np.mean((x - mean) ** 2))
    if variance == 0.0:
        raise ExplainError(_("all values are equal, so the standard deviation is 0 and z-scores are undefined"))
    std = float(np.sqrt(variance))
    out, m, r = np.zeros((1, x.size)), np.zeros(1), np.zeros(1)
    layernorm_forward(out, m, r, x[None, :], np.ones(x.size), np.zeros(x.size))
    return ZScores(tuple(x.tolist()), mean, variance, std, tuple(((x - mean) / std).tolist()), tuple(out[0].tolist()))


def zscore_text(values) -> str:
    """What `explain zscore` prints."""
    return zscores_text(zscores(values))


def zscores_text(zs: ZScores) -> str:
    """Computed z-scores as the textbook writes them out."""
    n = len(zs.values)
    squares = nums([(v - zs.mean) ** 2 for v in zs.values])
    rows = [(_("values"), nums(zs.values)),
            (_("mean"), _("{mean}  (sum / {n})").format(mean=num(zs.mean), n=n)),
            (_("variance"), _("{variance}  (mean of the squared deviations {squares}; dividing by n - 1 instead gives "
                              "{unbiased})").format(variance=num(zs.variance), squares=squares,
                                                    unbiased=num(zs.variance * n / (n - 1)))),
            (_("std"), _("{std}  (square root of the variance)").format(std=num(zs.std))),
            (_("z-scores"), _("{z}  ((x - mean) / std)").format(z=nums(zs.z)))]
    width = max(display_width(label) for label, _v in rows) + 2
    return "\n".join([pad(label, width) + value for label, value in rows] + [
        _("the engine's LayerNorm kernel on this row (gamma 1, beta 0, eps 1e-5): {z}").format(z=nums(zs.kernel_z))])


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
        raise ExplainError(_("the table needs at least two rows of at least two numbers, all rows the same length"))
    N, C = t.shape
    bn, mean, var, rstd = np.zeros((N, C)), np.zeros(C), np.zeros(C), np.zeros(C)
    batchnorm_forward(bn, mean, var, rstd, t, np.ones(N), np.ones(C), np.zeros(C))
    ln, rm, rr = np.zeros((N, C)), np.zeros(N), np.zeros(N)
    layernorm_forward(ln, rm, rr, t, np.ones(C), np.zeros(C))
    return NormsTable(t, bn, ln, t.mean(axis=0), t.std(axis=0), t.mean(axis=1), t.std(axis=1))


def _grid(title: str, header: list[str], rows: list[list[str]]) -> list[str]:
    cells = [header] + rows
    widths = [max(display_width(r[i]) for r in cells) for i in range(len(header))]
    lines = [title]
    for r in cells:
        lines.append("  " + "  ".join(pad(c, w, right=True) for c, w in zip(r, widths, strict=True)))
    return lines


def norms_text(rows=GRADES) -> str:
    """What `explain norms` prints: the table, then BatchNorm's and LayerNorm's results side by side."""
    return table_text(norms_table(rows))


def table_text(nt: NormsTable) -> str:
    """A normalized table as `explain norms` prints it."""
    N, C = nt.table.shape
    subjects = ([_(s) for s in GRADES_SUBJECTS] if C == len(GRADES_SUBJECTS) else
                [_("col {n}").format(n=j + 1) for j in range(C)])
    students = [_("student {n}").format(n=i + 1) for i in range(N)]
    mean, std = _("mean"), _("std")
    lines = _grid(_("grades (students x subjects):"), [""] + subjects,
                  [[students[i]] + [num(v) for v in nt.table[i]] for i in range(N)])
    lines.append("")
    left = _grid(_("BatchNorm: each column (one subject across students)"), [""] + subjects,
                 [[students[i]] + [num(v) for v in nt.batchnorm[i]] for i in range(N)]
                 + [[mean] + [num(v) for v in nt.column_mean], [std] + [num(v) for v in nt.column_std]])
    right = _grid(_("LayerNorm: each row (one student across subjects)"), subjects + [mean, std],
                  [[num(v) for v in nt.layernorm[i]] + [num(nt.row_mean[i]), num(nt.row_std[i])] for i in range(N)]
                  + [[""] * (C + 2)] * 2)
    width = max(display_width(s) for s in left) + 4
    lines += [pad(a, width) + b for a, b in zip(left, right, strict=True)]
    lines += ["", _("BatchNorm compares students (each grade against the class in that subject): it needs a batch."),
              _("LayerNorm compares subjects (each grade against the same student's others): one row is enough."),
              _("Both by the engine's kernels with gamma 1, beta 0 and eps 1e-5; std divides by n.")]
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------- lesson
ZSCORE_VALUES = (20.0, 50.0, 60.0, 80.0, 90.0)  # the textbook's list: mean 60, variance 600, std 24.49


@dataclass(frozen=True)
class WorkedExamplesConfig:
    """The worked examples' inputs: a list of values to standardize and a students x subjects table."""

    name: str = "worked-examples"
    description: str = "z-scores of a list, and a grades table normalized by BatchNorm and by LayerNorm."
    values: tuple[float, ...] = ZSCORE_VALUES
    grades: tuple[tuple[float, ...], ...] = GRADES


def validate(cfg: WorkedExamplesConfig, ctx: ParseContext) -> WorkedExamplesConfig:
    """Values that have z-scores, a table that both norms can normalize."""
    for path, make in (("values", lambda: zscores(cfg.values)), ("grades", lambda: norms_table(cfg.grades))):
        try:
            make()
        except ExplainError as err:
            ctx.fail(path, str(err))
    return cfg


def run(cfg: WorkedExamplesConfig, steps: int | None = None, cancelled=lambda: False) -> list:
    """Two frames whatever `steps` is: the z-scores, then the normalized table (the examples have no steps)."""
    return [zscores(cfg.values), norms_table(cfg.grades)]


def summary(cfg: WorkedExamplesConfig, frames: list) -> str:
    """Both examples' texts, one after the other."""
    return zscores_text(frames[0]) + "\n\n" + table_text(frames[1])


LESSON = register(Lesson("worked_examples", N_("Worked examples"), WorkedExamplesConfig, {"name": non_empty}, validate,
                         run, summary))
