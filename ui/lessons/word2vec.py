"""word2vec: a PCA map of the word vectors moving as they train, analogy accuracy and loss per step, and the
nearest neighbours of the asked words at the step shown.

The lesson (`simulator.lessons.word2vec`) trains in chunks, one frame each; this tab replays the frames.
Each frame's map is the PCA of one relation's words (pairs joined by a line: king - queen, goat - goats,
varnia - tolm). The axes of a PCA may turn or flip from one frame to the next, so each frame's map is turned
(an orthogonal Procrustes fit: rotation or reflection, distances kept) onto the last frame's and scaled
to unit spread: what moves is the words, not the axes. The toolbar's model, window and D recompute the
lesson; the map choice only redraws. A frame blits: the curves are two `CurveSet`s, the texts bitmaps.
"""

from __future__ import annotations

import gc
import tkinter as tk
from tkinter import ttk

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.transforms import Bbox

from simulator.i18n import N_, _
from simulator.lessons.word2vec import FREQUENT, MODELS, load_corpus, neighbours_text, static_point
from ui.lessons import lesson_tab
from ui.lessons.base import LessonBlitter, LessonTab, labelled_combo
from ui.lessons.curves import CurveSet
from ui.plots.base import monospace
from ui.plots.textcache import CachedText, cached_text

BITMAP_PAD = 3  # pixels `CachedText.render` leaves around a string's box


def panel_text() -> dict:
    """The neighbours panel's text style, in the fonts of the language now."""
    return dict(ha="left", va="top", fontsize=8, family=monospace())
STEP_TEXT = dict(ha="left", va="top", fontsize=8)  # the map's step line


class PanelText(CachedText):
    """A `CachedText` whose extent is read from its bitmap, without laying the text out.

    A blit copies to the screen where each unclipped artist is (`Blitter`): asked of a `Text`, that is a layout
    of every line of the neighbours panel on each frame (measured: 14 ms a frame, twice the drawing). The
    bitmap's box less its padding is the layout's box (to a pixel). A string without a bitmap yet: a `Text`'s.
    """

    def get_window_extent(self, renderer=None, dpi=None):
        fig = self.get_figure(root=True)
        hit = self._bitmap(self.get_text(), fig.dpi) if fig is not None and self.get_text() and dpi is None \
            else None
        if hit is None:
            return super().get_window_extent(renderer, dpi)
        rgba, dx, dy = hit
        x, y = self.get_transform().transform(self.get_unitless_position())
        x0, y0 = int(round(x)) + dx + BITMAP_PAD, int(round(y)) + dy + BITMAP_PAD
        return Bbox.from_extents(x0, y0, x0 + rgba.shape[1] - 2 * BITMAP_PAD, y0 + rgba.shape[0] - 2 * BITMAP_PAD)


def panel_artist(ax, x, y, text: str, **kwargs) -> PanelText:
    """`cached_text`, as a `PanelText`."""
    t = PanelText(x, y, text, **{"clip_on": False, **kwargs})
    if t.get_clip_path() is None:
        t.set_clip_path(ax.patch)
    ax._add_text(t)
    return t


def align(frames_coords: list[np.ndarray]) -> np.ndarray:
    """(steps, n, 2): each frame's centred map, turned onto the last one's (Procrustes) and scaled to unit RMS."""
    out = []
    for x in frames_coords:
        x = x - x.mean(axis=0)
        out.append(x / max(float(np.sqrt((x ** 2).sum(axis=1).mean())), 1e-12))
    target = out[-1]
    for i, x in enumerate(out):
        u, _s, vt = np.linalg.svd(x.T @ target)  # (2, 2): the orthogonal R minimising |x R - target|
        out[i] = x @ (u @ vt)
    return np.stack(out)


def static_lines(cfg, frames) -> str:
    """The static-vector point, measured on the trained vectors, short enough for the panel."""
    if cfg.static_word is None:
        return _("one vector per word, whatever its sentence (static; BERT's are contextual)")
    p = static_point(cfg, load_corpus(cfg.corpus, cfg.path, cfg.min_count), frames[-1].vectors)
    if len(p.sentences) < 2:
        return _("one vector per word: '{word}' is in fewer than two sentences here").format(word=p.word)
    cut = [s if len(s) <= 52 else s[:51] + "…" for s in p.sentences]
    return _("one vector per word, whatever its sentence: after training,\n'{word}' in\n{sentences}\nis one vector "
             "(cosine 1), though the other words of the\ntwo sentences have cosine {between:.2f}. BERT's vectors are "
             "contextual: one per sentence.").format(word=p.word, sentences="\n".join(f'  "{s}"' for s in cut),
                                                     between=p.between)


