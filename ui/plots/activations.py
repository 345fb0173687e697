"""Activations: mean and standard deviation at every site in forward order, and a histogram at one site.

Sites are the residual stream, each norm's input and output, and each branch output, so the
effect of a norm is read straight off the bars: the stream before it drifts, the output after it
sits at unit scale. Earlier statistics steps stay as faint lines, to show the drift.

The bars, the faint lines and the histogram's `stairs` are built once per site list; a statistics step
sets their heights and data and blits them. A full draw happens only when a y axis must grow (with
headroom) or the histogram's range changes a lot.
"""

from __future__ import annotations

from tkinter import ttk

import numpy as np

from simulator.i18n import N_, _
from ui.plots.artist_sets import BarSet
from ui.plots.base import (
    STATS_BLIT_HZ,
    STATS_DISPLAY_HZ,
    TITLE_Y,
    Blitter,
    PlotTab,
    combo,
    count_limit,
    grow_limits,
    message_on,
    step_text,
    symmetric_limit,
    wrap_to_width,
)
from ui.plots.ticks import plain_log_labels
from ui.protocol import Probe

AFTER_NORM = "#dd8452"
STREAM = "#4c72b0"
EARLIER = 5  # faint lines of earlier statistics steps (the history keeps six)


def is_norm_output(site: str) -> bool:
    """True for a site written by a norm (its output), False for the stream and branch outputs."""
    return site.split(".")[-1].startswith("norm")


