"""Gradients: where they vanish or explode, per layer and per tensor, and how a tensor's values spread.

* a layer x step heatmap of gradient norms in log colour (rows: embed, block 0.., head);
* per-tensor gradient-norm lines, coloured by layer;
* the histogram of one chosen tensor's gradient at the last few statistics steps (older ones fainter);
* update-to-parameter ratios |delta w| / |w| per tensor, with the 1e-3 rule of thumb.

All of it changes every `train.stats_every` steps. The artists are built once per session (and tensor
list): the heatmap is one fixed-size image of `HEAT_COLUMNS` columns over the x axis (each column shows
the newest statistics step at or before its right edge), the curves are lines, the histograms are
`stairs`; a statistics step only sets their data and blits. A full draw happens when the x axis, a log
axis or the colour scale must grow (with headroom, so rarely) or the histogram's range changes a lot.
"""

from __future__ import annotations

import math
from tkinter import ttk

import matplotlib
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm

from simulator.i18n import N_, _
from ui.history import layer_of, stacked_y
from ui.plots.artist_sets import LineSet
from ui.plots.base import (
    STATS_BLIT_HZ,
    STATS_DISPLAY_HZ,
    TITLE_Y,
    Blitter,
    PlotTab,
    combo,
    count_limit,
    grow_limits,
    light_log_y,
    message_on,
    planned_steps,
    step_text,
    symmetric_limit,
    x_limit,
)
from ui.plots.pixel_image import pixel_imshow
from ui.plots.ticks import plain_log_labels
from ui.protocol import Probe

HEAT_COLUMNS = 200  # width of the heatmap's image, whatever the run's length
HISTOGRAMS = 6  # the newest and up to five earlier statistics steps


def layer_colours(names: list[str], cmap) -> dict[str, tuple]:
    """One colour per heatmap row, shared by the tensors of that row."""
    rows = list(dict.fromkeys(layer_of(n) for n in names))
    return {r: cmap(i / max(1, len(rows) - 1)) for i, r in enumerate(rows)}


def heat_columns(steps, norms: list[dict], rows: list[str], right: float, columns: int = HEAT_COLUMNS) -> np.ndarray:
    """The heatmap's image (rows, columns) over steps [0, right]: each column the newest statistics step at or
    before its right edge, NaN before the first and after the last (and where a value is not positive)."""
    out = np.full((len(rows), columns), np.nan)
    if not len(steps):
        return out
    steps = np.asarray(steps, dtype=float)
    grid = np.array([[col.get(r, np.nan) for col in norms] for r in rows], dtype=float)  # (rows, statistics steps)
    grid = np.where(np.isfinite(grid) & (grid > 0), grid, np.nan)
    edges = np.linspace(0.0, right, columns + 1)
    idx = np.searchsorted(steps, edges[1:], side="right") - 1  # the newest column at or before each right edge
    shown = (idx >= 0) & (edges[:-1] < steps[-1])
    out[:, shown] = grid[:, idx[shown]]
    return out