@lesson_tab("word2vec")
class Word2VecTab(LessonTab):
    """The vectors' PCA map, analogy accuracy and loss, and nearest neighbours, step by step."""

    steps_per_second = 25.0
    _bitmaps: tuple = (None, {}, {})  # (the frames, the neighbours panels' and step lines' bitmaps of each)

    def load(self, cfg) -> None:
        # Tk objects already garbage are freed here, on the Tk thread: the lesson's thread allocates enough
        # (numba loading its kernels, the frames) to run a full collection, and Tk refuses calls from it
        gc.collect()
        super().load(cfg)

    def build_controls(self, bar) -> None:
        _box, self.model_var = labelled_combo(bar, N_("model"), MODELS, width=9, command=lambda: self._changed("model"))
        self.vars: dict[str, tk.StringVar] = {"model": self.model_var}
        for path, label in (("window", "window"), ("dim", "D"), ("epochs", "epochs")):
            ttk.Label(bar, text=label).pack(side="left", padx=(6, 2))
            var = self.vars[path] = tk.StringVar(self.frame)
            entry = ttk.Entry(bar, textvariable=var, width=5)
            entry.pack(side="left")
            for seq in ("<Return>", "<FocusOut>"):
                entry.bind(seq, lambda e, p=path: self._changed(p), add="+")
        self.map_box, self.map_var = labelled_combo(bar, N_("map"), [], width=9, command=self.show_map)

    def show_config(self, cfg) -> None:
        for path, var in self.vars.items():
            var.set(str(getattr(cfg, path)))

    def _changed(self, path: str) -> None:
        text = self.vars[path].get().strip()
        if text != str(getattr(self.cfg, path)):
            self.change(path, text)

    def digest(self, cfg, frames):
        """(frames, {map name: (words, (steps, n, 2) aligned coordinates)}, the static-vector lines)."""
        maps = {}
        for m, (name, ws, _xy, _ids) in enumerate(frames[-1].maps):
            maps[name] = (ws, align([f.maps[m][2] for f in frames]))
        self._prerender(frames)
        return frames, maps, static_lines(cfg, frames)

    def _prerender(self, frames) -> None:
        """Renders every frame's neighbours panel and step line (in the lesson's thread, as part of computing
        it): a replay then draws them from bitmaps (about 70 ms of glyphs a frame otherwise)."""
        dpi = self.figure.dpi if self.figure is not None else 100.0
        n = len(frames)
        panels, lines = {}, {}
        CachedText(0, 0, "", bitmaps=panels, **panel_text()).prerender([self._neighbours(f) for f in frames], dpi)
        CachedText(0, 0, "", bitmaps=lines, **STEP_TEXT).prerender([self._step_line(f, n) for f in frames], dpi)
        self._bitmaps = (frames, panels, lines)

    def steps_of(self) -> int:
        return len(self.result[0])

    def show_map(self) -> None:
        if self.result is not None:
            self.relayout()
            self.blitter = LessonBlitter(self.canvas, self.draw_static())
            self.show_until(self.shown if self.shown else self.steps_of())
            self.full_draw()

    def draw_static(self) -> list:
        frames, maps, self.static = self.result
        names = list(maps)
        self.map_box.configure(values=names)
        if self.map_var.get() not in names:  # capitals first: their pairs are the most parallel
            self.map_var.set("capital" if "capital" in names else names[0])
        name = self.map_var.get()
        self.words, self.coords = maps[name]
        n = len(frames)
        fig = self.figure
        fig.clear()
        spec = fig.add_gridspec(2, 2, width_ratios=(1.25, 1))
        self.ax_map = ax = fig.add_subplot(spec[:, 0])
        ax_acc = fig.add_subplot(spec[0, 1])
        ax_text = fig.add_subplot(spec[1, 1])
        lim = float(np.abs(self.coords[-1]).max()) * 1.3  # early frames may reach past it: clipped
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_xticks([])
        ax.set_yticks([])
        paired = name != FREQUENT
        ax.set_title((_("PCA of the {name} words (pairs joined)") if paired else
                      _("PCA of the {name} words, most frequent first")).format(name=name))
        self.pairs = LineCollection([], colors="0.6", linewidths=0.8)
        ax.add_collection(self.pairs)
        colours = ["C0", "C3"] * (len(self.words) // 2) if paired else ["C0"] * len(self.words)
        self.dots = ax.scatter(self.coords[-1, :, 0], self.coords[-1, :, 1], s=14, c=colours, zorder=3, clip_on=True)
        # text that only moves, or repeats on a replay, is drawn from bitmaps (`CachedText`): most of a frame
        self.labels = [cached_text(ax, 0, 0, w, fontsize=7, ha="left", va="bottom", clip_on=True) for w in self.words]
        _frames, panels, lines = self._bitmaps if self._bitmaps[0] is frames else (None, None, None)
        self.step_text = panel_artist(ax, 0.01, 0.99, "", transform=ax.transAxes, bitmaps=lines, **STEP_TEXT)
        steps = np.arange(1, n + 1)
        self.acc = {}
        acc_curves = CurveSet(ax_acc)
        for i, (rel, _hits, asked) in enumerate(frames[-1].accuracy):
            if asked:
                self.acc[rel] = acc_curves.add(f"C{i}", lw=1.3, label=_("{relation} analogies").format(relation=rel))
        self.acc_values = {rel: np.array([h / a for r, h, a in (f.accuracy[i] for f in frames)])
                           for i, (rel, _hits, a) in enumerate(frames[-1].accuracy) if a}
        self.loss_values = np.array([f.loss for f in frames])
        self.steps = steps
        ax_loss = ax_acc.twinx()
        loss_curves = CurveSet(ax_loss)
        self.loss_line = loss_curves.add("0.3", lw=1.0, ls="--", label=_("loss per prediction"))
        ax_acc.set_xlim(0, n)
        ax_acc.set_ylim(0, 1.3)  # headroom for the legend
        ax_acc.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
        ax_loss.set_ylim(0, float(self.loss_values.max()) * 1.35)
        ax_acc.set_xlabel(_("step"))
        ax_acc.set_title(_("analogy accuracy (solid) and loss (dashed)"))
        ax_acc.grid(alpha=0.3)
        ax_acc.legend(handles=[c.legend_handle() for c in (*self.acc.values(), self.loss_line)], loc="upper center",
                      ncol=2, fontsize=7)
        ax_text.set_axis_off()
        self.neighbours = panel_artist(ax_text, 0, 1, self._neighbours(frames[-1]), transform=ax_text.transAxes,
                                      bitmaps=panels, **panel_text())
        # the static-vector note never changes during a replay: drawn once under the neighbours (which keep their
        # number of lines), not re-rendered with them on every frame (text is most of a frame's cost)
        self.static_note = ax_text.annotate(self.static, xy=(0, 0), xycoords=self.neighbours, xytext=(0, -9.6),
                                            textcoords="offset points", ha="left", va="top", fontsize=8,
                                            family=monospace(), annotation_clip=False)
        return [self.pairs, self.dots, *self.labels, self.step_text, acc_curves.lines, loss_curves.lines,
                self.neighbours]

    def show_until(self, k: int) -> None:
        frames = self.result[0]
        i = max(0, k - 1)
        xy = self.coords[i]  # (n, 2)
        self.dots.set_offsets(xy)
        for t, p in zip(self.labels, xy, strict=True):
            t.set_position((p[0], p[1]))
        if self.map_var.get() != FREQUENT:
            self.pairs.set_segments([xy[j:j + 2] for j in range(0, len(xy) - 1, 2)])
        else:
            self.pairs.set_segments([])
        f = frames[i]
        self.step_text.set_text(self._step_line(f, len(frames)))
        for rel, line in self.acc.items():
            line.set_data(self.steps[:k], self.acc_values[rel][:k])
        self.loss_line.set_data(self.steps[:k], self.loss_values[:k])
        self.neighbours.set_text(self._neighbours(f))

    @staticmethod
    def _step_line(f, n: int) -> str:
        return _("step {step} of {steps}, {words:,} words").format(step=f.step, steps=n, words=f.words_done)

    @staticmethod
    def _neighbours(f) -> str:
        acc = "   ".join(f"{rel} {h / a:.0%}" for rel, h, a in f.accuracy if a)
        return "\n".join(neighbours_text(f)) + f"\n\nanalogies solved: {acc}"
