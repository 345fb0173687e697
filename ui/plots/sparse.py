"""Sparse FTRL: click-through-style logistic regression where FTRL's L1 term makes weights exactly zero.

Every learner is the optimizer class the GPT trains with, stepping one hashed weight vector
(`simulator.ftrl_lesson`). Shown growing step by step: validation log-loss per learner (with the
base-rate and true-weights lines that frame it) and the fraction of weights that are exactly 0.0.
Changing a learner's l1 recomputes the lesson from the start.
"""

from __future__ import annotations

import dataclasses
import tkinter as tk
from tkinter import ttk

import numpy as np

from simulator.ftrl_lesson import LessonError, SparseLogRegLesson, check_lesson, load_lesson
from ui.plots.base import combo
from ui.plots.lesson import LessonTab


class SparseTab(LessonTab):
    """Validation log-loss and exact-zero fraction per learner."""

    title = "Sparse FTRL"
    errors = (LessonError,)

    def load_default(self):
        return load_lesson("ftrl-sparse")

    def build_controls(self, bar) -> None:
        self.learner_box, self.learner_var = combo(bar, "learner", [], width=14, command=self._learner)
        ttk.Label(bar, text="l1").pack(side="left", padx=(6, 2))
        self.l1_var = tk.StringVar(self.frame)
        entry = ttk.Entry(bar, textvariable=self.l1_var, width=8)
        entry.pack(side="left")
        entry.bind("<Return>", lambda e: self.set_l1())
        ttk.Button(bar, text="Set", command=self.set_l1).pack(side="left", padx=2)

    def show_config(self, cfg) -> None:
        labels = [e.label for e in cfg.optimizers]
        self.learner_box.configure(values=labels)
        if self.learner_var.get() not in labels:
            self.learner_var.set(labels[0])
        self._learner()

    def _learner(self) -> None:
        entry = next((e for e in self.cfg.optimizers if e.label == self.learner_var.get()), None)
        if entry is not None:
            self.l1_var.set(f"{entry.optim.l1:g}")

    def set_l1(self) -> None:
        """Gives the chosen learner the typed l1 and recomputes."""
        label, text = self.learner_var.get(), self.l1_var.get()
        try:
            l1 = float(text)
        except ValueError:
            self.app.show_error(f"Sparse FTRL: l1 of {label} must be a number, got {text!r}.")
            return
        entries = tuple(dataclasses.replace(e, optim=dataclasses.replace(e.optim, l1=l1)) if e.label == label else e
                        for e in self.cfg.optimizers)
        new = dataclasses.replace(self.cfg, optimizers=entries)
        try:
            check_lesson(new)
        except LessonError as err:
            self.app.show_error(f"Sparse FTRL: {err}")
            self._learner()
            return
        self.load(new)

    def compute(self, cfg, cancelled):
        lesson = SparseLogRegLesson(cfg)
        steps = []
        for _ in range(cfg.steps):
            if cancelled():
                break
            steps.append(lesson.step())
        out = {}
        for i, label in enumerate(lesson.labels):
            pts = [s[i] for s in steps]
            out[label] = (np.array([p.val_loss for p in pts]), np.array([p.zero_fraction for p in pts]))
        return out, lesson.baseline_loss(), lesson.true_loss()

    def steps_of(self) -> int:
        return len(next(iter(self.result[0].values()))[0])

    def draw_static(self) -> list:
        out, baseline, best = self.result
        n = self.steps_of()
        fig = self.figure
        fig.clear()
        self.ax_loss, self.ax_zero = ax, az = fig.subplots(1, 2)
        ax.axhline(baseline, color="0.5", ls="--", lw=0.9, label=f"base rate only ({baseline:.3f})")
        ax.axhline(best, color="k", ls=":", lw=0.9, label=f"true weights ({best:.3f})")
        self.lines = {}
        artists = []
        for i, label in enumerate(out):
            (a,) = ax.plot([], [], color=f"C{i}", lw=1.3, label=label)
            (b,) = az.plot([], [], color=f"C{i}", lw=1.3, label=label)
            self.lines[label] = (a, b)
            artists += [a, b]
        losses = np.concatenate([v[0] for v in out.values()] + [[baseline, best]])
        ax.set_xlim(0, n)
        ax.set_ylim(min(losses) * 0.95, max(losses) * 1.05)
        ax.set_title("validation log-loss")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right")
        az.set_xlim(0, n)
        az.set_ylim(0, 1)
        az.set_title("fraction of weights exactly 0.0")
        az.set_xlabel("step")
        az.grid(alpha=0.3)
        az.legend(loc="lower right")
        return artists

    def show_until(self, k: int) -> None:
        steps = np.arange(1, k + 1)
        for label, (loss, zeros) in self.result[0].items():
            a, b = self.lines[label]
            a.set_data(steps, loss[:k])
            b.set_data(steps, zeros[:k])
