"""Curves drawn as a trail: their new pieces go into the blitter's background once, and the picture is the one a
whole draw of the curves gives."""

import tkinter as tk

import numpy as np
import pytest
from matplotlib.figure import Figure

from ui.plots.artist_sets import LineSet
from ui.plots.base import Blitter, TabCanvas

RNG = np.random.default_rng(3)
NAMES = [f"t{i}" for i in range(6)]
COLOURS = {n: (0.1 * i, 0.3, 0.9 - 0.1 * i, 1.0) for i, n in enumerate(NAMES)}


@pytest.fixture
def canvas():
    root = tk.Tk()
    fig = Figure(figsize=(5, 3.5), dpi=100)
    c = TabCanvas(fig, master=root)
    c.get_tk_widget().pack()
    yield c
    root.destroy()


def _walks(points: int) -> np.ndarray:
    return np.exp(np.cumsum(RNG.standard_normal((len(NAMES), points)) * 0.3, axis=1)) * 1e-2


def _axes(fig):
    ax = fig.add_subplot()
    ax.set_yscale("log")
    ax.set_xlim(0, 100)
    ax.set_ylim(1e-4, 1e1)
    return ax


def _pixels(canvas) -> np.ndarray:
    return np.asarray(canvas.get_renderer().buffer_rgba())[..., :3].astype(int)


def test_commit_hands_over_only_the_new_pieces_and_says_when_the_curves_changed():
    fig = Figure()
    lines = LineSet(_axes(fig), COLOURS)
    ys = _walks(40)
    x = np.arange(40.0)
    lines.set_rows(NAMES, x[:30], ys[:, :30])
    assert not lines.commit()  # nothing is in a background yet: all of it is new
    lines.baked_whole()  # a full draw drew them
    assert not lines.pending and not lines.tail.get_paths()
    lines.set_rows(NAMES, x, ys)
    assert not lines.commit()
    assert lines.pending
    drawn = sum(len(p.vertices) for p in lines.tail.get_paths())
    assert drawn == len(NAMES) * 11  # from the last point in the background (29) to 39, each curve
    assert sum(len(p.vertices) for p in lines.artist.get_paths()) == len(NAMES) * 40  # whole, for full draws
    lines.baked_whole()  # the blitter drew the tail
    assert not lines.pending
    lines.set_rows(NAMES, x, ys)  # the same again: nothing new
    assert not lines.commit() and not lines.pending
    thinned = np.r_[x[:20:2], x[20:]]  # a history thinned at its cap: not a continuation
    lines.set_rows(NAMES, thinned, ys[:, :len(thinned)])
    assert lines.commit() and not lines.pending
    one = {n: (x[:35], ys[i, :35]) for i, n in enumerate(NAMES)}  # curves set one by one, of their own x
    lines.baked_whole()
    for n, (cx, cy) in one.items():
        lines.set_data(n, np.r_[cx, 36.0], np.r_[cy, 1e-2])
    assert lines.commit()  # 35 points where the background has 30 thinned ones: drawn again


def test_a_trail_blit_draws_the_picture_of_a_whole_draw(canvas):
    fig = canvas.figure
    ax = _axes(fig)
    lines = LineSet(ax, COLOURS)
    blitter = Blitter(canvas, [])
    blitter.set_artists([], trails=(lines,))
    ys = _walks(90)
    x = np.arange(90.0)
    lines.set_rows(NAMES, x[:10], ys[:, :10])
    lines.commit()
    canvas.draw_agg()  # the first, full draw: the background
    assert blitter.background is not None and not lines.pending
    for m in range(20, 91, 10):  # eight statistics steps, each blitted
        lines.set_rows(NAMES, x[:m], ys[:, :m])
        assert not lines.commit()
        boxes = blitter.compose()
        assert boxes and not lines.pending
    blitted = _pixels(canvas)
    blitter.compose()  # nothing new: the picture stays (no piece is drawn twice)
    assert np.array_equal(_pixels(canvas), blitted)
    canvas.draw_agg()  # the same curves drawn whole
    whole = _pixels(canvas)
    differ = np.abs(blitted - whole).max(axis=-1) > 40
    # the pieces meet at their ends, where the joins of one path are two line ends: a few pixels there
    assert differ.mean() < 0.002, differ.mean()
    assert np.abs(blitted - whole).mean() < 0.2


def test_an_axes_redraw_takes_the_whole_curves_and_keeps_other_trails_growing(canvas):
    fig = canvas.figure
    a1, a2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    l1, l2 = LineSet(a1, COLOURS), LineSet(a2, COLOURS)
    for ax in (a1, a2):
        ax.set_xlim(0, 60)
        ax.set_ylim(-5, 5)
    blitter = Blitter(canvas, [])
    blitter.set_artists([], trails=(l1, l2))
    x = np.arange(60.0)
    ys = np.cumsum(RNG.standard_normal((len(NAMES), 60)) * 0.3, axis=1)
    for lines in (l1, l2):
        lines.set_rows(NAMES, x[:20], ys[:, :20])
        lines.commit()
    canvas.draw_agg()
    a1.set_ylim(-10, 10)  # a1's limits grew: its axes are drawn again, a2 blits its new piece
    for lines in (l1, l2):
        lines.set_rows(NAMES, x[:40], ys[:, :40])
        lines.commit()
    assert blitter.compose_axes([a1]) is not None
    assert not l1.pending and not l2.pending
    redrawn = _pixels(canvas)
    canvas.draw_agg()
    whole = _pixels(canvas)
    assert (np.abs(redrawn - whole).max(axis=-1) > 40).mean() < 0.002
