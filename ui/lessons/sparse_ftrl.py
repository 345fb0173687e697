"""Sparse FTRL: click-through-style logistic regression where FTRL's L1 term makes weights exactly zero.

Every learner is the optimizer class the GPT trains with, stepping one hashed weight vector
(`simulator.lessons.sparse_ftrl`). Shown growing step by step: validation log-loss per learner (with the
base-rate and true-weights lines that frame it) and the fraction of weights that are exactly 0.0.
Changing a learner's l1 recomputes the lesson from the start. Each axes' curves are one `CurveSet`: a frame
blits two collections, not a line per learner.
"""

from __future__ import annotations

import numpy as np

from simulator.i18n import _
from ui.lessons import lesson_tab
from ui.lessons.base import LearnersTab
from ui.lessons.curves import CurveSet


@lesson_tab("sparse_logreg")
class SparseTab(LearnersTab):
    """Validation log-loss and exact-zero fraction per learner."""

    learner_field = "l1"

    def build_controls(self, bar) -> None:
        self.build_learner_setter(bar)

    def digest(self, cfg, frames):
        """label -> (validation losses (steps,), zero fractions (steps,)), the base-rate and true-weights losses."""
        out = {}
        for i, entry in enumerate(cfg.optimizers):
            pts = [f.points[i] for f in frames]
            out[entry.label] = (np.array([p.val_loss for p in pts]), np.array([p.zero_fraction for p in pts]))
        return out, frames[0].baseline_loss, frames[0].true_loss

    def steps_of(self) -> int:
        return len(next(iter(self.result[0].values()))[0])

    def draw_static(self) -> list:
        out, baseline, best = self.result
        n = self.steps_of()
        fig = self.figure
        fig.clear()
        self.ax_loss, self.ax_zero = ax, az = fig.subplots(1, 2)
        ax.axhline(baseline, color="0.5", ls="--", lw=0.9, label=_("base rate only ({loss:.3f})").format(loss=baseline))
        ax.axhline(best, color="k", ls=":", lw=0.9, label=_("true weights ({loss:.3f})").format(loss=best))
        self.lines = {}
        loss_curves, zero_curves = CurveSet(ax), CurveSet(az)
        for i, label in enumerate(out):
            self.lines[label] = (loss_curves.add(f"C{i}", lw=1.3, label=label),
                                 zero_curves.add(f"C{i}", lw=1.3, label=label))
        self.curve_sets = (loss_curves, zero_curves)
        artists = [loss_curves.lines, zero_curves.lines]
        losses = np.concatenate([v[0] for v in out.values()] + [[baseline, best]])
        ax.set_xlim(0, n)
        ax.set_ylim(min(losses) * 0.95, max(losses) * 1.05)
        ax.set_title(_("validation log-loss"))
        ax.set_xlabel(_("step"))
        ax.grid(alpha=0.3)
        ax.legend(handles=[*ax.lines, *loss_curves.legend_handles()], loc="upper right")  # the two frame lines first
        az.set_xlim(0, n)
        az.set_ylim(0, 1)
        az.set_title(_("fraction of weights exactly 0.0"))
        az.set_xlabel(_("step"))
        az.grid(alpha=0.3)
        az.legend(handles=zero_curves.legend_handles(), loc="lower right")
        return artists

    def show_until(self, k: int) -> None:
        steps = np.arange(1, k + 1)
        for label, (loss, zeros) in self.result[0].items():
            a, b = self.lines[label]
            a.set_data(steps, loss[:k])
            b.set_data(steps, zeros[:k])
