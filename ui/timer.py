"""A callback that the Tk loop calls again and again, registered with Tcl once.

tkinter's `widget.after(ms, func)` creates a Tcl command for `func` on every call and deletes it once it
ran. While training runs, that costs the Tk thread 0.1-0.5 ms a call (the GIL is the training thread's
between kernels), and the window's loops call it dozens of times a second: the 40 ms poll, the watch on a
figure drawing in the background, the window benchmark's 10 ms heartbeat. A `Timer` registers its callback
once, and each `start` is one plain `after` call.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable


class Timer:
    """`start(ms)` schedules `func` once, `ms` milliseconds from now; `cancel()` drops what is scheduled."""

    def __init__(self, widget: tk.Misc, func: Callable[[], object]):
        self.widget = widget
        self.name = widget.register(func)  # deleted with the widget (tkinter keeps the names it registered)
        self.pending: str | None = None

    def start(self, ms: int) -> None:
        self.pending = self.widget.tk.call("after", int(ms), self.name)

    def cancel(self) -> None:
        if self.pending is not None:
            try:
                self.widget.tk.call("after", "cancel", self.pending)
            except tk.TclError:  # the interpreter is gone
                pass
            self.pending = None
