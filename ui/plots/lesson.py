"""What the small-lesson tabs share: compute a whole lesson in a thread, then reveal it step by step.

A lesson (the sparse FTRL comparison, a deep MLP) is cheap next to the GPT, so it is run to the end
in a background thread (the first run may compile kernels) and its plain-data results are shown
growing over the plots, blitted. A changed setting builds a new config through the preset rules
(`presets.override`: a bad value is one dialog) and recomputes the lesson from the start.
"""

from __future__ import annotations

import queue
import threading
import time
from tkinter import ttk

from simulator.presets import PresetError, override
from ui.plots.base import NOTE_FONT, Blitter, PlotTab


class LessonTab(PlotTab):
    """Subclasses give `default_preset`, `errors`, `compute`, `draw_static`, `show_until` and `steps_of`."""

    default_preset = ""
    errors: tuple = ()
    steps_per_second = 60.0

    def __init__(self, app, notebook):
        super().__init__(app, notebook)
        self.cfg = None
        self.result = None
        self._results: queue.Queue = queue.Queue()
        self.shown = 0
        self.t0 = 0.0
        self.playing = False
        self.blitter = None
        self._cancel: threading.Event | None = None

    # ------------------------------------------------------------ subclass hooks
    def load_default(self):
        """The config shown before any preset of this kind is opened."""
        raise NotImplementedError

    def build_controls(self, bar: ttk.Frame) -> None:
        """Widgets of the tab's toolbar (subclasses)."""

    def show_config(self, cfg) -> None:
        """Puts a config's values into the toolbar widgets (subclasses)."""

    def compute(self, cfg, cancelled):
        """Runs the whole lesson (in a background thread; stop early when cancelled() is True); plain data."""
        raise NotImplementedError

    def draw_static(self) -> list:
        """Draws everything but the growing artists; returns those artists."""
        raise NotImplementedError

    def show_until(self, k: int) -> None:
        """Sets the growing artists to the first k steps."""
        raise NotImplementedError

    def steps_of(self) -> int:
        """How many steps the computed lesson has."""
        raise NotImplementedError

    # ------------------------------------------------------------ machinery
    def build(self) -> None:
        bar = ttk.Frame(self.frame)
        bar.pack(fill="x", pady=2)
        self.build_controls(bar)
        ttk.Button(bar, text="Replay", command=self.replay).pack(side="left", padx=6)
        self.note = ttk.Label(self.frame, text="", foreground="#555", justify="left", font=NOTE_FONT)
        self.note.pack(fill="x", padx=4)
        self.note.bind("<Configure>", lambda e: self.note.configure(wraplength=max(200, e.width - 8)))
        self.make_canvas(self.frame)
        if self.cfg is None:
            try:
                self.cfg = self.load_default()
            except (PresetError, *self.errors) as err:
                self.app.set_status(f"{self.title}: {err}", error=True)
                return
        self.load(self.cfg)

    def load(self, cfg) -> None:
        """Shows a config and computes its lesson in the background."""
        self.cfg = cfg
        if not self.built:
            return
        self.show_config(cfg)
        self.note.configure(text=" ".join(cfg.description.split()))
        self.result, self.shown, self.playing = None, 0, False
        self.cancel()  # a computation of an older config is of no use any more
        self._cancel = threading.Event()
        threading.Thread(target=self._compute, args=(cfg, self._cancel), daemon=True,
                         name=f"lesson-{self.title}").start()

    def _compute(self, cfg, cancel: threading.Event) -> None:
        try:
            result = self.compute(cfg, cancel.is_set)
            if not cancel.is_set():
                self._results.put((cfg, result))
        except Exception as err:  # noqa: BLE001 - handed to the Tk thread: a person's error is shown, a bug re-raised
            self._results.put((cfg, err))

    def change(self, path: str, text: str) -> None:
        """A toolbar value changed: check it by the preset rules and recompute."""
        try:
            new = override(self.cfg, flag_names={path: path}, **{path: text})
        except PresetError as err:
            self.app.show_error(f"{self.title}: {err}")
            self.show_config(self.cfg)
            return
        if new != self.cfg:
            self.load(new)

    def replay(self) -> None:
        """Reveals the computed lesson again from step 0."""
        if self.result is not None:
            self.shown, self.playing, self.t0 = 0, True, time.perf_counter()
            self.relayout()
            self.blitter = Blitter(self.canvas, self.draw_static())
            self.show_until(0)
            self.full_draw()

    def refresh(self, force: bool = False) -> bool:
        if not self.built:
            return False
        try:
            cfg, result = self._results.get_nowait()
        except queue.Empty:
            cfg, result = None, None
        if cfg is not None and cfg is self.cfg:
            if isinstance(result, self.errors):
                self.app.show_error(f"{self.title}: {result}")
            elif isinstance(result, Exception):
                raise result
            else:
                self.result = result
                self.replay()
                return True
        if self.result is None or not (self.playing or force):
            return False
        n = self.steps_of()
        k = min(n, int((time.perf_counter() - self.t0) * self.steps_per_second))
        if k == self.shown and not force:
            return False
        self.shown = k
        self.show_until(k)
        if k >= n:
            self.playing = False
        if force or not self.blitter.blit():
            self.full_draw()
        else:
            self.blits += 1
        return True