class ActivationsTab(PlotTab):
    """Per-site mean/std bars and an activation histogram."""

    title = N_("Activations")
    draws_in_background = True  # its periodic draws (ui.plots.background)
    blit_hz = STATS_BLIT_HZ  # statistics steps only: their rate limits it
    statistics_per_second = STATS_DISPLAY_HZ

    def build(self) -> None:
        bar = ttk.Frame(self.frame)
        bar.pack(fill="x", pady=2)
        self.site_box, self.site_var = combo(bar, _("histogram at site"), [], width=14, command=self._choose)
        self.site_label = bar.winfo_children()[0]
        self.key_label = wrap_to_width(ttk.Label(bar, text=_("orange: after a norm; blue: stream and branch outputs "
                                                             "(before the next norm)"), foreground="#555"))
        self.key_label.pack(side="left", fill="x", expand=True, padx=(16, 0))
        fig = self.make_canvas(self.frame)
        grid = fig.add_gridspec(2, 3)
        self.ax_std = fig.add_subplot(grid[0, :2])
        self.ax_mean = fig.add_subplot(grid[1, :2], sharex=self.ax_std)
        self.ax_hist = fig.add_subplot(grid[:, 2])
        self.blitter = Blitter(self.canvas, [])
        self._sites = None  # the sites the bars were built for
        self._drawn = None
        self._empty()

    def retranslate(self) -> None:
        self.site_label.configure(text=_("histogram at site"))
        self.key_label.configure(text=_("orange: after a norm; blue: stream and branch outputs "
                                        "(before the next norm)"))
        self._sites = None  # the artists are built again, their texts in the new language
        self._drawn = None
        if not self.app.history.activations:
            self._empty()

    def _empty(self) -> None:
        self.blitter.set_artists([])
        for ax, t in ((self.ax_std, _("std per site")), (self.ax_mean, _("mean per site")),
                      (self.ax_hist, _("histogram"))):
            ax.clear()
            ax.set_title(t, y=TITLE_Y)
            message_on(ax, _("appears with the first statistics step"))
        self._sites = None
        self.relayout()

    def clear(self) -> None:
        self.hist = None
        self._drawn = None
        if self.built:
            self._empty()

    def setup(self, info) -> None:
        self.site_box.configure(values=info.activation_sites)
        self.site_var.set(self.app.watch.act_site)
        self._drawn = None

    def subscribe(self, bus) -> None:
        super().subscribe(bus)
        bus.subscribe(Probe, self.on_probe)

    def _choose(self) -> None:
        self.hist = None
        self.app.set_watch(act_site=self.site_var.get())

    def on_probe(self, probe) -> None:
        """Keeps the histogram of the chosen site."""
        if probe.act_hist is not None and (not self.built or probe.act_site == self.site_var.get()):
            self.hist = (probe.step, probe.act_site, *probe.act_hist)
            self.stale = True

    # ------------------------------------------------------------ the artists, built once per site list
    def _build_artists(self, sites: list[str]) -> None:
        x = np.arange(len(sites))
        colours = [AFTER_NORM if is_norm_output(s) else STREAM for s in sites]
        self.bars, self.earlier, self.bar_titles = {}, {}, {}
        for ax, k in ((self.ax_std, 1), (self.ax_mean, 0)):
            ax.clear()
            self.earlier[k] = [ax.plot(x, np.full(len(sites), np.nan), color="0.5", lw=0.8)[0]
                               for _ in range(EARLIER)]
            self.bars[k] = BarSet(ax, x, colours, width=0.7)
            # static titles; the step is the small text at the right of the upper one's row (one for both)
            self.bar_titles[k] = ax.set_title(_("std per site (grey: earlier statistics steps)") if k else
                                              _("mean per site"), y=TITLE_Y)
            ax.grid(alpha=0.3, axis="y")
            ax.axhline(0, color="k", lw=0.6)
            ax.set_ylim(0.0, 1.0)
            ax.set_xlim(-0.6, len(sites) - 0.4)  # as ax.bar would autoscale: the outer bars whole, a little air
        self._fitted: set = set()
        self.ax_std.tick_params(labelbottom=False)
        self.ax_mean.set_xticks(x, sites, rotation=90)
        ax = self.ax_hist
        ax.clear()
        self.stairs = ax.stairs(np.zeros(1), np.array([-1.0, 1.0]), fill=True, color=STREAM, alpha=0.8)
        ax.set_xlabel(_("activation value"))
        ax.set_ylabel(_("count"))
        ax.set_yscale("symlog", linthresh=1)
        plain_log_labels(ax)
        self.hist_width, self.hist_top = 0.0, 1.0
        ax.set_xlim(-1.0, 1.0)
        ax.set_ylim(0.0, self.hist_top)
        self._hist_title_for = None  # the site the (static) title names
        self.hist_title = ax.set_title(_("histogram"), y=TITLE_Y)
        self.bars_step = step_text(self.ax_std)
        self.hist_step = step_text(ax)
        self.hist_note = message_on(ax, _("waiting for the next statistics step"))
        self.blitter.set_artists([*self.earlier[1], self.bars[1].artist, self.bars_step, *self.earlier[0],
                                  self.bars[0].artist, self.stairs, self.hist_step, self.hist_note])
        self._sites = list(sites)
        self.relayout()  # new tick labels: lay out again

    # ------------------------------------------------------------ drawing
    def refresh(self, force: bool = False) -> bool:
        if not self.built:
            return False
        acts = self.app.history.activations
        key = (id(self.app.history), tuple(a[0] for a in acts), self.hist[0] if self.hist else None)
        if key == self._drawn and not force and not (self._need_full and self.can_full_draw()):
            return False
        if not force and not self.can_blit():
            return False
        whole, axes = False, set()  # axes: those whose limits or title changed, each drawn again alone
        if not acts:
            if self._sites is not None or self._drawn is None:
                self._empty()
                whole = True
        else:
            sites = list(acts[-1][1])
            if sites != self._sites:
                self._build_artists(sites)
                whole = True
            axes |= self._update_bars(acts)
            if self._update_histogram():
                axes.add(self.ax_hist)
        # stale ticks for a moment only
        if self.present(whole or bool(axes), force, blit_while_owed=self._sites is not None,
                        only=None if whole else axes):
            self._drawn = key
            return True
        return False

    def _update_bars(self, acts) -> set:
        """Sets the bars and faint lines; returns the axes whose y limits had to change."""
        step, latest = acts[-1]
        sites = self._sites
        need = set()
        self.bars_step.set_text(_("step {step}").format(step=step))
        for ax, k in ((self.ax_std, 1), (self.ax_mean, 0)):
            old = acts[:-1][-EARLIER:]
            values = [np.array([latest[s][k] for s in sites], dtype=float)]
            for i, line in enumerate(self.earlier[k]):
                if i < len(old):
                    ys = np.array([old[i][1].get(s, (np.nan,) * 3)[k] for s in sites], dtype=float)
                    line.set_ydata(ys)
                    line.set_alpha(0.2 + 0.5 * i / max(1, len(acts) - 1))
                    line.set_visible(True)
                    values.append(ys)
                else:
                    line.set_visible(False)
            self.bars[k].set_heights(values[0])
            v = np.concatenate(values)
            v = v[np.isfinite(v)]
            if v.size:
                lo, hi = min(0.0, float(v.min())), max(0.0, float(v.max()))
                if ax not in self._fitted:
                    span = max(hi - lo, 1e-6)
                    lim = (lo - 0.1 * span if lo < 0 else 0.0, hi + 0.2 * span)
                    self._fitted.add(ax)
                else:
                    lim = grow_limits(ax.get_ylim(), lo, hi)
                    if lim is not None and lo >= 0:
                        lim = (0.0, lim[1])
                if lim is not None:
                    ax.set_ylim(*lim)
                    need.add(ax)
        return need

    def _update_histogram(self) -> bool:
        self.hist_note.set_visible(self.hist is None)
        self.stairs.set_visible(self.hist is not None)
        if self.hist is None:
            self.hist_step.set_text("")
            return self._title_histogram(None)
        step, site, counts, edges = self.hist
        self.stairs.set_data(counts, edges)
        self.stairs.set_facecolor(AFTER_NORM if is_norm_output(site) else STREAM)
        self.stairs.set_edgecolor(AFTER_NORM if is_norm_output(site) else STREAM)
        self.hist_step.set_text(_("step {step}").format(step=step))
        need = self._title_histogram(site)
        new = symmetric_limit(self.hist_width, float(np.max(np.abs(edges))))
        if new is not None:
            self.hist_width = new
            self.ax_hist.set_xlim(-new, new)
            need = True
        top = count_limit(self.hist_top, float(np.max(counts)))
        if top is not None:
            self.hist_top = top
            self.ax_hist.set_ylim(0.0, top)
            need = True
        return need

    def _title_histogram(self, site: str | None) -> bool:
        """The histogram's static title names its site; True when it changed (a full draw shows it)."""
        if site == self._hist_title_for:
            return False
        self._hist_title_for = site
        self.hist_title.set_text(_("histogram") if site is None else site)  # the site's name, short: the step beside
        return True
