"""Leaf or flower: one SGD step of a hand-sized MLP, number by number, for the chosen loss and learning rate.

The text is `simulator.lessons.leaf_flower`'s (the same as `main.py explain mlp`).
"""

from __future__ import annotations

import tkinter as tk
from tkinter import ttk

from simulator.i18n import N_, _
from simulator.lessons.leaf_flower import LEAF_FLOWER_LOSSES, mlp_text
from ui import relabel
from ui.lessons import lesson_tab
from ui.lessons.text import InputError, TextLessonTab, parse_numbers

LOSS_LABELS = {"cross_entropy": "cross-entropy", "l1": "L1"}  # how the engine's loss names read in the box


def loss_label(name: str) -> str:
    """The engine's loss name as the box shows it."""
    return LOSS_LABELS.get(name, name)


@lesson_tab("leaf_flower")
class LeafFlowerTab(TextLessonTab):
    """The loss choice and the learning rate over the engine's account of one weight update."""

    def sections(self) -> None:
        self.lr_var = self.section(N_("Leaf or flower: one SGD step of a tiny MLP"), N_("lr"), self.compute_mlp,
                expand=True,
                                   entry_width=8, extra=self._loss_choice)

    def _loss_choice(self, bar) -> None:
        relabel.text(ttk.Label(bar), N_("loss")).pack(side="left", padx=(0, 2))
        self.loss_var = tk.StringVar(self.frame, loss_label(LEAF_FLOWER_LOSSES[0]))
        self.loss_box = ttk.Combobox(bar, textvariable=self.loss_var, state="readonly", width=13,
                                     values=[loss_label(n) for n in LEAF_FLOWER_LOSSES])
        self.loss_box.pack(side="left", padx=(0, 8))
        self.loss_box.bind("<<ComboboxSelected>>", lambda e: self.compute_mlp())

    def show_config(self, cfg) -> None:
        self.loss_var.set(loss_label(cfg.loss))
        self.lr_var.set(f"{cfg.lr:g}")
        self.compute_mlp()

    def compute_mlp(self) -> bool:
        """Recomputes the weight update for the chosen loss and learning rate."""
        def make() -> str:
            lr = parse_numbers(self.lr_var.get(), "lr")
            if len(lr) != 1 or lr[0] <= 0.0:
                raise InputError(_("lr: the learning rate must be one positive number, got {value!r}.").format(
                    value=self.lr_var.get()))
            names = {loss_label(n): n for n in LEAF_FLOWER_LOSSES}
            return mlp_text(names[self.loss_var.get()], lr[0])
        return self.run_section("lr", N_("lr"), make)
