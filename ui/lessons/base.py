"""What the lesson tabs share: a lesson computed in a thread, then revealed step by step; a toolbar; setters.

A lesson (an optimizer race, the sparse FTRL comparison, a deep MLP) is cheap next to the GPT, so it
is run to the end in a background thread by its spec's `run` (the first run may compile kernels), and
its plain-data frames are shown growing over the plots, blitted (at most `LESSON_BLIT_HZ` a second; the static part
is drawn once per computed lesson, a replay of the same one only blits). A changed setting builds a new config
through the preset rules (`presets.override`, or the lesson's checks for a learner's setting: a bad
value is one dialog) and recomputes the lesson from the start.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
import tkinter as tk
from tkinter import ttk

from matplotlib.transforms import Bbox

from simulator.i18n import N_, _
from simulator.lessons import check, default_config, lesson_for
from simulator.presets import PresetError, override
from ui import relabel
from ui.flow import flow
from ui.plots.base import NOTE_FONT, Blitter, PlotTab, combo, merge_boxes, wrap_to_width
from ui.relabel import Msg

# A replay's blits at most this often. The window polls every 40 ms and the throttle counts from the end of the
# last blit, so the window's `BLIT_HZ` (8: 125 ms) lands a frame on every 4th poll, about 6 a second, and a
# poll or two late under load brings that below 5. 10 (100 ms) lands on every 3rd poll: about 8 a second, with a
# poll to spare (a lesson's frame is a few milliseconds of the Tk thread, so 8 cost the training little).
LESSON_BLIT_HZ = 10.0


class LessonBlitter(Blitter):
    """A `Blitter` that copies a frame to the screen in one copy, the union of what changed.

    Each copy into Tk's image is a Tcl call, and a Tcl call lets the GIL go: while a training thread runs, taking
    it back waits up to a switch interval (5 ms). A lesson's animated artists cover most of its figure, so the
    several copies `Blitter` makes when the union is much larger than the boxes (six on the encoder-decoder tab)
    cost a frame more waiting than the few pixels they save.
    """

    def __init__(self, canvas, artists: list):
        self._also: list = []
        super().__init__(canvas, artists)

    def also_show(self, box) -> None:
        """Copies this box too with the next frame (a part of the background the tab painted again)."""
        self._also.append(box)

    def _on_draw(self, event) -> None:
        if event is None or event.canvas is self.canvas:
            self._also = []  # a full draw put everything on screen
        super()._on_draw(event)

    def _show(self, boxes: list) -> None:
        boxes, self._also = merge_boxes(boxes + self._also), []
        self.canvas.blit(Bbox.union(boxes) if boxes else self.canvas.figure.bbox)

def labelled_combo(parent, msgid: str, values, width: int = 14, command=None):
    """`combo` with its label in the current language, relabelled after a switch (the values stay as typed)."""
    box, var = combo(parent, _(msgid), values, width=width, command=command)
    relabel.text(parent.winfo_children()[-2], msgid)  # combo packs its label just before the box
    return box, var


def error_of(title: str, err) -> str:
    """"Tab: what went wrong" in the current language (an engine's sentence through its catalog)."""
    return _("{title}: {error}").format(title=_(title), error=_(str(err).strip()))


class LessonTab(PlotTab):
    """Subclasses give `draw_static` and `show_until`, and may give `digest`, `steps_of` and toolbar widgets."""

    kind = ""  # set by @lesson_tab
    nested = True  # in the "More lessons" notebook; False: a tab of the window's own
    steps_per_second = 60.0
    blit_hz = LESSON_BLIT_HZ

    def __init__(self, app, notebook):
        super().__init__(app, notebook)
        self.cfg = None
        self.result = None
        self._results: queue.Queue = queue.Queue()
        self.shown = 0
        self.t0 = 0.0
        self.playing = False
        self.blitter = None
        self._static_for = None  # the computed lesson the figure's static part shows
        self._cancel: threading.Event | None = None
        self._thread: threading.Thread | None = None  # the computation in flight, or the last one

    @property
    def lesson(self):
        """The engine's spec of this tab's lesson."""
        return lesson_for(self.kind)

    # ------------------------------------------------------------ subclass hooks
    def build_controls(self, bar: ttk.Frame) -> None:
        """Widgets of the tab's toolbar (subclasses)."""

    def show_config(self, cfg) -> None:
        """Puts a config's values into the toolbar widgets (subclasses)."""

    def digest(self, cfg, frames):
        """What the plots read, made from the lesson's frames (in the background thread); default the frames."""
        return frames

    def draw_static(self) -> list:
        """Draws everything but the growing artists; returns those artists."""
        raise NotImplementedError

    def show_until(self, k: int) -> None:
        """Sets the growing artists to the first k steps."""
        raise NotImplementedError

    def steps_of(self) -> int:
        """How many steps the computed lesson has."""
        return len(self.result)

    # ------------------------------------------------------------ machinery
    def build(self) -> None:
        bar = ttk.Frame(self.frame)
        bar.pack(fill="x", pady=2)
        self.build_controls(bar)
        relabel.text(ttk.Button(bar, command=self.replay), N_("Replay")).pack(side="left", padx=6)
        flow(bar)
        self.note = ttk.Label(self.frame, text="", foreground="#555", justify="left", font=NOTE_FONT)
        self.note.pack(fill="x", padx=4)
        wrap_to_width(self.note)
        self.make_canvas(self.frame)
        if self.cfg is None:
            try:
                self.cfg = default_config(self.lesson)
            except PresetError as err:
                self.app.set_status(Msg(N_("{title}: {error}"), title=Msg(self.title), error=Msg(str(err).strip())),
                                    error=True)
                return
        self.load(self.cfg)

    def load(self, cfg) -> None:
        """Shows a config and computes its lesson in the background."""
        self.cfg = cfg
        if not self.built:
            return
        self.show_config(cfg)
        relabel.keep(self.note, lambda: self.note.configure(text=" ".join(_(cfg.description.strip()).split())))
        self.result, self.shown, self.playing = None, 0, False
        self.cancel()  # a computation of an older config is of no use any more
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._compute, args=(cfg, self._cancel), daemon=True,
                                        name=f"lesson-{self.title}")
        self._thread.start()

    def _compute(self, cfg, cancel: threading.Event) -> None:
        try:
            frames = self.lesson.run(cfg, None, cancel.is_set)
            if cancel.is_set():  # stopped early: nothing to show (and no captions to render for it)
                return
            result = self.digest(cfg, frames)
            if not cancel.is_set():
                self._results.put((cfg, result))
        except Exception as err:  # noqa: BLE001 - handed to the Tk thread: a person's error is shown, a bug re-raised
            self._results.put((cfg, err))

    def wait_stopped(self, deadline: float) -> bool:
        """Waits until the cancelled computation has stopped, or the `time.perf_counter()` deadline passes."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(max(0.0, deadline - time.perf_counter()))
        return thread is None or not thread.is_alive()

    def change(self, path: str, text: str) -> None:
        """A toolbar value changed: check it by the preset rules and recompute."""
        try:
            new = override(self.cfg, flag_names={path: path}, **{path: text})
        except PresetError as err:
            self.app.show_error(error_of(self.title, err))
            self.show_config(self.cfg)
            return
        if new != self.cfg:
            self.load(new)

    def language_changed(self) -> None:
        """After a language switch (fonts set): the figure's static part drawn again in the new language."""
        if not self.built or self.result is None or self._static_for is None or self.blitter is None:
            return
        self.relayout()
        self.blitter.set_artists(self.draw_static())
        self._static_for = self.result
        self.show_until(self.shown)
        self.full_draw()

    def replay(self) -> None:
        """Reveals the computed lesson again from step 0.

        The static part is drawn once per computed lesson; replaying the same one only resets the growing
        artists and blits them (a full draw of a lesson's figure costs hundreds of milliseconds).
        """
        if self.result is None:
            return
        self.shown, self.playing, self.t0 = 0, True, time.perf_counter()
        if self._static_for is not self.result:
            self.relayout()
            artists = self.draw_static()
            if self.blitter is None:
                self.blitter = LessonBlitter(self.canvas, artists)
            else:
                self.blitter.set_artists(artists)
            self._static_for = self.result
            self.show_until(0)
            self.full_draw()
            return
        self.show_until(0)
        self.present()

    def refresh(self, force: bool = False) -> bool:
        if not self.built:
            return False
        try:
            cfg, result = self._results.get_nowait()
        except queue.Empty:
            cfg, result = None, None
        if cfg is not None and cfg is self.cfg:
            if isinstance(result, PresetError):
                self.app.show_error(error_of(self.title, result))
            elif isinstance(result, Exception):
                raise result
            else:
                self.result = result
                self.replay()
                return True
        if self.result is None or not (self.playing or force):
            return False
        if not force and not self.can_blit():
            return False
        n = self.steps_of()
        k = min(n, int((time.perf_counter() - self.t0) * self.steps_per_second))
        if k == self.shown and not force:
            return False
        self.shown = k
        self.show_until(k)
        if k >= n:
            self.playing = False
        return self.present(force=force)


