"""Deep MLP: vanishing and exploding gradients, norms, residuals, init and clipping on a spiral classifier.

The lesson (`simulator.lessons.deep_mlp`) trains a deep MLP on the same kernels and optimizers as the GPT.
Shown growing step by step:

* a layer x step heatmap of each weight matrix's gradient norm (log colour, input layer at the
  bottom): vanishing gradients fade toward the input, exploding ones glow;
* train loss, validation loss and accuracy;
* at the step on screen, the gradient norm per layer and the activations' std, saturated share
  (sigmoid, tanh) and dead share (relu).

The toolbar edits the lesson through the preset rules and recomputes it from the start.

A replay frame sets data and blits a few artists: the heatmap is coloured once per computed lesson into RGBA
bytes and drawn whole into the figure's background, and a frame only moves a grey cover over the steps not
shown yet (the heatmap's own "no value" grey; resampling the image on every frame was a third of the frame), the
per-layer bars are one PolyCollection, and each axes' curves one `CurveSet`.
"""

from __future__ import annotations

import tkinter as tk
from tkinter import ttk

import matplotlib
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.collections import PolyCollection
from matplotlib.colors import LogNorm
from matplotlib.patches import Rectangle

from simulator import config as C
from simulator.i18n import N_, _
from simulator.lessons.deep_mlp import MLP_INITS, MLP_NORMS, weight_names
from ui import relabel
from ui.lessons import lesson_tab
from ui.lessons.base import LessonTab, labelled_combo
from ui.lessons.curves import CurveSet


class LogBars:
    """Bars at x = 0, 1, ... on a log axis as one PolyCollection, rising from below the axis (`floor`), as
    `ax.bar` draws them there: `set_heights(values)` moves their tops."""

    def __init__(self, ax, n: int, color, floor: float, width: float = 0.8):
        self.x = np.arange(n, dtype=float)
        self.width, self.floor = width, floor
        self.heights = np.ones(n)
        self.artist = PolyCollection([], facecolors=color, edgecolors="none")
        ax.add_collection(self.artist, autolim=False)
        self.set_heights(self.heights)

    def set_heights(self, values) -> None:
        self.heights = np.asarray(values, dtype=float)
        left, right = self.x - self.width / 2, self.x + self.width / 2
        bottom = np.full_like(self.heights, self.floor)
        # (bars, 4 corners, xy): bottom left, top left, top right, bottom right
        self.artist.set_verts(np.stack([np.column_stack([left, bottom]), np.column_stack([left, self.heights]),
                                        np.column_stack([right, self.heights]), np.column_stack([right, bottom])],
                                       axis=1))


