"""A frame that never shrinks below a smallest size: when its window is smaller, scrollbars reach the rest.

`ScrollArea(root, smallest)` fills `root`; build the window's widgets on `area.inner`. The inner frame
always gets the whole visible area, and at least `smallest` pixels: on a screen smaller than the
smallest usable layout the layout keeps that size and the scrollbars (shown only then) reach every part
of it. The mouse wheel with Shift (horizontal) or Alt (vertical) scrolls it too, so plots keep their own
wheel.
"""

from __future__ import annotations

import tkinter as tk
from tkinter import ttk


class ScrollArea(ttk.Frame):
    """A canvas holding one frame (`inner`) at max(visible size, smallest), with scrollbars when it overflows."""

    def __init__(self, master, smallest: tuple[int, int]):
        super().__init__(master)
        self.smallest = smallest
        self.canvas = tk.Canvas(self, highlightthickness=0, borderwidth=0)
        self.xbar = ttk.Scrollbar(self, orient="horizontal", command=self.canvas.xview)
        self.ybar = ttk.Scrollbar(self, orient="vertical", command=self.canvas.yview)
        self.canvas.configure(xscrollcommand=self.xbar.set, yscrollcommand=self.ybar.set)
        self.inner = ttk.Frame(self.canvas)
        self._item = self.canvas.create_window(0, 0, window=self.inner, anchor="nw")
        self.canvas.grid(row=0, column=0, sticky="nsew")
        self.rowconfigure(0, weight=1)
        self.columnconfigure(0, weight=1)
        self._shown = {"x": False, "y": False}
        self.bind("<Configure>", lambda e: self._fit())
        for seq, axis in (("<Alt-MouseWheel>", "y"), ("<Shift-MouseWheel>", "x"), ("<Alt-Button-4>", "y"),
                          ("<Alt-Button-5>", "y"), ("<Shift-Button-4>", "x"), ("<Shift-Button-5>", "x")):
            self.bind_all(seq, lambda e, a=axis: self._wheel(e, a), add="+")

    def set_smallest(self, smallest: tuple[int, int]) -> None:
        """A new smallest size (pixels) of the inner frame."""
        self.smallest = smallest
        self._fit()

    @property
    def overflows(self) -> tuple[bool, bool]:
        """(horizontally, vertically): whether the inner frame is larger than what shows, so it scrolls."""
        return self._shown["x"], self._shown["y"]

    def _fit(self, event=None) -> None:
        """The inner frame takes the visible area, but never less than the smallest size; bars where it overflows."""
        W, H = self.winfo_width(), self.winfo_height()  # the whole area, bars included
        if W <= 1 or H <= 1:  # not laid out yet: the inner frame asks for its smallest size
            W, H = self.smallest
        bw, bh = self.ybar.winfo_reqwidth(), self.xbar.winfo_reqheight()
        need_x, need_y = W < self.smallest[0], H < self.smallest[1]
        need_x = need_x or (need_y and W - bw < self.smallest[0])  # one bar's room can make the other needed
        need_y = need_y or (need_x and H - bh < self.smallest[1])
        self._show("x", need_x)
        self._show("y", need_y)
        w = max(W - (bw if need_y else 0), self.smallest[0])
        h = max(H - (bh if need_x else 0), self.smallest[1])
        self.canvas.itemconfigure(self._item, width=w, height=h)
        self.canvas.configure(scrollregion=(0, 0, w, h))

    def _show(self, axis: str, on: bool) -> None:
        if on == self._shown[axis]:
            return
        self._shown[axis] = on
        bar = self.xbar if axis == "x" else self.ybar
        if on:
            bar.grid(row=1, column=0, sticky="ew") if axis == "x" else bar.grid(row=0, column=1, sticky="ns")
        else:
            bar.grid_remove()

    def _wheel(self, event, axis: str):
        if not self._shown[axis]:
            return None
        step = -1 if getattr(event, "num", 0) == 4 or getattr(event, "delta", 0) > 0 else 1
        (self.canvas.xview_scroll if axis == "x" else self.canvas.yview_scroll)(step * 3, "units")
        return "break"

    def see(self, widget) -> None:
        """Scrolls so that `widget` (inside the inner frame) is in view as far as it fits."""
        self.update_idletasks()
        total_w, total_h = max(1, self.inner.winfo_width()), max(1, self.inner.winfo_height())
        x = widget.winfo_rootx() - self.inner.winfo_rootx()
        y = widget.winfo_rooty() - self.inner.winfo_rooty()
        self.canvas.xview_moveto(x / total_w)
        self.canvas.yview_moveto(y / total_h)
