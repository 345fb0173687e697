"""The window: the run's state as the window knows it, and the commands, over a worker-thread session.

`launch(preset_path)` opens it (the `python main.py` entry); `build_app(root, preset_path)` builds it
on a given Tk root so tests can drive it with `invoke()` and `root.update()`. The `App` composes the
widgets (`app.layout`, a `WindowLayout`), the file actions (`app.files`), the `Worker` and a `Bus`.

Flow: a control reports (dotted path, text) -> `presets.override` checks it and builds a new config
(a bad value is one dialog, nothing else changes) -> a live change goes to the session on its next
step (`Apply`), a structural one asks before it discards the run and then rebuilds (`Rebuild`). Every
`POLL_MS` the main loop drains the worker's messages onto the bus: the app's handlers update its state
and the bounded history, each tab takes the messages it subscribed to; then only the visible tab redraws.
"""

from __future__ import annotations

import sys
import time
import tkinter as tk
from dataclasses import replace
from tkinter import messagebox

from simulator.api import backend_unavailable
from simulator.config import RunConfig, is_structural_change
from simulator.i18n import N_, _, language, on_language_change
from simulator.i18n import set_language as switch_language
from simulator.presets import DEFAULT_PRESET, PresetError, find_preset, load_any, override
from ui import relabel
from ui.dialogs import gradcheck_window
from ui.files import FileActions
from ui.fonts import Fonts
from ui.history import PinnedRun, RunHistory
from ui.language import startup_language, write_language
from ui.layout import TITLE, WindowLayout
from ui.panels.controls import SPECS
from ui.protocol import (
    Applied,
    Apply,
    Bus,
    CheckpointSaved,
    ConfigKept,
    Diverged,
    Error,
    Fatal,
    Generate,
    Generated,
    Generating,
    GradCheck,
    GradChecked,
    Pause,
    Phase,
    Ready,
    Rebuild,
    Record,
    Reset,
    Rewind,
    Rewound,
    Run,
    Running,
    SnapshotSteps,
    Speed,
    StatisticsRate,
    Status,
    Step,
    StepInto,
    Watch,
)
from ui.relabel import Msg, composed
from ui.timer import Timer
from ui.window_geometry import (
    WindowState,
    apply_scale,
    make_dpi_aware,
    on_screen,
    opening_size,
    parse_geometry,
    read_state,
    state_path,
    usable_area,
    write_state,
)
from ui.worker import Worker, drain

POLL_MS = 40
STATUS_EVERY_POLLS = 5  # while running, the status line's step, loss and speed follow 5 times a second
MAX_PINS = 4
GRADCHECK_TENSORS = ("wte", "h0.attn.qkv.w", "h0.mlp.fc.w", "norm_f.w", "h0.norm1.w")
STOP_WAIT_S = 5.0  # how long closing the window waits for cancelled lesson computations to stop


