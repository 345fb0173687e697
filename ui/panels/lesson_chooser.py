"""The "More lessons" page: a notebook of the smaller lessons whose row of tabs is a chooser.

A row of fourteen tabs does not fit a notebook 760 pixels wide (a 1024-pixel window beside the controls):
ttk squeezes the tabs and cuts every title ("Knowledge d", "Long cc"). The chooser, a read-only combobox,
shows the whole title of the lesson on screen and lists the others, in the window's language. The lessons
stay the notebook's pages: selecting one, from the chooser, the View menu or a preset, is `book.select`.
"""

from __future__ import annotations

import tkinter as tk
from tkinter import ttk

from simulator.i18n import N_, _
from ui import relabel

HIDDEN_TABS = "Chooser.TNotebook"  # a notebook style whose tab row has no elements: nothing is drawn for it


class LessonChooser(ttk.Frame):
    """A combobox of lesson titles over a notebook (`book`) whose own tab row is hidden."""

    def __init__(self, master, width: int = 44):
        super().__init__(master)
        row = ttk.Frame(self, padding=(6, 4, 6, 2))
        row.pack(fill="x")
        relabel.text(ttk.Label(row), N_("Lesson")).pack(side="left", padx=(0, 4))
        self.var = tk.StringVar(self)
        self.box = ttk.Combobox(row, textvariable=self.var, state="readonly", width=width)
        self.box.pack(side="left")
        self.box.bind("<<ComboboxSelected>>", lambda e: self._chosen())
        ttk.Style(self).layout(f"{HIDDEN_TABS}.Tab", [])
        self.book = ttk.Notebook(self, style=HIDDEN_TABS)
        self.book.pack(fill="both", expand=True)
        self.book.bind("<<NotebookTabChanged>>", lambda e: self.show_current(), add="+")
        self.pages: list[tuple[tk.Widget, str]] = []  # (frame, title msgid), in the notebook's order

    def add(self, frame, title: str) -> None:
        """A lesson's page, titled by the msgid `title` (shown translated, here and in the notebook)."""
        self.book.add(frame, text=_(title))
        self.pages.append((frame, title))
        relabel.keep(self.box, self._retranslate, key="values")  # one entry: the last one covers every page

    def _retranslate(self) -> None:
        for frame, title in self.pages:
            self.book.tab(frame, text=_(title))
        self.box.configure(values=[_(title) for _frame, title in self.pages])
        self.show_current()

    def show_current(self) -> None:
        """The chooser names the page on screen."""
        try:
            current = self.nametowidget(self.book.select())
        except (tk.TclError, KeyError):  # no page yet
            return
        for i, (frame, _title) in enumerate(self.pages):
            if frame is current:
                self.box.current(i)
                return

    def _chosen(self) -> None:
        i = self.box.current()
        if 0 <= i < len(self.pages):
            self.book.select(self.pages[i][0])
