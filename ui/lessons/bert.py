"""The BERT-style encoder: MLM loss by step, NSP and SOP accuracy against the bag-of-words probe, one held-out
pair with its masking coloured, and the attention from [CLS] over it (`simulator.lessons.bert`)."""

from __future__ import annotations

import numpy as np

from simulator.i18n import _
from simulator.lessons.bert import ACTIONS, KEPT_OUT, TO_MASK, TO_RANDOM, UNCHANGED
from ui.lessons import lesson_tab
from ui.lessons.base import LessonTab

ACTION_COLOURS = {KEPT_OUT: "white", TO_MASK: "#f4a3a3", TO_RANDOM: "#f6d26b", UNCHANGED: "#9fd4a8"}
PER_LINE = 10  # tokens per line of the example panel


@lesson_tab("bert")
class BertTab(LessonTab):
    """Four panels: MLM loss, pair accuracy vs the probe, the masked example, the attention from [CLS]."""

    steps_per_second = 60.0

    def digest(self, cfg, frames):
        """Per task: (steps, training MLM loss), (eval steps, held-out MLM loss, pair accuracy); the probes, the
        last example of the first task, and the step count."""
        if not frames:
            return {}, {}, None, 0
        curves, probes = {}, {r.task: r.test_accuracy for r in frames[0].probes}
        for i, task in enumerate(cfg.tasks):
            steps = np.array([f.step for f in frames], float)
            train = np.array([f.points[i].mlm_loss for f in frames])
            ev = [(f.step, f.points[i].eval) for f in frames if f.points[i].eval is not None]
            es = np.array([s for s, _e in ev], float)
            curves[task] = (steps, train, es, np.array([e.mlm_loss for _s, e in ev]),
                            np.array([e.pair_accuracy for _s, e in ev]))
        example = next(f.points[0].example for f in reversed(frames) if f.points[0].example is not None)
        return curves, probes, example, len(frames)

    def steps_of(self) -> int:
        return self.result[3]

    def draw_static(self) -> list:
        curves, probes, example, n = self.result
        fig = self.figure
        fig.clear()
        (self.ax_mlm, self.ax_pair), (self.ax_ex, self.ax_att) = fig.subplots(2, 2, height_ratios=(1, 1))
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
        return artists

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
