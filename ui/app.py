"""The window: toolbar, controls, plot tabs, rewind bar and status line over a worker-thread session.

`launch(preset_path)` opens it (the `python main.py` entry); `build_app(root, preset_path)` builds it
on a given Tk root so tests can drive it with `invoke()` and `root.update()`.

Flow: a control reports (dotted path, text) -> `presets.override` checks it and builds a new config
(a bad value is one dialog, nothing else changes) -> a live change goes to the session on its next
step, a structural one asks before it discards the run and then rebuilds. Every `POLL_MS` the main
loop drains the worker's messages, updates the bounded history, and redraws only the visible tab.
"""

from __future__ import annotations

import sys
import time
import tkinter as tk
from tkinter import messagebox, ttk

from simulator.config import RunConfig, is_structural_change
from simulator.gradcheck import check_gradients
from simulator.presets import DEFAULT_PRESET, PresetError, find_preset, load_any, override
from ui.files import FileActions
from ui.history import PinnedRun, RunHistory
from ui.layout import TITLE, WindowLayout
from ui.panels.controls import SPECS
from ui.worker import Worker, drain

WINDOW = (1280, 800)  # default size, menu bar included
SMALLEST = (1024, 700)  # still usable
POLL_MS = 40
MAX_PINS = 4
GRADCHECK_TENSORS = ("wte", "h0.attn.qkv.w", "h0.mlp.fc.w", "norm_f.w", "h0.norm1.w")


