"""Fine-tuning, full vs LoRA: validation loss on the new text and on the old one (forgetting) as the learners
train, and where each ends against its trainable parameters (`simulator.lessons.finetune`)."""

from __future__ import annotations

import numpy as np

from ui.lessons import lesson_tab
from ui.lessons.base import LessonTab


@lesson_tab("finetune")
class FinetuneTab(LessonTab):
    """Three panels: new-text loss by step, old-text loss by step, final new-text loss vs trainable parameters."""

    steps_per_second = 30.0

    def digest(self, cfg, frames):
        """label -> (eval steps, new-text losses, old-text losses); the learners; the base's two losses."""
        if not frames:
            return {}, (), np.nan, np.nan, 0
        curves = {}
        for i, learner in enumerate(frames[0].learners):
            pts = [(f.step, f.points[i].val_new, f.points[i].val_old) for f in frames
                   if f.points[i].val_new is not None]
            steps, new, old = (np.array(v, float) for v in zip(*pts, strict=True)) if pts else ([], [], [])
            # step 0 is the base model for every learner (a LoRA adapter starts at zero)
            curves[learner.label] = (np.r_[0.0, steps], np.r_[frames[0].base_new, new], np.r_[frames[0].base_old, old])
        return curves, frames[0].learners, frames[0].base_new, frames[0].base_old, len(frames)

    def steps_of(self) -> int:
        return self.result[4]

    def draw_static(self) -> list:
        curves, learners, base_new, base_old, n = self.result
        fig = self.figure
        fig.clear()
        self.ax_new, self.ax_old, self.ax_size = fig.subplots(1, 3)
        self.lines, artists = {}, []
        for i, learner in enumerate(learners):
            style = {"color": f"C{i}", "lw": 1.4 if learner.rank == 0 else 1.1, "label": learner.label}
            (a,) = self.ax_new.plot([], [], **style)
            (b,) = self.ax_old.plot([], [], **style)
            self.lines[learner.label] = (a, b)
            artists += [a, b]
        every = np.concatenate([np.r_[v[1], v[2]] for v in curves.values()] or [[0.0, 1.0]])
        lo, hi = float(np.nanmin(every)), float(np.nanmax(every))
        for ax, title, base in ((self.ax_new, "validation loss, new text (words reversed)", base_new),
                                (self.ax_old, "validation loss, old text (forgetting)", base_old)):
            ax.axhline(base, color="0.5", ls="--", lw=0.9, label=f"base model ({base:.3f})")
            ax.set_xlim(0, max(n, 1))
            ax.set_ylim(lo - 0.05 * (hi - lo + 1e-9), hi + 0.05 * (hi - lo + 1e-9))
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("fine-tuning step")
            ax.grid(alpha=0.3)
        self.ax_new.legend(loc="upper right", fontsize=7)
        az = self.ax_size
        for i, learner in enumerate(learners):  # where each learner ends: the cost of its adaptability
            _, new, old = curves[learner.label]
            az.scatter([learner.trainable], [new[-1]], color=f"C{i}", marker="o")
            az.scatter([learner.trainable], [old[-1]], color=f"C{i}", marker="x")
            az.annotate(f"{learner.state_bytes / 1024:.0f} KiB", (learner.trainable, new[-1]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
        az.set_xscale("log")
        az.set_title("end of fine-tuning: o new text, x old text", fontsize=9)
        az.set_xlabel("trainable parameters (label: training-state bytes)")
        az.grid(alpha=0.3)
        return artists

    def show_until(self, k: int) -> None:
        curves = self.result[0]
        for label, (steps, new, old) in curves.items():
            a, b = self.lines[label]
            shown = steps <= k
            a.set_data(steps[shown], new[shown])
            b.set_data(steps[shown], old[shown])
