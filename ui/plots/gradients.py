"""Gradients: where they vanish or explode, per layer and per tensor, and how a tensor's values spread.

* a layer x step heatmap of gradient norms in log colour (rows: embed, block 0.., head);
* per-tensor gradient-norm lines, coloured by layer;
* the histogram of one chosen tensor's gradient at the last few statistics steps (older ones fainter);
* update-to-parameter ratios |delta w| / |w| per tensor, with the 1e-3 rule of thumb.

All of it changes only every `train.stats_every` steps, so the tab draws fully, throttled.
"""

from __future__ import annotations

from tkinter import ttk

import matplotlib
import numpy as np
from matplotlib.colors import LogNorm

from ui.history import layer_of
from ui.plots.base import PlotTab, combo, message_on
from ui.protocol import Probe


def layer_colours(names: list[str], cmap) -> dict[str, tuple]:
    """One colour per heatmap row, shared by the tensors of that row."""
    rows = list(dict.fromkeys(layer_of(n) for n in names))
    return {r: cmap(i / max(1, len(rows) - 1)) for i, r in enumerate(rows)}


class GradientsTab(PlotTab):
    """Heatmap, per-tensor lines, an evolving histogram and update ratios."""

    full_draw_hz = 1.5  # a full draw of this tab costs ~0.1 s: fewer keep the window responsive during Run
    title = "Gradients"

    def build(self) -> None:
        bar = ttk.Frame(self.frame)
        bar.pack(fill="x", pady=2)
        self.tensor_box, self.tensor_var = combo(bar, "histogram of the gradient of", [], width=22,
                                                 command=self._choose)
        fig = self.make_canvas(self.frame)
        self.ax_heat, self.ax_lines, self.ax_hist, self.ax_ratio = fig.subplots(2, 2).ravel()
        self.cax = self.ax_heat.inset_axes([1.02, 0.0, 0.04, 1.0])  # the colour bar's own axes, kept across draws
        self.cax.set_visible(False)
        self._version = -1
        self._rows: list[str] = []
        self._draw_empty()

    def _draw_empty(self) -> None:
        for ax, title in ((self.ax_heat, "grad norm per layer (log colour)"), (self.ax_lines, "grad norm per tensor"),
                          (self.ax_hist, "gradient histogram"), (self.ax_ratio, "update / parameter ratio")):
            ax.clear()
            ax.set_title(title)
            message_on(ax, f"appears every {self.app.config.train.stats_every} steps"
                       if self.app.config.train.stats_every else "statistics are off (train.stats_every = 0)")

    def clear(self) -> None:
        self.hists = []
        self._version = -1

    def setup(self, info) -> None:
        self.tensor_box.configure(values=info.tensor_names)
        self.tensor_var.set(self.app.watch.grad_tensor)
        self._version = -1

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
        self.hists = [h for h in self.hists if h[0] < probe.step][-5:] + [(probe.step, counts, edges)]
        self.stale = True

    def refresh(self, force: bool = False) -> bool:
        if not self.built:
            return False
        h = self.app.history
        key = (h.version if h.last_stats is not None else -2, len(self.hists), self.hists[-1][0] if self.hists else 0)
        if key == self._version and not force:
            return False
        if not force and not self.can_full_draw():
            return False
        self._version = key
        if h.last_stats is None:
            self._draw_empty()
            self.full_draw()
            return True
        cmap = matplotlib.colormaps["viridis"]
        names = list(h.grad_norms)
        colours = layer_colours(names, matplotlib.colormaps["plasma"])
        self._heatmap(h, cmap)
        self._lines(self.ax_lines, h.grad_norms, colours, "grad norm per tensor")
        self._lines(self.ax_ratio, h.update_ratios, colours, "update / parameter ratio per step")
        self.ax_ratio.axhline(1e-3, color="k", ls="--", lw=0.8)
        self.ax_ratio.text(0.01, 1e-3, " 1e-3", transform=self.ax_ratio.get_yaxis_transform(), va="bottom",
                           fontsize=7)
        self._histograms()
        self.full_draw()
        return True

    def _heatmap(self, h, cmap) -> None:
        ax = self.ax_heat
        ax.clear()
        self.cax.clear()
        rows = list(dict.fromkeys(layer_of(n) for n in h.grad_norms))
        grid = np.array([[col.get(r, np.nan) for col in h.layer_norms] for r in rows])  # (layers, columns)
        grid = np.where(np.isfinite(grid) & (grid > 0), grid, np.nan)
        steps = h.layer_steps
        finite = grid[np.isfinite(grid)]
        norm = LogNorm(vmin=max(finite.min(), 1e-12), vmax=max(finite.max(), finite.min() * 1.01)) \
            if finite.size else None
        x0, x1 = steps[0] - 0.5, steps[-1] + 0.5
        im = ax.imshow(grid, aspect="auto", interpolation="nearest", cmap=cmap, norm=norm,
                       extent=(x0, x1, len(rows) - 0.5, -0.5))
        ax.set_yticks(range(len(rows)), rows)
        ax.set_xlabel("step")
        ax.set_title("grad norm per layer (log colour)")
        self.figure.colorbar(im, cax=self.cax)
        self.cax.set_visible(True)
        if rows != self._rows:  # other tick labels: lay out again
            self._rows = rows
            self.relayout()

    def _lines(self, ax, series: dict, colours: dict, title: str) -> None:
        ax.clear()
        seen = set()
        for name, s in series.items():
            x, y = s.arrays()
            y = np.where(y > 0, y, np.nan)
            row = layer_of(name)
            ax.plot(x, y, color=colours[row], lw=0.9, alpha=0.85, label=row if row not in seen else None)
            seen.add(row)
        ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3, which="both")
        if seen:
            ax.legend(loc="best", ncols=2 if len(seen) > 4 else 1)

    def _histograms(self) -> None:
        ax = self.ax_hist
        ax.clear()
        name = self.tensor_var.get()
        ax.set_title(f"gradient of {name}: last {len(self.hists)} statistics steps")
        if not self.hists:
            message_on(ax, "waiting for the next statistics step")
            return
        n = len(self.hists)
        for i, (step, counts, edges) in enumerate(self.hists):
            newest = i == n - 1
            ax.stairs(counts, edges, color="C0" if newest else "0.4", alpha=1.0 if newest else 0.25 + 0.5 * i / n,
                      lw=1.4 if newest else 0.8, label=f"step {step}" if newest or i == 0 else None)
        ax.set_yscale("symlog", linthresh=1)
        ax.set_xlabel("gradient value")
        ax.set_ylabel("count")
        ax.legend(loc="upper right")
