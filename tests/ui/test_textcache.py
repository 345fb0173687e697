"""CachedText draws the same text as a plain Text (within a pixel's antialiasing), from one bitmap per string."""

import threading

import matplotlib
import numpy as np

matplotlib.use("Agg")
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ui.plots.textcache import cached_text  # noqa: E402

PANEL = "\n".join(f"  w{i:>4}: " + ", ".join(f"n{j}{i} 0.{j}{i}" for j in range(4)) for i in range(5))


def _draw(cached: bool, text: str = PANEL):
    fig = Figure(figsize=(5, 3), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    kw = dict(transform=ax.transAxes, ha="left", va="top", fontsize=8, family="monospace", color="C3")
    t = cached_text(ax, 0.07, 0.83, text, **kw) if cached else ax.text(0.07, 0.83, text, **kw)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].astype(float), t, fig


def _ink(img):
    dark = 255.0 * 3 - img.sum(axis=2)  # (h, w): how much the pixel departs from white
    ys, xs = np.nonzero(dark > 0)
    w = dark[ys, xs]
    return w.sum(), np.average(ys, weights=w), np.average(xs, weights=w)


def test_cached_text_looks_like_text_and_renders_each_string_once():
    plain, _, _ = _draw(False)
    cached, t, fig = _draw(True)
    ink_p, y_p, x_p = _ink(plain)
    ink_c, y_c, x_c = _ink(cached)
    assert abs(ink_c - ink_p) / ink_p < 0.03  # the same glyphs, the same colour
    assert abs(y_c - y_p) < 1.0 and abs(x_c - x_p) < 1.0  # at the same place
    assert len(t._bitmaps) == 1
    fig.draw_artist(t)
    fig.draw_artist(t)
    assert len(t._bitmaps) == 1  # drawn again from its bitmap
    t.set_text("other")
    fig.draw_artist(t)
    assert len(t._bitmaps) == 2


def test_prerender_from_another_thread_fills_the_cache():
    _, t, fig = _draw(True)
    texts = [f"step {i}" for i in range(5)]
    worker = threading.Thread(target=t.prerender, args=(texts, fig.dpi))
    worker.start()
    worker.join()
    assert all(t._bitmap(s, fig.dpi) is not None for s in texts)
    stop = threading.Event()
    stop.set()
    t.prerender(["never"], fig.dpi, stop)
    assert t._bitmap("never", fig.dpi) is None