class App(WindowLayout, FileActions):
    """The desktop lab on one Tk root."""

    def __init__(self, root: tk.Tk, config: RunConfig, preset_path: str | None = None, lesson=None,
                 snapshot_every: int = 10):
        self.root = root
        self.config = config
        self.preset_path = preset_path
        self.info = None  # SessionInfo of the current session
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
        self.menu_height = 0  # on X11 the menu bar sits outside the geometry Tk manages; measured once mapped
        self.resize(*WINDOW)
        root.protocol("WM_DELETE_WINDOW", self.close)
        self._style()
        self._menus()
        self._toolbar()
        self._status_bar()
        self._bottom_bar()
        self._body()
        self._keys()
        if lesson is not None:  # a preset of another kind (a race, a small lesson): its tab, beside the default run
            root.after_idle(lambda: self.show_lesson(lesson))
        self.worker = Worker(config, snapshot_every=snapshot_every)
        self.worker.start()
        self.set_status("building the model (the first launch compiles kernels: a few seconds)")
        self._after = root.after(POLL_MS, self.poll)

    # ================================================================== the loop
    def poll(self) -> None:
        """Drains the worker's messages, updates the history and redraws the visible tab."""
        if self.closed:
            return
        self.polls += 1
        if not self.menu_height and self.root.winfo_ismapped():
            self._measure_menu()
        try:
            for msg in drain(self.worker.out):
                self.handle(msg)
            self._refresh_status()
            tab = self.current_tab()
            if tab is not None:
                tab.refresh()
        finally:  # a bug in one draw must not stop the window from following the run
            self._after = self.root.after(POLL_MS, self.poll)

    def resize(self, width: int, height: int) -> None:
        """Makes the whole window, menu bar included, width x height pixels."""
        self.size = (width, height)
        self.root.geometry(f"{width}x{height - self.menu_height}")
        self.root.minsize(SMALLEST[0], SMALLEST[1] - self.menu_height)

    def _measure_menu(self) -> None:
        if not self.root.winfo_ismapped():
            return
        tk_ = self.root.tk
        clones = [c for c in tk_.splitlist(tk_.call("winfo", "children", ".")) if "#" in c]  # the shown menu bar
        height = max([int(tk_.call("winfo", "height", c)) for c in clones] + [0])
        height = min(height, 80)
        if height != self.menu_height:
            unchanged = (self.root.winfo_width(), self.root.winfo_height()) == \
                (self.size[0], self.size[1] - self.menu_height)  # not resized by the person yet
            self.menu_height = height
            if unchanged:
                self.resize(*self.size)

    def handle(self, msg) -> None:
        """Acts on one worker message (main thread)."""
        kind, data = msg.kind, msg.data
        if kind == "record":
            self.history.add(data)
            self.in_step = False
            if data.nonfinite is None:
                self.step_count = data.step
            if not self.running:
                self.status_vars["phase"].set("phase -")
            self.stepthrough.on_step_done()
        elif kind == "probe":
            for tab in (self.gradients, self.activations, self.attention):
                tab.on_probe(data)
        elif kind == "phase":
            self.phase_log.append(data.name)
            self.in_step = not data.last
            self.stepthrough.on_phase(data)
            self.status_vars["phase"].set(f"phase {data.index + 1}/{data.count} {data.name}")
        elif kind == "ready":
            self._ready(data)
        elif kind == "running":
            self.running = bool(data)
            self.run_button.configure(text="Pause" if self.running else "Run")
            if self.running:
                self.status_vars["phase"].set("phase: running")
                self.set_status("training")
            else:
                self.status_vars["phase"].set("phase -")
                if not self.diverged:
                    self.set_status("paused")
        elif kind == "diverged":
            self.diverged = data
            self.set_status(data, error=True)
        elif kind == "error":
            self.set_status(data, error=True)
            self.show_error(data)
        elif kind == "fatal":
            self.set_status(f"no model could be built: {data}", error=True)
        elif kind == "config":
            self.set_config(data)
        elif kind == "applied":
            if data:
                self.set_status("applied on the next step: " + ", ".join(data))
        elif kind == "snapshots":
            self.snapshot_steps = list(data)
            self.rewind_scale.configure(to=max(0, len(self.snapshot_steps) - 1))
            self.rewind_scale.set(max(0, len(self.snapshot_steps) - 1))
            self._rewind_label()
        elif kind == "rewound":
            self.history.truncate(data)
            self.step_count = data
            self.diverged = None
            self.set_status(f"rewound to step {data}: training from here branches")
        elif kind == "status":
            self.set_status(data)
        elif kind == "generating":
            self.generating = bool(data)
            if not data:
                self.generate_tab.finished()
        elif kind == "token":
            self.generate_tab.on_token(data)
        elif kind == "generated":
            self.set_status(f"generated {len(data)} characters")
        elif kind == "gradcheck":
            self._gradcheck_done(data)
        elif kind == "checkpoint_saved":
            self.set_status(f"checkpoint saved to {data}")
        elif kind == "qkv":
            self.lesson_tabs["flash_trace"].on_qkv(data)

    def _ready(self, info) -> None:
        self.info = info
        self.config = info.config
        self.history = RunHistory()
        self.step_count = info.step
        self.diverged = None
        self.phase_log = []
        self.in_step = False
        self.running = False
        self.run_button.configure(text="Run")
        self.root.title(f"{TITLE} - {info.config.name}")
        self.preset_var.set(info.config.name)
        self.set_config(info.config)
        for tab in self.tabs:
            tab.on_session(info)
        self.set_status(f"ready: {info.n_params:,} parameters, {len(info.phase_names)} phases a step")
        tab = self.current_tab()
        if tab is not None:
            tab.refresh(force=True)

    def _set_var(self, key: str, text: str) -> None:
        var = self.status_vars[key]
        if var.get() != text:  # an unchanged label is not redrawn
            var.set(text)

    def _refresh_status(self) -> None:
        rec = self.history.last
        self._set_var("step", f"step {self.step_count}")
        if rec is not None and rec.nonfinite is None:
            val = self.history.val.y[-1] if len(self.history.val) else None
            self._set_var("loss", f"loss {rec.loss:.4f}" + (f"  val {val:.3f}" if val is not None else ""))
            # the phases' own time: a step taken phase by phase also waited for the person between phases
            busy = sum(rec.phase_seconds.values())
            self._set_var("speed", f"{rec.tokens / busy:,.0f} tok/s" if busy > 0 else "- tok/s")
        elif self.history.last is None:
            self._set_var("loss", "loss -")

    def set_status(self, text: str, error: bool = False) -> None:
        """The message part of the status line; red for an error or a divergence."""
        self.message = text
        self.status_label.configure(text=text, style="Red.TLabel" if error else "TLabel")

    def set_config(self, cfg: RunConfig) -> None:
        """Shows `cfg` in every control (the window's config becomes it)."""
        self.config = cfg
        self.controls.set_config(cfg)
        if self.generate_tab.built:
            self.generate_tab.controls.set_config(cfg)

    def current_tab(self):
        """The tab on screen."""
        try:
            frame = self.root.nametowidget(self.notebook.select())
            if frame is self.lessons:
                frame = self.root.nametowidget(self.inner.select())
        except (tk.TclError, KeyError):
            return None
        return next((t for t in self.tabs if t.frame is frame), None)

    def select_tab(self, tab) -> None:
        """Brings a tab to the front."""
        if tab.frame.master is self.inner:
            self.notebook.select(self.lessons)
            self.inner.select(tab.frame)
        else:
            self.notebook.select(tab.frame)

    def _tab_changed(self) -> None:
        tab = self.current_tab()
        if tab is not None:
            self.tab_var.set(tab.title)
            tab.ensure_built()
            tab.refresh(force=True)

    # ================================================================== commands
    def step(self) -> None:
        """One whole training step."""
        self.worker.send("step")

    def step_into(self) -> None:
        """One phase of the current step."""
        self.worker.send("step_into")

    def toggle_run(self) -> None:
        """Run until paused, or pause."""
        if self.running:
            self.pause()
        else:
            self.run()

    def run(self, n: int | None = None) -> None:
        """Train continuously (n steps when given)."""
        self.worker.send("run", n=n)

    def pause(self) -> None:
        """Stops training after the current step."""
        self.worker.send("pause")

    def run_n(self) -> None:
        """Train the number of steps in the Run N field."""
        try:
            n = int(self.n_var.get())
            if n < 1:
                raise ValueError
        except ValueError:
            self.show_error(f"Run N: the number of steps must be a whole number of at least 1, got "
                            f"{self.n_var.get()!r}.")
            return
        self.run(n)

    def reset(self) -> None:
        """A fresh model from the current settings."""
        self.worker.send("reset")

    def change_setting(self, path: str, text) -> None:
        """A control was changed: check the value, then apply it live or rebuild (asking first)."""
        try:
            new = override(self.config, flag_names={path: path}, **{path: text})
        except PresetError as err:
            spec = SPECS.get(path)
            self.show_error(f"{spec.label if spec else path}: {err}")
            self.set_config(self.config)
            return
        if new == self.config:
            return
        if is_structural_change(self.config, new):
            if self.step_count > 0 and not self.ask("Rebuild the model?", f"Changing {path} builds a new model: "
                                                    f"the current run ({self.step_count} steps) is discarded. "
                                                    "Pin it first to keep its curves. Go on?"):
                self.set_config(self.config)
                return
            self.set_config(new)
            self.worker.send("rebuild", config=new)
        else:
            self.set_config(new)
            self.worker.send("apply", config=new)

    def watch(self, **choices) -> None:
        """Tells the worker which tensor, site, layer or batch row to probe."""
        self.worker.send("watch", **choices)

    def generate(self) -> None:
        """Generates text from the current weights with the current decoding rule."""
        if self.generating:
            return
        self.generate_tab.start(self.config.sampling.prompt)
        self.worker.send("generate", sampling=self.config.sampling)

    def pin(self) -> None:
        """Keeps the current run's curves as a faded overlay."""
        if not len(self.history.loss):
            self.show_error("Pin this run: there is nothing to pin yet; train a few steps first.")
            return
        self.pins = (self.pins + [PinnedRun(self.config, self.history.loss.copy(), self.history.val.copy())])
        self.pins = self.pins[-MAX_PINS:]
        self.set_status(f"pinned the run at step {self.step_count}; change a setting, reset and run again")

    def clear_pins(self) -> None:
        """Forgets every pinned run."""
        self.pins = []

    def _rewind_label(self) -> None:
        if self.snapshot_steps:
            i = min(int(round(float(self.rewind_scale.get()))), len(self.snapshot_steps) - 1)
            self.rewind_label.configure(text=str(self.snapshot_steps[i]))

    def rewind(self, step: int | None = None) -> None:
        """Goes back to a snapshot (the one under the slider unless `step` is given)."""
        if step is None:
            if not self.snapshot_steps:
                return
            step = self.snapshot_steps[min(int(round(float(self.rewind_scale.get()))), len(self.snapshot_steps) - 1)]
        self.worker.send("rewind", step=step)

    def gradient_check(self) -> None:
        """Checks a few parameters' gradients against finite differences on the current batch."""
        if self.step_count == 0 and not self.history.loss.x:
            self.show_error("Gradient check: take a step first, so there is a batch to check the gradient on.")
            return
        names = set(self.info.tensor_names) if self.info else set()
        tensors = [t for t in GRADCHECK_TENSORS if t in names][:4]
        self.gradcheck_label.configure(text="checking…", style="TLabel")
        self.worker.send("call", fn=_check, reply="gradcheck", tensors=tensors)

    def _gradcheck_done(self, rows) -> None:
        self.gradcheck_rows = rows
        worst = max((r.rel_err for r in rows), default=0.0)
        ok = worst < 1e-5
        self.gradcheck_label.configure(text=f"{len(rows)} checked, worst rel. error {worst:.1e}"
                                       + (" ✓" if ok else " ✗"), style="TLabel" if ok else "Red.TLabel")
        win = tk.Toplevel(self.root)
        win.title("Gradient check")
        win.transient(self.root)
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
        self.gradcheck_window = win

    def close(self) -> None:
        """Stops the worker and closes the window."""
        if self.closed:
            return
        self.closed = True
        for tab in self.tabs:
            tab.cancel()
        try:
            self.root.after_cancel(self._after)
        except (tk.TclError, AttributeError):
            pass
        self.worker.stop()
        try:
            self.root.update()
            self.root.destroy()
        except tk.TclError:
            pass


