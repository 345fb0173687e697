"""Activations: mean and standard deviation at every site in forward order, and a histogram at one site.

Sites are the residual stream, each norm's input and output, and each branch output, so the
effect of a norm is read straight off the bars: the stream before it drifts, the output after it
sits at unit scale. Earlier statistics steps stay as faint lines, to show the drift.
"""

from __future__ import annotations

from tkinter import ttk

import numpy as np

from ui.plots.base import PlotTab, combo, message_on
from ui.protocol import Probe

AFTER_NORM = "#dd8452"
STREAM = "#4c72b0"


def is_norm_output(site: str) -> bool:
    """True for a site written by a norm (its output), False for the stream and branch outputs."""
    return site.split(".")[-1].startswith("norm")


class ActivationsTab(PlotTab):
    """Per-site mean/std bars and an activation histogram."""

    full_draw_hz = 1.5  # a full draw of this tab costs ~0.1 s: fewer keep the window responsive during Run
    title = "Activations"

    def build(self) -> None:
        bar = ttk.Frame(self.frame)
        bar.pack(fill="x", pady=2)
        self.site_box, self.site_var = combo(bar, "histogram at site", [], width=14, command=self._choose)
        ttk.Label(bar, text="   orange: after a norm; blue: stream and branch outputs (before the next norm)",
                  foreground="#555").pack(side="left")
        fig = self.make_canvas(self.frame)
        grid = fig.add_gridspec(2, 3)
        self.ax_std = fig.add_subplot(grid[0, :2])
        self.ax_mean = fig.add_subplot(grid[1, :2], sharex=self.ax_std)
        self.ax_hist = fig.add_subplot(grid[:, 2])
        self._version = None
        self._empty()

    def _empty(self) -> None:
        for ax, t in ((self.ax_std, "std per site"), (self.ax_mean, "mean per site"),
                      (self.ax_hist, "histogram")):
            ax.clear()
            ax.set_title(t)
            message_on(ax, "appears with the first statistics step")

    def clear(self) -> None:
        self.hist = None
        self._version = None

    def setup(self, info) -> None:
        self.site_box.configure(values=info.activation_sites)
        self.site_var.set(self.app.watch.act_site)
        self._version = None

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

    def refresh(self, force: bool = False) -> bool:
        if not self.built:
            return False
        acts = self.app.history.activations
        key = (tuple(a[0] for a in acts), self.hist[0] if self.hist else None, self.app.history.version
               if not acts else 0)
        if (key == self._version and not force) or not (force or self.can_full_draw()):
            return False
        self._version = key
        if not acts:
            self._empty()
            self.full_draw()
            return True
        step, latest = acts[-1]
        sites = list(latest)
        x = np.arange(len(sites))
        colours = [AFTER_NORM if is_norm_output(s) else STREAM for s in sites]
        for ax, k, title in ((self.ax_std, 1, "std per site"), (self.ax_mean, 0, "mean per site")):
            ax.clear()
            for i, (_old_step, old) in enumerate(acts[:-1]):
                ys = [old.get(s, (np.nan,) * 3)[k] for s in sites]
                ax.plot(x, ys, color="0.5", lw=0.8, alpha=0.2 + 0.5 * i / max(1, len(acts) - 1))
            ax.bar(x, [latest[s][k] for s in sites], color=colours, width=0.7)
            ax.set_title(f"{title} at step {step} (grey: earlier statistics steps)")
            ax.grid(alpha=0.3, axis="y")
            ax.axhline(0, color="k", lw=0.6)
        self.ax_std.tick_params(labelbottom=False)
        self.ax_mean.set_xticks(x, sites, rotation=90)
        self._histogram()
        self.full_draw()
        return True

    def _histogram(self) -> None:
        ax = self.ax_hist
        ax.clear()
        if self.hist is None:
            ax.set_title("histogram")
            message_on(ax, "waiting for the next statistics step")
            return
        step, site, counts, edges = self.hist
        ax.stairs(counts, edges, fill=True, color=AFTER_NORM if is_norm_output(site) else STREAM, alpha=0.8)
        ax.set_title(f"{site} at step {step}")
        ax.set_xlabel("activation value")
        ax.set_ylabel("count")
        ax.set_yscale("symlog", linthresh=1)
