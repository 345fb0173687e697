"""Optimizer race: each optimizer's path across a 2-D surface, growing step by step.

The racers are the same optimizer classes the GPT trains with, stepping a 2-element buffer
(`simulator.lessons.optimizer_race`). The race is computed in a background thread (the first one may compile
kernels), then revealed step by step over the contour plot; the loss of each racer is plotted on
the right. Changing the function or a racer's learning rate recomputes the race from the start.

A frame sets the racers' data and blits: the paths and their heads are one `CurveSet` of the map (two artists
for every racer together), the losses one of the loss axes.
"""

from __future__ import annotations

import dataclasses
from tkinter import ttk

import numpy as np
from matplotlib.colors import LogNorm

from simulator.i18n import N_, _
from simulator.lessons.optimizer_race import FUNCTIONS, RACE_FUNCTIONS, RaceConfig, surface
from ui import relabel
from ui.lessons import lesson_tab
from ui.lessons.base import LearnersTab, labelled_combo
from ui.lessons.curves import CurveSet

# Where a race starts on each function when the function is switched in the window.
STARTS = {"rosenbrock": (-1.5, 2.0), "ravine": (-7.0, 2.0), "saddle": (-1.5, 0.01), "beale": (-1.0, 3.5),
          "noisy_quadratic": (-3.5, 1.6)}
STEPS_PER_SECOND = 40.0


@lesson_tab("optimizer_race")
class RaceTab(LearnersTab):
    """Contour plus growing trajectories, and loss per racer."""

    nested = False
    steps_per_second = STEPS_PER_SECOND
    learner_label = N_("racer")

    def build_controls(self, bar: ttk.Frame) -> None:
        self.fn_box, self.fn_var = labelled_combo(bar, N_("function"), RACE_FUNCTIONS, width=15, command=self._function)
        relabel.text(ttk.Button(bar, command=self.app.open_preset_dialog),
                N_("Open race preset…")).pack(side="left", padx=6)
        self.build_learner_setter(bar)
        self.lines: dict[str, tuple] = {}

    def show_config(self, cfg: RaceConfig) -> None:
        self.fn_var.set(cfg.function)
        super().show_config(cfg)

    def digest(self, cfg: RaceConfig, frames):
        """label -> (positions (steps+1, 2), losses (steps+1,), diverged step or None), and the surface."""
        fn, out = FUNCTIONS[cfg.function], {}
        for i, entry in enumerate(cfg.optimizers):
            pts = [points[i] for points in frames]
            path = np.array([cfg.start] + [p.position for p in pts], dtype=np.float64)
            losses = np.array([float(fn.value(*cfg.start))] + [p.loss for p in pts])
            out[entry.label] = (path, losses, next((p.step for p in pts if p.diverged), None))
        return out, surface(cfg, 120)

    def steps_of(self) -> int:
        return self.cfg.steps

    def _function(self) -> None:
        fn = self.fn_var.get()
        if self.cfg is not None and fn != self.cfg.function:
            self.load(dataclasses.replace(self.cfg, function=fn, start=STARTS.get(fn, (0.5, 0.5)), bounds=None))

    # ------------------------------------------------------------ drawing
    def draw_static(self) -> list:
        out, (xs, ys, zs) = self.result
        fig = self.figure
        fig.clear()
        grid = fig.add_gridspec(1, 5)
        self.ax_map = ax = fig.add_subplot(grid[0, :3])
        self.ax_loss = axl = fig.add_subplot(grid[0, 3:])
        fn = FUNCTIONS[self.cfg.function]
        z = zs - zs.min()
        floor = max(float(z[z > 0].min()), 1e-6 * float(z.max()))
        z = np.maximum(z, floor)  # log-spaced levels: the minimum itself sits in the lowest band
        levels = np.geomspace(floor, z.max(), 18)
        ax.contourf(xs, ys, z, levels=levels, cmap="Blues_r", norm=LogNorm(), alpha=0.85)
        ax.contour(xs, ys, z, levels=levels, colors="white", linewidths=0.4)
        ax.plot(*fn.minimum, marker="*", color="gold", ms=12, mec="k", zorder=5)
        ax.plot(*self.cfg.start, marker="o", color="k", ms=4)
        ax.set_xlim(xs[0], xs[-1])
        ax.set_ylim(ys[0], ys[-1])
        ax.set_title(_("{function}: paths (star: the minimum)").format(function=self.cfg.function))
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        self.lines = {}
        paths, curves = CurveSet(ax), CurveSet(axl)
        for i, (label, (_path, _losses, div)) in enumerate(out.items()):
            colour = f"C{i % 10}"
            shown = _("{label} (diverged at {step})").format(label=label, step=div) if div else label
            line = paths.add(colour, lw=1.4, label=shown)
            head = paths.add(colour, ls="", marker="o", ms=5, mec="k")
            curve = curves.add(colour, lw=1.2, label=label)
            self.lines[label] = (line, head, curve)
        self.curve_sets = (paths, curves)
        artists = [*paths.artists, curves.lines]  # (the losses have no markers)
        ax.legend(handles=[line.legend_handle() for line, _head, _curve in self.lines.values()],
                  loc="lower right" if self.cfg.function != "rosenbrock" else "upper left")
        axl.set_yscale("log")
        axl.set_xlim(0, self.cfg.steps)
        finite = np.concatenate([v[1][np.isfinite(v[1]) & (v[1] > 0)] for v in out.values()])
        if finite.size:
            axl.set_ylim(max(finite.min() / 2, 1e-12), finite.max() * 2)
        axl.set_title(_("loss (function value) per step"))
        axl.set_xlabel(_("step"))
        axl.grid(alpha=0.3, which="both")
        return artists

    def show_until(self, n: int) -> None:
        for label, (path, losses, _div) in self.result[0].items():
            line, head, curve = self.lines[label]
            line.set_data(path[:n + 1, 0], path[:n + 1, 1])
            head.set_data(path[n:n + 1, 0], path[n:n + 1, 1])
            curve.set_data(np.arange(n + 1), losses[:n + 1])
