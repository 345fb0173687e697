"""The window's frame: style, menus, toolbar, controls and tabs, rewind bar, status line and shortcuts.

`WindowLayout(root, app)` builds the widgets on `root` and wires them to the app's commands (`app.step`,
`app.run_n`, `app.files.open_preset_dialog`, ...). It holds the widgets, shows what it is told (a status line,
the snapshots, the running state) and knows which tab is on screen; the run's state lives in the app.
Every text it shows is registered with `ui.relabel`, so View → Language relabels it in place (`relabel_all`).
"""

from __future__ import annotations

import tkinter as tk
from tkinter import font as tkfont
from tkinter import messagebox, ttk

from simulator.i18n import LANGUAGES, N_, _
from simulator.presets import list_presets
from ui import relabel
from ui.lessons import build_lesson_tabs
from ui.panels.controls import ControlsPanel
from ui.panels.lesson_chooser import LessonChooser
from ui.plots.activations import ActivationsTab
from ui.plots.attention import AttentionTab
from ui.plots.generate import GenerateTab
from ui.plots.gradients import GradientsTab
from ui.plots.overview import OverviewTab
from ui.plots.stepthrough import StepThroughTab
from ui.relabel import Msg
from ui.scrollarea import ScrollArea
from ui.tooltip import Tooltip
from ui.window_geometry import Area, scaled

TITLE = "transformer-sim"
WINDOW = (1280, 800)  # default size, menu bar included (at scale 1; ui/window_geometry.py fits it to the screen)
SMALLEST = (1024, 700)  # still usable; a smaller window scrolls a layout of this size
# the speed menu's entries (shown translated, chosen by position) and steps per second
SPEEDS = {N_("full speed"): 0.0, N_("1 step/s"): 1.0, N_("2 steps/s"): 2.0, N_("5 steps/s"): 5.0,
          N_("10 steps/s"): 10.0, N_("20 steps/s"): 20.0}
SHORTCUTS = N_("Space  run / pause\nF10  step\nF11  step into (one phase)\nCtrl+R  reset\nCtrl+O  open a preset\n"
               "Ctrl+S  save the preset as…\nCtrl+Q  quit\nAlt+1 … Alt+9  show a tab")
ABOUT = N_("{title}: train a small GPT step by step and watch what each design choice does.\n"
           "Every number is computed by the engine: gradients are checked, kernels compared with references.")
MORE_LESSONS = N_("More lessons")


def _tip(widget, text) -> Tooltip:
    return Tooltip(widget, text)


def preset_label(p) -> str:
    """A shipped preset as its menu entry reads: name and what it teaches (in the current language)."""
    text = _(p.description)
    text = text if len(text) <= 90 else text[:89] + "…"
    return f"{p.name}  -  {text}"


