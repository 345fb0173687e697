"""The lesson card panel and the course's table of contents (Help → Course…).

`CardPanel` walks one card: its why, then its steps one at a time (each settings change shown as the
card applies it, through the engine's validated override), then the prediction question; only
after an answer is chosen does "Run and check" run the card's experiment (in a thread, on the
engine: `simulator.lessons.cards.run_card`) and reveal the expected answer and every claim with
the numbers it read and ✓ / ✗. A claim that does not hold says so as a finding. The outcome goes to
the person's progress file (`ui/panels/progress.py`). `CourseWindow` lists the course's sections
and cards with that progress, and opens a card's panel.
"""

from __future__ import annotations

import queue
import threading
import tkinter as tk
from tkinter import ttk

from simulator.lessons.cards import load_card, run_card
from simulator.lessons.cards_course import load_course
from simulator.presets import PresetError
from ui.panels import progress

WRAP = 620


def _text(s: str) -> str:
    return " ".join(s.split())


class CardPanel:
    """One card in a window of its own: steps, prediction, run, verdicts."""

    def __init__(self, root: tk.Misc, name: str, seed: int | None = None, on_done=None):
        self.name, self.seed, self.on_done = name, seed, on_done
        self.config, self.card = load_card(name)
        if self.card is None:
            raise PresetError(f"'{name}' has no lesson card")
        self.top = tk.Toplevel(root)
        self.top.title(f"Lesson card: {self.card.title}")
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
        ttk.Label(outer, text=self.card.title, font=("DejaVu Sans", 12, "bold")).pack(anchor="w")
        ttk.Label(outer, text=_text(self.card.why), wraplength=WRAP, justify="left").pack(anchor="w", pady=(2, 6))
        self.steps_frame = ttk.LabelFrame(outer, text="Steps", padding=4)
        self.steps_frame.pack(fill="x")
        self.step_labels: list[ttk.Label] = []
        bar = ttk.Frame(outer)
        bar.pack(fill="x", pady=4)
        self.next_button = ttk.Button(bar, text="Next step", command=self.next_step)
        self.next_button.pack(side="left")
        self.run_button = ttk.Button(bar, text="Run and check", command=self.run, state="disabled")
        self.run_button.pack(side="left", padx=6)
        self.status = ttk.Label(bar, text="")
        self.status.pack(side="left", padx=6)
        self.predict_frame = ttk.LabelFrame(outer, text="Predict first", padding=4)
        self.answer = tk.StringVar(self.top, "")
        self.answer_buttons = []
        ttk.Label(self.predict_frame, text=_text(self.card.prediction.question), wraplength=WRAP,
                  justify="left").pack(anchor="w")
        for a in self.card.prediction.answers:
            b = ttk.Radiobutton(self.predict_frame, text=a, value=a, variable=self.answer, command=self._answered)
            b.pack(anchor="w")
            self.answer_buttons.append(b)
        self.result_frame = ttk.LabelFrame(outer, text="What the run shows", padding=4)
        self.claim_labels: list[ttk.Label] = []
        self.next_step()

    def next_step(self) -> None:
        """Shows the next step (and what it sets); after the last, the prediction question."""
        if self.shown_steps < len(self.card.steps):
            s = self.card.steps[self.shown_steps]
            lines = [f"{self.shown_steps + 1}. {_text(s.text)}"]
            lines += [f"      set {k} = {v}" for k, v in s.settings]
            if s.run is not None:
                lines.append(f"      run {s.run} steps")
            if s.compare_with:
                lines.append(f"      compare with {s.compare_with} (same seed and steps)")
            label = ttk.Label(self.steps_frame, text="\n".join(lines), wraplength=WRAP, justify="left")
            label.pack(anchor="w")
            self.step_labels.append(label)
            self.shown_steps += 1
        if self.shown_steps == len(self.card.steps):
            self.next_button.configure(state="disabled")
            if not self.predict_frame.winfo_ismapped():
                self.predict_frame.pack(fill="x", pady=4)  # below the buttons, above the results
            self.status.configure(text="choose an answer, then run")

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
        self.status.configure(text="running the experiment on the engine…")

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
            self.status.configure(text=value)
            return
        self.result = value
        self._reveal()

    def _reveal(self) -> None:
        r, expected = self.result, self.card.prediction.expected
        correct = self.answer.get() == expected
        self.result_frame.pack(fill="both", expand=True, pady=4)
        verdict = "you predicted it" if correct else f"you predicted “{self.answer.get()}”"
        ttk.Label(self.result_frame, text=f"Answer: {expected} ({verdict})", wraplength=WRAP,
                  justify="left").pack(anchor="w")
        for run in r.runs:
            ttk.Label(self.result_frame, text=run.describe(), foreground="#555").pack(anchor="w")
        for v in r.verdicts:
            mark = "✓" if v.holds else "✗"
            said = "" if v.holds else "  — does not hold in this run (a finding, not an error)"
            label = ttk.Label(self.result_frame, text=f"{mark} {_text(v.claim.text)}\n    {v.measured}\n    "
                              f"{v.test}{said}", wraplength=WRAP, justify="left",
                              foreground="#1a7f37" if v.holds else "#b3261e")
            label.pack(anchor="w", pady=1)
            self.claim_labels.append(label)
        held = sum(v.holds for v in r.verdicts)
        self.status.configure(text=f"{held} of {len(r.verdicts)} claims hold")
        try:
            progress.record_card(self.name, held, len(r.verdicts), self.answer.get(), correct, r.seed)
        except OSError as e:  # a read-only config folder costs the progress, not the lesson
            self.status.configure(text=f"{held} of {len(r.verdicts)} claims hold (progress not saved: {e})")
        if self.on_done is not None:
            self.on_done(self.name)

    def close(self) -> None:
        self._cancel.set()
        self.top.destroy()