class LearnersTab(LessonTab):
    """A lesson of several learners (`cfg.optimizers`): a toolbar to pick one and set one optimizer field."""

    learner_field = "lr"  # the OptimConfig field the toolbar sets (a setting's name, as typed)
    learner_label = N_("learner")

    def build_learner_setter(self, bar: ttk.Frame) -> None:
        """The learner choice, an entry for its `learner_field` and a Set button."""
        self.learner_box, self.learner_var = labelled_combo(bar, self.learner_label, [], width=14,
                                                            command=self.show_learner)
        ttk.Label(bar, text=self.learner_field).pack(side="left", padx=(6, 2))
        self.value_var = tk.StringVar(self.frame)
        entry = ttk.Entry(bar, textvariable=self.value_var, width=8)
        entry.pack(side="left")
        entry.bind("<Return>", lambda e: self.set_learner_value())
        relabel.text(ttk.Button(bar, command=self.set_learner_value), N_("Set")).pack(side="left", padx=2)

    def show_config(self, cfg) -> None:
        labels = [e.label for e in cfg.optimizers]
        self.learner_box.configure(values=labels)
        if self.learner_var.get() not in labels:
            self.learner_var.set(labels[0])
        self.show_learner()

    def show_learner(self) -> None:
        """Shows the chosen learner's value of the field."""
        entry = next((e for e in self.cfg.optimizers if e.label == self.learner_var.get()), None) if self.cfg else None
        if entry is not None:
            self.value_var.set(f"{getattr(entry.optim, self.learner_field):g}")

    def set_learner_value(self) -> None:
        """Gives the chosen learner the typed value, checked by the lesson's rules, and recomputes."""
        label, text, name = self.learner_var.get(), self.value_var.get(), self.learner_field
        try:
            value = float(text)
        except ValueError:
            self.app.show_error(_("{title}: {name} of {label} must be a number, got {text!r}.").format(
                title=_(self.title), name=name, label=label, text=text))
            return
        entries = tuple(dataclasses.replace(e, optim=dataclasses.replace(e.optim, **{name: value}))
                        if e.label == label else e for e in self.cfg.optimizers)
        new = dataclasses.replace(self.cfg, optimizers=entries)
        try:
            check(new)  # names the learner and the field
        except PresetError as err:
            self.app.show_error(error_of(self.title, err))
            self.show_learner()
            return
        self.load(new)
