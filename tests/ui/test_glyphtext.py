"""GlyphText draws a changing one-line text as a plain Text does (within a pixel or two), from per-character
bitmaps, with the same extent; the blitter copies each artist's axes box, and step axes start at the plan."""

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

from ui.plots.base import merge_boxes, x_limit  # noqa: E402
from ui.plots.textcache import GlyphText, glyph_text  # noqa: E402


def _draw(glyphs: bool, text: str, **kw):
    fig = Figure(figsize=(4, 1), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_axis_off()
    t = (glyph_text if glyphs else type(ax).text)(ax, 0.5, 0.5, text, transform=ax.transAxes, **kw)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].astype(float), t, canvas


def _ink(img):
    dark = 255.0 * 3 - img.sum(axis=2)
    ys, xs = np.nonzero(dark > 0)
    w = dark[ys, xs]
    return w.sum(), np.average(ys, weights=w), np.average(xs, weights=w), xs.min(), xs.max()


@pytest.mark.parametrize("text, kw", [
    ("step 1234", {"ha": "center", "va": "center"}),
    ("steps 10-60", {"ha": "right", "va": "baseline", "fontsize": 7, "color": "0.35"}),
    ("layer 0, batch row 1, step 90: 'the quick brown fox'", {"ha": "left", "va": "top", "fontsize": 8}),
    ("0123456789", {"ha": "left", "va": "bottom", "family": "monospace", "color": "C3"}),
])
def test_glyph_text_looks_like_text_and_has_its_extent(text, kw):
    plain, t, canvas = _draw(False, text, **kw)
    glyphs, g, canvas_g = _draw(True, text, **kw)
    ink_p, y_p, x_p, left_p, right_p = _ink(plain)
    ink_g, y_g, x_g, left_g, right_g = _ink(glyphs)
    assert abs(ink_g - ink_p) / ink_p < 0.03  # the same glyphs, the same colour
    assert abs(y_g - y_p) < 1.0 and abs(x_g - x_p) < 1.5  # at the same place
    assert abs(left_g - left_p) <= 2 and abs(right_g - right_p) <= 2
    ep, eg = t.get_window_extent(canvas.get_renderer()), g.get_window_extent(canvas_g.get_renderer())
    assert np.allclose(ep.extents, eg.extents, atol=1.5), (ep, eg)


def test_glyph_text_renders_each_character_once_and_reuses_the_row():
    _, g, canvas = _draw(True, "step 1")
    renderer = canvas.get_renderer()
    before = len(GlyphText._glyphs)
    for n in (12, 21, 112, 211):  # only characters seen already
        g.set_text(f"step {n}")
        g.draw(renderer)
    assert len(GlyphText._glyphs) == before
    row = g._row
    g.draw(renderer)
    assert g._row is row  # the same string again: the composed row is not made again
    g.set_text("step 7")
    g.draw(renderer)
    assert len(GlyphText._glyphs) == before + 1


def test_a_newline_or_a_rotation_is_drawn_as_plain_text():
    plain, _, _ = _draw(False, "two\nlines")
    glyphs, _, _ = _draw(True, "two\nlines")
    assert np.array_equal(plain, glyphs)
    plain, _, _ = _draw(False, "up", rotation=90)
    glyphs, _, _ = _draw(True, "up", rotation=90)
    assert np.array_equal(plain, glyphs)


def test_merge_boxes_joins_overlapping_boxes_only():
    a, b, c = Bbox.from_extents(0, 0, 10, 10), Bbox.from_extents(5, 5, 20, 20), Bbox.from_extents(30, 0, 40, 5)
    out = merge_boxes([a, c, b, Bbox.from_extents(30, 0, 40, 5)])
    assert sorted(tuple(o.extents) for o in out) == [(0, 0, 20, 20), (30, 0, 40, 5)]
    d = Bbox.from_extents(15, 15, 35, 35)  # joins the first union, which then overlaps c: one box
    assert [tuple(o.extents) for o in merge_boxes([a, c, b, d])] == [(0, 0, 40, 35)]


def test_step_axes_start_at_the_plan_and_double_after_it():
    assert x_limit(5, 300, planned=300) is None
    assert x_limit(40, 10, planned=300) == 300  # the plan while it holds the step
    assert x_limit(301, 300, planned=300) == 602  # then twice the step
    assert x_limit(3, 2, planned=0) == 10  # never below 10