@lesson_tab("deep_mlp")
class MLPTab(LessonTab):
    """Gradient-norm heatmap, loss and per-layer statistics of a deep-MLP lesson."""

    steps_per_second = 80.0

    def build_controls(self, bar) -> None:
        self.vars: dict[str, tk.Variable] = {}
        for path, label, values, width in (("activation", N_("activation"), C.ACTIVATIONS, 8),
                                           ("norm", N_("norm"), MLP_NORMS, 9), ("init", N_("init"), MLP_INITS, 8)):
            _box, self.vars[path] = labelled_combo(bar, label, values, width=width,
                    command=lambda p=path: self._changed(p))
        self.vars["residual"] = tk.BooleanVar(self.frame)
        relabel.text(ttk.Checkbutton(bar, variable=self.vars["residual"], command=lambda: self._changed("residual")),
                     N_("residual")).pack(side="left", padx=(6, 0))
        row = ttk.Frame(self.frame)  # a second row: one would not fit a 1024-pixel window
        row.pack(fill="x", pady=(0, 2))
        for path, label in (("n_layer", N_("layers")), ("width", N_("width")), ("batch_size", N_("batch")),
                            ("optim.lr", N_("lr")), ("optim.grad_clip", N_("clip"))):
            relabel.text(ttk.Label(row), label).pack(side="left", padx=(6, 2))
            var = self.vars[path] = tk.StringVar(self.frame)
            entry = ttk.Entry(row, textvariable=var, width=6)
            entry.pack(side="left")
            for seq in ("<Return>", "<FocusOut>"):
                entry.bind(seq, lambda e, p=path: self._changed(p), add="+")

    def _value(self, path: str):
        v = self.cfg
        for part in path.split("."):
            v = getattr(v, part)
        return v

    def show_config(self, cfg) -> None:
        for path, var in self.vars.items():
            v = self._value(path)
            var.set(v if isinstance(var, tk.BooleanVar) else f"{v:g}" if isinstance(v, float) else str(v))

    def _changed(self, path: str) -> None:
        text = str(self.vars[path].get())
        v = self._value(path)
        if text != (f"{v:g}" if isinstance(v, float) else str(v)):
            self.change(path, text)

    def digest(self, cfg, frames):
        return weight_names(cfg), frames

    def steps_of(self) -> int:
        return len(self.result[1])

    def draw_static(self) -> list:
        names, records = self.result
        n = len(records)
        grid = np.array([r.grad_norms for r in records], dtype=float).T  # (layers, steps), input layer first
        grid = np.where(np.isfinite(grid) & (grid > 0), grid, np.nan)
        fig = self.figure
        fig.clear()
        spec = fig.add_gridspec(2, 2)
        ax_heat = fig.add_subplot(spec[0, 0])
        self.ax_loss = ax_loss = fig.add_subplot(spec[0, 1])
        ax_layer = fig.add_subplot(spec[1, 0])
        ax_act = fig.add_subplot(spec[1, 1])
        finite = grid[np.isfinite(grid)]
        norm = LogNorm(vmin=max(float(finite.min()), 1e-12), vmax=max(float(finite.max()), 1e-11)) \
            if finite.size else None
        cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#d0d0d0")
        self.colours = colours = ScalarMappable(norm=norm, cmap=cmap)  # the heatmap's colours, and the colour bar's
        self.grid = grid
        self.grid_rgba = colours.to_rgba(np.ma.masked_invalid(grid), bytes=True)  # (layers, steps, 4)
        self.heat = ax_heat.imshow(self.grid_rgba, aspect="auto", origin="lower", interpolation="nearest",
                                   extent=(0.5, n + 0.5, -0.5, len(names) - 0.5))
        # the steps not shown yet: covered in the grey of a missing value, from the step shown to the right end
        self.cover = ax_heat.add_patch(Rectangle((0.5, -0.5), n, len(names), facecolor=cmap.get_bad(),
                                                 edgecolor="none", antialiased=False))
        ticks = sorted({0, len(names) - 1, *range(0, len(names), max(1, len(names) // 6))})
        ax_heat.set_yticks(ticks, [names[i] for i in ticks])
        ax_heat.set_title(_("grad norm per weight (log colour)"))
        ax_heat.set_xlabel(_("step (input layer at the bottom)"))
        fig.colorbar(colours, ax=ax_heat, pad=0.01)
        losses = np.array([r.loss for r in records])
        loss_curves = CurveSet(ax_loss)
        self.l_loss = loss_curves.add("C0", lw=1.0, label=_("train loss"))
        self.l_val = loss_curves.add("C1", lw=1.2, marker="o", ms=2.5, label=_("val loss"))
        self.ax_acc = ax_acc = ax_loss.twinx()
        acc_curves = CurveSet(ax_acc)
        self.l_acc = acc_curves.add("C2", lw=1.2, label=_("val accuracy"))
        finite_loss = losses[np.isfinite(losses)]
        ax_loss.set_xlim(0, n)
        ax_loss.set_ylim(0, float(finite_loss.max()) * 1.1 if finite_loss.size else 2.0)
        ax_acc.set_ylim(0, 1)
        ax_loss.set_title(_("loss and validation accuracy (diverged)") if records[-1].nonfinite else
                          _("loss and validation accuracy"))
        ax_loss.set_xlabel(_("step"))
        ax_loss.grid(alpha=0.3)
        ax_loss.legend(handles=[c.legend_handle() for c in (self.l_loss, self.l_val, self.l_acc)], loc="upper right")
        ax_layer.set_yscale("log")
        ax_layer.set_ylim(max(float(finite.min()) / 2, 1e-12) if finite.size else 1e-6,
                          float(finite.max()) * 2 if finite.size else 1.0)
        span = len(names) - 1 + 0.8
        ax_layer.set_xlim(-0.4 - 0.05 * span, len(names) - 0.6 + 0.05 * span)  # as `ax.bar` fitted them (5 % margins)
        self.bars = LogBars(ax_layer, len(names), "C0", floor=ax_layer.get_ylim()[0] / 10)
        ax_layer.set_xticks(ticks, [names[i] for i in ticks])
        ax_layer.set_title(_("grad norm per layer at the step shown"))
        ax_layer.grid(alpha=0.3, axis="y")
        hidden = len(records[0].act_std)
        xs = np.arange(hidden)
        act_curves = CurveSet(ax_act)
        self.l_std = act_curves.add("C0", marker=".", label=_("activation std"))
        self.l_std.set_data(xs, np.zeros(hidden))
        self.l_sat = act_curves.add("C3", marker=".", label=_("saturated share"))
        self.l_dead = act_curves.add("C4", marker=".", label=_("dead ReLU share"))
        stds = np.array([r.act_std for r in records], dtype=float)
        top = float(np.nanmax(stds[np.isfinite(stds)])) if np.isfinite(stds).any() else 1.0
        ax_act.set_ylim(0, max(1.05, top * 1.1))
        ax_act.set_xlim(-0.5, hidden - 0.5)
        ax_act.set_xlabel(_("layer (input first)"))
        ax_act.set_title(_("activations at the step shown"))
        ax_act.grid(alpha=0.3)
        ax_act.legend(handles=act_curves.legend_handles(), loc="upper right")
        self.curve_sets = (loss_curves, acc_curves, act_curves)
        return [self.cover, *loss_curves.artists, acc_curves.lines, self.bars.artist, *act_curves.artists]

    def show_until(self, k: int) -> None:
        records = self.result[1]
        n = len(records)
        self.cover.set_x(k + 0.5)
        self.cover.set_width(n - k)
        self.cover.set_visible(k < n)
        self.l_loss.set_data(np.arange(1, k + 1), [r.loss for r in records[:k]])
        val = [(i + 1, r.val_loss, r.val_accuracy) for i, r in enumerate(records[:k]) if r.val_loss is not None]
        self.l_val.set_data([v[0] for v in val], [v[1] for v in val])
        self.l_acc.set_data([v[0] for v in val], [v[2] for v in val])
        r = records[max(0, k - 1)]
        self.bars.set_heights([v if np.isfinite(v) and v > 0 else 1e-12 for v in r.grad_norms])
        xs = np.arange(len(r.act_std))
        self.l_std.set_data(xs, r.act_std)
        self.l_sat.set_data(xs[:len(r.saturated)], r.saturated)
        self.l_dead.set_data(xs[:len(r.dead)], r.dead)
