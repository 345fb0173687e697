"""Tiled attention: FlashAttention's walk over the T x T score grid, one (query tile, key tile) pair at a time.

The q, k and v are the real ones of one head of the model on one batch row (copied from the
session after a step). Each pair computes a block of scores, updates the running row max `m` and
sum `l`, and rescales the partial output; the byte counters show how much crossed between slow and
fast memory, against the bytes standard attention moves to form the whole T x T matrix. When the
walk ends, the tiled output is compared with the model's own attention output for that head.
A `kind: flash_trace` preset walks its own random q, k, v instead, compared with standard attention.

The figure of a walk is built once per shape (a restart reuses it); each pair sets the score image's
data, the tile's rectangle and the m and l lines, and blits them (a full draw only when m or l leaves its
axis); the pair's number is in the counters' label, cheaper to change than a title on the figure. The scores
are handed to the image as RGBA bytes, coloured over the range seen so far (`colours`): a masked float image
through a norm cost the frame twice as much.
"""

from __future__ import annotations

import time
import tkinter as tk
from tkinter import ttk

import matplotlib
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.patches import Rectangle

from simulator.i18n import N_, _
from simulator.lessons.flash_trace import (
    LOOP_ORDERS,
    AttentionTraceError,
    TiledAttentionTrace,
    inputs,
    naive_attention_traffic,
    tiled_attention_traffic,
)
from ui import relabel
from ui.lessons import lesson_tab
from ui.lessons.base import LESSON_BLIT_HZ, LessonBlitter, labelled_combo
from ui.plots.base import PlotTab, grow_limits, message_on
from ui.protocol import HeadQKV, HeadTensors

# Pairs on a schedule of their own (`due`), not "this long after the last one": that lands on the window's 40 ms
# polls and lost a poll a pair (6 a second played at 4.9)
PAIRS_PER_SECOND = 8.0
UNBUILT = object()  # no figure of a walk yet


