"""The BERT-style encoder: MLM loss by step, NSP and SOP accuracy against the bag-of-words probe, one held-out
pair with its masking coloured, and the attention from [CLS] over it (`simulator.lessons.bert`); the topic
fine-tuning's held-out accuracy and its attention from [CLS]; and fill in the blank, a typed sentence asked of
the trained encoder and causal GPT, their top tokens side by side."""

from __future__ import annotations

import tkinter as tk
from tkinter import ttk

import numpy as np

from simulator.i18n import N_, _
from simulator.lessons.bert import ACTIONS, KEPT_OUT, TO_MASK, TO_RANDOM, TOPIC_LABELS, UNCHANGED, FillError
from ui import relabel
from ui.lessons import lesson_tab
from ui.lessons.base import LessonTab

ACTION_COLOURS = {KEPT_OUT: "white", TO_MASK: "#f4a3a3", TO_RANDOM: "#f6d26b", UNCHANGED: "#9fd4a8"}
PER_LINE = 10  # tokens per line of the example panel
FILL_ROWS = 5  # bars per model in the fill-in-the-blank panel
BAR_PITCH, BAR_LENGTH, TOKEN_WIDTH = 15, 260, 90  # pixels: a row's height, a bar of probability 1, the token column
FILL_MODELS = (("encoder", N_("encoder (reads both sides)")), ("gpt", N_("causal GPT (reads the left side only)")))


