"""Fine-tuning, full vs LoRA vs QLoRA: validation loss on the new text and on the old one (forgetting) as the
learners train, and where each ends against its trainable parameters; below, the base's loss in float32 and NF4,
one tensor's quantization error NF4 vs int4 absmax (the toolbar picks it), and the base bytes each learner holds
(`simulator.lessons.finetune`)."""

from __future__ import annotations

import numpy as np

from simulator.i18n import N_, _
from ui.lessons import lesson_tab
from ui.lessons.base import LessonTab, labelled_combo


@lesson_tab("finetune")
class FinetuneTab(LessonTab):
    """Six panels. Top: new-text loss by step, old-text loss by step, final losses vs trainable parameters.
    Bottom: the base's losses float32 vs NF4, one tensor's quantization error histogram, each learner's base bytes."""

    steps_per_second = 30.0

    def build_controls(self, bar) -> None:
        self.tensor_box, self.tensor_var = labelled_combo(bar, N_("quantization error of"), [], width=16,
                                                          command=self.show_tensor)
        self.quant, self.stairs = None, {}

    def digest(self, cfg, frames):
        """label -> (eval steps, new-text losses, old-text losses); the learners; the base's two losses; the
        steps; the base's losses by storage; the quantization errors."""
        if not frames:
            return {}, (), np.nan, np.nan, 0, {}, None
        curves = {}
        for i, learner in enumerate(frames[0].learners):
            pts = [(f.step, f.points[i].val_new, f.points[i].val_old) for f in frames
                   if f.points[i].val_new is not None]
            steps, new, old = (np.array(v, float) for v in zip(*pts, strict=True)) if pts else ([], [], [])
            # step 0 is the base model for every learner (a LoRA adapter starts at zero)
            curves[learner.label] = (np.r_[0.0, steps], np.r_[frames[0].base_new, new], np.r_[frames[0].base_old, old])
        return (curves, frames[0].learners, frames[0].base_new, frames[0].base_old, len(frames), frames[0].base_loss,
                frames[0].quant)

    def steps_of(self) -> int:
        return self.result[4]

    def draw_static(self) -> list:
        curves, learners, base_new, base_old, n, base_loss, quant = self.result
        fig = self.figure
        fig.clear()
        (self.ax_new, self.ax_old, self.ax_size), (self.ax_base, self.ax_hist, self.ax_bytes) = fig.subplots(2, 3)
        self.lines, artists = {}, []
        for i, learner in enumerate(learners):
            style = {"color": f"C{i}", "lw": 1.4 if learner.rank == 0 else 1.1, "label": learner.label,
                     "ls": "--" if learner.label.startswith("QLoRA") else "-"}
            (a,) = self.ax_new.plot([], [], **style)
            (b,) = self.ax_old.plot([], [], **style)
            self.lines[learner.label] = (a, b)
            artists += [a, b]
        every = np.concatenate([np.r_[v[1], v[2]] for v in curves.values()] or [[0.0, 1.0]])
        lo, hi = float(np.nanmin(every)), float(np.nanmax(every))
        for ax, title, base in ((self.ax_new, _("validation loss, new text (words reversed)"), base_new),
                                (self.ax_old, _("validation loss, old text (forgetting)"), base_old)):
            ax.axhline(base, color="0.5", ls="--", lw=0.9, label=_("base model ({loss:.3f})").format(loss=base))
            ax.set_xlim(0, max(n, 1))
            ax.set_ylim(lo - 0.05 * (hi - lo + 1e-9), hi + 0.05 * (hi - lo + 1e-9))
            ax.set_title(title, fontsize=9)
            ax.set_xlabel(_("fine-tuning step"))
            ax.grid(alpha=0.3)
        self.ax_new.legend(loc="upper right", fontsize=7)
        az = self.ax_size
        for i, learner in enumerate(learners):  # where each learner ends: the cost of its adaptability
            new, old = curves[learner.label][1:]
            az.scatter([learner.trainable], [new[-1]], color=f"C{i}", marker="o")
            az.scatter([learner.trainable], [old[-1]], color=f"C{i}", marker="x")
            az.annotate(f"{learner.state_bytes / 1024:.0f} KiB", (learner.trainable, new[-1]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
        az.set_xscale("log")
        az.set_title(_("end of fine-tuning: o new text, x old text"), fontsize=9)
        az.set_xlabel(_("trainable parameters (label: training-state bytes)"))
        az.grid(alpha=0.3)
        self._draw_base_losses(base_loss)
        self._draw_errors(quant)
        self._draw_base_bytes(learners)
        return artists

    def _draw_base_losses(self, base_loss) -> None:
        """The base before fine-tuning, new and old text, with its weights in float32 and as NF4 (QLoRA's)."""
        ax = self.ax_base
        kinds = list(base_loss)
        for j, kind in enumerate(kinds):
            bars = ax.bar(np.arange(2) + (j - (len(kinds) - 1) / 2) * 0.38, base_loss[kind], width=0.36,
                          color=f"C{j + 7}", label=kind)
            ax.bar_label(bars, fmt="%.4f", fontsize=7)
        ax.set_xticks([0, 1], [_("new text"), _("old text")])
        every = [v for vals in base_loss.values() for v in vals] or [0.0, 1.0]
        ax.set_ylim(0.9 * min(every), 1.06 * max(every))
        ax.set_title(_("the base before fine-tuning: validation loss"), fontsize=9)
        ax.legend(loc="lower right", fontsize=7)
        ax.grid(alpha=0.3, axis="y")

    def _draw_errors(self, quant) -> None:
        """One tensor's error histogram, NF4 vs int4 (the toolbar picks the tensor)."""
        ax = self.ax_hist
        self.quant, self.stairs = quant, {}
        ax.set_title(_("quantization error, NF4 vs int4 absmax (block 64)"), fontsize=9)
        ax.set_xlabel(_("error / the tensor's std (outer bins: beyond)"))
        ax.set_ylabel(_("share of weights"))
        ax.grid(alpha=0.3)
        if quant is None:
            self.tensor_box.configure(values=[])
            return
        empty = np.zeros(len(quant.edges) - 1)
        self.stairs = {grid: ax.stairs(empty, quant.edges, color=color, lw=1.3, label=grid)
                       for grid, color in (("nf4", "C0"), ("int4", "C3"))}
        names = list(quant.names)
        self.tensor_box.configure(values=names)
        if self.tensor_var.get() not in names:
            self.tensor_var.set(names[0])
        self._set_tensor(self.tensor_var.get())

    def _set_tensor(self, name: str) -> None:
        """The histograms and MSEs of tensor `name` into the artists drawn once."""
        quant, ax = self.quant, self.ax_hist
        for grid, st in self.stairs.items():
            st.set_data(quant.hist[grid][name], quant.edges)
            st.set_label(f"{grid}: MSE {quant.mse[grid][name]:.2e}")
        ax.set_ylim(0, 1.1 * max(float(quant.hist[g][name].max()) for g in self.stairs))
        ax.set_xlim(quant.edges[0], quant.edges[-1])
        ax.legend(loc="upper right", fontsize=7, title=name, title_fontsize=7)

    def show_tensor(self) -> None:
        """The toolbar picked another tensor: its histograms, drawn now."""
        if self.result is None or self.quant is None or self._static_for is not self.result:
            return
        self._set_tensor(self.tensor_var.get())
        self.full_draw()

    def _draw_base_bytes(self, learners) -> None:
        """The bytes of the base weights each learner holds: trained (full), frozen in floats, floats + NF4."""
        ax = self.ax_bytes
        labels = [lr.label for lr in learners]
        bars = ax.bar(np.arange(len(labels)), [lr.base_bytes / 1024 for lr in learners],
                      color=[f"C{i}" for i in range(len(labels))])
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
        ax.set_xticks(np.arange(len(labels)), labels, rotation=30, fontsize=7)
        ax.set_ylabel("KiB")
        ax.set_title(_("base weights held (QLoRA: float part + NF4)"), fontsize=9)
        ax.grid(alpha=0.3, axis="y")

    def show_until(self, k: int) -> None:
        curves = self.result[0]
        for label, (steps, new, old) in curves.items():
            a, b = self.lines[label]
            shown = steps <= k
            a.set_data(steps[shown], new[shown])
            b.set_data(steps[shown], old[shown])
