"""Worked examples a learner can edit: z-scores, BatchNorm vs LayerNorm on a grades table, one MLP weight update.

Every number shown is the text `simulator.explain` produces (the same as `main.py explain ...`); this tab
only parses what was typed, asks the engine, and puts the answer in a read-only box. A typing mistake is
one dialog and leaves the previous answer on screen.
"""

from __future__ import annotations

import inspect
import math
import re
import tkinter as tk
from tkinter import ttk

from simulator.explain import GRADES, ExplainError, mlp_text, norms_text, nums, zscore_text
from simulator.mlp_lab import LEAF_FLOWER_LOSSES, MLPError
from ui.plots.base import NOTE_FONT, PlotTab

ZSCORE_VALUES = "20 50 60 80 90"  # the textbook's list: mean 60, variance 600, std 24.49
MONO = ("DejaVu Sans Mono", 8)
TITLE_FONT = ("DejaVu Sans", 9, "bold")
LOSS_LABELS = {"cross_entropy": "cross-entropy", "l1": "L1"}  # how the engine's loss names read in the box


class InputError(ValueError):
    """What was typed in a box is not something the worked example can use (one sentence)."""


def parse_numbers(text: str, what: str) -> list[float]:
    """The numbers in `text` (separated by spaces or commas); InputError names `what` and the bad word."""
    out = []
    for word in re.split(r"[\s,]+", text.strip()):
        if not word:
            continue
        try:
            x = float(word)
        except ValueError:
            raise InputError(f"{what}: {word!r} is not a number.") from None
        if not math.isfinite(x):
            raise InputError(f"{what}: {word!r} is not a finite number.")
        out.append(x)
    return out


def parse_rows(text: str, what: str) -> list[list[float]]:
    """Rows of numbers separated by ';' or new lines, all of the same length."""
    rows = [parse_numbers(part, f"{what}, row {i + 1}") for i, part in enumerate(re.split(r"[;\n]", text))
            if part.strip()]
    if not rows:
        raise InputError(f"{what}: type rows of numbers separated by ';', e.g. 90 80 70; 60 50 40.")
    for i, row in enumerate(rows[1:], start=2):
        if len(row) != len(rows[0]):
            raise InputError(f"{what}: row {i} has {len(row)} numbers but row 1 has {len(rows[0])}; "
                             "every row needs the same number.")
    return rows


def loss_label(name: str) -> str:
    """The engine's loss name as the box shows it."""
    return LOSS_LABELS.get(name, name)


