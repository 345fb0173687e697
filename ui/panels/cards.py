"""The lesson card panel and the course's table of contents (Help → Course…).

`CardPanel` walks one card: its why, then its steps one at a time (each settings change shown as the
card applies it, through the engine's validated override), then the prediction question; only
after an answer is chosen does "Run and check" run the card's experiment (in a thread, on the
engine: `simulator.lessons.cards.run_card`) and reveal the expected answer and every claim with
the numbers it read and ✓ / ✗. A claim that does not hold says so as a finding. The outcome goes to
the person's progress file (`ui/panels/progress.py`). `CourseWindow` lists the course's sections
and cards with that progress, and opens a card's panel.

A step that changes settings of a GPT card has "Apply to the window's run": its settings go into the
main window's controls through the window's own validated path (`App.change_settings`: the preset rules,
a live change on the next step, a structural one rebuilt after asking), so the person can try them on
the run they have. The card's own texts are the lesson catalog's (`_(text)`); the panel's are the window's.
"""

from __future__ import annotations

import queue
import threading
import tkinter as tk
from tkinter import ttk

from simulator.config import RunConfig
from simulator.i18n import N_, _
from simulator.lessons.cards import load_card, run_card
from simulator.lessons.cards_course import load_course
from simulator.presets import PresetError
from ui import relabel
from ui.panels import progress

WRAP = 620


def _text(s: str) -> str:
    """A card's text (the lesson catalog's message) in the current language, on one line."""
    return " ".join(_(s.strip()).split())


def step_text(index: int, step) -> str:
    """A step as the panel lists it: its text, then what it sets, runs and compares (names as typed)."""
    lines = [f"{index + 1}. {_text(step.text)}"]
    lines += ["      " + _("set {path} = {value}").format(path=k, value=v) for k, v in step.settings]
    if step.run is not None:
        lines.append("      " + _("run {steps} steps").format(steps=step.run))
    if step.compare_with:
        lines.append("      " + _("compare with {preset} (same seed and steps)").format(preset=step.compare_with))
    return "\n".join(lines)


def claim_text(v) -> str:
    """A claim's verdict: ✓ / ✗, the claim, what was measured and the test it was held to."""
    said = "" if v.holds else _("  — does not hold in this run (a finding, not an error)")
    return f"{'✓' if v.holds else '✗'} {_text(v.claim.text)}\n    {v.measured}\n    {v.test}{said}"