@lesson_tab("bert")
class BertTab(LessonTab):
    """Six panels: MLM loss, pair accuracy vs the probe, the masked example, the attention from [CLS], topic
    fine-tuning's accuracy and its attention from [CLS]; above them, fill in the blank."""

    steps_per_second = 60.0

    # ------------------------------------------------------------ fill in the blank
    def build(self) -> None:
        super().build()
        self.build_fill()

    def build_fill(self) -> None:
        """An entry for a sentence with _, an Ask button (and Return), and the two models' top tokens as bars."""
        panel = ttk.Frame(self.frame)
        panel.pack(fill="x", padx=4, pady=2, before=self.canvas.get_tk_widget())
        row = ttk.Frame(panel)
        row.pack(fill="x")
        relabel.text(ttk.Label(row), N_("Fill in the blank (type _ for the hidden word):")).pack(side="left")
        self.fill_var = tk.StringVar(self.frame)
        self.fill_entry = ttk.Entry(row, textvariable=self.fill_var, width=36)
        self.fill_entry.pack(side="left", padx=4)
        self.fill_entry.bind("<Return>", lambda e: self.ask())
        self.fill_button = ttk.Button(row, command=self.ask)
        relabel.text(self.fill_button, N_("Ask"))
        self.fill_button.pack(side="left")
        self.fill_message = ttk.Label(row, text="", foreground="#a33", wraplength=520, justify="left")
        self.fill_message.pack(side="left", padx=8)
        lists = ttk.Frame(panel)
        lists.pack(fill="x")
        self.fill_bars = {}
        for col, (model, title) in enumerate(FILL_MODELS):
            relabel.text(ttk.Label(lists), title).grid(row=0, column=col, sticky="w", padx=4)
            lists.columnconfigure(col, weight=1)
            canvas = tk.Canvas(lists, height=FILL_ROWS * BAR_PITCH + 2, background="white", highlightthickness=0)
            canvas.grid(row=1, column=col, sticky="ew", padx=4)
            rows = []
            for r in range(FILL_ROWS):  # per row: the token, a bar as long as its probability, the probability
                y = r * BAR_PITCH + BAR_PITCH / 2 + 1
                token = canvas.create_text(TOKEN_WIDTH - 4, y, anchor="e", text="", font=("TkDefaultFont", 8))
                bar = canvas.create_rectangle(TOKEN_WIDTH, y - 5, TOKEN_WIDTH, y + 5, fill="#6a9fd4", width=0)
                share = canvas.create_text(TOKEN_WIDTH + 4, y, anchor="w", text="", font=("TkDefaultFont", 8))
                rows.append((token, bar, share))
            self.fill_bars[model] = (canvas, rows)
        self.fill_answer = None
        self.fill_scale = 1.0  # the probability a full bar stands for: the largest shown, so that small ones show

    def fill_rows(self, model: str) -> list[tuple[str, float, str]]:
        """What one model's bars show: (token, probability the bar's length stands for, its label) per row."""
        canvas, rows = self.fill_bars[model]
        out = []
        for token, bar, share in rows:
            x0, _y0, x1, _y1 = canvas.coords(bar)
            out.append((canvas.itemcget(token, "text"), (x1 - x0) / BAR_LENGTH * self.fill_scale,
                        canvas.itemcget(share, "text")))
        return out

    def ask(self) -> None:
        """Asks both trained models for the typed sentence's blank; a sentence that cannot be asked says why."""
        fill = self.result[4] if self.result is not None else None
        if fill is None:
            self.say(_("the models are still training; ask again when the lesson has run"))
            return
        try:
            answer = fill.ask(self.fill_var.get(), FILL_ROWS)
        except FillError as err:
            self.say(str(err))
            return
        self.say("")
        self.show_answer(answer)

    def say(self, text: str) -> None:
        self.fill_message.configure(text=text)

    def show_answer(self, answer) -> None:
        """Both models' top tokens as bars (probability of the token among those that begin a word), on one scale:
        the longest bar is the largest probability of either list."""
        self.fill_answer = answer
        self.fill_scale = max([p for _t, p in answer.encoder + answer.gpt] + [1e-12])
        for model, pairs in (("encoder", answer.encoder), ("gpt", answer.gpt)):
            canvas, rows = self.fill_bars[model]
            for r, (token, bar, share) in enumerate(rows):
                piece, p = pairs[r] if r < len(pairs) else ("", 0.0)
                x0, y0, _x1, y1 = canvas.coords(bar)
                length = p / self.fill_scale * BAR_LENGTH
                canvas.coords(bar, x0, y0, x0 + length, y1)
                canvas.itemconfigure(token, text=piece)
                canvas.coords(share, x0 + length + 4, (y0 + y1) / 2)
                canvas.itemconfigure(share, text=f"{p:.1%}" if piece else "")

    def refresh(self, force: bool = False) -> bool:
        had = self.result
        changed = super().refresh(force)
        if self.result is not None and self.result is not had and self.result[5]:
            first = self.result[5][0]
            if not self.fill_var.get().strip():
                self.fill_var.set(first.text)
            self.ask()
        return changed

    # ------------------------------------------------------------ the lesson's frames
    def digest(self, cfg, frames):
        """Per task: (steps, training MLM loss), (eval steps, held-out MLM loss, pair accuracy); the probes, the
        last example of the first task, the step count; the fill handle, its answers, the topic result."""
        if not frames:
            return {}, {}, None, 0, None, (), None
        curves, probes = {}, {r.task: r.test_accuracy for r in frames[0].probes}
        for i, task in enumerate(cfg.tasks):
            steps = np.array([f.step for f in frames], float)
            train = np.array([f.points[i].mlm_loss for f in frames])
            ev = [(f.step, f.points[i].eval) for f in frames if f.points[i].eval is not None]
            es = np.array([s for s, _e in ev], float)
            curves[task] = (steps, train, es, np.array([e.mlm_loss for _s, e in ev]),
                            np.array([e.pair_accuracy for _s, e in ev]))
        example = next(f.points[0].example for f in reversed(frames) if f.points[0].example is not None)
        last = frames[-1]
        return curves, probes, example, len(frames), last.fill, last.fill_answers, last.topics

    def steps_of(self) -> int:
        return self.result[3]

    def draw_static(self) -> list:
        curves, probes, example, n, _fill, _answers, topics = self.result
        fig = self.figure
        fig.clear()
        (self.ax_mlm, self.ax_pair), (self.ax_ex, self.ax_att), (self.ax_topic, self.ax_topic_att) = fig.subplots(
            3, 2, height_ratios=(0.8, 1.3, 1))
        self.lines, artists = {}, []
        losses = np.concatenate([np.r_[c[1], c[3]] for c in curves.values()])
        for i, task in enumerate(curves):
            (train,) = self.ax_mlm.plot([], [], color=f"C{i}", lw=0.6, alpha=0.5,
                                        label=_("{task}: training batch").format(task=task))
            (held,) = self.ax_mlm.plot([], [], color=f"C{i}", lw=1.6, marker="o", ms=3,
                                       label=_("{task}: held out").format(task=task))
            (acc,) = self.ax_pair.plot([], [], color=f"C{i}", lw=1.6, marker="o", ms=3,
                                       label=_("{task}: encoder's [CLS] head").format(task=task.upper()))
            self.ax_pair.axhline(probes[task], color=f"C{i}", ls="--", lw=1.0,
                                 label=_("{task}: bag-of-words probe ({share:.0%})").format(
                                     task=task.upper(), share=probes[task]))
            self.lines[task] = (train, held, acc)
            artists += [train, held, acc]
        ax = self.ax_mlm
        ax.set_xlim(0, max(n, 1))
        ax.set_ylim(0, float(np.nanmax(losses)) * 1.05)
        ax.set_title(_("MLM loss (cross-entropy on the chosen positions)"), fontsize=9)
        ax.set_xlabel(_("step"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
        ax = self.ax_pair
        ax.axhline(0.5, color="0.5", lw=0.8)
        ax.set_xlim(0, max(n, 1))
        ax.set_ylim(0.3, 1.05)
        ax.set_title(_("pair task accuracy on held-out pairs (chance 50%)"), fontsize=9)
        ax.set_xlabel(_("step"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", ncols=2)
        self.draw_example(example)
        self.draw_attention(example)
        self.draw_topics(topics)
        return artists

    def draw_topics(self, topics) -> None:
        """Held-out topic accuracy through fine-tuning, both learners against chance; their attention from [CLS]."""
        ax, att = self.ax_topic, self.ax_topic_att
        if topics is None:
            for a in (ax, att):
                a.set_axis_off()
            ax.text(0.5, 0.5, _("[CLS] fine-tuning on topics: not run (the world corpus's documents carry topics)"),
                    ha="center", va="center", fontsize=8, transform=ax.transAxes)
            return
        for i, c in enumerate(topics.curves):
            ax.plot(c.steps, c.accuracy, color=f"C{i + 2}", marker="o", ms=3, lw=1.6, label=_(TOPIC_LABELS[c.label]))
        ax.axhline(1 / len(topics.names), color="0.5", lw=0.8, ls="--",
                   label=_("chance ({share:.0%})").format(share=1 / len(topics.names)))
        ax.set_ylim(0, 1.05)
        ax.set_xlabel(_("fine-tuning step"))
        ax.set_title(_("topic fine-tuning on [CLS]: held-out accuracy"), fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="center right")
        maps = np.concatenate([c.attention for c in topics.curves])  # (learners x NH, n)
        im = att.imshow(maps, aspect="auto", cmap="viridis", vmin=0)
        heads = topics.curves[0].attention.shape[0]
        names = {"pretrained": _("pre-trained"), "scratch": _("scratch")}
        att.set_yticks(range(len(maps)), [_("{learner}, head {h}").format(learner=names[c.label], h=h)
                                          for c in topics.curves for h in range(heads)], fontsize=7)
        att.set_xticks(range(len(topics.tokens)), topics.tokens, rotation=90, fontsize=6)
        guesses = ", ".join(_("{learner} says {topic}").format(learner=names[c.label], topic=topics.names[c.predicted])
                            for c in topics.curves)
        att.set_title(_("attention from [CLS] after topic fine-tuning, last layer\ntopic {topic}; {guesses}").format(
            topic=topics.names[topics.label], guesses=guesses), fontsize=8)
        self.figure.colorbar(im, ax=att, fraction=0.04)

    def draw_example(self, ex) -> None:
        """The pair's tokens in reading order, each chosen position coloured by what the masking did."""
        ax = self.ax_ex
        ax.set_axis_off()
        ax.set_xlim(0, PER_LINE)
        lines = -(-len(ex.tokens) // PER_LINE)
        ax.set_ylim(lines + 0.2, -0.3)
        for t, (tok, read, pred, act) in enumerate(zip(ex.tokens, ex.shown, ex.predicted, ex.action, strict=True)):
            x, y = t % PER_LINE + 0.5, (t // PER_LINE) * 1.0 + 0.4
            label = tok if act == KEPT_OUT else f"{tok}\n\u2192{read}\n\u2192{pred}"
            ax.text(x, y, label, ha="center", va="center", fontsize=6 if act != KEPT_OUT else 7,
                    bbox={"boxstyle": "round,pad=0.2", "fc": ACTION_COLOURS[int(act)],
                          "ec": "0.3" if ex.segments[t] else "0.7", "lw": 0.6})
        ax.set_title(_("held-out pair: label {label}, predicted {predicted}; chosen: original \u2192 read \u2192 "
                       "predicted\nred {masked}, yellow {random}, green {unchanged}").format(
                         label=ex.label, predicted=ex.predicted_label, masked=_(ACTIONS[TO_MASK]),
                         random=_(ACTIONS[TO_RANDOM]), unchanged=_(ACTIONS[UNCHANGED])), fontsize=7)

    def draw_attention(self, ex) -> None:
        """The last layer's attention from [CLS] over the pair, one row per head."""
        ax = self.ax_att
        im = ax.imshow(ex.cls_attention, aspect="auto", cmap="viridis", vmin=0)
        heads = ex.cls_attention.shape[0]
        ax.set_yticks(range(heads), [_("head {h}").format(h=h) for h in range(heads)],
                      fontsize=7)
        ax.set_xticks(range(len(ex.tokens)), ex.tokens, rotation=90, fontsize=6)
        ax.set_title(_("attention from [CLS], last layer (trained model)"), fontsize=9)
        self.figure.colorbar(im, ax=ax, fraction=0.04)

    def show_until(self, k: int) -> None:
        for task, (steps, train, es, held, acc) in self.result[0].items():
            line_train, line_held, line_acc = self.lines[task]
            shown, eshown = steps <= k, es <= k
            line_train.set_data(steps[shown], train[shown])
            line_held.set_data(es[eshown], held[eshown])
            line_acc.set_data(es[eshown], acc[eshown])
