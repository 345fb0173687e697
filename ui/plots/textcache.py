"""Text drawn from a bitmap rendered once per string: a blit of many labels or a long panel costs an image copy.

Matplotlib renders text glyph by glyph on every draw (a 14-line panel: tens of milliseconds, holding the
GIL the training thread needs). A `CachedText` renders each string it shows once, at the figure's dpi,
into an RGBA bitmap (`render`), and draws that bitmap at its anchor afterwards, so a label that only
moves, or a panel whose frames repeat on a replay, is a copy. `prerender` fills the cache from another
thread (matplotlib keeps one font object per thread, so that is safe); a string not yet rendered is drawn
as plain text. What is drawn is the same text, rendered by the same Agg code.
"""

from __future__ import annotations

import threading

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.transforms import IdentityTransform

CACHE_LIMIT = 512  # strings per artist: a lesson's frames, with room to spare


class CachedText(Text):
    """A `Text` (anchor, alignment, font and colour set as for one) that draws each string from its bitmap."""

    def __init__(self, *args, bitmaps: dict | None = None, **kwargs):
        """`bitmaps`: a cache to share (one filled by a twin artist's `prerender` in another thread)."""
        super().__init__(*args, **kwargs)
        self._bitmaps: dict = {} if bitmaps is None else bitmaps
        self._lock = threading.Lock()

    def _key(self, text: str, dpi: float) -> tuple:
        return (text, dpi, hash(self.get_fontproperties()), repr(self.get_color()), self.get_ha(), self.get_va(),
                self.get_rotation(), self.get_linespacing(), self._multialignment)

    def render(self, text: str, dpi: float) -> tuple[np.ndarray, int, int]:
        """(bitmap rows top first, x and y of its bottom-left corner from the anchor, in pixels)."""
        probe = Text(0, 0, text, fontproperties=self.get_fontproperties(), color=self.get_color(),
                     ha=self.get_ha(), va=self.get_va(), rotation=self.get_rotation(),
                     linespacing=self.get_linespacing(), multialignment=self._multialignment)
        fig = Figure(dpi=dpi)
        canvas = FigureCanvasAgg(fig)
        fig.patch.set_alpha(0.0)
        probe.set_figure(fig)
        box = probe.get_window_extent(canvas.get_renderer())
        pad = 3
        w, h = int(np.ceil(box.width)) + 2 * pad, int(np.ceil(box.height)) + 2 * pad
        fig.set_size_inches(w / dpi, h / dpi)
        ax_x, ax_y = pad - int(np.floor(box.x0)), pad - int(np.floor(box.y0))  # the anchor inside the bitmap
        probe.set_position((ax_x, ax_y))
        probe.set_transform(IdentityTransform())
        fig.texts.append(probe)
        canvas.draw()
        rgba = np.asarray(canvas.buffer_rgba()).copy()  # (h, w, 4), the top row first
        return rgba, -ax_x, -ax_y

    def _bitmap(self, text: str, dpi: float):
        key = self._key(text, dpi)
        with self._lock:
            return self._bitmaps.get(key)

    def prerender(self, texts, dpi: float, cancel: threading.Event | None = None) -> None:
        """Renders these strings into the cache (any thread); stops when `cancel` is set."""
        for text in texts:
            if cancel is not None and cancel.is_set():
                return
            key = self._key(text, dpi)
            if self._bitmap(text, dpi) is None:
                value = self.render(text, dpi)
                with self._lock:
                    if len(self._bitmaps) < CACHE_LIMIT:
                        self._bitmaps[key] = value

    def draw(self, renderer) -> None:
        text = self.get_text()
        if not self.get_visible() or not text or renderer is None or not hasattr(renderer, "draw_image") \
                or self.get_figure(root=True) is None or getattr(renderer, "_raster_depth", 0):
            return super().draw(renderer)
        dpi = self.get_figure(root=True).dpi
        if type(renderer).__name__ != "RendererAgg":  # a vector file: real text
            return super().draw(renderer)
        hit = self._bitmap(text, dpi)
        if hit is None:
            self.prerender([text], dpi)
            hit = self._bitmap(text, dpi)
            if hit is None:  # the cache is full
                return super().draw(renderer)
        rgba, dx, dy = hit
        x, y = self.get_transform().transform(self.get_unitless_position())
        gc = renderer.new_gc()
        gc.set_alpha(1.0)
        if self.get_clip_on():
            self._set_gc_clip(gc)
        renderer.draw_image(gc, int(round(x)) + dx, int(round(y)) + dy, rgba[::-1])
        gc.restore()
        self.stale = False


def cached_text(ax, x, y, text: str, **kwargs) -> CachedText:
    """`ax.text(x, y, text, **kwargs)`, as a `CachedText` (unclipped unless asked, as `ax.text`)."""
    t = CachedText(x, y, text, **{"clip_on": False, **kwargs})
    if t.get_clip_path() is None:
        t.set_clip_path(ax.patch)
    ax._add_text(t)
    return t
