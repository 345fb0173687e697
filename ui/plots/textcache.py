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

import matplotlib
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


class GlyphText(Text):
    """A short one-line text that changes on every frame (a step counter, a batch's characters), drawn from
    bitmaps of its characters.

    A `CachedText` only helps when strings repeat; a counter is a new string each time, and laying out and
    rendering it as text costs a few milliseconds a draw (of the GIL the training thread needs). Each
    character is rendered once (`CachedText.render`, at the figure's dpi), placed at its advance width (as
    Agg lays it out, without kerning: a pixel or two off at most against `Text`), and the string's row is
    composed in numpy and drawn as one image. Its extent comes from the same numbers, without a text layout. One line,
    no rotation; anything else (a vector file, a newline) is drawn as plain text.
    """

    _glyphs: dict = {}  # (char, font, colour, dpi) -> (alpha rows top first, x and y of the bottom-left from the pen)
    _metrics: dict = {}  # (font, dpi) -> (ascent, descent) of the font's line, in pixels
    _advances: dict = {}  # (char, font, dpi) -> advance width in pixels
    _lock = threading.Lock()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._row_key = None
        self._row = None  # (rgba rows top first, x0 from the pen's start, y0 from the baseline)

    @classmethod
    def adopt(cls, text: Text) -> GlyphText:
        """Makes a `Text` already placed (a figure's suptitle, which the layout knows) draw as a `GlyphText`."""
        text.__class__ = cls
        text._row_key = text._row = None
        return text

    def _font_key(self) -> int:
        # a family name like "sans-serif" resolves through rcParams, which a language switch changes
        rc = matplotlib.rcParams
        return hash((hash(self.get_fontproperties()), tuple(rc["font.family"]), tuple(rc["font.sans-serif"])))

    def _line_metrics(self, dpi: float) -> tuple[float, float]:
        key = (self._font_key(), dpi)
        hit = self._metrics.get(key)
        if hit is None:
            fig = Figure(dpi=dpi)
            canvas = FigureCanvasAgg(fig)
            probe = Text(0, 0, "lp", fontproperties=self.get_fontproperties(), va="baseline", ha="left")
            probe.set_figure(fig)
            probe.set_transform(IdentityTransform())
            box = probe.get_window_extent(canvas.get_renderer())
            hit = self._metrics[key] = (box.y1, -box.y0)
        return hit

    def _advance(self, ch: str, dpi: float) -> float:
        key = (ch, self._font_key(), dpi)
        hit = self._advances.get(key)
        if hit is None:
            # as Agg lays the character out in a run of itself (its hinted advance), not FreeType's linear one
            renderer = FigureCanvasAgg(Figure(dpi=dpi)).get_renderer()
            prop = self.get_fontproperties()
            one = renderer.get_text_width_height_descent(ch, prop, ismath=False)[0]
            many = renderer.get_text_width_height_descent(ch * 11, prop, ismath=False)[0]
            hit = self._advances[key] = (many - one) / 10
        return hit

    def _glyph(self, ch: str, dpi: float):
        key = (ch, self._font_key(), repr(self.get_color()), dpi)
        hit = self._glyphs.get(key)
        if hit is None:
            one = CachedText(0, 0, "", fontproperties=self.get_fontproperties(), color=self.get_color(),
                             ha="left", va="baseline")
            rgba, dx, dy = one.render(ch, dpi)
            with self._lock:
                hit = self._glyphs[key] = (rgba[..., 3].copy(), dx, dy)
        return hit

    def _compose(self, text: str, dpi: float):
        """The string's row: rgba (top row first) and the bottom-left corner from the pen's start on the baseline."""
        key = (text, self._font_key(), repr(self.get_color()), dpi)
        if key == self._row_key:
            return self._row
        pens, x = [], 0.0
        for ch in text:
            pens.append(x)
            x += self._advance(ch, dpi)
        glyphs = [self._glyph(ch, dpi) for ch in text]
        x0 = min(int(round(p)) + g[1] for p, g in zip(pens, glyphs, strict=True))
        x1 = max(int(round(p)) + g[1] + g[0].shape[1] for p, g in zip(pens, glyphs, strict=True))
        y0 = min(g[2] for g in glyphs)
        y1 = max(g[2] + g[0].shape[0] for g in glyphs)
        alpha = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
        for p, (a, dx, dy) in zip(pens, glyphs, strict=True):
            left, top = int(round(p)) + dx - x0, y1 - (dy + a.shape[0])
            region = alpha[top:top + a.shape[0], left:left + a.shape[1]]
            np.maximum(region, a, out=region)  # neighbours overlap only in their padding and antialiased edges
        from matplotlib.colors import to_rgba

        rgba = np.empty(alpha.shape + (4,), dtype=np.uint8)
        rgba[..., :3] = (np.array(to_rgba(self.get_color())[:3]) * 255).round().astype(np.uint8)
        rgba[..., 3] = alpha
        self._row_key, self._row = key, (rgba, x0, y0, x)
        return self._row

    def _plain(self) -> bool:
        text = self.get_text()
        return "\n" in text or self.get_rotation() != 0 or self.get_usetex() or "$" in text

    def _origin(self, dpi: float, width: float) -> tuple[float, float]:
        """The pen's start on the baseline, in display pixels, for this alignment."""
        x, y = self.get_transform().transform(self.get_unitless_position())
        ascent, descent = self._line_metrics(dpi)
        x -= {"left": 0.0, "center": width / 2, "right": width}[self.get_ha()]
        y -= {"baseline": 0.0, "bottom": -descent, "top": ascent, "center": (ascent - descent) / 2,
              "center_baseline": (ascent - descent) / 2}[self.get_va()]
        return x, y

    def get_window_extent(self, renderer=None, dpi=None):
        fig = self.get_figure(root=True)
        if self._plain() or fig is None or not self.get_text():
            return super().get_window_extent(renderer, dpi)
        dpi = fig.dpi if dpi is None else dpi
        width = sum(self._advance(ch, dpi) for ch in self.get_text())
        x, y = self._origin(dpi, width)
        ascent, descent = self._line_metrics(dpi)
        from matplotlib.transforms import Bbox

        return Bbox.from_extents(x, y - descent, x + width, y + ascent)

    def draw(self, renderer) -> None:
        text = self.get_text()
        fig = self.get_figure(root=True)
        if not self.get_visible() or not text or renderer is None or fig is None or self._plain() \
                or type(renderer).__name__ != "RendererAgg" or getattr(renderer, "_raster_depth", 0):
            return super().draw(renderer)
        rgba, x0, y0, width = self._compose(text, fig.dpi)
        x, y = self._origin(fig.dpi, width)
        gc = renderer.new_gc()
        gc.set_alpha(1.0)
        if self.get_clip_on():
            self._set_gc_clip(gc)
        renderer.draw_image(gc, int(round(x)) + x0, int(round(y)) + y0, rgba[::-1])
        gc.restore()
        self.stale = False


def glyph_text(ax, x, y, text: str, **kwargs) -> GlyphText:
    """`ax.text(x, y, text, **kwargs)` as a `GlyphText` (unclipped unless asked, as `ax.text`)."""
    t = GlyphText(x, y, text, **{"clip_on": False, **kwargs})
    if t.get_clip_path() is None:
        t.set_clip_path(ax.patch)
    ax._add_text(t)
    return t