class App:
    """The desktop lab on one Tk root: the run's state as the window knows it, its commands, its worker."""

    def __init__(self, root: tk.Tk, config: RunConfig, preset_path: str | None = None, lesson=None,
                 snapshot_every: int = 10, remember: bool = False):
        self.root = root
        self.remember = remember  # read and write the window's last size and position (the real app; not tests)
        self.config = config
        self.preset_path = preset_path
        self.info: Ready | None = None  # the current session
        self.watch = Watch()  # what the probes read: the tabs choose it, the worker is told (set_watch)
        self.history = RunHistory()
        self.pins: list[PinnedRun] = []
        self.running = False
        self.generating = False
        self.step_count = 0
        self.phase_log: list[str] = []  # phase names seen under Step into (tests read it)
        self.in_step = False  # Step into has started a step that is not finished
        self.gradcheck_rows: list = []
        self.snapshot_steps: list[int] = []
        self.message = ""
        self.diverged: str | None = None
        self.closed = False
        self.polls = 0
        # dialogs go through these two, so a test can answer them
        self.show_error = lambda text: messagebox.showerror(TITLE, text, parent=self.root)
        self.ask = lambda title, text: messagebox.askyesno(title, text, parent=self.root)

        root.title(f"{TITLE} - {config.name}")
        if remember:  # the person's last choice in View → Language (the real app; tests choose their own)
            switch_language(startup_language())
        self.language = language()
        self.fonts = Fonts(root)
        font_note = self.fonts.apply(self.language)
        self.bus = Bus()
        for kind, handler in self._handlers():  # the app's own state first, then the tabs that draw it
            self.bus.subscribe(kind, handler)
        self.files = FileActions(self)
        self.open_preset_dialog = self.files.open_preset_dialog  # the race tab's toolbar offers it
        self.scale = apply_scale(root)  # before any widget: fonts and figures follow the screen's density
        self.layout = WindowLayout(root, self, self.scale, usable_area(root))  # the tabs subscribe to what they draw
        self._place_window()
        self.bus.subscribe(Ready, self._show_ready)
        if lesson is not None:  # a preset of another kind (a race, a small lesson): its tab, beside the default run
            root.after_idle(lambda: self.files.show_lesson(lesson))
        self.worker = Worker(config, snapshot_every=snapshot_every)
        self.worker.start()
        self.set_status(Msg(N_("building the model (the first launch compiles kernels: a few seconds)")))
        if font_note:
            self.set_status(Msg(font_note))
        # a switch relabels the widgets in place: the worker and its session never notice (ui/relabel.py)
        self._unlisten = on_language_change(self._language_changed)
        self._poll_timer = Timer(root, self.poll)
        self._poll_timer.start(POLL_MS)

    # ================================================================== the language
    def set_language(self, code: str) -> None:
        """View → Language: the window speaks `code` from now on, the run going on; the choice is remembered."""
        switch_language(code)  # tells `_language_changed` (and any other window of this process)
        if self.remember:
            write_language(language())

    def _language_changed(self, code: str) -> None:
        if self.closed:
            return
        self.language = code
        note = self.fonts.apply(code)  # before the figures rebuild their text in the new fonts
        self.layout.relabel_all()
        for tab in self.layout.tabs:
            changed = getattr(tab, "language_changed", None)
            if changed is not None:
                changed()
        if note:
            self.set_status(Msg(note))

    # ================================================================== where the window opens
    def _place_window(self) -> None:
        """The default (or remembered) size where it fits the screen, else the screen's usable size; on screen."""
        lay = self.layout
        state = read_state(state_path()) if self.remember else None
        remembered = state.size_at(self.scale) if state is not None else None
        size = opening_size(lay.usable, lay.default_size, lay.smallest, remembered)
        lay.resize(*size)
        if state is not None:  # a corner off this screen (another monitor, a smaller screen) is pulled back on
            x, y = on_screen((state.x, state.y), size, lay.usable)
            self.root.geometry(f"+{x}+{y}")
        elif size != lay.default_size:  # a fitted window starts at the usable area's corner, not off its edge
            self.root.geometry(f"+{lay.usable.x}+{lay.usable.y}")

    def window_state(self) -> WindowState | None:
        """The window's size (menu bar included) and corner now, as `window.json` keeps them."""
        try:
            self.root.update_idletasks()
            geo = parse_geometry(self.root.wm_geometry())
        except tk.TclError:
            return None
        if geo is None:
            return None
        w, h, x, y = geo
        return WindowState(w, h + self.layout.menu_height, x, y, self.scale)

    def _remember_window(self) -> None:
        state = self.window_state() if self.remember else None
        if state is not None:
            write_state(state_path(), state)  # a folder that cannot be written: the window simply forgets

    # ================================================================== the loop
    def poll(self) -> None:
        """Drains the worker's messages onto the bus, and redraws the visible tab."""
        if self.closed:
            return
        self.polls += 1
        self.layout.measure_menu()
        try:
            for msg in drain(self.worker.out):
                self.bus.publish(msg)
            if not self.running or self.polls % STATUS_EVERY_POLLS == 0:  # a label nobody reads 25 times a second
                self.layout.show_progress(self.step_count, self.history)
            tab = self.layout.current_tab()
            if tab is not None and not tab.drawing():  # a tab still drawing is refreshed on a later poll
                tab.refresh()
        finally:  # a bug in one draw must not stop the window from following the run
            self._poll_timer.start(POLL_MS)

    # ================================================================== the worker's messages
    def _handlers(self):
        return ((Record, self._on_record), (Phase, self._on_phase), (Ready, self._on_ready),
                (Running, self._on_running), (Diverged, self._on_diverged), (Error, self._on_error),
                (Fatal, lambda m: self.set_status(Msg(N_("no model could be built: {text}"), text=Msg(m.text.strip())),
                                                  error=True)),
                (ConfigKept, lambda m: self.set_config(m.config)), (Applied, self._on_applied),
                (SnapshotSteps, self._on_snapshots), (Rewound, self._on_rewound),
                (Status, lambda m: self.set_status(Msg(m.text.strip(), **m.fields))), (Generating, self._on_generating),
                (Generated, lambda m: self.set_status(Msg(N_("generated {n} characters"), n=len(m.text)))),
                (GradChecked, self._on_gradcheck),
                (CheckpointSaved, lambda m: self.set_status(Msg(N_("checkpoint saved to {path}"), path=m.path))))

    def _on_record(self, msg: Record) -> None:
        rec = msg.record
        self.history.add(rec)
        self.in_step = False
        if rec.nonfinite is None:
            self.step_count = rec.step
        if not self.running:
            self.layout.show_phase(Msg(N_("phase -")))

    def _on_phase(self, view: Phase) -> None:
        self.phase_log.append(view.name)
        self.in_step = not view.last
        self.layout.show_phase(Msg(N_("phase {index}/{count} {name}"), index=view.index + 1, count=view.count,
                                   name=view.name))

    def _on_ready(self, info: Ready) -> None:
        self.info = info
        self.config = info.config
        self.watch = self.watch.fit(info.tensor_names, info.activation_sites, info.n_layer, info.batch_size)
        self.history = RunHistory()
        self.step_count = info.step
        self.diverged = None
        self.phase_log = []
        self.in_step = False
        self.running = False
        self.layout.show_session(info.config.name)
        self.set_config(info.config)

    def _show_ready(self, info: Ready) -> None:
        self.set_status(Msg(N_("ready: {params:,} parameters, {phases} phases a step, on {backend}"),
                            params=info.n_params, phases=len(info.phase_names), backend=composed(*info.backend_msg)))
        tab = self.layout.current_tab()
        if tab is not None:
            tab.refresh(force=True)

    def _on_running(self, msg: Running) -> None:
        self.running = msg.on
        self.layout.show_running(msg.on)
        if msg.on:
            self.set_status(Msg(N_("training")))
        elif not self.diverged:
            self.set_status(Msg(N_("paused")))

    def _on_diverged(self, msg: Diverged) -> None:
        self.diverged = msg.sentence
        self.set_status(Msg(msg.sentence.strip()), error=True)

    def _on_error(self, msg: Error) -> None:
        self.set_status(Msg(msg.text.strip()), error=True)
        self.show_error(_(msg.text.strip()))

    def _on_applied(self, msg: Applied) -> None:
        if msg.paths:
            self.set_status(Msg(N_("applied on the next step: {paths}"), paths=", ".join(msg.paths)))

    def _on_snapshots(self, msg: SnapshotSteps) -> None:
        self.snapshot_steps = list(msg.steps)
        self.layout.show_snapshots(self.snapshot_steps)

    def _on_rewound(self, msg: Rewound) -> None:
        self.history.truncate(msg.step)
        self.step_count = msg.step
        self.diverged = None
        self.set_status(Msg(N_("rewound to step {step}: training from here branches"), step=msg.step))

    def _on_generating(self, msg: Generating) -> None:
        self.generating = msg.on

    def _on_gradcheck(self, msg: GradChecked) -> None:
        self.gradcheck_rows = msg.rows
        self.layout.show_gradcheck(msg.rows)
        self.gradcheck_window = gradcheck_window(self.root, msg.rows)

    def set_status(self, text: str | Msg, error: bool = False) -> None:
        """The message part of the status line (a Msg follows a language switch); red for an error or a divergence."""
        self.message = str(text)
        self.layout.show_status(text, error)

    def set_config(self, cfg: RunConfig) -> None:
        """Shows `cfg` in every control (the window's config becomes it)."""
        self.config = cfg
        self.layout.show_config(cfg)

    # ================================================================== commands
    def step(self) -> None:
        """One whole training step."""
        self.worker.send(Step())

    def step_into(self) -> None:
        """One phase of the current step."""
        self.worker.send(StepInto())

    def toggle_run(self) -> None:
        """Run until paused, or pause."""
        if self.running:
            self.pause()
        else:
            self.run()

    def run(self, n: int | None = None) -> None:
        """Train continuously (n steps when given)."""
        self.worker.send(Run(n))

    def pause(self) -> None:
        """Stops training after the current step."""
        self.worker.send(Pause())

    def run_n(self) -> None:
        """Train the number of steps in the Run N field."""
        text = self.layout.n_var.get()
        try:
            n = int(text)
            if n < 1:
                raise ValueError
        except ValueError:
            self.show_error(_("Run N: the number of steps must be a whole number of at least 1, got {text!r}.")
                            .format(text=text))
            return
        self.run(n)

    def set_speed(self, steps_per_second: float) -> None:
        """Steps per second while running (0: full speed)."""
        self.worker.send(Speed(steps_per_second))

    def tab_shown(self, tab) -> None:
        """A tab came on screen: one that draws statistics steps has the worker make them at its pace."""
        rate = float(getattr(tab, "statistics_per_second", 0.0))
        if rate != getattr(self, "_statistics_rate", 0.0):
            self._statistics_rate = rate
            self.worker.send(StatisticsRate(rate))

    def reset(self) -> None:
        """A fresh model from the current settings."""
        self.worker.send(Reset())

    def change_setting(self, path: str, text) -> bool:
        """A control was changed: check the value, then apply it live or rebuild (asking first)."""
        return self.change_settings([(path, text)])

    def change_settings(self, changes) -> bool:
        """Several settings at once ((dotted path, value), ...: a lesson card's step), as one change.

        Checked together by the preset rules (a bad value is one dialog, nothing changes), then applied on the
        next step or, when one of them is structural, rebuilt after asking. True when the window's run took them.
        """
        changes = list(changes)
        paths = [p for p, _v in changes]
        try:
            new = override(self.config, flag_names={p: p for p in paths}, **dict(changes))
        except PresetError as err:
            bad = next((p for p in paths if p in str(err)), paths[0] if len(paths) == 1 else None)
            spec = SPECS.get(bad) if bad else None
            label = _(spec.label) if spec else (bad or ", ".join(paths))
            self.show_error(_("{label}: {error}").format(label=label, error=_(str(err).strip())))
            self.set_config(self.config)
            return False
        if new == self.config:
            return True
        if new.train.backend != self.config.train.backend and (why := backend_unavailable(new)):
            self.show_error(why)  # no GPU here: one sentence, and the run keeps its backend
            self.set_config(self.config)
            return False
        if is_structural_change(self.config, new):
            if self.step_count > 0 and not self.ask(
                    _("Rebuild the model?"),
                    _("Changing {path} builds a new model: the current run ({steps} steps) is discarded. Pin it first "
                      "to keep its curves. Go on?").format(path=", ".join(paths), steps=self.step_count)):
                self.set_config(self.config)
                return False
            self.set_config(new)
            self.worker.send(Rebuild(new))
        else:
            self.set_config(new)
            self.worker.send(Apply(new))
        return True

    def set_watch(self, **choices) -> None:
        """Changes which tensor, site, layer or batch row the probes read, and tells the worker."""
        self.watch = replace(self.watch, **choices)
        self.worker.send(self.watch)

    def generate(self) -> None:
        """Generates text from the current weights with the current decoding rule."""
        if self.generating:
            return
        self.layout.generate_tab.start(self.config.sampling.prompt)
        self.worker.send(Generate(self.config.sampling))

    def pin(self) -> None:
        """Keeps the current run's curves as a faded overlay."""
        if not len(self.history.loss):
            self.show_error(_("Pin this run: there is nothing to pin yet; train a few steps first."))
            return
        self.pins = (self.pins + [PinnedRun(self.config, self.history.loss.copy(), self.history.val.copy())])
        self.pins = self.pins[-MAX_PINS:]
        self.set_status(Msg(N_("pinned the run at step {step}; change a setting, reset and run again"),
                            step=self.step_count))

    def clear_pins(self) -> None:
        """Forgets every pinned run."""
        self.pins = []

    def rewind(self, step: int | None = None) -> None:
        """Goes back to a snapshot (the one under the slider unless `step` is given)."""
        step = self.layout.rewind_choice() if step is None else step
        if step is not None:
            self.worker.send(Rewind(step))

    def gradient_check(self) -> None:
        """Checks a few parameters' gradients against finite differences on the current batch."""
        if self.step_count == 0 and not len(self.history.loss):
            self.show_error(_("Gradient check: take a step first, so there is a batch to check the gradient on."))
            return
        names = set(self.info.tensor_names) if self.info else set()
        self.layout.gradcheck_label.configure(style="TLabel")
        relabel.text(self.layout.gradcheck_label, N_("checking…"))
        self.worker.send(GradCheck(tuple(t for t in GRADCHECK_TENSORS if t in names)[:4]))

    def close(self) -> None:
        """Stops the worker and closes the window."""
        if self.closed:
            return
        self.closed = True
        self._unlisten()
        relabel.forget(self.root)
        self._remember_window()
        for tab in self.layout.tabs:
            tab.cancel()
        # a lesson's computation, told to stop, is let finish its step: a daemon thread still inside a C++
        # library (matplotlib's FreeType text) when the interpreter exits aborts the whole process
        deadline = time.perf_counter() + STOP_WAIT_S
        for tab in self.layout.tabs:
            tab.wait_stopped(deadline)
        if getattr(self, "_poll_timer", None) is not None:
            self._poll_timer.cancel()
        self.worker.stop()
        try:
            self.root.update()
            self.root.destroy()
        except tk.TclError:
            pass


