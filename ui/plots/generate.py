"""Generate: a prompt, the decoding rule, the text, and the next-token distribution token by token.

The bar chart shows the 20 most likely tokens after temperature. Bars kept by the rule (top-k,
top-p, min-p) are coloured, the ones a filter removed are grey, and the drawn token is outlined in
red. While the text streams in, the chart follows the newest token; afterwards the slider walks
back through every token.
"""

from __future__ import annotations

import tkinter as tk
from tkinter import ttk

import numpy as np

from simulator.i18n import N_, _
from simulator.sampling import printable
from ui.panels.controls import SAMPLING_GROUP, ControlsPanel
from ui.plots.base import PlotTab, message_on
from ui.protocol import Generating, Token

BARS = 20
KEPT, CUT, DRAWN = "#4c72b0", "#c8c8c8", "#d62728"


class GenerateTab(PlotTab):
    """Prompt and rule on the left, text and chart on the right."""

    title = N_("Generate")

    def build(self) -> None:
        left = ttk.Frame(self.frame)
        left.pack(side="left", fill="y", padx=(2, 4))
        self.controls = ControlsPanel(left, self.app.change_setting, groups=SAMPLING_GROUP, note=False, width=215)
        self.controls.pack(fill="both", expand=True)
        self.controls.set_config(self.app.config)
        self.button = ttk.Button(left, text=_("Generate"), command=self.app.generate)
        self.button.pack(fill="x", pady=4)
        self.eval_note = ttk.Label(left, text=_("Uses the current weights in eval mode;\ntraining state is untouched."),
                                   foreground="#555")
        self.eval_note.pack(fill="x")
        right = ttk.Frame(self.frame)
        right.pack(side="left", fill="both", expand=True)
        self.text = tk.Text(right, height=7, wrap="word", font=("DejaVu Sans Mono", 10), relief="solid",
                            borderwidth=1)
        self.text.tag_configure("prompt", foreground="#888")
        self.text.tag_configure("current", background="#ffe9a8")
        self.text.pack(fill="x", padx=2, pady=2)
        nav = ttk.Frame(right)
        nav.pack(fill="x")
        self.token_label = ttk.Label(nav, text=_("token"))
        self.token_label.pack(side="left", padx=(2, 4))
        self.index_var = tk.IntVar(self.frame, 0)
        self.slider = ttk.Scale(nav, from_=0, to=0, orient="horizontal", command=self._slide)
        self.slider.pack(side="left", fill="x", expand=True)
        self.index_label = ttk.Label(nav, text="", width=34)
        self.index_label.pack(side="left", padx=4)
        self.make_canvas(right, figsize=(7, 3.5))
        self._drawn = None

    def retranslate(self) -> None:
        self.button.configure(text=_("Generate"))
        self.eval_note.configure(text=_("Uses the current weights in eval mode;\ntraining state is untouched."))
        self.token_label.configure(text=_("token"))
        self._drawn = None  # the chart is drawn again in the new language

    def clear(self) -> None:
        self.events: list = []
        self.prompt = ""
        self.follow = True
        self.shown = -1
        self._drawn = None

    def setup(self, info) -> None:
        self.controls.set_config(self.app.config)

    def start(self, prompt: str) -> None:
        """A generation began: clear the text and the events."""
        self.events, self.prompt, self.follow, self.shown = [], prompt, True, -1
        if self.built:
            self.text.delete("1.0", "end")
            self.text.insert("end", prompt, "prompt")
            self.button.configure(state="disabled")

    def subscribe(self, bus) -> None:
        super().subscribe(bus)
        bus.subscribe(Token, self.on_token)
        bus.subscribe(Generating, self.on_generating)

    def on_token(self, msg: Token) -> None:
        """One generated token arrived from the worker."""
        ev = msg.event
        self.events.append(ev)
        if self.built:
            self.text.insert("end", ev.char)
            self.text.see("end")
        self.stale = True

    def on_generating(self, msg: Generating) -> None:
        """Generation started or ended."""
        if not msg.on:
            self.finished()

    def finished(self) -> None:
        """The generation ended (or failed)."""
        if self.built:
            self.button.configure(state="normal")
            self.slider.configure(to=max(0, len(self.events) - 1))
            self.slider.set(max(0, len(self.events) - 1))
        self.follow = False
        self.stale = True

    @property
    def generated(self) -> str:
        """The text generated so far (without the prompt)."""
        return "".join(ev.char for ev in self.events)

    def _slide(self, value) -> None:
        if self.follow or not self.events:
            return
        i = int(round(float(value)))
        if i != self.shown:
            self.shown = i
            self.stale = True
            self.refresh(force=True)

    def refresh(self, force: bool = False) -> bool:
        if not self.built:
            return False
        i = len(self.events) - 1 if self.follow else min(self.shown if self.shown >= 0 else len(self.events) - 1,
                                                         len(self.events) - 1)
        if (i, len(self.events)) == self._drawn and not force:
            return False
        if not force and not self.can_full_draw():
            return False
        self._drawn = (i, len(self.events))
        fig = self.figure
        fig.clear()
        self.relayout()  # new axes: lay them out on this draw
        ax = fig.add_subplot()
        if i < 0:
            message_on(ax, _("press Generate: the distribution of each next token shows here"), axis_off=True)
            self.full_draw()
            return True
        self._chart(ax, self.events[i])
        self._mark_text(i)
        self.index_label.configure(text=_("{i} of {n}: {char} p={p:.3f}").format(
            i=i + 1, n=len(self.events), char=repr(printable(self.events[i].char)), p=self.events[i].prob))
        self.full_draw()
        return True

    def _chart(self, ax, ev) -> None:
        order = np.argsort(-ev.tempered, kind="stable")[:BARS]
        kept = set(int(k) for k in ev.after_min_p)
        probs = ev.tempered[order]
        colours = [KEPT if int(t) in kept else CUT for t in order]
        bars = ax.bar(np.arange(len(order)), probs, color=colours, edgecolor=colours, linewidth=0)
        chars = [printable(self.app.info.vocab[int(t)]) if self.app.info else str(t) for t in order]
        ax.set_xticks(np.arange(len(order)), chars, fontsize=9)
        drawn = np.flatnonzero(order == ev.token)
        if drawn.size:
            b = bars[int(drawn[0])]
            b.set_edgecolor(DRAWN)
            b.set_linewidth(2.0)
            ax.annotate(_("drawn"), (b.get_x() + b.get_width() / 2, b.get_height()), xytext=(0, 6),
                        textcoords="offset points", ha="center", color=DRAWN, fontsize=8,
                        arrowprops={"arrowstyle": "-|>", "color": DRAWN, "lw": 0.8})
        ax.set_ylim(0, max(0.05, float(probs.max()) * 1.25))
        ax.set_ylabel(_("probability after temperature"))
        ax.set_title(_("token {i}: drew {char}, renormalised p = {p:.3f}\nkept {kept} of {n} tokens; entropy "
                       "{entropy:.2f} nats").format(i=ev.index + 1, char=repr(printable(ev.char)), p=ev.prob,
                                                    kept=len(kept), n=ev.tempered.size, entropy=ev.entropy),
                     fontsize=9)
        ax.legend(handles=[ax.bar([0], [0], color=KEPT)[0], ax.bar([0], [0], color=CUT)[0]],
                  labels=[_("kept by the rule"), _("removed by top-k / top-p / min-p")], loc="upper right")
        ax.grid(alpha=0.3, axis="y")

    def _mark_text(self, i: int) -> None:
        self.text.tag_remove("current", "1.0", "end")
        start = f"1.0 + {len(self.prompt) + i} chars"
        self.text.tag_add("current", start, f"{start} + 1 chars")