class WorkedTab(PlotTab):
    """Three editable worked examples, each an entry, a Compute button and the engine's text."""

    title = "Worked examples"

    def build(self) -> None:
        self.outputs: dict[str, tk.Text] = {}
        ttk.Label(self.frame, text="Edit a value and press Compute (or Enter): every number below is computed by "
                  "the engine, the same text as `main.py explain`.", foreground="#555", font=NOTE_FONT).pack(
            fill="x", padx=6, pady=(3, 0))
        self.zscore_var = self._section("z-scores: z = (x - mean) / std", "values", ZSCORE_VALUES,
                                        self.compute_zscores)
        rows = "; ".join(nums(r) for r in GRADES)
        self.rows_var = self._section("BatchNorm vs LayerNorm (rows: students, columns: subjects)", "rows", rows,
                                      self.compute_norms)
        self.lr_var = self._section("Leaf or flower: one SGD step of a tiny MLP", "lr",
                                    f"{inspect.signature(mlp_text).parameters['lr'].default:g}", self.compute_mlp,
                                    loss=True, expand=True)
        self.compute_zscores()
        self.compute_norms()
        self.compute_mlp()

    def _section(self, title: str, label: str, default: str, command, loss: bool = False,
                 expand: bool = False) -> tk.StringVar:
        """A titled row: an entry (and the loss choice) and Compute, over a read-only monospace text."""
        box = ttk.Frame(self.frame, padding=(6, 0))
        box.pack(fill="both" if expand else "x", expand=expand, pady=(4, 0))
        bar = ttk.Frame(box)
        bar.pack(fill="x")
        ttk.Label(bar, text=title, font=TITLE_FONT).pack(side="left", padx=(0, 10))
        if loss:
            ttk.Label(bar, text="loss").pack(side="left", padx=(0, 2))
            self.loss_var = tk.StringVar(self.frame, loss_label(LEAF_FLOWER_LOSSES[0]))
            self.loss_box = ttk.Combobox(bar, textvariable=self.loss_var, state="readonly", width=13,
                                         values=[loss_label(n) for n in LEAF_FLOWER_LOSSES])
            self.loss_box.pack(side="left", padx=(0, 8))
            self.loss_box.bind("<<ComboboxSelected>>", lambda e: command())
        ttk.Label(bar, text=label).pack(side="left", padx=(0, 2))
        var = tk.StringVar(self.frame, default)
        # the button is packed before the entry so that a narrow window shrinks the entry, not the button
        ttk.Button(bar, text="Compute", command=command).pack(side="right", padx=4)
        entry = ttk.Entry(bar, textvariable=var, width=8 if loss else 26)
        entry.pack(side="left", fill="x", expand=not loss)
        entry.bind("<Return>", lambda e: command())
        # no wrapping: the tables' columns must stay aligned; a narrow window scrolls sideways instead
        text = tk.Text(box, height=1, wrap="none", font=MONO, relief="flat", background="#fafafa",
                       highlightthickness=0, state="disabled")
        scroll = ttk.Scrollbar(box, orient="horizontal", command=text.xview)
        text.configure(xscrollcommand=scroll.set)
        scroll.pack(side="bottom", fill="x")  # packed before the text: a short window squeezes the text
        if expand:  # the last section takes what height is left and scrolls when that is not enough
            yscroll = ttk.Scrollbar(box, orient="vertical", command=text.yview)
            text.configure(yscrollcommand=yscroll.set)
            yscroll.pack(side="right", fill="y")
        text.pack(fill="both", expand=expand, pady=(2, 0))
        self.outputs[label] = text
        return var

    def _show(self, label: str, text: str) -> None:
        """Puts the engine's text into a section's box (sized to its lines) and keeps it read-only."""
        out = self.outputs[label]
        out.configure(state="normal", height=len(text.splitlines()))
        out.delete("1.0", "end")
        out.insert("1.0", text)
        out.configure(state="disabled")

    def _run(self, what: str, label: str, make) -> bool:
        """Shows make()'s text, or one dialog for a person's mistake (the previous text stays); True if shown."""
        try:
            text = make()
        except (InputError, ExplainError, MLPError) as err:
            message = str(err)
            if not isinstance(err, InputError):  # the engine's sentence, told where it came from
                message = f"{message}." if message.startswith(what) else f"{what}: {message}."
            self.app.show_error(f"{self.title}: {message}")
            return False
        self._show(label, text)
        return True

    def compute_zscores(self) -> bool:
        """Recomputes the z-scores of the typed values."""
        return self._run("z-scores", "values",
                         lambda: zscore_text(parse_numbers(self.zscore_var.get(), "z-scores")))

    def compute_norms(self) -> bool:
        """Recomputes BatchNorm and LayerNorm of the typed table."""
        return self._run("grades table", "rows",
                         lambda: norms_text(parse_rows(self.rows_var.get(), "grades table")))

    def compute_mlp(self) -> bool:
        """Recomputes the leaf/flower weight update for the chosen loss and learning rate."""
        def make() -> str:
            lr = parse_numbers(self.lr_var.get(), "leaf or flower, lr")
            if len(lr) != 1 or lr[0] <= 0.0:
                raise InputError(f"leaf or flower: the learning rate must be one positive number, got "
                                 f"{self.lr_var.get()!r}.")
            names = {loss_label(n): n for n in LEAF_FLOWER_LOSSES}
            return mlp_text(names[self.loss_var.get()], lr[0])
        return self._run("leaf or flower", "lr", make)

    def text(self, label: str) -> str:
        """What a section's box shows now ('values', 'rows' or 'lr')."""
        return self.outputs[label].get("1.0", "end-1c")

    def export(self, path: str) -> None:
        """This tab has text, not a figure: says so (the app shows it as the export's error)."""
        raise ValueError("the Worked examples tab has no plot; copy its text instead")