def resolve_preset(preset_path: str | None):
    """(the run's config, a lesson preset of another kind or None); PresetError when unreadable.

    A race or sparse-lesson preset opens its tab; the training run beside it is the default preset.
    """
    cfg = load_any(preset_path or DEFAULT_PRESET)
    if not isinstance(cfg, RunConfig):
        return load_any(DEFAULT_PRESET), cfg
    return cfg, None


def build_app(root: tk.Tk, preset_path: str | None = None, snapshot_every: int = 10,
              remember: bool = False) -> App:
    """Builds the window on `root` for a preset (default: the default preset); raises PresetError.

    remember=True reads and writes the window's last size and position (`launch` does; tests need not).
    """
    config, lesson = resolve_preset(preset_path)
    path = str(find_preset(preset_path or DEFAULT_PRESET))
    return App(root, config, path, lesson, snapshot_every=snapshot_every, remember=remember)


def launch(preset_path: str | None = None) -> int:
    """Opens the desktop lab and returns the exit status when it closes (2: a bad preset or no display)."""
    try:
        config, lesson = resolve_preset(preset_path)
    except PresetError as err:
        print(_("error: {message}").format(message=err), file=sys.stderr)
        return 2
    make_dpi_aware()
    try:
        root = tk.Tk(className=TITLE)
    except tk.TclError as err:
        print(_("error: {message}").format(message=_("the window cannot open ({why}); the headless commands still "
                                                       "work").format(why=err)), file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    app = App(root, config, preset_path, lesson, remember=True)
    root.update_idletasks()
    app.opened_seconds = time.perf_counter() - t0
    root.mainloop()
    app.close()
    return 0
