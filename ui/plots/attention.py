"""Attention: the probability maps of every head of one layer on one batch row, as training goes.

Rows are query positions, columns key positions. The causal mask (keys after the query) is
drawn in grey: those weights are exactly zero by construction, not learned. The colour scale
is a square-root one, so the small weights a head spreads over many keys stay visible.
"""

from __future__ import annotations

import math
import tkinter as tk
from tkinter import ttk

import matplotlib
import numpy as np
from matplotlib.colors import PowerNorm

from ui.plots.base import PlotTab, combo, message_on
from ui.protocol import Probe


class AttentionTab(PlotTab):
    """One heatmap per head of the chosen layer and batch row."""

    full_draw_hz = 1.5  # a full draw of this tab costs ~0.1 s: fewer keep the window responsive during Run
    title = "Attention"

    def build(self) -> None:
        bar = ttk.Frame(self.frame)
        bar.pack(fill="x", pady=2)
        self.layer_box, self.layer_var = combo(bar, "layer", [], width=4, command=self._choose)
        ttk.Label(bar, text="batch row").pack(side="left", padx=(10, 2))
        self.row_var = tk.StringVar(self.frame, "0")
        self.row_spin = ttk.Spinbox(bar, textvariable=self.row_var, from_=0, to=0, width=4, command=self._choose)
        self.row_spin.pack(side="left")
        self.row_spin.bind("<Return>", lambda e: self._choose())
        ttk.Label(bar, text="   grey: masked by the causal mask (a query never sees later keys)",
                  foreground="#555").pack(side="left")
        self.make_canvas(self.frame)
        self._drawn = None

    def clear(self) -> None:
        self.probe = None
        self._drawn = None

    def setup(self, info) -> None:
        self.layer_box.configure(values=[str(i) for i in range(info.n_layer)])
        self.layer_var.set(str(self.app.watch.attn_layer))
        self.row_spin.configure(to=info.batch_size - 1)
        self.row_var.set(str(self.app.watch.attn_sample))
        self._drawn = None

    def subscribe(self, bus) -> None:
        super().subscribe(bus)
        bus.subscribe(Probe, self.on_probe)

    def _choose(self) -> None:
        try:
            layer, row = int(self.layer_var.get()), int(self.row_var.get())
        except ValueError:
            self.app.show_error("Attention: the batch row must be a whole number.")
            return
        info = self.app.info
        if info is not None and not 0 <= row < info.batch_size:
            self.app.show_error(f"Attention: batch row {row} does not exist; use 0 to {info.batch_size - 1}.")
            self.row_var.set(str(self.app.watch.attn_sample))
            return
        self.app.set_watch(attn_layer=layer, attn_sample=row)

    def on_probe(self, probe) -> None:
        """Keeps the newest maps."""
        if probe.attention is not None:
            self.probe = probe
            self.stale = True

    def refresh(self, force: bool = False) -> bool:
        if not self.built:
            return False
        key = (self.probe.step, self.probe.attn_layer, self.probe.attn_sample) if self.probe else None
        if (key == self._drawn and not force) or not (force or self.can_full_draw()):
            return False
        self._drawn = key
        fig = self.figure
        fig.clear()
        self.relayout()  # new axes: lay them out on this draw
        if self.probe is None:
            message_on(fig.add_subplot(), "the attention maps appear with the first statistics step", axis_off=True)
            self.full_draw()
            return True
        att = self.probe.attention  # (NH, T, T)
        nh, T, _ = att.shape
        cols = math.ceil(math.sqrt(nh))
        rows = math.ceil(nh / cols)
        causal = self.app.config.model.attention.mask == "causal"
        hidden = np.triu(np.ones((T, T), dtype=bool), 1) if causal else np.zeros((T, T), dtype=bool)
        masked = np.ma.masked_where(hidden[None].repeat(nh, 0), att)
        cmap = matplotlib.colormaps["magma_r"].with_extremes(bad="#d0d0d0")
        norm = PowerNorm(0.5, vmin=0.0, vmax=1.0)
        im = None
        for h in range(nh):
            ax = fig.add_subplot(rows, cols, h + 1)
            im = ax.imshow(masked[h], cmap=cmap, norm=norm, interpolation="nearest")
            ax.set_title(f"head {h}")
            ax.set_xlabel("key position")
            if h % cols == 0:
                ax.set_ylabel("query position")
        fig.colorbar(im, ax=fig.axes, shrink=0.8, label="attention weight")
        text = self.probe.tokens.replace("\n", "⏎")
        fig.suptitle(f"layer {self.probe.attn_layer}, batch row {self.probe.attn_sample}, step {self.probe.step}: "
                     f"{text[:90]!r}", fontsize=8)
        self.full_draw()
        return True
