"""What the text lessons share (worked examples, leaf or flower): titled sections of an entry, Compute and the
engine's answer in a read-only box; what was typed is parsed here, and a typing mistake is one dialog that
leaves the previous answer on screen.
"""

from __future__ import annotations

import math
import re
import tkinter as tk
from tkinter import ttk

from simulator.i18n import N_, _
from simulator.lessons import default_config, lesson_for
from simulator.lessons.worked_examples import ExplainError
from simulator.presets import PresetError
from ui import relabel
from ui.plots.base import NOTE_FONT, PlotTab

MONO = ("DejaVu Sans Mono", 8)
TITLE_FONT = ("DejaVu Sans", 9, "bold")
TITLE_GAP = 10  # pixels between a section's title and its controls


class InputError(ValueError):
    """What was typed in a box is not something the worked example can use (one sentence)."""


def parse_numbers(text: str, what: str) -> list[float]:
    """The numbers in `text` (separated by spaces or commas); InputError names `what` and the bad word."""
    out = []
    for word in re.split(r"[\s,]+", text.strip()):
        if not word:
            continue
        try:
            x = float(word)
        except ValueError:
            raise InputError(f"{what}: {word!r} is not a number.") from None
        if not math.isfinite(x):
            raise InputError(f"{what}: {word!r} is not a finite number.")
        out.append(x)
    return out


def parse_rows(text: str, what: str) -> list[list[float]]:
    """Rows of numbers separated by ';' or new lines, all of the same length."""
    rows = [parse_numbers(part, f"{what}, row {i + 1}") for i, part in enumerate(re.split(r"[;\n]", text))
            if part.strip()]
    if not rows:
        raise InputError(_("{what}: type rows of numbers separated by ';', e.g. 90 80 70; 60 50 40.").format(what=what))
    for i, row in enumerate(rows[1:], start=2):
        if len(row) != len(rows[0]):
            raise InputError(_("{what}: row {i} has {n} numbers but row 1 has {first}; every row needs the same "
                               "number.").format(what=what, i=i, n=len(row), first=len(rows[0])))
    return rows


class TextLessonTab(PlotTab):
    """Sections of an entry, a Compute button and the engine's text; subclasses give `sections` and `show_config`."""

    kind = ""  # set by @lesson_tab
    nested = True

    def __init__(self, app, notebook):
        self.cfg = None
        super().__init__(app, notebook)

    def sections(self) -> None:
        """Builds the sections with `section` (subclasses)."""
        raise NotImplementedError

    def show_config(self, cfg) -> None:
        """Puts a config's values into the entries and computes every section (subclasses)."""
        raise NotImplementedError

    def build(self) -> None:
        self.outputs: dict[str, tk.Text] = {}
        relabel.text(ttk.Label(self.frame, foreground="#555", font=NOTE_FONT), N_(
            "Edit a value and press Compute (or Enter): every number below is computed by the engine, the same text "
            "as `main.py explain`.")).pack(fill="x", padx=6, pady=(3, 0))
        self.sections()
        self.load(self.cfg if self.cfg is not None else default_config(lesson_for(self.kind)))

    def load(self, cfg) -> None:
        """Shows a config of this lesson (the tab's entries take its values)."""
        self.cfg = cfg
        if self.built:
            self.show_config(cfg)

    def section(self, title: str, label: str, command, expand: bool = False, entry_width: int = 26,
                extra=None) -> tk.StringVar:
        """A titled row: an entry (after `extra(bar)`'s widgets) and Compute, over a read-only monospace text.

        `title` and `label` are messages (mark them N_), shown translated; `label` also names the section.
        """
        box = ttk.Frame(self.frame, padding=(6, 0))
        box.pack(fill="both" if expand else "x", expand=expand, pady=(4, 0))
        bar = ttk.Frame(box)
        bar.pack(fill="x")
        heading = relabel.text(ttk.Label(box, font=TITLE_FONT), title)  # a child of box: it can move above bar
        heading.pack(in_=bar, side="left", padx=(0, TITLE_GAP))
        # once Tk is idle, not inside the event (as `ui.flow` does): the title moves between masters
        bar.bind("<Configure>", lambda e: bar.after_idle(_place_title, heading, bar), add="+")
        if extra is not None:
            extra(bar)
        relabel.text(ttk.Label(bar), label).pack(side="left", padx=(0, 2))
        var = tk.StringVar(self.frame, "")
        # the button is packed before the entry so that a narrow window shrinks the entry, not the button
        relabel.text(ttk.Button(bar, command=command), N_("Compute")).pack(side="right", padx=4)
        entry = ttk.Entry(bar, textvariable=var, width=entry_width)
        entry.pack(side="left", fill="x", expand=entry_width > 10)
        entry.bind("<Return>", lambda e: command())
        # no wrapping: the tables' columns must stay aligned; a narrow window scrolls sideways instead
        text = tk.Text(box, height=1, wrap="none", font=MONO, relief="flat", background="#fafafa",
                       highlightthickness=0, state="disabled")
        scroll = ttk.Scrollbar(box, orient="horizontal", command=text.xview)
        text.configure(xscrollcommand=scroll.set)
        scroll.pack(side="bottom", fill="x")  # packed before the text: a short window squeezes the text
        if expand:  # the last section takes what height is left and scrolls when that is not enough
            yscroll = ttk.Scrollbar(box, orient="vertical", command=text.yview)
            text.configure(yscrollcommand=yscroll.set)
            yscroll.pack(side="right", fill="y")
        text.pack(fill="both", expand=expand, pady=(2, 0))
        self.outputs[label] = text
        return var

    def _show(self, label: str, text: str) -> None:
        """Puts the engine's text into a section's box (sized to its lines) and keeps it read-only."""
        out = self.outputs[label]
        out.configure(state="normal", height=len(text.splitlines()))
        out.delete("1.0", "end")
        out.insert("1.0", text)
        out.configure(state="disabled")

    def run_section(self, what: str, label: str, make) -> bool:
        """Shows make()'s text, or one dialog for a person's mistake (the previous text stays); True if shown."""
        try:
            text = make()
        except (InputError, ExplainError, PresetError) as err:
            message = str(err)
            if not isinstance(err, InputError):  # the engine's sentence, told where it came from
                message = f"{message}." if message.startswith(what) else f"{what}: {message}."
            self.app.show_error(_("{title}: {error}").format(title=_(self.title), error=_(message)))
            return False
        self._show(label, text)
        return True

    def text(self, label: str) -> str:
        """What a section's box shows now."""
        return self.outputs[label].get("1.0", "end-1c")

    def export(self, path: str) -> None:
        """This tab has text, not a figure: says so (the app shows it as the export's error)."""
        raise ValueError(_("the {title} tab has no plot; copy its text instead").format(title=_(self.title)))


def _place_title(heading: ttk.Label, bar: ttk.Frame) -> None:
    """A section's title beside its controls where they all fit the bar's width, else on a line of its own
    above them (a narrow window: otherwise the controls packed last, an entry or the Compute button, are
    squeezed out)."""
    if not bar.winfo_exists():
        return
    width = bar.winfo_width()
    beside = heading.winfo_manager() == "pack" and heading.pack_info()["in"] is bar
    title = heading.winfo_reqwidth() + TITLE_GAP
    controls = bar.winfo_reqwidth() - (title if beside else 0)
    fits = controls + title <= width
    if fits and not beside:
        heading.pack(in_=bar, side="left", padx=(0, TITLE_GAP), anchor="center", before=bar.pack_slaves()[0])
    elif beside and not fits:
        heading.pack(in_=bar.master, side="top", anchor="w", padx=0, before=bar)