class CardPanel:
    """One card in a window of its own: steps, prediction, run, verdicts."""

    def __init__(self, root: tk.Misc, name: str, seed: int | None = None, on_done=None, apply_settings=None):
        self.name, self.seed, self.on_done = name, seed, on_done
        # ((path, value), ...) -> bool: the main window's validated change (None: no window to apply to)
        self.apply_settings = apply_settings
        self.apply_buttons: dict[int, ttk.Button] = {}  # step index -> its Apply button
        self.config, self.card = load_card(name)
        if self.card is None:
            raise PresetError(_("'{name}' has no lesson card").format(name=name))
        self.top = tk.Toplevel(root)
        relabel.keep(self.top, lambda: self.top.title(_("Lesson card: {title}").format(title=_text(self.card.title))))
        self.top.geometry("700x640")
        self.shown_steps = 0
        self.result = None
        self.error: str | None = None
        self._results: queue.Queue = queue.Queue()
        self._cancel = threading.Event()
        self.top.protocol("WM_DELETE_WINDOW", self.close)
        self._build()

    # ---------------------------------------------------------------- layout
    def _build(self) -> None:
        outer = ttk.Frame(self.top, padding=8)
        outer.pack(fill="both", expand=True)
        title = ttk.Label(outer, font=("TkDefaultFont", 12, "bold"))
        relabel.keep(title, lambda: title.configure(text=_text(self.card.title)))
        title.pack(anchor="w")
        why = ttk.Label(outer, wraplength=WRAP, justify="left")
        relabel.keep(why, lambda: why.configure(text=_text(self.card.why)))
        why.pack(anchor="w", pady=(2, 6))
        self.steps_frame = relabel.text(ttk.LabelFrame(outer, padding=4), N_("Steps"))
        self.steps_frame.pack(fill="x")
        self.step_labels: list[ttk.Label] = []
        bar = ttk.Frame(outer)
        bar.pack(fill="x", pady=4)
        self.next_button = relabel.text(ttk.Button(bar, command=self.next_step), N_("Next step"))
        self.next_button.pack(side="left")
        self.run_button = relabel.text(ttk.Button(bar, command=self.run, state="disabled"), N_("Run and check"))
        self.run_button.pack(side="left", padx=6)
        self.status = ttk.Label(bar, text="")
        self.status.pack(side="left", padx=6)
        self.predict_frame = relabel.text(ttk.LabelFrame(outer, padding=4), N_("Predict first"))
        self.answer = tk.StringVar(self.top, "")
        self.answer_buttons = []
        question = ttk.Label(self.predict_frame, wraplength=WRAP, justify="left")
        relabel.keep(question, lambda: question.configure(text=_text(self.card.prediction.question)))
        question.pack(anchor="w")
        for a in self.card.prediction.answers:  # the value stays the card's own answer; the text is translated
            b = ttk.Radiobutton(self.predict_frame, value=a, variable=self.answer, command=self._answered)
            relabel.keep(b, lambda b=b, a=a: b.configure(text=_text(a)))
            b.pack(anchor="w")
            self.answer_buttons.append(b)
        self.result_frame = relabel.text(ttk.LabelFrame(outer, padding=4), N_("What the run shows"))
        self.claim_labels: list[ttk.Label] = []
        self.next_step()

    def next_step(self) -> None:
        """Shows the next step (and what it sets); after the last, the prediction question."""
        if self.shown_steps < len(self.card.steps):
            i, s = self.shown_steps, self.card.steps[self.shown_steps]
            label = ttk.Label(self.steps_frame, wraplength=WRAP, justify="left")
            relabel.keep(label, lambda: label.configure(text=step_text(i, s)))
            label.pack(anchor="w")
            self.step_labels.append(label)
            if s.settings and self.apply_settings is not None and isinstance(self.config, RunConfig):
                button = relabel.text(ttk.Button(self.steps_frame, command=lambda: self.apply_step(i)),
                                      N_("Apply to the window's run"))
                button.pack(anchor="w", padx=(24, 0), pady=(0, 2))
                self.apply_buttons[i] = button
            self.shown_steps += 1
        if self.shown_steps == len(self.card.steps):
            self.next_button.configure(state="disabled")
            if not self.predict_frame.winfo_ismapped():
                self.predict_frame.pack(fill="x", pady=4)  # below the buttons, above the results
            relabel.text(self.status, N_("choose an answer, then run"))

    def apply_step(self, index: int) -> bool:
        """Puts step `index`'s settings into the main window's run (its controls show them); True when taken."""
        step = self.card.steps[index]
        if self.apply_settings is None or not self.apply_settings(list(step.settings)):
            return False
        relabel.text(self.status, N_("applied to the window's run: {settings}"),
                     settings=", ".join(f"{k} = {v}" for k, v in step.settings))
        return True

    def _answered(self) -> None:
        if self.result is None:
            self.run_button.configure(state="normal")

    # ---------------------------------------------------------------- running
    def run(self) -> None:
        """Runs the card in a thread (the prediction is locked in first)."""
        if not self.answer.get() or self.result is not None:
            return
        for b in self.answer_buttons:
            b.configure(state="disabled")
        self.run_button.configure(state="disabled")
        relabel.text(self.status, N_("running the experiment on the engine…"))

        def work():
            try:
                self._results.put(("ok", run_card(self.card, self.seed, self._cancel.is_set)))
            except PresetError as e:
                self._results.put(("error", str(e)))
        threading.Thread(target=work, daemon=True, name="card").start()
        self.top.after(50, self._poll)

    def _poll(self) -> None:
        try:
            what, value = self._results.get_nowait()
        except queue.Empty:
            if not self._cancel.is_set():
                self.top.after(50, self._poll)
            return
        if what == "error":
            self.error = value
            self.status.configure(text=_(value.strip()))
            return
        self.result = value
        self._reveal()

    def _reveal(self) -> None:
        r, expected = self.result, self.card.prediction.expected
        correct = self.answer.get() == expected
        self.result_frame.pack(fill="both", expand=True, pady=4)
        chosen = self.answer.get()
        answer = ttk.Label(self.result_frame, wraplength=WRAP, justify="left")
        relabel.keep(answer, lambda: answer.configure(text=(
            _("Answer: {expected} (you predicted it)") if correct else
            _("Answer: {expected} (you predicted “{chosen}”)")).format(expected=_text(expected), chosen=_text(chosen))))
        answer.pack(anchor="w")
        for run in r.runs:
            ttk.Label(self.result_frame, text=run.describe(), foreground="#555").pack(anchor="w")
        for v in r.verdicts:
            label = ttk.Label(self.result_frame, wraplength=WRAP, justify="left",
                              foreground="#1a7f37" if v.holds else "#b3261e")
            relabel.keep(label, lambda label=label, v=v: label.configure(text=claim_text(v)))
            label.pack(anchor="w", pady=1)
            self.claim_labels.append(label)
        held = sum(v.holds for v in r.verdicts)
        relabel.text(self.status, N_("{held} of {claims} claims hold"), held=held, claims=len(r.verdicts))
        try:
            progress.record_card(self.name, held, len(r.verdicts), self.answer.get(), correct, r.seed)
        except OSError as e:  # a read-only config folder costs the progress, not the lesson
            relabel.text(self.status, N_("{held} of {claims} claims hold (progress not saved: {reason})"), held=held,
                         claims=len(r.verdicts), reason=str(e))
        if self.on_done is not None:
            self.on_done(self.name)

    def close(self) -> None:
        self._cancel.set()
        self.top.destroy()