def _check(session, tensors):
    """Runs in the worker: the gradient check on the session's current batch."""
    return check_gradients(session, n_per_tensor=2, tensors=tensors)


def resolve_preset(preset_path: str | None):
    """(the run's config, a lesson preset of another kind or None); PresetError when unreadable.

    A race or sparse-lesson preset opens its tab; the training run beside it is the default preset.
    """
    cfg = load_any(preset_path or DEFAULT_PRESET)
    if not isinstance(cfg, RunConfig):
        return load_any(DEFAULT_PRESET), cfg
    return cfg, None


def build_app(root: tk.Tk, preset_path: str | None = None, snapshot_every: int = 10) -> App:
    """Builds the window on `root` for a preset (default: the default preset); raises PresetError."""
    config, lesson = resolve_preset(preset_path)
    path = str(find_preset(preset_path or DEFAULT_PRESET))
    return App(root, config, path, lesson, snapshot_every=snapshot_every)


def launch(preset_path: str | None = None) -> int:
    """Opens the desktop lab and returns the exit status when it closes (2: a bad preset or no display)."""
    try:
        config, lesson = resolve_preset(preset_path)
    except PresetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        root = tk.Tk(className=TITLE)
    except tk.TclError as err:
        print(f"error: the window cannot open ({err}); the headless commands still work", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    app = App(root, config, preset_path, lesson)
    root.update_idletasks()
    app.opened_seconds = time.perf_counter() - t0
    root.mainloop()
    app.close()
    return 0