class CourseWindow:
    """The course's table of contents: sections, their cards with progress; Open shows a card's panel."""

    def __init__(self, root: tk.Misc):
        self.root = root
        self.course = load_course()
        self.top = tk.Toplevel(root)
        self.top.title(self.course.title)
        self.top.geometry("640x560")
        self.panels: list[CardPanel] = []
        frame = ttk.Frame(self.top, padding=8)
        frame.pack(fill="both", expand=True)
        ttk.Label(frame, text=_text(self.course.description), wraplength=600, justify="left").pack(anchor="w")
        self.tree = ttk.Treeview(frame, columns=("progress",), height=20)
        self.tree.heading("#0", text="section / card")
        self.tree.heading("progress", text="progress")
        self.tree.column("progress", width=170, anchor="w")
        self.tree.pack(fill="both", expand=True, pady=6)
        self.tree.bind("<Double-1>", lambda _e: self.open_selected())
        bar = ttk.Frame(frame)
        bar.pack(fill="x")
        ttk.Button(bar, text="Open card", command=self.open_selected).pack(side="left")
        self.summary = ttk.Label(bar, text="")
        self.summary.pack(side="left", padx=8)
        self.refresh()

    def refresh(self, _name: str | None = None) -> None:
        """Rebuilds the table from the course and the progress file."""
        done = progress.load_progress()
        self.tree.delete(*self.tree.get_children())
        for i, section in enumerate(self.course.sections, 1):
            sid = self.tree.insert("", "end", text=f"{i}. {section.title}", open=True,
                                   values=("" if section.cards else "no card yet",))
            for name in section.cards:
                entry = done.get(name)
                state = ("✓ done" if progress.is_done(entry) else
                         f"{entry['held']} of {entry['claims']} held" if entry else "not started")
                self.tree.insert(sid, "end", iid=name, text=name, values=(state,))
        n = sum(progress.is_done(done.get(c)) for c in self.course.cards)
        self.summary.configure(text=f"{n} of {len(self.course.cards)} cards done")

    def open_selected(self) -> CardPanel | None:
        sel = self.tree.selection()
        if not sel or sel[0] not in self.course.cards:
            return None
        panel = CardPanel(self.top, sel[0], on_done=self.refresh)
        self.panels.append(panel)
        return panel
