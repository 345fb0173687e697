"""The window's frame: style, menus, toolbar, controls and tabs, rewind bar, status line and shortcuts.

`WindowLayout(root, app)` builds the widgets on `root` and wires them to the app's commands (`app.step`,
`app.run_n`, `app.files.open_preset_dialog`, ...). It holds the widgets, shows what it is told (a status line,
the snapshots, the running state) and knows which tab is on screen; the run's state lives in the app.
"""

from __future__ import annotations

import tkinter as tk
from tkinter import font as tkfont
from tkinter import messagebox, ttk

from simulator.presets import list_presets
from ui.lessons import build_lesson_tabs
from ui.panels.controls import ControlsPanel
from ui.plots.activations import ActivationsTab
from ui.plots.attention import AttentionTab
from ui.plots.generate import GenerateTab
from ui.plots.gradients import GradientsTab
from ui.plots.overview import OverviewTab
from ui.plots.stepthrough import StepThroughTab
from ui.scrollarea import ScrollArea
from ui.tooltip import Tooltip
from ui.window_geometry import Area, scaled

TITLE = "transformer-sim"
WINDOW = (1280, 800)  # default size, menu bar included (at scale 1; ui/window_geometry.py fits it to the screen)
SMALLEST = (1024, 700)  # still usable; a smaller window scrolls a layout of this size
SPEEDS = {"full speed": 0.0, "1 step/s": 1.0, "2 steps/s": 2.0, "5 steps/s": 5.0, "10 steps/s": 10.0,
          "20 steps/s": 20.0}
SHORTCUTS = ("Space  run / pause\nF10  step\nF11  step into (one phase)\nCtrl+R  reset\nCtrl+O  open a preset\n"
             "Ctrl+S  save the preset as…\nCtrl+Q  quit\nAlt+1 … Alt+9  show a tab")


def _tip(widget, text) -> Tooltip:
    return Tooltip(widget, text)