class CourseWindow:
    """The course's table of contents: sections, their cards with progress; Open shows a card's panel."""

    def __init__(self, root: tk.Misc, apply_settings=None):
        self.root, self.apply_settings = root, apply_settings
        self.course = load_course()
        self.top = tk.Toplevel(root)
        relabel.keep(self.top, lambda: self.top.title(_text(self.course.title)))
        self.top.geometry("640x560")
        self.panels: list[CardPanel] = []
        frame = ttk.Frame(self.top, padding=8)
        frame.pack(fill="both", expand=True)
        about = ttk.Label(frame, wraplength=600, justify="left")
        relabel.keep(about, lambda: about.configure(text=_text(self.course.description)))
        about.pack(anchor="w")
        self.tree = ttk.Treeview(frame, columns=("progress",), height=20)
        self.tree.column("progress", width=170, anchor="w")
        relabel.keep(self.tree, self.refresh)  # the headings, sections and progress in the current language
        self.tree.pack(fill="both", expand=True, pady=6)
        self.tree.bind("<Double-1>", lambda _e: self.open_selected())
        bar = ttk.Frame(frame)
        bar.pack(fill="x")
        relabel.text(ttk.Button(bar, command=self.open_selected), N_("Open card")).pack(side="left")
        self.summary = ttk.Label(bar, text="")
        self.summary.pack(side="left", padx=8)
        self.refresh()

    def refresh(self, _name: str | None = None) -> None:
        """Rebuilds the table from the course and the progress file."""
        done = progress.load_progress()
        if not hasattr(self, "summary"):  # registered before the bar is built: the first refresh comes after it
            return
        self.tree.heading("#0", text=_("section / card"))
        self.tree.heading("progress", text=_("progress"))
        selected = self.tree.selection()
        self.tree.delete(*self.tree.get_children())
        for i, section in enumerate(self.course.sections, 1):
            sid = self.tree.insert("", "end", text=f"{i}. {_text(section.title)}", open=True,
                                   values=("" if section.cards else _("no card yet"),))
            for name in section.cards:
                entry = done.get(name)
                state = (_("✓ done") if progress.is_done(entry) else
                         _("{held} of {claims} held").format(held=entry["held"], claims=entry["claims"]) if entry
                         else _("not started"))
                self.tree.insert(sid, "end", iid=name, text=name, values=(state,))
        if selected and all(self.tree.exists(s) for s in selected):
            self.tree.selection_set(selected)
        n = sum(progress.is_done(done.get(c)) for c in self.course.cards)
        self.summary.configure(text=_("{done} of {cards} cards done").format(done=n, cards=len(self.course.cards)))

    def open_selected(self) -> CardPanel | None:
        sel = self.tree.selection()
        if not sel or sel[0] not in self.course.cards:
            return None
        panel = CardPanel(self.top, sel[0], on_done=self.refresh, apply_settings=self.apply_settings)
        self.panels.append(panel)
        return panel
