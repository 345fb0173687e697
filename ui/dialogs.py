"""The window's small dialogs that show results: the gradient check's table."""

from __future__ import annotations

import tkinter as tk
from tkinter import font as tkfont
from tkinter import ttk

from simulator.i18n import N_, _
from ui import relabel

CELL_PAD = 8  # pixels each side of a cell's text: the theme pads a cell by 4, the rest is air between columns
COLUMNS = (("tensor", N_("tensor"), "w"), ("index", N_("index"), "e"), ("analytic", N_("analytic"), "e"),
           ("numeric", N_("numeric"), "e"), ("rel_err", N_("rel. error"), "e"))  # (name, heading, anchor)


def style_font(widget, style: str) -> tkfont.Font:
    """The font a ttk style draws its text in (its theme's, or Tk's default font)."""
    spec = ttk.Style(widget).lookup(style, "font") or "TkDefaultFont"
    try:
        return tkfont.nametofont(spec, root=widget)
    except tk.TclError:  # a font description rather than a named font
        return tkfont.Font(root=widget, font=spec)


def gradcheck_cells(rows) -> list[tuple[str, ...]]:
    """The table's text, row by row, in the order of COLUMNS."""
    return [(r.tensor, str(r.index), f"{r.analytic:.9g}", f"{r.numeric:.9g}", f"{r.rel_err:.2e}") for r in rows]


INTRO = N_("analytic gradient (backward pass, float64 twin of the model) vs central difference (eps 1e-6), on the "
           "current batch; rel. error = |a - n| / max(1, |a|, |n|)")


def gradcheck_window(root: tk.Tk, rows) -> tk.Toplevel:
    """A window listing each checked entry: analytic vs numeric gradient and their relative error.

    Its words follow a language switch while it is open (title, intro, headings, button); the columns
    are measured again then, since a heading's width changes with its language."""
    win = tk.Toplevel(root)
    relabel.keep(win, lambda: win.title(_("Gradient check")), key="title")
    win.transient(root)
    intro = ttk.Label(win, padding=6)
    intro.pack(fill="x")
    cells = gradcheck_cells(rows)
    table = win.table = ttk.Treeview(win, columns=[c[0] for c in COLUMNS], show="headings",
                                     height=max(1, min(12, len(rows))))
    for row in cells:
        table.insert("", "end", values=row)

    def label() -> None:
        # each column as wide as its longest text in the font it is drawn in, so no number is cut off
        body, heading = style_font(table, "Treeview"), style_font(table, "Heading")
        total = 0
        for i, (name, title, anchor) in enumerate(COLUMNS):
            width = max([heading.measure(_(title))] + [body.measure(row[i]) for row in cells]) + 2 * CELL_PAD
            table.heading(name, text=_(title), anchor=anchor)
            table.column(name, width=width, minwidth=width, stretch=False, anchor=anchor)
            total += width
        intro.configure(text=_(INTRO), wraplength=max(420, total))

    relabel.keep(table, label)
    table.pack(fill="both", expand=True, padx=6, pady=6)
    relabel.text(ttk.Button(win, command=win.destroy), N_("Close")).pack(pady=(0, 6))
    return win