class GradientsTab(PlotTab):
    """Heatmap, per-tensor lines, an evolving histogram and update ratios."""

    title = N_("Gradients")
    draws_in_background = True  # its periodic draws (ui.plots.background)
    blit_hz = STATS_BLIT_HZ  # statistics steps only: their rate limits it
    statistics_per_second = STATS_DISPLAY_HZ

    def build(self) -> None:
        bar = ttk.Frame(self.frame)
        bar.pack(fill="x", pady=2)
        self.tensor_box, self.tensor_var = combo(bar, _("histogram of the gradient of"), [], width=22,
                                                 command=self._choose)
        self.tensor_label = bar.winfo_children()[0]
        fig = self.make_canvas(self.frame)
        self.ax_heat, self.ax_lines, self.ax_hist, self.ax_ratio = fig.subplots(2, 2).ravel()
        self.cax = self.ax_heat.inset_axes([1.02, 0.0, 0.04, 1.0])  # the colour bar's own axes, kept across draws
        self.cax.set_visible(False)
        self.blitter = Blitter(self.canvas, [])
        self._built_for = None  # the tensor names the artists were built for
        self._fitted: set = set()  # the line axes whose y limits were fitted to data
        self._colours_owed = self._norm_changed = False  # a new colour scale waits for its full draw
        self._drawn = None
        self._ahead = 1.0
        self._draw_empty()

    def retranslate(self) -> None:
        self.tensor_label.configure(text=_("histogram of the gradient of"))
        self._built_for = None  # the artists are built again, their texts in the new language
        self._drawn = None
        if self.app.history.last_stats is None:
            self._draw_empty()

    def _draw_empty(self) -> None:
        """The four axes with a note each (no statistics step yet); the artists are built with the first one."""
        self.blitter.set_artists([])
        self.cax.clear()
        self.cax.set_visible(False)
        every = self.app.config.train.stats_every
        for ax, title in ((self.ax_heat, _("grad norm per layer (log colour)")),
                          (self.ax_lines, _("grad norm per tensor")),
                          (self.ax_hist, _("gradient histogram")), (self.ax_ratio, _("update / parameter ratio"))):
            ax.clear()
            ax.set_title(title, y=TITLE_Y)
            message_on(ax, _("appears every {n} steps").format(n=every) if every else
                       _("statistics are off (train.stats_every = 0)"))
        self._built_for = None
        self.relayout()

    def clear(self) -> None:
        self.hists = []
        self._drawn = None
        if self.built:
            self._draw_empty()

    def setup(self, info) -> None:
        self.tensor_box.configure(values=info.tensor_names)
        self.tensor_var.set(self.app.watch.grad_tensor)
        self._drawn = None

    def subscribe(self, bus) -> None:
        super().subscribe(bus)
        bus.subscribe(Probe, self.on_probe)

    def _choose(self) -> None:
        self.hists = []
        self.app.set_watch(grad_tensor=self.tensor_var.get())

    def on_probe(self, probe) -> None:
        """Keeps the chosen tensor's histogram of this statistics step."""
        if probe.grad_hist is None or (self.built and probe.grad_tensor != self.tensor_var.get()):
            return
        counts, edges = probe.grad_hist
        self.hists = [h for h in self.hists if h[0] < probe.step][-(HISTOGRAMS - 1):] + [(probe.step, counts, edges)]
        self.stale = True

    # ------------------------------------------------------------ the artists, built once per tensor list
    def _build_artists(self, names: list[str]) -> None:
        colours = layer_colours(names, matplotlib.colormaps["plasma"])
        rows = list(dict.fromkeys(layer_of(n) for n in names))
        self.rows = rows
        ax = self.ax_heat
        cbar = getattr(self, "cbar", None)
        if cbar is not None and cbar.ax.figure is not None:
            cbar.remove()  # and its axes (its colours are a mappable of their own, not the image)
        ax.clear()  # which also forgets its inset axes: the colour bar gets new ones
        try:
            self.cax.remove()
        except (AttributeError, ValueError):  # a colour bar whose image already went with ax.clear(): gone with it
            pass
        self.cax = ax.inset_axes([1.02, 0.0, 0.04, 1.0])
        self.heat_right = max(10.0, planned_steps(self.app))  # the planned run (see x_limit)
        # the colours are made here (bytes: the image's draw is then a gather of screen pixels); the colour bar
        # shows the same scale and map
        self.heat_colours = ScalarMappable(norm=LogNorm(vmin=1e-3, vmax=1.0), cmap=matplotlib.colormaps["viridis"])
        self.heat = pixel_imshow(ax, self.heat_colours.to_rgba(np.full((len(rows), HEAT_COLUMNS), np.nan),
                                                               bytes=True),
                                 aspect="auto", interpolation="nearest",
                                 extent=(0.0, self.heat_right, len(rows) - 0.5, -0.5))
        ax.set_xlim(0.0, self.heat_right)
        ax.set_yticks(range(len(rows)), rows)
        ax.set_xlabel(_("step"))
        ax.set_title(_("grad norm per layer (log colour)"), y=TITLE_Y)
        self.cbar = self.figure.colorbar(self.heat_colours, cax=self.cax)
        plain_log_labels(self.cax)
        self.cax.set_visible(True)
        self._norm_set = False  # the colour scale is fitted to the first statistics step
        self.grad_lines = self._line_axes(self.ax_lines, names, colours, _("grad norm per tensor"))
        self.ratio_lines = self._line_axes(self.ax_ratio, names, colours, _("update / parameter ratio per step"))
        self.ax_ratio.axhline(1e-3, color="k", ls="--", lw=0.8)
        self.ax_ratio.text(0.01, 1e-3, " 1e-3", transform=self.ax_ratio.get_yaxis_transform(), va="bottom",
                           fontsize=7)
        ax = self.ax_hist
        ax.clear()
        self.stairs = [ax.stairs(np.zeros(1), np.array([-1.0, 1.0]), color="0.4", lw=0.8)
                       for _ in range(HISTOGRAMS)]
        self.stairs[-1].set_color("C0")
        self.stairs[-1].set_linewidth(1.4)
        ax.set_yscale("symlog", linthresh=1)
        plain_log_labels(ax)
        ax.set_xlabel(_("gradient value"))
        ax.set_ylabel(_("count"))
        self.hist_width, self.hist_top = 0.0, 1.0
        ax.set_xlim(-1.0, 1.0)
        ax.set_ylim(0.0, self.hist_top)
        # the title names the tensor (static: it changes with the choice, and a full draw then); the steps shown
        # are a small text of their own at its right, drawn from glyph bitmaps on every statistics step
        self._hist_title_for = self.tensor_var.get()
        self.hist_title = ax.set_title(_("gradient of {tensor}").format(tensor=self._hist_title_for), y=TITLE_Y)
        self.hist_steps = step_text(ax)
        self.hist_note = message_on(ax, _("waiting for the next statistics step"))
        # a static legend (a legend is costly to blit): which step each one is, the step text says
        ax.legend(handles=[self.stairs[-1], self.stairs[0]], labels=[_("newest"), _("earlier (fainter: older)")],
                  loc="upper right")
        artists = [self.heat, *self.stairs, self.hist_steps, self.hist_note]
        self.blitter.set_artists(artists, trails=(self.grad_lines, self.ratio_lines))
        self._built_for = list(names)
        self.relayout()  # other tick labels: lay out again

    def _line_axes(self, ax, names: list[str], colours: dict, title: str) -> LineSet:
        ax.clear()
        lines = LineSet(ax, {name: colours[layer_of(name)] for name in names})
        first = {}  # each layer's first tensor stands for it in the legend
        for name in names:
            first.setdefault(layer_of(name), name)
        light_log_y(ax)
        ax.set_xlim(0.0, max(10.0, planned_steps(self.app)))
        ax.set_ylim(1e-3, 1.0)
        ax.set_title(title, y=TITLE_Y)
        ax.set_xlabel(_("step"))
        if first:
            ax.legend(handles=[lines.legend_handle(n) for n in first.values()], labels=list(first),
                      loc="upper right", ncols=2 if len(first) > 4 else 1)
        self._fitted.discard(ax)  # the y axis is fitted to the first data, then grows with headroom
        return lines

    # ------------------------------------------------------------ drawing
    def refresh(self, force: bool = False) -> bool:
        if not self.built:
            return False
        h = self.app.history
        # what this tab shows changes with statistics steps only, not with every record
        key = (id(h), id(h.last_stats), len(h.layer_steps), len(self.hists), self.hists[-1][0] if self.hists else 0)
        if key == self._drawn and not force and not (self._need_full and self.can_full_draw()):
            return False
        if not force and not self.can_blit():
            return False
        whole, self._norm_changed = False, False
        axes = set()  # the axes whose limits or colour scale changed: each drawn again alone
        # a forced refresh (the tab just shown) draws fully anyway: an x axis nearly full grows now, for free
        self._ahead = 1.25 if force else 1.0
        if h.last_stats is None:
            if self._built_for is not None or self._drawn is None:
                self._draw_empty()
                whole = True
        else:
            names = list(h.grad_norms)
            if names != self._built_for:
                self._build_artists(names)
                whole = True
            if self._update_heatmap(h):
                axes.add(self.ax_heat)  # with its colour bar, an inset of it
            if self._update_lines(self.ax_lines, self.grad_lines, h.grad_norms):
                axes.add(self.ax_lines)
            if self._update_lines(self.ax_ratio, self.ratio_lines, h.update_ratios):
                axes.add(self.ax_ratio)
            if self._update_histograms():
                axes.add(self.ax_hist)
        # stale ticks for a moment mislead nobody (the curves blit on); colours against the old bar would
        self._colours_owed = self._colours_owed or self._norm_changed
        drawn = self.present(whole or bool(axes), force, blit_while_owed=not self._colours_owed,
                             only=None if whole else axes)
        if not self._need_full:
            self._colours_owed = False
        if drawn:
            self._drawn = key
        return drawn

    def _update_heatmap(self, h) -> bool:
        need = False
        last = h.layer_steps[-1]
        right = x_limit(last * self._ahead, self.heat_right, planned_steps(self.app))
        if right is not None:
            self.heat_right = right
            self.heat.set_extent((0.0, right, len(self.rows) - 0.5, -0.5))
            self.ax_heat.set_xlim(0.0, right)
            need = True
        grid = heat_columns(h.layer_steps, h.layer_norms, self.rows, self.heat_right)
        finite = grid[np.isfinite(grid)]
        if finite.size:
            lo, hi = float(finite.min()), float(finite.max())
            norm = self.heat_colours.norm
            if not self._norm_set:
                new = (lo / 1.5, max(hi * 1.5, lo * 1.01))
                self._norm_set = True
            else:
                new = grow_limits((norm.vmin, norm.vmax), lo, hi, log=True)
            if new is not None:
                self.heat_colours.set_norm(LogNorm(vmin=max(new[0], 1e-12), vmax=new[1]))
                self.cbar.update_normal(self.heat_colours)  # the bar follows the new scale (a full draw)
                plain_log_labels(self.cax)  # a new norm gave the bar matplotlib's formatter again
                self._norm_changed = need = True
        self.heat_grid = grid  # the norms shown, (rows, columns)
        self.heat.set_data(self.heat_colours.to_rgba(grid, bytes=True))  # (rows, columns, 4); NaN: clear
        return need

    def _update_lines(self, ax, lines: LineSet, series: dict) -> bool:
        names = [n for n in lines.data if n in series]
        last, lo, hi = 0.0, math.inf, -math.inf
        if names:
            first = series[names[0]]
            if all(len(series[n]) == len(first) and series[n].last_x() == first.last_x() for n in names):
                # the tensors' series have one point each statistics step: one x, and their y as rows at once
                x = first.x
                ys = stacked_y([series[n] for n in names])  # (tensors, points)
                ys = np.where(ys > 0, ys, np.nan)  # a zero has no place on a log axis
                lines.set_rows(names, x, ys)
            else:
                for n in names:
                    x, y = series[n].arrays()
                    lines.set_data(n, x, np.where(y > 0, y, np.nan))
                x = np.concatenate([lines.xdata(n) for n in names])
                ys = np.concatenate([lines.ydata(n) for n in names])
            if len(x):
                last = float(np.max(x))
            good = ys[np.isfinite(ys)]
            if good.size:
                lo, hi = float(good.min()), float(good.max())
        need = lines.commit()  # not a continuation of the curves drawn: their axes are drawn again
        right = x_limit(last * self._ahead, ax.get_xlim()[1], planned_steps(self.app))
        if right is not None:
            ax.set_xlim(0.0, right)
            need = True
        if lo <= hi:
            lim = (lo / 3.0, hi * 3.0) if ax not in self._fitted else grow_limits(ax.get_ylim(), lo, hi, log=True)
            self._fitted.add(ax)
            if lim is not None:
                ax.set_ylim(*lim)
                need = True
        return need

    def _update_histograms(self) -> bool:
        name = self.tensor_var.get()
        n = len(self.hists)
        self.hist_steps.set_text(_("step {step}").format(step=self.hists[-1][0]) if n == 1 else
                                 _("steps {first}-{last}").format(first=self.hists[0][0], last=self.hists[-1][0])
                                 if n else "")
        need = False
        if name != self._hist_title_for:  # another tensor: its name in the title (static, so a full draw)
            self._hist_title_for = name
            self.hist_title.set_text(_("gradient of {tensor}").format(tensor=name))
            need = True
        self.hist_note.set_visible(n == 0)
        for s in self.stairs:
            s.set_visible(False)
        if not n:
            return need
        # the newest in the last (blue) artist, the earlier ones in the grey ones before it, fainter when older
        for i, (_step, counts, edges) in enumerate(self.hists):
            artist = self.stairs[-1] if i == n - 1 else self.stairs[i]
            artist.set_data(counts, edges)
            artist.set_visible(True)
            if i < n - 1:
                artist.set_alpha(0.25 + 0.5 * i / n)
        width = max(float(np.max(np.abs(e))) for _, _, e in self.hists)
        new = symmetric_limit(self.hist_width, width)
        if new is not None:
            self.hist_width = new
            self.ax_hist.set_xlim(-new, new)
            need = True
        top = count_limit(self.hist_top, max(float(np.max(c)) for _, c, _ in self.hists))
        if top is not None:
            self.hist_top = top
            self.ax_hist.set_ylim(0.0, top)
            need = True
        return need
