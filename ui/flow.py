"""A toolbar whose widgets flow onto a second row when one row is wider than the window gives it.

Tk's packer squeezes the widgets packed last when a row is too wide: on a 1024-pixel screen, in Chinese, the
encoder-decoder lesson's seed entry and Replay button got no pixels at all. `flow(bar)` keeps the bar's
widgets as they were packed (side="left", in order) while they fit; when they do not, it moves them into rows
inside the bar, breaking only before a label (a label and the entry or box after it stay together).
"""

from __future__ import annotations

from tkinter import ttk


def _groups(widgets: list) -> list[list]:
    """The widgets cut before each label: what stays on one row."""
    out: list[list] = []
    for w in widgets:
        if not out or w.winfo_class() in ("TLabel", "Label"):
            out.append([])
        out[-1].append(w)
    return out


def _width(w, options: dict) -> int:
    pad = options.get("padx", 0)
    pad = sum(pad) if isinstance(pad, tuple) else 2 * int(pad)
    return w.winfo_reqwidth() + pad


def rows_for(groups: list[list], widths: dict, width: int) -> list[list]:
    """The groups filled into rows of at most `width` pixels, in order (a group wider than that gets a row)."""
    rows: list[list] = [[]]
    used = 0
    for group in groups:
        need = sum(widths[w] for w in group)
        if rows[-1] and used + need > width:
            rows.append([])
            used = 0
        rows[-1].extend(group)
        used += need
    return rows


class Flow:
    """Lays `bar`'s packed widgets out in as few rows as its width allows (see the module's note)."""

    def __init__(self, bar: ttk.Frame):
        self.bar = bar
        self.widgets = list(bar.pack_slaves())
        self.options = {w: _options(w.pack_info()) for w in self.widgets}
        self.frames: list[ttk.Frame] = []  # row frames made so far (kept: made once, unpacked when not needed)
        self.rows = 1  # how many rows the widgets are laid out in now
        self.layout: list[int] = [len(self.widgets)]  # the number of widgets in each row
        self._pending = None
        # looked at once Tk is idle, not inside the event: moving widgets between masters while Tk delivers a
        # <Configure> of one of them is asking for trouble
        bar.bind("<Configure>", lambda e: self._request(), add="+")
        for w in self.widgets:  # a label in another language asks for another width while the bar's stays
            w.bind("<Configure>", lambda e: self._request(), add="+")

    def _request(self) -> None:
        if self._pending is None:
            self._pending = self.bar.after_idle(self._fit_now)

    def _fit_now(self) -> None:
        self._pending = None
        if self.bar.winfo_exists() and self.bar.winfo_width() > 1:  # 1: not laid out yet
            self.fit(self.bar.winfo_width())

    def fit(self, width: int) -> None:
        widths = {w: _width(w, self.options[w]) for w in self.widgets}
        rows = rows_for(_groups(self.widgets), widths, width) if sum(widths.values()) > width else [self.widgets]
        layout = [len(r) for r in rows]
        if layout == self.layout:
            return
        self.layout, self.rows = layout, len(rows)
        for w in self.widgets:
            w.pack_forget()
        for frame in self.frames:
            frame.pack_forget()
        if len(rows) == 1:
            for w in self.widgets:
                w.pack(in_=self.bar, **self.options[w])
            return
        while len(self.frames) < len(rows):
            self.frames.append(ttk.Frame(self.bar))
        for frame, row in zip(self.frames, rows, strict=False):
            frame.pack(in_=self.bar, side="top", fill="x")
            for w in row:
                w.pack(in_=frame, **self.options[w])
                w.lift(frame)  # the row, made after the widget, would otherwise be drawn over it


def _options(info: dict) -> dict:
    """A widget's pack options, as `pack()` takes them again (without its container)."""
    keep = ("side", "padx", "pady", "ipadx", "ipady", "fill", "expand", "anchor")
    out = {k: info[k] for k in keep if k in info}
    for k in ("padx", "pady"):  # Tk gives 6, (6, 2) or "6 2"
        v = out.get(k)
        if v is not None:
            parts = [int(float(str(p))) for p in (v.split() if isinstance(v, str) else
                                                  v if isinstance(v, tuple | list) else [v])]
            out[k] = tuple(parts) if len(parts) == 2 else parts[0]
    return out


def flow(bar: ttk.Frame) -> Flow:
    """Call once the bar's widgets are packed."""
    return Flow(bar)