class WindowLayout:
    """The widgets of the window of `app` (a `ui.app.App`), built on `root`."""

    def __init__(self, root: tk.Tk, app, scale: float = 1.0, usable: Area | None = None):
        self.root, self.app = root, app
        self.menu_height = 0  # on X11 the menu bar sits outside the geometry Tk manages; measured once mapped
        self.scale = scale  # the screen's density factor (ui/window_geometry.display_scale)
        self.default_size, self.smallest = scaled(WINDOW, scale), scaled(SMALLEST, scale)
        self.usable = usable or Area(0, 0, root.winfo_screenwidth(), root.winfo_screenheight())
        self._phase: str | Msg = Msg(N_("phase -"))
        self._status: tuple[str | Msg, bool] = ("", False)
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
        self.restyle()

    def restyle(self) -> None:
        """The fonts the styles name themselves, in the family of the current language (ui/fonts.py)."""
        fonts = self.app.fonts
        self._tab_font.configure(family=fonts.family)
        ttk.Style(self.root).configure("Accent.TButton", font=fonts.font(9, "bold"))

    def _command(self, m: tk.Menu, msgid: str, **options) -> None:
        m.add_command(label=_(msgid), **options)
        relabel.menu(m, m.index("end"), msgid)

    def _cascade(self, bar: tk.Menu, msgid: str, menu: tk.Menu) -> None:
        bar.add_cascade(label=_(msgid), menu=menu)
        relabel.menu(bar, bar.index("end"), msgid)

    def _menus(self) -> None:
        bar = self.menubar = tk.Menu(self.root)
        files = self.app.files
        m = tk.Menu(bar, tearoff=False)
        self._command(m, N_("Open preset…"), accelerator="Ctrl+O", command=files.open_preset_dialog)
        self._command(m, N_("Save preset as…"), accelerator="Ctrl+S", command=files.save_preset_dialog)
        m.add_separator()
        self._command(m, N_("Save checkpoint…"), command=files.save_checkpoint_dialog)
        self._command(m, N_("Load checkpoint…"), command=files.load_checkpoint_dialog)
        m.add_separator()
        self._command(m, N_("Export current plot (PNG/SVG)…"), command=files.export_plot_dialog)
        self._command(m, N_("Export metrics CSV…"), command=files.export_csv_dialog)
        m.add_separator()
        self._command(m, N_("Quit"), accelerator="Ctrl+Q", command=self.app.close)
        self._cascade(bar, N_("File"), m)
        m = tk.Menu(bar, tearoff=False)
        self._command(m, N_("Step"), accelerator="F10", command=self.app.step)
        self._command(m, N_("Step into (one phase)"), accelerator="F11", command=self.app.step_into)
        self._command(m, N_("Run / Pause"), accelerator="Space", command=self.app.toggle_run)
        self._command(m, N_("Run N steps"), command=self.app.run_n)
        self._command(m, N_("Reset"), accelerator="Ctrl+R", command=self.app.reset)
        m.add_separator()
        self._command(m, N_("Pin this run"), command=self.app.pin)
        self._command(m, N_("Clear pinned runs"), command=self.app.clear_pins)
        self._command(m, N_("Rewind to the chosen snapshot"), command=self.app.rewind)
        self._command(m, N_("Gradient check"), command=self.app.gradient_check)
        self._cascade(bar, N_("Run"), m)
        self.view_menu = tk.Menu(bar, tearoff=False)
        self._cascade(bar, N_("View"), self.view_menu)
        # each language named in itself, so a person who cannot read the current one still finds theirs
        self.language_menu = tk.Menu(self.view_menu, tearoff=False)
        self.language_var = tk.StringVar(self.root, self.app.language)
        for code, name in LANGUAGES.items():
            self.language_menu.add_radiobutton(label=name, variable=self.language_var, value=code,
                                               command=lambda c=code: self.app.set_language(c))
        m = tk.Menu(bar, tearoff=False)
        self._command(m, N_("Course (lesson cards)…"), command=self.open_course)
        self._command(m, N_("Keyboard shortcuts"), command=lambda: messagebox.showinfo(
            _("Keyboard shortcuts"), _(SHORTCUTS), parent=self.root))
        self._command(m, N_("About"), command=lambda: messagebox.showinfo(
            _("About"), _(ABOUT).format(title=TITLE), parent=self.root))
        self._cascade(bar, N_("Help"), m)
        self.root.configure(menu=bar)

    def open_course(self):
        """Help → Course: the lesson cards' table of contents with this person's progress (ui/panels/cards.py)."""
        from ui.panels.cards import CourseWindow

        self.course_window = CourseWindow(self.root, apply_settings=self.app.change_settings)
        return self.course_window

    def _button(self, bar, msgid: str, tip: str | None = None, **options) -> ttk.Button:
        if options.get("width", 0) > 0:  # a minimum (negative in ttk): a longer translation widens, never cut off
            options["width"] = -options["width"]
        button = relabel.text(ttk.Button(bar, text=_(msgid), **options), msgid)
        if tip is not None:
            _tip(button, tip)
        return button

    def _toolbar(self) -> None:
        bar = self.toolbar = ttk.Frame(self.top, padding=(4, 3))
        bar.pack(side="top", fill="x")
        self.presets = list_presets()
        relabel.text(ttk.Label(bar), N_("Preset")).pack(side="left")
        self.preset_var = tk.StringVar(self.root, self.app.config.name)
        self.preset_button = ttk.Menubutton(bar, textvariable=self.preset_var, width=16)
        self.preset_menu = tk.Menu(self.preset_button, tearoff=False)
        for i, p in enumerate(self.presets):  # shipped presets by name and what they teach
            self.preset_menu.add_command(label=preset_label(p),
                                         command=lambda p=p: self.app.files.open_preset(str(p.path)))
            relabel.keep(self.preset_menu, lambda i=i, p=p: self.preset_menu.entryconfigure(i, label=preset_label(p)),
                         key=f"entry{i}")
        self.preset_button.configure(menu=self.preset_menu)
        self.preset_button.pack(side="left", padx=(3, 2))
        _tip(self.preset_button, N_("The shipped lessons; Open… loads any preset file."))
        self._button(bar, N_("Open…"), width=6, command=self.app.files.open_preset_dialog).pack(side="left", padx=1)
        self._button(bar, N_("Save As…"), width=8,
                     command=self.app.files.save_preset_dialog).pack(side="left", padx=1)
        ttk.Separator(bar, orient="vertical").pack(side="left", fill="y", padx=6)
        self.reset_button = self._button(bar, N_("Reset"), N_("A fresh model from the current settings (same seed: "
                                         "same batches)."), width=6, command=self.app.reset)
        self.reset_button.pack(side="left", padx=1)
        self.step_button = self._button(bar, N_("Step"), N_("One whole training step (F10)."), width=6,
                                        command=self.app.step, style="Accent.TButton")
        self.step_button.pack(side="left", padx=1)
        self.step_into_button = self._button(
            bar, N_("Step into"), N_("One phase of a step: an op's forward or backward, the loss, the clip or the "
                                     "update (F11). See the Step-through tab."), width=9, command=self.app.step_into)
        self.step_into_button.pack(side="left", padx=1)
        self.run_button = self._button(bar, N_("Run"), N_("Train until paused (Space)."), width=6,
                                       command=self.app.toggle_run, style="Accent.TButton")
        self.run_button.pack(side="left", padx=1)
        self.run_n_button = self._button(bar, N_("Run N"), N_("Train the given number of steps, then pause."),
                                         width=6, command=self.app.run_n)
        self.run_n_button.pack(side="left", padx=(6, 1))
        self.n_var = tk.StringVar(self.root, "50")
        ttk.Spinbox(bar, textvariable=self.n_var, from_=1, to=100000, increment=10, width=5).pack(side="left")
        relabel.text(ttk.Label(bar), N_("speed")).pack(side="left", padx=(8, 2))
        self.speed_var = tk.StringVar(self.root)
        speed = self.speed_box = ttk.Combobox(bar, textvariable=self.speed_var, state="readonly", width=9)
        speed.pack(side="left")
        speed.bind("<<ComboboxSelected>>", lambda e: self.app.set_speed(self.speed()))
        choice = {"index": 0}  # the chosen speed by position: its text changes with the language

        def show_speeds():
            if speed.current() >= 0:
                choice["index"] = speed.current()
            speed.configure(values=[_(s) for s in SPEEDS])
            speed.current(choice["index"])
        relabel.keep(speed, show_speeds, key="values")

    def speed(self) -> float:
        """The steps per second chosen in the speed menu (0: full speed)."""
        return list(SPEEDS.values())[max(0, self.speed_box.current())]

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
        self.lessons = LessonChooser(self.notebook)
        self.inner = self.lessons.book
        self.lesson_tabs = build_lesson_tabs(app, self.notebook, self.inner)  # kind -> tab
        self.tabs = [self.overview, self.gradients, self.activations, self.attention, self.stepthrough,
                     self.generate_tab, *self.lesson_tabs.values()]
        # the tabs' titles are their msgids (a tab's identity); what shows is their translation
        self.tab_var = tk.StringVar(self.root, self.overview.title)
        for i, tab in enumerate(self.tabs):
            if tab.frame.master is self.inner:
                self.lessons.add(tab.frame, tab.title)
            else:
                self.notebook.add(tab.frame, text=_(tab.title))
                relabel.keep(self.notebook, lambda t=tab: self.notebook.tab(t.frame, text=_(t.title)), key=f"tab{i}")
            self.view_menu.add_radiobutton(label=_(tab.title), variable=self.tab_var, value=tab.title,
                                           accelerator=f"Alt+{i + 1}" if i < 9 else None,
                                           command=lambda t=tab: self.select_tab(t))
            relabel.menu(self.view_menu, self.view_menu.index("end"), tab.title)
        self.notebook.add(self.lessons, text=_(MORE_LESSONS))
        relabel.keep(self.notebook, lambda: self.notebook.tab(self.lessons, text=_(MORE_LESSONS)), key="more")
        self.view_menu.add_separator()
        self.view_menu.add_cascade(label=_("Language"), menu=self.language_menu)
        relabel.menu(self.view_menu, self.view_menu.index("end"), N_("Language"))
        self.notebook.bind("<<NotebookTabChanged>>", lambda e: self._tab_changed())
        self.inner.bind("<<NotebookTabChanged>>", lambda e: self._tab_changed(), add="+")
        self.overview.ensure_built()

    def _bottom_bar(self) -> None:
        bar = ttk.Frame(self.top, padding=(4, 2))
        bar.pack(side="bottom", fill="x")
        relabel.text(ttk.Label(bar), N_("Rewind to step")).pack(side="left")
        self.rewind_scale = ttk.Scale(bar, from_=0, to=0, orient="horizontal", length=220,
                                      command=lambda v: self.show_rewind_choice())
        self.rewind_scale.pack(side="left", padx=4)
        self.rewind_label = ttk.Label(bar, text="0", width=7)
        self.rewind_label.pack(side="left")
        self.rewind_button = self._button(bar, N_("Rewind"), N_(
            "Go back to a snapshot (kept every few steps, bounded memory); training from there branches, and the "
            "curves after it are dropped."), command=self.app.rewind)
        self.rewind_button.pack(side="left", padx=2)
        ttk.Separator(bar, orient="vertical").pack(side="left", fill="y", padx=8)
        self.pin_button = self._button(bar, N_("Pin this run"), N_(
            "Keep this run's loss curves as a faded overlay, labelled by how its settings differ. Then change a "
            "toggle, reset and run again on the same seed and batches."), command=self.app.pin)
        self.pin_button.pack(side="left", padx=2)
        self._button(bar, N_("Clear pins"), command=self.app.clear_pins).pack(side="left", padx=2)
        ttk.Separator(bar, orient="vertical").pack(side="left", fill="y", padx=8)
        self.gradcheck_button = self._button(bar, N_("Gradient check"), N_(
            "Compare the analytic gradient of a few parameters with central finite differences (float64) on the "
            "current batch."), command=self.app.gradient_check)
        self.gradcheck_button.pack(side="left", padx=2)
        self.gradcheck_label = ttk.Label(bar, text="")
        self.gradcheck_label.pack(side="left", padx=4)

    def _status_bar(self) -> None:
        bar = ttk.Frame(self.top, padding=(6, 2), relief="sunken")
        bar.pack(side="bottom", fill="x")
        self.status_vars = {k: tk.StringVar(self.root, v) for k, v in
                            (("step", _("step {step}").format(step=0)), ("loss", _("loss -")),
                             ("speed", _("- tok/s")), ("phase", str(self._phase)))}
        widths = {"step": 11, "loss": 22, "speed": 13, "phase": 30}
        for k, var in self.status_vars.items():
            ttk.Label(bar, textvariable=var, width=widths[k], anchor="w").pack(side="left")
            ttk.Separator(bar, orient="vertical").pack(side="left", fill="y", padx=4)
        self.status_label = ttk.Label(bar, text="", anchor="w")
        self.status_label.pack(side="left", fill="x", expand=True)

    def relabel_all(self) -> None:
        """After a language switch: every registered text, the styles' fonts, the status line and the phase."""
        self.restyle()
        relabel.relabel()
        self.language_var.set(self.app.language)
        self.show_phase(self._phase)
        self.show_status(*self._status)
        self.show_progress(self.app.step_count, self.app.history)
        if not self.app.history.last:
            self._set_var("loss", _("loss -"))
            self._set_var("speed", _("- tok/s"))


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
            self.app.tab_shown(tab)

    # ------------------------------------------------------------------ what the app shows
    def show_status(self, text: str | Msg, error: bool = False) -> None:
        """The message part of the status line (a Msg is translated again after a switch); red for an error."""
        self._status = (text, error)
        self.status_label.configure(text=str(text), style="Red.TLabel" if error else "TLabel")

    def _set_var(self, key: str, text: str) -> None:
        var = self.status_vars[key]
        if var.get() != text:  # an unchanged label is not redrawn
            var.set(text)

    def show_progress(self, step: int, history) -> None:
        """Step, loss and speed in the status line."""
        rec = history.last
        self._set_var("step", _("step {step}").format(step=step))
        if rec is not None and rec.nonfinite is None:
            val = history.val.y[-1] if len(history.val) else None
            self._set_var("loss", _("loss {loss:.4f}").format(loss=rec.loss) if val is None else
                          _("loss {loss:.4f}  val {val:.3f}").format(loss=rec.loss, val=val))
            # the phases' own time: a step taken phase by phase also waited for the person between phases
            busy = sum(rec.phase_seconds.values())
            self._set_var("speed", _("{rate:,.0f} tok/s").format(rate=rec.tokens / busy) if busy > 0
                          else _("- tok/s"))
        elif rec is None:
            self._set_var("loss", _("loss -"))

    def show_phase(self, text: str | Msg) -> None:
        """The phase part of the status line."""
        self._phase = text
        self.status_vars["phase"].set(str(text))

    def show_running(self, on: bool) -> None:
        """The Run button says what it will do."""
        relabel.text(self.run_button, N_("Pause") if on else N_("Run"))
        self.show_phase(Msg(N_("phase: running")) if on else Msg(N_("phase -")))

    def show_config(self, cfg) -> None:
        """Every control shows `cfg`: the panel, and the generate tab's decoding controls once built."""
        self.controls.set_config(cfg)
        if self.generate_tab.built:
            self.generate_tab.controls.set_config(cfg)

    def show_session(self, name: str) -> None:
        """A new session's name in the title and the preset button."""
        relabel.text(self.run_button, N_("Run"))
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
        self.gradcheck_label.configure(style="TLabel" if ok else "Red.TLabel")
        relabel.text(self.gradcheck_label, N_("{n} checked, worst rel. error {worst:.1e} {mark}"), n=len(rows),
                     worst=worst, mark="✓" if ok else "✗")
