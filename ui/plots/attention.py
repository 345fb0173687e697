"""Attention: the probability maps of every head of one layer on one batch row, as training goes.

Rows are query positions, columns key positions. The causal mask (keys after the query) is
drawn in grey: those weights are exactly zero by construction, not learned. The colour scale
is a square-root one, so the small weights a head spreads over many keys stay visible.

The images are built once per shape (heads, T, mask); a statistics step sets their data and the title and
blits them. The colour scale is fixed ([0, 1]), so only another layout needs a full draw. The maps are
coloured here, with the colour bar's own colormap and norm, and handed to the images as RGBA bytes:
an image of floats with a mask is normalised and coloured again on every draw, which measured about
twice the cost of drawing the colours themselves.
"""

from __future__ import annotations

import math
import tkinter as tk
from tkinter import ttk

import matplotlib
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import PowerNorm

from simulator.i18n import N_, _
from ui.plots.base import STATS_BLIT_HZ, STATS_DISPLAY_HZ, Blitter, PlotTab, combo, message_on, wrap_to_width
from ui.plots.pixel_image import pixel_imshow
from ui.plots.textcache import GlyphText
from ui.protocol import Probe


class AttentionTab(PlotTab):
    """One heatmap per head of the chosen layer and batch row."""

    title = N_("Attention")
    draws_in_background = True  # its periodic draws (ui.plots.background)
    blit_hz = STATS_BLIT_HZ  # statistics steps only: their rate limits it
    statistics_per_second = STATS_DISPLAY_HZ

    def build(self) -> None:
        bar = ttk.Frame(self.frame)
        bar.pack(fill="x", pady=2)
        self.layer_box, self.layer_var = combo(bar, _("layer"), [], width=4, command=self._choose)
        self.layer_label = bar.winfo_children()[0]
        self.row_label = ttk.Label(bar, text=_("batch row"))
        self.row_label.pack(side="left", padx=(10, 2))
        self.row_var = tk.StringVar(self.frame, "0")
        self.row_spin = ttk.Spinbox(bar, textvariable=self.row_var, from_=0, to=0, width=4, command=self._choose)
        self.row_spin.pack(side="left")
        self.row_spin.bind("<Return>", lambda e: self._choose())
        self.key_label = wrap_to_width(ttk.Label(bar, text=_("grey: masked by the causal mask (a query never sees "
                                                             "later keys)"), foreground="#555"))
        self.key_label.pack(side="left", fill="x", expand=True, padx=(16, 0))
        self.make_canvas(self.frame)
        self.blitter = Blitter(self.canvas, [])
        self._shape = None  # (heads, T, causal) of the images built
        self._drawn = None

    def retranslate(self) -> None:
        self.layer_label.configure(text=_("layer"))
        self.row_label.configure(text=_("batch row"))
        self.key_label.configure(text=_("grey: masked by the causal mask (a query never sees later keys)"))
        self._shape = None  # the maps are built again, their texts in the new language
        self._drawn = None
        if self.probe is None:
            self._empty()

    def clear(self) -> None:
        self.probe = None
        self._drawn = None
        if self.built:
            self._empty()

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
            self.app.show_error(_("Attention: the batch row must be a whole number."))
            return
        info = self.app.info
        if info is not None and not 0 <= row < info.batch_size:
            self.app.show_error(_("Attention: batch row {row} does not exist; use 0 to {last}.").format(
                row=row, last=info.batch_size - 1))
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
        if key == self._drawn and not force and not (self._need_full and self.can_full_draw()):
            return False
        if not (force or self.can_blit()):
            return False
        need = False
        if self.probe is None:
            if self._shape is not None or self._drawn is None:
                self._empty()
                need = True
        else:
            att = self.probe.attention  # (NH, T, T)
            causal = self.app.config.model.attention.mask == "causal"
            shape = (att.shape[0], att.shape[1], causal)
            if shape != self._shape:
                self._build_maps(*shape)
                need = True
            self.shown = np.ma.masked_where(self.hidden[None].repeat(att.shape[0], 0), att)  # what is drawn
            for im, m in zip(self.images, self.shown, strict=True):
                im.set_data(self.colours.to_rgba(m, bytes=True))  # (T, T, 4) uint8; masked: the grey "bad" colour
            text = self.probe.tokens.replace("\n", "⏎")
            # a new string on every statistics step (its batch's characters): drawn from glyph bitmaps
            self.suptitle.set_text(_("layer {layer}, batch row {row}, step {step}: {text}").format(
                layer=self.probe.attn_layer, row=self.probe.attn_sample, step=self.probe.step, text=repr(text[:90])))
        if self.present(need, force):
            self._drawn = key
            return True
        return False

    def _empty(self) -> None:
        fig = self.figure
        fig.clear()
        self.blitter.set_artists([])
        self.relayout()  # new axes: lay them out on the next draw
        message_on(fig.add_subplot(), _("the attention maps appear with the first statistics step"), axis_off=True)
        self._shape = None

    def _build_maps(self, nh: int, T: int, causal: bool) -> None:
        """One image per head, for maps of this shape; their data is set on every statistics step."""
        fig = self.figure
        fig.clear()
        self.relayout()  # new axes: lay them out on the next draw
        cols = math.ceil(math.sqrt(nh))
        rows = math.ceil(nh / cols)
        self.hidden = np.triu(np.ones((T, T), dtype=bool), 1) if causal else np.zeros((T, T), dtype=bool)
        cmap = matplotlib.colormaps["magma_r"].with_extremes(bad="#d0d0d0")
        norm = PowerNorm(0.5, vmin=0.0, vmax=1.0)  # fixed: probabilities are in [0, 1], the colour bar never moves
        self.colours = ScalarMappable(norm=norm, cmap=cmap)  # the maps' colours, and the colour bar's
        blank = self.colours.to_rgba(np.ma.masked_all((T, T)), bytes=True)
        self.images = []
        for h in range(nh):
            ax = fig.add_subplot(rows, cols, h + 1)
            self.images.append(pixel_imshow(ax, blank, interpolation="nearest"))
            ax.set_title(_("head {head}").format(head=h))
            ax.set_xlabel(_("key position"))
            if h % cols == 0:
                ax.set_ylabel(_("query position"))
        fig.colorbar(self.colours, ax=fig.axes, shrink=0.8, label=_("attention weight"))
        # the figure's title, as `suptitle` makes it (the layout leaves it room), but drawn from glyph bitmaps
        self.suptitle = GlyphText.adopt(fig.suptitle(_("layer {layer}, batch row {row}, step {step}: {text}").format(
            layer=0, row=0, step=0, text="''"), fontsize=8))
        self.blitter.set_artists([*self.images, self.suptitle])
        self._shape = (nh, T, causal)
