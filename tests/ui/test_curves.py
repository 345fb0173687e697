"""A lesson's CurveSet: each curve's data and style as Line2D would draw it, in two collections."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ui.lessons.curves import CurveSet  # noqa: E402

X, Y = [0.0, 1.0, 2.0, np.nan, 2.5, 2.9], [0.0, 1.0, 0.5, 1.0, 1.5, 1.2]
STYLES = [dict(color="C1", lw=1.2, marker="o", ms=3, alpha=0.7), dict(color="C2", ls="--", lw=1.0, marker="."),
          dict(color="C3", ls="", marker="o", ms=5, mec="k"), dict(color="C0", lw=0.6, alpha=0.5)]
DATA = [(X, Y), ([0, 1, 2], [1, 1.5, 1]), ([2], [0]), ([-0.5, 0.5, 1.5, 2.5], [-0.5, 0.2, -0.3, 0.4])]


def _image(as_set: bool, styles=STYLES) -> np.ndarray:
    fig = Figure(figsize=(3, 2), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if as_set:
        curves = CurveSet(ax)
        for style, (x, y) in zip(styles, DATA, strict=True):
            curves.add(**style).set_data(x, y)
    else:
        for style, (x, y) in zip(styles, DATA, strict=True):
            ax.plot(x, y, **style)
    ax.set_xlim(-1, 3)
    ax.set_ylim(-1, 2)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).astype(int)


def _ink(img: np.ndarray) -> float:
    """How much is drawn: the darkness summed over the pixels."""
    return float((255 - img[..., :3].mean(axis=-1)).sum())


def test_curves_draw_as_their_lines_would():
    lines, collected = _image(False), _image(True)
    off = np.abs(lines - collected).max(axis=-1) > 40  # antialiased edges and where a curve's markers overlap it
    ink = (lines[..., :3] < 250).any(axis=-1)
    assert ink.sum() > 1000 and off.sum() < 0.06 * ink.sum()
    assert abs(_ink(collected) - _ink(lines)) < 0.03 * _ink(lines)
    # markers alone, larger: as much ink (Line2D snaps them to whole pixels, a collection does not)
    marks = [dict(color=f"C{i}", ls="", marker="o", ms=8) for i in range(len(DATA))]
    lines, collected = _image(False, marks), _image(True, marks)
    axes = _image(False, [dict(ls="")] * len(DATA))  # the axes alone
    drawn = _ink(lines) - _ink(axes)
    assert drawn > 0.3 * _ink(lines) and abs(_ink(collected) - _ink(lines)) < 0.05 * drawn


def test_a_curve_breaks_at_missing_values_and_markers_sit_on_each_finite_point():
    fig = Figure()
    ax = fig.add_subplot()
    curves = CurveSet(ax)
    first, dots = curves.add("C0", marker="o", ms=3), curves.add("C1", ls="", marker="o")
    first.set_data(X, Y)
    dots.set_data([1, 2], [3, np.nan])
    curves.commit()
    assert [len(s) for s in curves.lines.get_segments()] == [3, 2]  # the NaN splits the line; `dots` has none
    assert np.array_equal(curves.markers.get_offsets(), [[0, 0], [1, 1], [2, 0.5], [2.5, 1.5], [2.9, 1.2], [1, 3]])
    assert np.array_equal(first.get_xdata(), X, equal_nan=True)
    first.set_visible(False)
    curves.commit()
    assert len(curves.lines.get_segments()) == 0 and len(curves.markers.get_offsets()) == 1
    assert [h.get_marker() for h in curves.legend_handles()] == ["o", "o"]