def human_bytes(n: float) -> str:
    """1234567 -> '1.18 MiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} GiB"


@lesson_tab("flash_trace")
class TiledAttentionTab(PlotTab):
    """The score grid with the current tile, running m and l, and traffic counters."""

    kind = ""  # set by @lesson_tab
    nested = False
    draws_in_background = True  # its pairs' draws, and an m or l axis that grows (ui.plots.background)
    cfg = None  # a flash_trace preset whose q, k, v are walked instead of the model's
    blit_hz = LESSON_BLIT_HZ

    def build(self) -> None:
        bar = ttk.Frame(self.frame)
        bar.pack(fill="x", pady=(2, 0))
        self.layer_box, self.layer_var = labelled_combo(bar, N_("layer"), [], width=3)
        self.head_box, self.head_var = labelled_combo(bar, N_("head"), [], width=3)
        relabel.text(ttk.Label(bar), N_("fast memory (floats)")).pack(side="left", padx=(8, 2))
        self.mem_var = tk.StringVar(self.frame, "")
        mem = ttk.Entry(bar, textvariable=self.mem_var, width=7)
        mem.pack(side="left")
        mem.bind("<Return>", lambda e: self.restart())
        self.order_box, self.order_var = labelled_combo(bar, N_("loop order"), LOOP_ORDERS, width=9,
                command=self.restart)
        self.order_var.set(LOOP_ORDERS[0])
        bar = ttk.Frame(self.frame)
        bar.pack(fill="x",
                pady=2)
        relabel.text(ttk.Button(bar, command=self.request), N_("Load q, k, v from the model")).pack(side="left",
                                                                                                  padx=(8, 2))
        relabel.text(ttk.Button(bar, command=self.step_tile), N_("Step tile")).pack(side="left", padx=2)
        self.play_button = relabel.text(ttk.Button(bar, command=self.toggle_play), N_("Play"))
        self.play_button.pack(side="left", padx=2)
        relabel.text(ttk.Button(bar, command=self.restart), N_("Restart")).pack(side="left", padx=2)
        self.counters = ttk.Label(self.frame, text="", font=("DejaVu Sans Mono", 9), justify="left")
        self.counters.pack(fill="x", padx=6)
        self.make_canvas(self.frame)
        self.blitter = LessonBlitter(self.canvas, [])
        self._built_for = UNBUILT  # the shape of the walk the figure shows (`_walk_shape`)
        self._drawn = None

    def clear(self) -> None:
        self.qkv = None  # (q, k, v, model_out, layer, head, row, step)
        self.trace: TiledAttentionTrace | None = None
        self.grid = self.m = self.l = None
        self.last = None
        self.playing = False
        self.due = 0.0  # when the next pair of a playing walk is due
        self.asked = False
        self._drawn = None
        self._built_for = UNBUILT

    def setup(self, info) -> None:
        self.layer_box.configure(values=[str(i) for i in range(info.n_layer)])
        self.head_box.configure(values=[str(i) for i in range(info.n_head)])
        self.layer_var.set("0")
        self.head_var.set("0")
        d = info.config.model.d_model // info.config.model.n_head
        self.mem_var.set(str(4 * d * 16))  # tiles of 16 keys: a T = 64 grid shows 4 x 4 tiles
        self._drawn = None
        if self.cfg is not None:
            self.load(self.cfg)

    def load(self, cfg) -> None:
        """Walks a flash_trace preset's own q, k, v with its fast memory and loop order."""
        self.cfg = cfg
        if not self.built:
            return
        self.mem_var.set(str(cfg.fast_memory_floats))
        self.order_var.set(cfg.loop_order)
        self.qkv = (*inputs(cfg), None, None, 0, 0)
        self.restart()

    def request(self) -> None:
        """Asks the worker for the chosen head's q, k, v of the last batch."""
        self.asked = True
        self.app.worker.send(HeadTensors(layer=int(self.layer_var.get() or 0), head=int(self.head_var.get() or 0),
                                         row=0))

    def subscribe(self, bus) -> None:
        super().subscribe(bus)
        bus.subscribe(HeadQKV, self.on_qkv)

    def on_qkv(self, data) -> None:
        """The q, k, v arrived: start a fresh walk."""
        self.cfg = None
        self.qkv = data
        self.restart()

    def restart(self) -> None:
        """A new walk over the current q, k, v with the current tile settings."""
        self.playing = False
        self.trace, self.last = None, None
        if self.qkv is None:
            self.stale = True
            return
        q, k, v = self.qkv[:3]
        try:
            mem = int(self.mem_var.get())
            att = self.app.config.model.attention
            scale = None if self.cfg or att.scale == "sqrt_dk" else 1.0  # the model's own scaling
            causal = self.cfg.causal if self.cfg else att.mask == "causal"
            self.trace = TiledAttentionTrace(q, k, v, scale=scale, causal=causal, fast_memory_floats=mem,
                                             loop_order=self.order_var.get())
        except ValueError as err:
            text = str(err) if isinstance(err, AttentionTraceError) else f"must be a whole number, got " \
                f"{self.mem_var.get()!r}"
            self.app.show_error(_("Tiled attention: fast memory: {error}").format(error=_(text)))
            return
        n = q.shape[0]
        self.grid = np.full((n, n), np.nan)
        self.m, self.l = np.full(n, np.nan), np.full(n, np.nan)
        self._drawn = None
        self.stale = True

    def step_tile(self) -> bool:
        """Runs the next (query tile, key tile) pair; False when the walk is done."""
        if self.trace is None:
            if self.qkv is None:
                self.request()
            return False
        st = self.trace.step()
        if st is None:
            self.playing = False
            return False
        r0, r1 = st.q_rows
        c0, c1 = st.k_cols
        if not st.skipped:
            self.grid[r0:r1, c0:c1] = np.where(np.isfinite(st.scores), st.scores, np.nan)
        self.m[r0:r1], self.l[r0:r1] = st.m, st.l
        self.last = st
        self.stale = True
        return True

    def toggle_play(self) -> None:
        """Plays the walk a few pairs per second, or pauses it."""
        if self.trace is None:
            self.request() if self.qkv is None else self.restart()
        self.playing = not self.playing
        self.due = time.perf_counter() + 1.0 / PAIRS_PER_SECOND

    def refresh(self, force: bool = False) -> bool:
        if not self.built:
            return False
        if self.qkv is None and self.app.step_count > 0 and not self.app.in_step and not self.asked:
            self.request()
        now = time.perf_counter()
        if self.playing and now >= self.due:
            # the next on the schedule; one late by more than a pair (a long draw) restarts it from now
            self.due = (self.due if now - self.due < 1.0 / PAIRS_PER_SECOND else now) + 1.0 / PAIRS_PER_SECOND
            self.step_tile()
        relabel.text(self.play_button, N_("Pause") if self.playing else N_("Play"))
        key = (id(self.trace), self.last.index if self.last else -1)
        if key == self._drawn and not force and not (self._need_full and self.can_full_draw()):
            return False
        if not (force or self.can_blit()):
            return False
        need, grown = False, []
        if self._built_for != self._walk_shape():  # a walk of another shape (or none): axes, tiles and mask once
            self._build_walk()
            need = True
        if self.trace is not None:
            title, grown = self._update_walk()
            need = need or title
        # an m or l axis that grew is drawn again alone (`only`), not the figure (a quarter of a second)
        only = grown if grown and not need else None
        if self.present(need or bool(grown), force, blit_while_owed=True, only=only):  # stale ticks for a moment
            self._drawn = key
            return True
        return False

    def _build_walk(self) -> None:
        """The figure of one walk: the score grid's image, the mask, the tile grid, and the m and l lines."""
        fig = self.figure
        fig.clear()
        self.relayout()  # new axes: lay them out on this draw
        if self.blitter is None:
            self.blitter = LessonBlitter(self.canvas, [])
        self._built_for = self._walk_shape()
        if self.trace is None:
            self.blitter.set_artists([])
            message_on(fig.add_subplot(), _("take a training step, then press 'Load q, k, v from the model'"),
                       axis_off=True)
            self.counters.configure(text="")
            return
        n = self.qkv[0].shape[0]
        grid = fig.add_gridspec(2, 2, width_ratios=(3, 2))
        self.ax_grid = ax = fig.add_subplot(grid[:, 0])
        self.hidden = np.triu(np.ones((n, n), bool), 1) if self.trace.causal else np.zeros((n, n), bool)
        # the scores' colours, over the range seen so far (no colour bar: the scale follows the walk); not seen: clear
        self.colours = ScalarMappable(Normalize(0.0, 1.0), matplotlib.colormaps["viridis"])
        self.scores = ax.imshow(np.zeros((n, n, 4), np.uint8), interpolation="nearest")
        ax.imshow(np.where(self.hidden, 1.0, np.nan), cmap="Greys", vmin=0, vmax=3, interpolation="nearest")
        tq, tk_ = self.trace.tile_q, self.trace.tile_k
        for x in range(0, n + 1, tk_):
            ax.axvline(x - 0.5, color="w", lw=0.5)
        for y in range(0, n + 1, tq):
            ax.axhline(y - 0.5, color="w", lw=0.5)
        self.tile = ax.add_patch(Rectangle((-0.5, -0.5), 0, 0, fill=False, ec="red", lw=2.0, visible=False))
        self.grid_title = ax.set_title(self._title())  # static: the pair is counted in the label above (cheaper)
        ax.set_xlabel(_("key position"))
        ax.set_ylabel(_("query position"))
        self.ax_m = fig.add_subplot(grid[0, 1])
        (self.m_line,) = self.ax_m.plot(np.arange(n), self.m, color="C3", lw=1.0)
        self.ax_m.set_title(_("running row max m"))
        self.ax_m.grid(alpha=0.3)
        self.ax_l = fig.add_subplot(grid[1, 1], sharex=self.ax_m)
        (self.l_line,) = self.ax_l.plot(np.arange(n), self.l, color="C2", lw=1.0)
        self.ax_l.set_title(_("running sum l = sum exp(s - m)"))
        self.ax_l.set_xlabel(_("query position"))
        self.ax_l.grid(alpha=0.3)
        self.ax_m.set_xlim(-0.5, n - 0.5)
        self._fitted: set = set()
        self.blitter.set_artists([self.scores, self.tile, self.m_line, self.l_line])

    def _walk_shape(self):
        """What the static part of a walk's figure depends on: (T, tile rows, tile columns, causal), None for none."""
        t = self.trace
        return None if t is None else (self.qkv[0].shape[0], t.tile_q, t.tile_k, t.causal)

    def _title(self) -> str:
        layer, head, step = self.qkv[4], self.qkv[5], self.qkv[7]
        source = _("random q, k (seed {seed})").format(seed=self.cfg.seed) if layer is None else \
            _("layer {layer}, head {head} (step {step})").format(layer=layer, head=head, step=step)
        return _("scores of {source}; tiles {rows} x {cols}").format(source=source, rows=self.trace.tile_q,
                                                                    cols=self.trace.tile_k)

    def _update_walk(self) -> tuple[bool, list]:
        """The scores so far, the current tile, m and l, and the counters; (the title changed: a full draw, the axes
        whose limits grew)."""
        shown = np.where(self.hidden, np.nan, self.grid)
        finite = shown[np.isfinite(shown)]
        if finite.size:  # no colour bar: the scale may follow the scores seen so far, as it always did
            self.colours.set_clim(float(finite.min()), float(max(finite.max(), finite.min() + 1e-12)))
        self.scores.set_data(self.colours.to_rgba(np.ma.masked_invalid(shown), bytes=True))  # (T, T, 4)
        st = self.last
        self.tile.set_visible(st is not None)
        if st is not None:
            (r0, r1), (c0, c1) = st.q_rows, st.k_cols
            self.tile.set_bounds(c0 - 0.5, r0 - 0.5, c1 - c0, r1 - r0)
        need, grown = False, []
        if self.grid_title.get_text() != self._title():  # other q, k, v in a walk of the same shape
            self.grid_title.set_text(self._title())
            need = True
        self.m_line.set_ydata(self.m)
        self.l_line.set_ydata(self.l)
        for ax, y in ((self.ax_m, self.m), (self.ax_l, self.l)):
            y = y[np.isfinite(y)]
            if not y.size:
                continue
            lo, hi = float(y.min()), float(y.max())
            if ax not in self._fitted:
                span = max(hi - lo, abs(hi) * 0.05, 1e-6)
                lim = (lo - 0.1 * span, hi + 0.1 * span)
                self._fitted.add(ax)
            else:
                lim = grow_limits(ax.get_ylim(), lo, hi)
            if lim is not None:
                ax.set_ylim(*lim)
                grown.append(ax)
        self._counters(st)
        return need, grown

    def _counters(self, st) -> None:
        q, k, v, model_out, layer = self.qkv[:5]
        n, d = q.shape
        reads, writes = (st.reads, st.writes) if st else (0, 0)
        total = tiled_attention_traffic(n, d, fast_memory_floats=self.trace.fast_memory_floats,
                                        causal=self.trace.causal,
                                        loop_order=self.trace.loop_order)
        naive = naive_attention_traffic(n, d)
        index, n_steps = (st.index + 1 if st else 0), self.trace.n_steps
        pair = (_("pair {index}/{count} skipped (masked)") if st and st.skipped else
                _("pair {index}/{count}")).format(index=index, count=n_steps)
        lines = [_("moved so far: {read} read + {written} written;  the whole tiled walk: {total}").format(
                     read=human_bytes(4 * reads), written=human_bytes(4 * writes), total=human_bytes(total.bytes)),
                 _("standard attention (writes and reads the T x T matrix): {naive};  tiled / standard = "
                   "{ratio:.2f}").format(naive=human_bytes(naive.bytes), ratio=total.bytes / naive.bytes)]
        if self.trace.done or (st is not None and st.index + 1 == self.trace.n_steps):
            err = float(np.max(np.abs(self.trace.output - model_out)))
            lines.append(_("done: max |tiled output - the model's attention output| = {err:.2e} (float64 walk vs "
                           "the float32 model)").format(err=err) if layer is not None else
                         _("done: max |tiled output - standard attention's output| = {err:.2e}").format(err=err))
        else:  # always three lines: a label that grew would shrink the canvas (a new layout)
            lines.append(pair)
        self.counters.configure(text="\n".join(lines))
