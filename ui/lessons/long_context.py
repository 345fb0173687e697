"""Long context: attention's time and memory against T (naive, tiled, local), and the copy task's loss for
truncation, a sliding window, local and exact attention (`simulator.lessons.long_context`).

The figure is built once per computed lesson: three axes, one line per impl or strategy, each revealed
frame by frame through `set_data` (the sweep's points first, then the strategies' curves).

The lesson has few frames (a sweep point per T, then a curve per strategy), so the replay reveals them in
ticks: one sweep point a tick, then each strategy's curve growing one evaluation a tick, as it trained. A tick
always shows something new, and the replay keeps the window's refresh rate (three whole frames a second drew
three times a second).
"""

from __future__ import annotations

import numpy as np
from matplotlib.ticker import NullLocator

from simulator.i18n import _
from simulator.lessons.long_context import IMPLS, MIB, STRATEGIES, STRATEGY_LABELS, CopyFrame, CostFrame
from ui.lessons import lesson_tab
from ui.lessons.base import LessonTab


@lesson_tab("long_context")
class LongContextTab(LessonTab):
    """Time and memory of one attention forward + backward against T, and the copy-task loss by step."""

    steps_per_second = 8.0  # ticks: sweep points, then evaluations of the strategies' curves (`ticks`)

    def digest(self, cfg, frames):
        """{impl: (T, ms or nan, MiB)}, {strategy: (steps, losses)}, chance loss, budget MiB, n frames."""
        cost = [f for f in frames if isinstance(f, CostFrame)]
        copy = {f.strategy: f for f in frames if isinstance(f, CopyFrame)}
        impls = {}
        for impl in IMPLS:
            pts = [f.point(impl) for f in cost]
            impls[impl] = (np.array([p.seq_len for p in pts], float),
                           np.array([1e3 * p.seconds if p.seconds is not None else np.nan for p in pts]),
                           np.array([p.bytes / MIB for p in pts]))
        curves = {s: tuple(np.array(v, float) for v in zip(*f.curve, strict=True)) for s, f in copy.items()}
        chance = next(iter(copy.values())).chance if copy else np.log(cfg.vocab)
        return impls, curves, chance, cfg.memory_budget_mib, len(cost), len(frames), cfg

    def steps_of(self) -> int:
        """The replay's ticks: one per sweep point, then one per evaluation of each strategy's curve."""
        return self.result[4] + sum(self._lengths())

    def _lengths(self) -> list[int]:
        """Points of each strategy's curve, in the order they are revealed (0 for a strategy not computed)."""
        curves = self.result[1]
        return [len(curves[s][0]) if s in curves else 0 for s in STRATEGIES]

    def draw_static(self) -> list:
        impls, curves, chance, budget, n_cost, n, cfg = self.result
        fig = self.figure
        fig.clear()
        self.ax_time, self.ax_mem, self.ax_loss = fig.subplots(1, 3)
        self.time_lines, self.mem_lines, self.loss_lines, artists = {}, {}, {}, []
        names = {"naive": _("naive (T x T stored)"), "tiled": _("tiled (exact)"),
                 "local": _("local (window {window}, {n} global)").format(window=cfg.window, n=cfg.global_tokens)}
        Ts = impls["tiled"][0]
        for i, impl in enumerate(IMPLS):
            style = dict(ls="--", lw=1.0, ms=3) if impl == "local" else dict(ls="-", lw=1.4, ms=4)  # local = tiled
            (lt,) = self.ax_time.plot([], [], "o-", color=f"C{i}", lw=1.4, ms=4, label=names[impl])
            (lm,) = self.ax_mem.plot([], [], marker="o", color=f"C{i}", label=names[impl], **style)
            self.time_lines[impl], self.mem_lines[impl] = lt, lm
            artists += [lt, lm]
        for ax in (self.ax_time, self.ax_mem):
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel(_("sequence length T"))
            ax.grid(alpha=0.3, which="both")
            if len(Ts):
                ax.set_xlim(Ts[0] / 1.3, Ts[-1] * 1.3)
                ax.set_xticks(Ts, [f"{int(T) // 1024} K" if T >= 1024 else str(int(T)) for T in Ts])
                ax.xaxis.set_minor_locator(NullLocator())
        ms = np.concatenate([v[1] for v in impls.values()])
        if np.isfinite(ms).any():
            self.ax_time.set_ylim(np.nanmin(ms) / 2, np.nanmax(ms) * 2)
        mib = np.concatenate([v[2] for v in impls.values()] + [[budget]])
        if len(mib):
            self.ax_mem.set_ylim(mib.min() / 2, mib.max() * 2)
        self.ax_time.set_title(_("forward + backward, B 1, {n_head} heads of {head_size} (ms)").format(
            n_head=cfg.n_head, head_size=cfg.head_size), fontsize=9)
        self.ax_mem.set_title(_("bytes kept by the arrays (MiB, by formula = allocated)"), fontsize=9)
        # naive where it was not run: its bytes by formula, hollow, above the budget
        (self.naive_over,) = self.ax_mem.plot([], [], "o", mfc="none", color="C0", ms=6,
                                              label=_("naive, not run (by formula)"))
        artists.append(self.naive_over)
        self.ax_mem.legend(loc="upper left", fontsize=7)
        self.ax_mem.axhline(budget, color="0.3", ls="--", lw=0.9)
        self.ax_mem.text(Ts[-1] if len(Ts) else 1, budget * 1.15, _("budget {budget} MiB").format(budget=budget),
                         fontsize=7, color="0.3", ha="right")
        skipped = impls["naive"][0][np.isnan(impls["naive"][1])]
        if len(skipped):
            self.ax_time.text(0.02, 0.97, _("naive not run at T \u2265 {T}: its T x T matrices would exceed "
                                            "{budget} MiB").format(T=int(skipped[0]), budget=budget),
                              transform=self.ax_time.transAxes, fontsize=7, va="top", color="C0")
        self.ax_time.legend(loc="lower right", fontsize=7)
        for i, s in enumerate(STRATEGIES):
            (line,) = self.ax_loss.plot([], [], color=f"C{i + 3}", lw=1.4, label=_(STRATEGY_LABELS[s]))
            self.loss_lines[s] = line
            artists.append(line)
        ax = self.ax_loss
        ax.axhline(chance, color="0.4", ls=":", lw=0.9,
                   label=_("chance (log {vocab} = {chance:.2f})").format(vocab=cfg.vocab, chance=chance))
        ax.set_xlim(0, cfg.steps)
        top = max([chance] + [float(np.nanmax(c[1])) for c in curves.values()])
        ax.set_ylim(0, top * 1.1)
        ax.set_title(_("copy task: token t+1 repeats t+1-{distance} (loss on those)").format(
            distance=cfg.copy_distance), fontsize=9)
        ax.set_xlabel(_("training step (same seed and steps)"))
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize=7)
        return artists

    def show_until(self, k: int) -> None:
        impls, curves, _chance, _budget, n_cost, _n, _cfg = self.result
        shown = min(k, n_cost)
        for impl, (T, ms, mib) in impls.items():
            self.time_lines[impl].set_data(T[:shown], ms[:shown])
            ran = np.isfinite(ms[:shown])
            self.mem_lines[impl].set_data(T[:shown][ran], mib[:shown][ran])
            if impl == "naive":
                self.naive_over.set_data(T[:shown][~ran], mib[:shown][~ran])
        left = max(0, k - n_cost)  # evaluations revealed, curve after curve
        for s, size in zip(STRATEGIES, self._lengths(), strict=True):
            m = min(left, size)
            left -= m
            line = self.loss_lines[s]
            if m and s in curves:
                line.set_data(curves[s][0][:m], curves[s][1][:m])
            else:
                line.set_data([], [])
