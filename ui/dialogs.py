"""The window's small dialogs that show results: the gradient check's table."""

from __future__ import annotations

import tkinter as tk
from tkinter import ttk


def gradcheck_window(root: tk.Tk, rows) -> tk.Toplevel:
    """A window listing each checked entry: analytic vs numeric gradient and their relative error."""
    win = tk.Toplevel(root)
    win.title("Gradient check")
    win.transient(root)
    ttk.Label(win, text="analytic gradient (backward pass, float64 twin of the model) vs central difference "
              "(eps 1e-6), on the current batch; rel. error = |a - n| / max(1, |a|, |n|)", wraplength=620,
              padding=6).pack(fill="x")
    cols = ("index", "analytic", "numeric", "rel_err")
    table = ttk.Treeview(win, columns=cols, height=min(12, len(rows)))
    table.heading("#0", text="tensor")
    for c in cols:
        table.heading(c, text=c.replace("_", ". "))
        table.column(c, width=120, anchor="e")
    for r in rows:
        table.insert("", "end", text=r.tensor, values=(r.index, f"{r.analytic:.9g}", f"{r.numeric:.9g}",
                                                       f"{r.rel_err:.2e}"))
    table.pack(fill="both", expand=True, padx=6, pady=6)
    ttk.Button(win, text="Close", command=win.destroy).pack(pady=(0, 6))
    return win
