"""A hover tooltip for any Tk widget: what a control does and which lesson it belongs to."""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable

from simulator.i18n import _

DELAY_MS = 450


class Tooltip:
    """Shows `text` in a small borderless window after the pointer rests on `widget`.

    `text` is a message (mark it `N_`), translated when shown, or a function giving the text: either way the
    tooltip speaks the language of the moment it opens.
    """

    def __init__(self, widget: tk.Widget, text: str | Callable[[], str], wraplength: int = 340):
        self.widget, self.text, self.wraplength = widget, text, wraplength
        self._after: str | None = None
        self._tip: tk.Toplevel | None = None
        widget.bind("<Enter>", self._schedule, add="+")
        widget.bind("<Leave>", self._hide, add="+")
        widget.bind("<ButtonPress>", self._hide, add="+")

    def _schedule(self, _event=None) -> None:
        self._cancel()
        self._after = self.widget.after(DELAY_MS, self.show)

    def _cancel(self) -> None:
        if self._after is not None:
            self.widget.after_cancel(self._after)
            self._after = None

    def show(self) -> None:
        """Opens the tooltip below the widget."""
        if self._tip is not None or not self.widget.winfo_exists():
            return
        x = self.widget.winfo_rootx() + 12
        y = self.widget.winfo_rooty() + self.widget.winfo_height() + 4
        self._tip = tip = tk.Toplevel(self.widget)
        tip.wm_overrideredirect(True)
        tip.wm_geometry(f"+{x}+{y}")
        tk.Label(tip, text=self.shown_text(), justify="left", background="#ffffe8", relief="solid", borderwidth=1,
                 wraplength=self.wraplength, padx=6, pady=4).pack()

    def shown_text(self) -> str:
        """The text in the current language."""
        return self.text() if callable(self.text) else _(self.text)

    def _hide(self, _event=None) -> None:
        self._cancel()
        if self._tip is not None:
            self._tip.destroy()
            self._tip = None