class WindowLayout:
    """The widgets of the window of `app` (a `ui.app.App`), built on `root`."""

    def __init__(self, root: tk.Tk, app, scale: float = 1.0, usable: Area | None = None):
        self.root, self.app = root, app
        self.menu_height = 0  # on X11 the menu bar sits outside the geometry Tk manages; measured once mapped
        self.scale = scale  # the screen's density factor (ui/window_geometry.display_scale)
        self.default_size, self.smallest = scaled(WINDOW, scale), scaled(SMALLEST, scale)
        self.usable = usable or Area(0, 0, root.winfo_screenwidth(), root.winfo_screenheight())
        # every widget lives in one area that keeps the smallest layout and scrolls when the window is smaller
        self.area = ScrollArea(root, self.smallest)
        self.area.pack(fill="both", expand=True)
        self.top = self.area.inner
        self.resize(*self.default_size)
        root.protocol("WM_DELETE_WINDOW", app.close)
        self._style()
        self._menus()
        self._toolbar()
        self._status_bar()
        self._bottom_bar()
        self._body()
        self._keys()

    def _style(self) -> None:
        style = ttk.Style(self.root)
        if "clam" in style.theme_names():
            style.theme_use("clam")
        style.configure("Red.TLabel", foreground="#b00000")
        style.configure("TButton", padding=(4, 2))
        tab_font = tkfont.nametofont("TkDefaultFont").copy()
        tab_font.configure(size=max(8, tab_font.cget("size") - 1))
        self._tab_font = tab_font  # keep a reference: Tk forgets a font that Python collects
        style.configure("TNotebook.Tab", padding=(3, 2), font=tab_font)
        style.configure("Accent.TButton", font=("DejaVu Sans", 9, "bold"))

    def _menus(self) -> None:
        bar = tk.Menu(self.root)
        m = tk.Menu(bar, tearoff=False)
        m.add_command(label="Open preset…", accelerator="Ctrl+O", command=self.app.files.open_preset_dialog)
        m.add_command(label="Save preset as…", accelerator="Ctrl+S", command=self.app.files.save_preset_dialog)
        m.add_separator()
        m.add_command(label="Save checkpoint…", command=self.app.files.save_checkpoint_dialog)
        m.add_command(label="Load checkpoint…", command=self.app.files.load_checkpoint_dialog)
        m.add_separator()
        m.add_command(label="Export current plot (PNG/SVG)…", command=self.app.files.export_plot_dialog)
        m.add_command(label="Export metrics CSV…", command=self.app.files.export_csv_dialog)
        m.add_separator()
        m.add_command(label="Quit", accelerator="Ctrl+Q", command=self.app.close)
        bar.add_cascade(label="File", menu=m)
        m = tk.Menu(bar, tearoff=False)
        m.add_command(label="Step", accelerator="F10", command=self.app.step)
        m.add_command(label="Step into (one phase)", accelerator="F11", command=self.app.step_into)
        m.add_command(label="Run / Pause", accelerator="Space", command=self.app.toggle_run)
        m.add_command(label="Run N steps", command=self.app.run_n)
        m.add_command(label="Reset", accelerator="Ctrl+R", command=self.app.reset)
        m.add_separator()
        m.add_command(label="Pin this run", command=self.app.pin)
        m.add_command(label="Clear pinned runs", command=self.app.clear_pins)
        m.add_command(label="Rewind to the chosen snapshot", command=self.app.rewind)
        m.add_command(label="Gradient check", command=self.app.gradient_check)
        bar.add_cascade(label="Run", menu=m)
        self.view_menu = tk.Menu(bar, tearoff=False)
        bar.add_cascade(label="View", menu=self.view_menu)
        m = tk.Menu(bar, tearoff=False)
        m.add_command(label="Course (lesson cards)…", command=self.open_course)
        m.add_command(label="Keyboard shortcuts", command=lambda: messagebox.showinfo(
            "Keyboard shortcuts", SHORTCUTS, parent=self.root))
        m.add_command(label="About", command=lambda: messagebox.showinfo(
            "About", f"{TITLE}: train a small GPT step by step and watch what each design choice does.\n"
            "Every number is computed by the engine: gradients are checked, kernels compared with references.",
            parent=self.root))
        bar.add_cascade(label="Help", menu=m)
        self.root.configure(menu=bar)

    def open_course(self):
        """Help → Course: the lesson cards' table of contents with this person's progress (ui/panels/cards.py)."""
        from ui.panels.cards import CourseWindow

        self.course_window = CourseWindow(self.root)
        return self.course_window

    def _toolbar(self) -> None:
        bar = self.toolbar = ttk.Frame(self.top, padding=(4, 3))
        bar.pack(side="top", fill="x")
        self.presets = list_presets()
        ttk.Label(bar, text="Preset").pack(side="left")
        self.preset_var = tk.StringVar(self.root, self.app.config.name)
        self.preset_button = ttk.Menubutton(bar, textvariable=self.preset_var, width=16)
        self.preset_menu = tk.Menu(self.preset_button, tearoff=False)
        for p in self.presets:  # shipped presets by name and what they teach
            text = p.description if len(p.description) <= 90 else p.description[:89] + "…"
            self.preset_menu.add_command(label=f"{p.name}  -  {text}",
                                         command=lambda p=p: self.app.files.open_preset(str(p.path)))
        self.preset_button.configure(menu=self.preset_menu)
        self.preset_button.pack(side="left", padx=(3, 2))
        _tip(self.preset_button, "The shipped lessons; Open… loads any preset file.")
        ttk.Button(bar, text="Open…", width=6, command=self.app.files.open_preset_dialog).pack(side="left", padx=1)
        ttk.Button(bar, text="Save As…", width=8, command=self.app.files.save_preset_dialog).pack(side="left", padx=1)
        ttk.Separator(bar, orient="vertical").pack(side="left", fill="y", padx=6)
        self.reset_button = ttk.Button(bar, text="Reset", width=6, command=self.app.reset)
        self.reset_button.pack(side="left", padx=1)
        self.step_button = ttk.Button(bar, text="Step", width=6, command=self.app.step, style="Accent.TButton")
        self.step_button.pack(side="left", padx=1)
        self.step_into_button = ttk.Button(bar, text="Step into", width=9, command=self.app.step_into)
        self.step_into_button.pack(side="left", padx=1)
        self.run_button = ttk.Button(bar, text="Run", width=6, command=self.app.toggle_run, style="Accent.TButton")
        self.run_button.pack(side="left", padx=1)
        self.run_n_button = ttk.Button(bar, text="Run N", width=6, command=self.app.run_n)
        self.run_n_button.pack(side="left", padx=(6, 1))
        self.n_var = tk.StringVar(self.root, "50")
        ttk.Spinbox(bar, textvariable=self.n_var, from_=1, to=100000, increment=10, width=5).pack(side="left")
        ttk.Label(bar, text="speed").pack(side="left", padx=(8, 2))
        self.speed_var = tk.StringVar(self.root, "full speed")
        speed = ttk.Combobox(bar, textvariable=self.speed_var, values=list(SPEEDS), state="readonly", width=9)
        speed.pack(side="left")
        speed.bind("<<ComboboxSelected>>", lambda e: self.app.set_speed(SPEEDS[self.speed_var.get()]))
        for w, text in ((self.reset_button, "A fresh model from the current settings (same seed: same batches)."),
                        (self.step_button, "One whole training step (F10)."),
                        (self.step_into_button, "One phase of a step: an op's forward or backward, the loss, the "
                         "clip or the update (F11). See the Step-through tab."),
                        (self.run_button, "Train until paused (Space)."),
                        (self.run_n_button, "Train the given number of steps, then pause.")):
            _tip(w, text)

    def _body(self) -> None:
        app = self.app
        paned = ttk.PanedWindow(self.top, orient="horizontal")
        paned.pack(side="top", fill="both", expand=True, padx=2)
        self.controls = ControlsPanel(paned, app.change_setting, width=round(236 * self.scale))
        self.controls.set_config(app.config)
        paned.add(self.controls, weight=0)
        self.notebook = ttk.Notebook(paned)
        paned.add(self.notebook, weight=1)
        self.overview = OverviewTab(app, self.notebook)
        self.gradients = GradientsTab(app, self.notebook)
        self.activations = ActivationsTab(app, self.notebook)
        self.attention = AttentionTab(app, self.notebook)
        self.stepthrough = StepThroughTab(app, self.notebook)
        self.generate_tab = GenerateTab(app, self.notebook)
        # every lesson of the engine's registry gets its tab; the nested ones (the smaller lessons, with
        # models of their own) share the "More lessons" tab, which holds a notebook of its own
        self.lessons = ttk.Frame(self.notebook)
        self.inner = ttk.Notebook(self.lessons)
        self.inner.pack(fill="both", expand=True)
        self.lesson_tabs = build_lesson_tabs(app, self.notebook, self.inner)  # kind -> tab
        self.tabs = [self.overview, self.gradients, self.activations, self.attention, self.stepthrough,
                     self.generate_tab, *self.lesson_tabs.values()]
        self.tab_var = tk.StringVar(self.root, self.overview.title)
        for i, tab in enumerate(self.tabs):
            if tab.frame.master is self.inner:
                self.inner.add(tab.frame, text=tab.title)
            else:
                self.notebook.add(tab.frame, text=tab.title)
            self.view_menu.add_radiobutton(label=tab.title, variable=self.tab_var, value=tab.title,
                                           accelerator=f"Alt+{i + 1}" if i < 9 else None,
                                           command=lambda t=tab: self.select_tab(t))
        self.notebook.add(self.lessons, text="More lessons")
        self.notebook.bind("<<NotebookTabChanged>>", lambda e: self._tab_changed())
        self.inner.bind("<<NotebookTabChanged>>", lambda e: self._tab_changed())
        self.overview.ensure_built()

    def _bottom_bar(self) -> None:
        bar = ttk.Frame(self.top, padding=(4, 2))
        bar.pack(side="bottom", fill="x")
        ttk.Label(bar, text="Rewind to step").pack(side="left")
        self.rewind_scale = ttk.Scale(bar, from_=0, to=0, orient="horizontal", length=220,
                                      command=lambda v: self.show_rewind_choice())
        self.rewind_scale.pack(side="left", padx=4)
        self.rewind_label = ttk.Label(bar, text="0", width=7)
        self.rewind_label.pack(side="left")
        self.rewind_button = ttk.Button(bar, text="Rewind", command=self.app.rewind)
        self.rewind_button.pack(side="left", padx=2)
        _tip(self.rewind_button, "Go back to a snapshot (kept every few steps, bounded memory); training from "
             "there branches, and the curves after it are dropped.")
        ttk.Separator(bar, orient="vertical").pack(side="left", fill="y", padx=8)
        self.pin_button = ttk.Button(bar, text="Pin this run", command=self.app.pin)
        self.pin_button.pack(side="left", padx=2)
        _tip(self.pin_button, "Keep this run's loss curves as a faded overlay, labelled by how its settings differ. "
             "Then change a toggle, reset and run again on the same seed and batches.")
        ttk.Button(bar, text="Clear pins", command=self.app.clear_pins).pack(side="left", padx=2)
        ttk.Separator(bar, orient="vertical").pack(side="left", fill="y", padx=8)
        self.gradcheck_button = ttk.Button(bar, text="Gradient check", command=self.app.gradient_check)
        self.gradcheck_button.pack(side="left", padx=2)
        _tip(self.gradcheck_button, "Compare the analytic gradient of a few parameters with central finite "
             "differences (float64) on the current batch.")
        self.gradcheck_label = ttk.Label(bar, text="")
        self.gradcheck_label.pack(side="left", padx=4)

    def _status_bar(self) -> None:
        bar = ttk.Frame(self.top, padding=(6, 2), relief="sunken")
        bar.pack(side="bottom", fill="x")
        self.status_vars = {k: tk.StringVar(self.root, v) for k, v in
                            (("step", "step 0"), ("loss", "loss -"), ("speed", "- tok/s"), ("phase", "phase -"))}
        widths = {"step": 11, "loss": 22, "speed": 13, "phase": 30}
        for k, var in self.status_vars.items():
            ttk.Label(bar, textvariable=var, width=widths[k], anchor="w").pack(side="left")
            ttk.Separator(bar, orient="vertical").pack(side="left", fill="y", padx=4)
        self.status_label = ttk.Label(bar, text="", anchor="w")
        self.status_label.pack(side="left", fill="x", expand=True)

    def _keys(self) -> None:
        r = self.root
        r.bind("<space>", lambda e: self._key(e, self.app.toggle_run))
        r.bind("<F10>", lambda e: self._key(e, self.app.step, always=True))
        r.bind("<F11>", lambda e: self._key(e, self.app.step_into, always=True))
        r.bind("<Control-r>", lambda e: self._key(e, self.app.reset, always=True))
        r.bind("<Control-o>", lambda e: self._key(e, self.app.files.open_preset_dialog, always=True))
        r.bind("<Control-s>", lambda e: self._key(e, self.app.files.save_preset_dialog, always=True))
        r.bind("<Control-q>", lambda e: self._key(e, self.app.close, always=True))
        for i, tab in enumerate(self.tabs[:9]):
            r.bind(f"<Alt-Key-{i + 1}>", lambda e, t=tab: self._key(e, lambda: self.select_tab(t), always=True))

    def _key(self, event, action, always: bool = False):
        typing = event.widget.winfo_class() in ("TEntry", "Entry", "TSpinbox", "Spinbox", "TCombobox", "Text",
                                                "TButton", "TCheckbutton")
        if always or not typing:
            action()
            return "break"
        return None

    # ------------------------------------------------------------------ geometry
    def resize(self, width: int, height: int) -> None:
        """Makes the whole window, menu bar included, width x height pixels.

        Smaller than the smallest layout (a small screen), the layout keeps its smallest size and scrolls.
        """
        self.size = (width, height)
        self.root.geometry(f"{width}x{height - self.menu_height}")
        lo_w, lo_h = min(self.smallest[0], self.usable.width), min(self.smallest[1], self.usable.height)
        self.root.minsize(min(lo_w, width), max(1, min(lo_h, height) - self.menu_height))
        self.area.set_smallest((self.smallest[0], self.smallest[1] - self.menu_height))

    def measure_menu(self) -> None:
        """Measures the menu bar once the window is mapped, and keeps the window's size with it."""
        if not self.root.winfo_ismapped():
            return
        if not getattr(self, "_mapped", False):
            self._mapped = True
            if self.scale != 1.0:
                # Matplotlib learns the screen's density when a canvas is first mapped and rescales its text
                # then: the figures built before (the Overview) lay themselves out again at the new size
                for tab in self.tabs:
                    if getattr(tab, "built", False) and getattr(tab, "figure", None) is not None:
                        tab.relayout()
                        tab.refresh(force=True)
        if self.menu_height:
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

    # ------------------------------------------------------------------ tabs
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

    # ------------------------------------------------------------------ what the app shows
    def show_status(self, text: str, error: bool = False) -> None:
        """The message part of the status line; red for an error or a divergence."""
        self.status_label.configure(text=text, style="Red.TLabel" if error else "TLabel")

    def _set_var(self, key: str, text: str) -> None:
        var = self.status_vars[key]
        if var.get() != text:  # an unchanged label is not redrawn
            var.set(text)

    def show_progress(self, step: int, history) -> None:
        """Step, loss and speed in the status line."""
        rec = history.last
        self._set_var("step", f"step {step}")
        if rec is not None and rec.nonfinite is None:
            val = history.val.y[-1] if len(history.val) else None
            self._set_var("loss", f"loss {rec.loss:.4f}" + (f"  val {val:.3f}" if val is not None else ""))
            # the phases' own time: a step taken phase by phase also waited for the person between phases
            busy = sum(rec.phase_seconds.values())
            self._set_var("speed", f"{rec.tokens / busy:,.0f} tok/s" if busy > 0 else "- tok/s")
        elif rec is None:
            self._set_var("loss", "loss -")

    def show_phase(self, text: str) -> None:
        """The phase part of the status line."""
        self.status_vars["phase"].set(text)

    def show_running(self, on: bool) -> None:
        """The Run button says what it will do."""
        self.run_button.configure(text="Pause" if on else "Run")
        self.show_phase("phase: running" if on else "phase -")

    def show_config(self, cfg) -> None:
        """Every control shows `cfg`: the panel, and the generate tab's decoding controls once built."""
        self.controls.set_config(cfg)
        if self.generate_tab.built:
            self.generate_tab.controls.set_config(cfg)

    def show_session(self, name: str) -> None:
        """A new session's name in the title and the preset button."""
        self.run_button.configure(text="Run")
        self.root.title(f"{TITLE} - {name}")
        self.preset_var.set(name)

    def show_snapshots(self, steps: list[int]) -> None:
        """The rewind slider spans the kept snapshots and points at the newest."""
        self.rewind_scale.configure(to=max(0, len(steps) - 1))
        self.rewind_scale.set(max(0, len(steps) - 1))
        self.show_rewind_choice()

    def rewind_choice(self) -> int | None:
        """The snapshot step under the slider (None when there is none)."""
        steps = self.app.snapshot_steps
        if not steps:
            return None
        return steps[min(int(round(float(self.rewind_scale.get()))), len(steps) - 1)]

    def show_rewind_choice(self) -> None:
        """The step under the slider, beside it."""
        step = self.rewind_choice()
        if step is not None:
            self.rewind_label.configure(text=str(step))

    def show_gradcheck(self, rows) -> None:
        """The check's verdict beside its button."""
        worst = max((r.rel_err for r in rows), default=0.0)
        ok = worst < 1e-5
        self.gradcheck_label.configure(text=f"{len(rows)} checked, worst rel. error {worst:.1e}"
                                       + (" ✓" if ok else " ✗"), style="TLabel" if ok else "Red.TLabel")
