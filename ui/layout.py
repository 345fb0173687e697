"""The window's frame: style, menus, toolbar, controls and tabs, rewind bar, status line and shortcuts.

`WindowLayout` is a part of `ui.app.App`: it builds widgets and wires them to the App's commands
(`step`, `run_n`, `open_preset`, ...), and holds nothing else.
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
from ui.tooltip import Tooltip

TITLE = "transformer-sim"
SPEEDS = {"full speed": 0.0, "1 step/s": 1.0, "2 steps/s": 2.0, "5 steps/s": 5.0, "10 steps/s": 10.0,
          "20 steps/s": 20.0}
SHORTCUTS = ("Space  run / pause\nF10  step\nF11  step into (one phase)\nCtrl+R  reset\nCtrl+O  open a preset\n"
             "Ctrl+S  save the preset as…\nCtrl+Q  quit\nAlt+1 … Alt+9  show a tab")


def _tip(widget, text) -> Tooltip:
    return Tooltip(widget, text)


class WindowLayout:
    """Builds the window's widgets for `ui.app.App` (a mixin: `self` is the App)."""

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
        m.add_command(label="Open preset…", accelerator="Ctrl+O", command=self.open_preset_dialog)
        m.add_command(label="Save preset as…", accelerator="Ctrl+S", command=self.save_preset_dialog)
        m.add_separator()
        m.add_command(label="Save checkpoint…", command=self.save_checkpoint_dialog)
        m.add_command(label="Load checkpoint…", command=self.load_checkpoint_dialog)
        m.add_separator()
        m.add_command(label="Export current plot (PNG/SVG)…", command=self.export_plot_dialog)
        m.add_command(label="Export metrics CSV…", command=self.export_csv_dialog)
        m.add_separator()
        m.add_command(label="Quit", accelerator="Ctrl+Q", command=self.close)
        bar.add_cascade(label="File", menu=m)
        m = tk.Menu(bar, tearoff=False)
        m.add_command(label="Step", accelerator="F10", command=self.step)
        m.add_command(label="Step into (one phase)", accelerator="F11", command=self.step_into)
        m.add_command(label="Run / Pause", accelerator="Space", command=self.toggle_run)
        m.add_command(label="Run N steps", command=self.run_n)
        m.add_command(label="Reset", accelerator="Ctrl+R", command=self.reset)
        m.add_separator()
        m.add_command(label="Pin this run", command=self.pin)
        m.add_command(label="Clear pinned runs", command=self.clear_pins)
        m.add_command(label="Rewind to the chosen snapshot", command=self.rewind)
        m.add_command(label="Gradient check", command=self.gradient_check)
        bar.add_cascade(label="Run", menu=m)
        self.view_menu = tk.Menu(bar, tearoff=False)
        bar.add_cascade(label="View", menu=self.view_menu)
        m = tk.Menu(bar, tearoff=False)
        m.add_command(label="Keyboard shortcuts", command=lambda: messagebox.showinfo(
            "Keyboard shortcuts", SHORTCUTS, parent=self.root))
        m.add_command(label="About", command=lambda: messagebox.showinfo(
            "About", f"{TITLE}: train a small GPT step by step and watch what each design choice does.\n"
            "Every number is computed by the engine: gradients are checked, kernels compared with references.",
            parent=self.root))
        bar.add_cascade(label="Help", menu=m)
        self.root.configure(menu=bar)

    def _toolbar(self) -> None:
        bar = self.toolbar = ttk.Frame(self.root, padding=(4, 3))
        bar.pack(side="top", fill="x")
        self.presets = list_presets()
        ttk.Label(bar, text="Preset").pack(side="left")
        self.preset_var = tk.StringVar(self.root, self.config.name)
        self.preset_button = ttk.Menubutton(bar, textvariable=self.preset_var, width=16)
        self.preset_menu = tk.Menu(self.preset_button, tearoff=False)
        for p in self.presets:  # shipped presets by name and what they teach
            text = p.description if len(p.description) <= 90 else p.description[:89] + "…"
            self.preset_menu.add_command(label=f"{p.name}  -  {text}",
                                         command=lambda p=p: self.open_preset(str(p.path)))
        self.preset_button.configure(menu=self.preset_menu)
        self.preset_button.pack(side="left", padx=(3, 2))
        _tip(self.preset_button, "The shipped lessons; Open… loads any preset file.")
        ttk.Button(bar, text="Open…", width=6, command=self.open_preset_dialog).pack(side="left", padx=1)
        ttk.Button(bar, text="Save As…", width=8, command=self.save_preset_dialog).pack(side="left", padx=1)
        ttk.Separator(bar, orient="vertical").pack(side="left", fill="y", padx=6)
        self.reset_button = ttk.Button(bar, text="Reset", width=6, command=self.reset)
        self.reset_button.pack(side="left", padx=1)
        self.step_button = ttk.Button(bar, text="Step", width=6, command=self.step, style="Accent.TButton")
        self.step_button.pack(side="left", padx=1)
        self.step_into_button = ttk.Button(bar, text="Step into", width=9, command=self.step_into)
        self.step_into_button.pack(side="left", padx=1)
        self.run_button = ttk.Button(bar, text="Run", width=6, command=self.toggle_run, style="Accent.TButton")
        self.run_button.pack(side="left", padx=1)
        self.run_n_button = ttk.Button(bar, text="Run N", width=6, command=self.run_n)
        self.run_n_button.pack(side="left", padx=(6, 1))
        self.n_var = tk.StringVar(self.root, "50")
        ttk.Spinbox(bar, textvariable=self.n_var, from_=1, to=100000, increment=10, width=5).pack(side="left")
        ttk.Label(bar, text="speed").pack(side="left", padx=(8, 2))
        self.speed_var = tk.StringVar(self.root, "full speed")
        speed = ttk.Combobox(bar, textvariable=self.speed_var, values=list(SPEEDS), state="readonly", width=9)
        speed.pack(side="left")
        speed.bind("<<ComboboxSelected>>", lambda e: self.worker.send("speed",
                                                                      steps_per_second=SPEEDS[self.speed_var.get()]))
        for w, text in ((self.reset_button, "A fresh model from the current settings (same seed: same batches)."),
                        (self.step_button, "One whole training step (F10)."),
                        (self.step_into_button, "One phase of a step: an op's forward or backward, the loss, the "
                         "clip or the update (F11). See the Step-through tab."),
                        (self.run_button, "Train until paused (Space)."),
                        (self.run_n_button, "Train the given number of steps, then pause.")):
            _tip(w, text)

    def _body(self) -> None:
        paned = ttk.PanedWindow(self.root, orient="horizontal")
        paned.pack(side="top", fill="both", expand=True, padx=2)
        self.controls = ControlsPanel(paned, self.change_setting)
        self.controls.set_config(self.config)
        paned.add(self.controls, weight=0)
        self.notebook = ttk.Notebook(paned)
        paned.add(self.notebook, weight=1)
        self.overview = OverviewTab(self, self.notebook)
        self.gradients = GradientsTab(self, self.notebook)
        self.activations = ActivationsTab(self, self.notebook)
        self.attention = AttentionTab(self, self.notebook)
        self.stepthrough = StepThroughTab(self, self.notebook)
        self.generate_tab = GenerateTab(self, self.notebook)
        # every lesson of the engine's registry gets its tab; the nested ones (the smaller lessons, with
        # models of their own) share the "More lessons" tab, which holds a notebook of its own
        self.lessons = ttk.Frame(self.notebook)
        self.inner = ttk.Notebook(self.lessons)
        self.inner.pack(fill="both", expand=True)
        self.lesson_tabs = build_lesson_tabs(self, self.notebook, self.inner)  # kind -> tab
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
        bar = ttk.Frame(self.root, padding=(4, 2))
        bar.pack(side="bottom", fill="x")
        ttk.Label(bar, text="Rewind to step").pack(side="left")
        self.rewind_scale = ttk.Scale(bar, from_=0, to=0, orient="horizontal", length=220,
                                      command=lambda v: self._rewind_label())
        self.rewind_scale.pack(side="left", padx=4)
        self.rewind_label = ttk.Label(bar, text="0", width=7)
        self.rewind_label.pack(side="left")
        self.rewind_button = ttk.Button(bar, text="Rewind", command=self.rewind)
        self.rewind_button.pack(side="left", padx=2)
        _tip(self.rewind_button, "Go back to a snapshot (kept every few steps, bounded memory); training from "
             "there branches, and the curves after it are dropped.")
        ttk.Separator(bar, orient="vertical").pack(side="left", fill="y", padx=8)
        self.pin_button = ttk.Button(bar, text="Pin this run", command=self.pin)
        self.pin_button.pack(side="left", padx=2)
        _tip(self.pin_button, "Keep this run's loss curves as a faded overlay, labelled by how its settings differ. "
             "Then change a toggle, reset and run again on the same seed and batches.")
        ttk.Button(bar, text="Clear pins", command=self.clear_pins).pack(side="left", padx=2)
        ttk.Separator(bar, orient="vertical").pack(side="left", fill="y", padx=8)
        self.gradcheck_button = ttk.Button(bar, text="Gradient check", command=self.gradient_check)
        self.gradcheck_button.pack(side="left", padx=2)
        _tip(self.gradcheck_button, "Compare the analytic gradient of a few parameters with central finite "
             "differences (float64) on the current batch.")
        self.gradcheck_label = ttk.Label(bar, text="")
        self.gradcheck_label.pack(side="left", padx=4)

    def _status_bar(self) -> None:
        bar = ttk.Frame(self.root, padding=(6, 2), relief="sunken")
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
        r.bind("<space>", lambda e: self._key(e, self.toggle_run))
        r.bind("<F10>", lambda e: self._key(e, self.step, always=True))
        r.bind("<F11>", lambda e: self._key(e, self.step_into, always=True))
        r.bind("<Control-r>", lambda e: self._key(e, self.reset, always=True))
        r.bind("<Control-o>", lambda e: self._key(e, self.open_preset_dialog, always=True))
        r.bind("<Control-s>", lambda e: self._key(e, self.save_preset_dialog, always=True))
        r.bind("<Control-q>", lambda e: self._key(e, self.close, always=True))
        for i, tab in enumerate(self.tabs[:9]):
            r.bind(f"<Alt-Key-{i + 1}>", lambda e, t=tab: self._key(e, lambda: self.select_tab(t), always=True))

    def _key(self, event, action, always: bool = False):
        typing = event.widget.winfo_class() in ("TEntry", "Entry", "TSpinbox", "Spinbox", "TCombobox", "Text",
                                                "TButton", "TCheckbutton")
        if always or not typing:
            action()
            return "break"
        return None
