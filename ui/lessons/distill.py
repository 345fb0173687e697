"""Knowledge distillation: validation loss of the hard-label and the distilled student against the teacher's,
and the teacher's soft distribution at T = 1, 2, 4 beside the one-hot label for a chosen position
(`simulator.lessons.distill`; the probabilities are the engine's `dark_knowledge`)."""

from __future__ import annotations

import tkinter as tk
from tkinter import ttk

import numpy as np

from simulator.i18n import N_, _
from simulator.lessons.distill import LABELS, SHOWN_TEMPERATURES, dark_knowledge
from ui import relabel
from ui.lessons import lesson_tab
from ui.lessons.base import LessonTab


@lesson_tab("distill")
class DistillTab(LessonTab):
    """Two panels: both students' validation loss by step (the teacher's dashed), and dark knowledge at a position."""

    steps_per_second = 40.0

    def build_controls(self, bar: ttk.Frame) -> None:
        relabel.text(ttk.Label(bar), N_("position")).pack(side="left", padx=(6, 2))
        self.position_var = tk.StringVar(self.frame, "10")
        self.position_box = ttk.Spinbox(bar, from_=0, to=10_000, width=5, textvariable=self.position_var,
                                        command=self.show_position)
        self.position_box.pack(side="left")
        self.position_box.bind("<Return>", lambda e: self.show_position())

    def digest(self, cfg, frames):
        """(label -> (eval steps, validation losses)), the teacher's loss, the window, the step count."""
        if not frames:
            return {}, np.nan, None, 0
        curves = {}
        for i, label in enumerate(LABELS):
            pts = [(f.step, f.points[i].val) for f in frames if f.points[i].val is not None]
            steps, vals = (np.array(v, float) for v in zip(*pts, strict=True))
            curves[label] = (np.r_[0.0, steps], np.r_[frames[0].start_val[i], vals])
        return curves, frames[0].teacher_val, frames[0].window, len(frames)

    def steps_of(self) -> int:
        return self.result[3]

    def position(self) -> int | None:
        """The typed position, or None (with one message) when it is not a position of the window."""
        window = self.result[2] if self.result else None
        n = len(window.tokens) if window is not None else 0
        text = self.position_var.get().strip()
        if not text.isdigit() or int(text) >= n:
            self.app.show_error(_("{title}: position: type a whole number from 0 to {last}, got {text!r}.").format(
                title=_(self.title), last=n - 1, text=text))
            return None
        return int(text)

    def draw_static(self) -> list:
        curves, teacher_val, window, n = self.result
        fig = self.figure
        fig.clear()
        self.ax_val, self.ax_dk = fig.subplots(1, 2, width_ratios=(1, 1.3))
        self.lines, artists = {}, []
        for i, label in enumerate(LABELS):
            (line,) = self.ax_val.plot([], [], color=f"C{i}", lw=1.4, label=_(label))
            self.lines[label] = line
            artists.append(line)
        ax = self.ax_val
        ax.axhline(teacher_val, color="0.4", ls="--", lw=0.9, label=_("teacher ({loss:.3f})").format(loss=teacher_val))
        every = np.concatenate([v[1] for v in curves.values()] + [[teacher_val]])
        lo, hi = float(np.nanmin(every)), float(np.nanmax(every))
        ax.set_xlim(0, max(n, 1))
        ax.set_ylim(lo - 0.05 * (hi - lo + 1e-9), hi + 0.05 * (hi - lo + 1e-9))
        ax.set_title(_("validation loss (cross-entropy with the true next token)"), fontsize=9)
        ax.set_xlabel(_("training step (same seed, batches and steps)"))
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=7)
        text, n_pos = self.position_var.get().strip(), len(window.tokens)
        if not text.isdigit() or int(text) >= n_pos:  # a window shorter than the last one: a position in it
            self.position_var.set(str(min(10, n_pos - 1)))
        self.position_box.configure(to=n_pos - 1)
        self.draw_dark_knowledge()
        return artists

    def draw_dark_knowledge(self) -> bool:
        """Draws the teacher's distributions at the typed position; False when the position is not one."""
        window = self.result[2]
        position = self.position()
        if position is None:
            return False
        tokens, probs, onehot = dark_knowledge(window, position, SHOWN_TEMPERATURES)
        ax = self.ax_dk
        ax.clear()
        x = np.arange(len(tokens))
        width = 0.8 / (len(SHOWN_TEMPERATURES) + 1)
        for j, T in enumerate(SHOWN_TEMPERATURES):
            ax.bar(x + j * width, probs[j], width, color=f"C{j + 2}", label=_("teacher, T = {T:g}").format(T=T))
        ax.bar(x + len(SHOWN_TEMPERATURES) * width, onehot, width, color="0.2", label=_("one-hot label"))
        ax.set_xticks(x + 0.4 - width / 2, [repr(t)[1:-1] if t.strip() else t for t in tokens], fontsize=8)
        context = "".join(window.tokens[max(0, position - 20):position + 1])
        ax.set_title(_("after \u2026{context!r}: the next token is {token!r}").format(
            context=context, token=tokens[int(np.argmax(onehot))]), fontsize=9)
        ax.set_ylabel(_("probability"))
        ax.set_ylim(0, 1.2)  # headroom for the legend in one row above the one-hot bar
        ax.legend(loc="upper center", ncols=4, fontsize=7)
        ax.grid(alpha=0.3, axis="y")
        self.shown_position = position
        return True

    def show_position(self) -> bool:
        """Shows the dark knowledge at the typed position (no recompute)."""
        if self.result is None or self.result[2] is None or not self.draw_dark_knowledge():
            return False
        self.full_draw()
        return True

    def show_until(self, k: int) -> None:
        for label, (steps, vals) in self.result[0].items():
            shown = steps <= k
            self.lines[label].set_data(steps[shown], vals[shown])
