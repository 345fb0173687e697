"""Overview: train and validation loss, the learning rate and the global gradient norm against step.

The lines are blitted; a full draw happens only when the data leaves the axis limits (which grow
with headroom) or the pinned runs change. Pinned runs are faded static lines with their config
difference in the legend.

The learning-rate axes show the whole planned schedule from the start (it is a pure function of the
step, `lr_at`), over the planned run (`train.steps`, or further once training passes it), with a marker
at the step that comes next. The planned line is static and recomputed only when a setting changes
(the worker's `Applied` / `ConfigKept`, or a new session); the marker is blitted with the curves.
"""

from __future__ import annotations

import math

import numpy as np

from simulator.api import lr_at
from simulator.i18n import N_, _
from ui.history import config_diff
from ui.plots.base import Blitter, PlotTab, grow_limits, light_log_y, planned_steps, x_limit
from ui.protocol import Applied, ConfigKept, Record, Rewound

PIN_COLOURS = ("#7f7f7f", "#9467bd", "#8c564b", "#e377c2")
PLAN_POINTS = 2000  # the planned schedule is sampled at every step up to this many steps, evenly beyond
LR_HEADROOM = 1.4  # the learning-rate axis reaches this far above the highest rate: room for its legend


def planned_schedule(optim, last_step: int) -> tuple[np.ndarray, np.ndarray]:
    """(step, lr) of the schedule up to `last_step`; step k counts from 1, as records do, and uses lr_at(k - 1)."""
    n = max(1, int(last_step))
    ks = np.arange(1, n + 1) if n <= PLAN_POINTS else np.unique(np.linspace(1, n, PLAN_POINTS).round().astype(int))
    return ks.astype(float), np.array([lr_at(int(k) - 1, optim) for k in ks])


class OverviewTab(PlotTab):
    """Loss (train, val, pinned), lr and grad norm (log) against step."""

    title = N_("Overview")
    draws_in_background = True  # its periodic draws (ui.plots.background)

    def subscribe(self, bus) -> None:
        super().subscribe(bus)  # Ready: a new session, whose config may differ (clear() marks the plan stale)
        # a live change reaches the worker as Applied; a refused one as ConfigKept, after the app has shown it
        bus.subscribe(Applied, self._settings_changed)
        bus.subscribe(ConfigKept, self._settings_changed)
        bus.subscribe(Record, self._on_record)
        bus.subscribe(Rewound, self._on_rewound)

    def clear(self) -> None:
        self._plan_stale = True  # the planned schedule is recomputed from app.config on the next refresh
        self._plan_right = 0  # the last step of the planned line as drawn
        self._need_full = False  # a change needs a full draw that the throttle has not allowed yet
        self.early_stop = None  # the last early stop of this run (simulator.early_stopping.EarlyStop)

    def _on_record(self, msg: Record) -> None:
        if msg.record.early_stop is not None:
            self.early_stop = msg.record.early_stop

    def _on_rewound(self, msg: Rewound) -> None:
        if self.early_stop is not None and msg.step < self.early_stop.step:
            self.early_stop = None  # the branch that stopped is gone

    def _settings_changed(self, _msg) -> None:
        self._plan_stale = True

    def build(self) -> None:
        # margins fixed in pixels, set on resize: a layout engine would double the cost of every full draw
        fig = self.make_canvas(self.frame, layout=None)
        grid = self.grid = fig.add_gridspec(2, 2, height_ratios=(2, 1))
        self.ax_loss = fig.add_subplot(grid[0, :])
        self.ax_lr = fig.add_subplot(grid[1, 0])
        self.ax_gn = fig.add_subplot(grid[1, 1])
        ax = self.ax_loss
        ax.grid(alpha=0.3)
        (self.l_train,) = ax.plot([], [], color="C0", lw=1.2)
        (self.l_val,) = ax.plot([], [], color="C1", lw=1.2, marker="o", ms=3)
        self.pin_lines: list = []
        self._build_early_stop()
        self.ax_lr.grid(alpha=0.3)
        (self.l_plan,) = self.ax_lr.plot([], [], color="C2", lw=1.0, ls="--", alpha=0.6)
        (self.l_lr,) = self.ax_lr.plot([], [], color="C2", lw=1.6)
        (self.lr_marker,) = self.ax_lr.plot([], [], "o", color="C2", ms=4)
        self.lr_now = self.ax_lr.axvline(1.0, color="C2", lw=0.8, alpha=0.5)
        light_log_y(self.ax_gn)
        (self.l_gn,) = self.ax_gn.plot([], [], color="C3", lw=1.0)
        self.clip_line = self.ax_gn.axhline(1.0, color="k", ls="--", lw=0.8)
        self.retranslate()
        self.blitter = Blitter(self.canvas, [self.l_train, self.l_val, self.l_lr, self.lr_marker, self.lr_now,
                                             self.l_gn])
        self.canvas.mpl_connect("resize_event", lambda e: self._layout())
        self._layout()
        self._pins_drawn: tuple = ()
        self._version = -1
        self._reset_limits()

    def retranslate(self) -> None:
        """Titles, axis labels and legends in the current language."""
        self.ax_loss.set_title(_("loss"))
        self.ax_loss.set_ylabel(_("cross-entropy (nats)"))
        for ax in (self.ax_loss, self.ax_lr, self.ax_gn):
            ax.set_xlabel(_("step"))
        self.l_train.set_label(_("train"))
        self.l_val.set_label(_("validation"))
        self.ax_lr.set_title(_("learning rate"))
        self.l_plan.set_label(_("planned"))
        self.l_lr.set_label(_("taken"))
        self.lr_marker.set_label(_("next step"))
        # one row at the top, over the headroom the y axis keeps above the highest rate (`LR_HEADROOM`): a
        # schedule may stay high (constant) or end low (cosine to a floor), but never rises above its peak
        self.ax_lr.legend(loc="upper center", ncols=3)
        self.ax_gn.set_title(_("global grad norm (before clipping)"))
        self.clip_line.set_label(_("clip threshold"))
        self._pins_drawn = None  # their legend labels too
        self._early_drawn = None
        if getattr(self, "_version", None) is not None:
            self._version = -1

    # ------------------------------------------------------------ the early stop's marks
    def _build_early_stop(self) -> None:
        """A dotted line at the step that stopped and a star on the best evaluation, with short labels (static:
        they appear once, when a run stops, in a full draw)."""
        ax = self.ax_loss
        top = ax.get_xaxis_transform()  # x in steps, y in axes fractions
        self.stop_line = ax.axvline(0.0, color="0.35", ls=":", lw=1.0, visible=False)
        self.stop_label = ax.text(0.0, 0.97, "", transform=top, ha="right", va="top", fontsize=7, color="0.3",
                                  visible=False)
        (self.best_mark,) = ax.plot([], [], "*", color="C1", ms=9, mec="k", mew=0.5, visible=False)
        self.best_label = ax.annotate("", (0.0, 0.0), xytext=(0, -12), textcoords="offset points", ha="center",
                                      va="top", fontsize=7, color="0.3", visible=False)
        self._early_drawn = None

    def _sync_early_stop(self) -> bool:
        """Shows (or hides) the marks of the run's last early stop; True when they changed (a full draw)."""
        es = self.early_stop
        key = None if es is None else (es.step, es.best_step, es.best_loss, es.restored)
        if key == self._early_drawn:
            return False
        self._early_drawn = key
        for a in (self.stop_line, self.stop_label, self.best_mark, self.best_label):
            a.set_visible(es is not None)
        if es is not None:
            self.stop_line.set_xdata([es.step, es.step])
            self.stop_label.set_x(es.step)
            self.stop_label.set_text(_("early stop") + " ")
            self.best_mark.set_data([es.best_step], [es.best_loss])
            self.best_label.xy = (es.best_step, es.best_loss)
            self.best_label.set_text(_("best, restored") if es.restored else _("best"))
        return True

    def _layout(self) -> None:
        """Margins and gaps in pixels, converted to the figure's current size."""
        w, h = self.figure.bbox.width, self.figure.bbox.height
        if w < 50 or h < 50:
            return
        axes_h, axes_w = (h - 22 - 40 - 62) / 2, (w - 62 - 12 - 70) / 2
        self.grid.update(left=62 / w, right=1 - 12 / w, top=1 - 22 / h, bottom=40 / h,
                         hspace=62 / max(axes_h, 1), wspace=70 / max(axes_w, 1))
        for ax in self.figure.axes:  # the grid does not move axes of a figure outside pyplot by itself
            ax.set_subplotspec(ax.get_subplotspec())

    def _reset_limits(self) -> None:
        right = max(10.0, planned_steps(self.app))  # the planned run: no new ticks until training passes it
        for ax in (self.ax_loss, self.ax_lr, self.ax_gn):
            ax.set_xlim(0, right)
        self.ax_loss.set_ylim(0, 5)
        self.ax_lr.set_ylim(0, 1e-3)
        self.ax_gn.set_ylim(1e-2, 10)

    def setup(self, info) -> None:
        self._reset_limits()
        self._version = -1

    def _plan_outdated(self) -> bool:
        return self._plan_stale or self.app.step_count > self._plan_right

    def _sync_plan(self) -> bool:
        """The planned schedule's line, when a setting changed or training passed its end; True when redrawn."""
        if not self._plan_outdated():
            return False
        cfg, n = self.app.config, self.app.step_count
        # the planned run, or half as far again once training has gone past it (rare: a full draw each time)
        right = cfg.train.steps if n <= cfg.train.steps else math.ceil(1.5 * n)
        px, py = planned_schedule(cfg.optim, right)
        self.l_plan.set_data(px, py)
        self._plan_right, self._plan_stale = right, False
        taken = self.app.history.lr.arrays()[1]
        taken = taken[np.isfinite(taken)]
        hi = max(float(py.max()), float(taken.max()) if taken.size else 0.0)
        self.ax_lr.set_ylim(0.0, LR_HEADROOM * hi if hi > 0 else 1e-3)  # fits a lower lr too, unlike grow_limits
        return True

    def _show_next_step(self) -> None:
        """The marker: the step that comes next, at the rate it will use."""
        n = self.app.step_count
        self.lr_marker.set_data([n + 1], [lr_at(n, self.app.config.optim)])
        self.lr_now.set_xdata([n + 1, n + 1])

    def _sync_pins(self) -> bool:
        """Static faded lines for the pinned runs; True when they changed (needs a full draw)."""
        app = self.app
        key = tuple((id(p), config_diff(p.config, app.config)) for p in app.pins)
        if key == self._pins_drawn:
            return False
        for line in self.pin_lines:
            line.remove()
        self.pin_lines = []
        for i, (pin, (_pin_id, diff)) in enumerate(zip(app.pins, key, strict=True)):
            colour = PIN_COLOURS[i % len(PIN_COLOURS)]
            x, y = pin.loss.arrays()
            (a,) = self.ax_loss.plot(x, y, color=colour, alpha=0.45, lw=1.0,
                                     label=_("pinned {n}: {diff}").format(n=i + 1, diff=diff))
            self.pin_lines.append(a)
            vx, vy = pin.val.arrays()
            if len(vx):
                (b,) = self.ax_loss.plot(vx, vy, color=colour, alpha=0.45, lw=1.0, ls="--", marker="o", ms=2)
                self.pin_lines.append(b)
        self._pins_drawn = key
        return True

    def refresh(self, force: bool = False) -> bool:
        if not self.built:
            return False
        h = self.app.history
        if (h.version == self._version and not force and not self._need_full and not self._pins_changed()
                and not self._plan_outdated() and not self._early_changed()):
            return False
        if not force and not self.can_blit():
            return False
        self._version = h.version
        xs, ys = h.loss.arrays()
        vx, vy = h.val.arrays()
        lx, ly = h.lr.arrays()
        gx, gy = h.grad_norm.arrays()
        self.l_train.set_data(xs, ys)
        self.l_val.set_data(vx, vy)
        self.l_lr.set_data(lx, ly)
        self.l_gn.set_data(gx, gy)
        self._show_next_step()
        # what changed, by axes: each is drawn again alone (`present(only=...)`), not the whole figure
        axes = set()
        if self._sync_plan():
            axes.add(self.ax_lr)
        if self._sync_pins() | self._sync_early_stop():
            axes.add(self.ax_loss)
        # a forced refresh (the tab just shown) draws fully anyway: an x axis nearly full grows now, for free
        axes |= self._update_limits(xs, ys, vy, ly, gy, ahead=1.25 if force else 1.0)
        clip = getattr(self.app.config.optim, "grad_clip", 0.0)
        if (clip > 0) != self.clip_line.get_visible() or (clip > 0 and self.clip_line.get_ydata()[0] != clip):
            self.clip_line.set_visible(clip > 0)
            self.clip_line.set_ydata([clip, clip])
            axes.add(self.ax_gn)
        # limits set now but drawn later stay owed: the background the blit restores still has the old ones
        if (self._need_full or axes or force) and (force or self.can_full_draw()):
            self.ax_loss.legend(loc="upper right")
        return self.present(bool(axes), force, blit_while_owed=True, only=axes)

    def _early_changed(self) -> bool:
        es = self.early_stop
        return (None if es is None else (es.step, es.best_step, es.best_loss, es.restored)) != self._early_drawn

    def _pins_changed(self) -> bool:
        key = tuple((id(p), config_diff(p.config, self.app.config)) for p in self.app.pins)
        return key != self._pins_drawn

    def _update_limits(self, xs, ys, vy, ly, gy, ahead: float = 1.0) -> set:
        """The axes whose limits had to change (with headroom)."""
        changed = set()
        last = xs[-1] if len(xs) else 0.0
        pins_x = max((p.loss.x[-1] for p in self.app.pins if len(p.loss)), default=0.0)
        for ax in (self.ax_loss, self.ax_gn):
            new = x_limit(max(last, pins_x) * ahead, ax.get_xlim()[1], planned_steps(self.app))
            if new is not None:
                ax.set_xlim(0, new)
                changed.add(ax)
        # the planned steps, and the next step's marker once the planned run is done
        right = max(float(self._plan_right), float(last), self.app.step_count + 1.0) + 0.5
        if abs(self.ax_lr.get_xlim()[1] - right) > 1e-9 or self.ax_lr.get_xlim()[0] != 0.0:
            self.ax_lr.set_xlim(0, right)
            changed.add(self.ax_lr)
        loss_vals = np.concatenate([ys, vy] + [p.loss.arrays()[1] for p in self.app.pins])
        loss_vals = loss_vals[np.isfinite(loss_vals)]
        if loss_vals.size:
            lim = grow_limits(self.ax_loss.get_ylim(), float(loss_vals.min()), float(loss_vals.max()))
            if lim is not None:
                self.ax_loss.set_ylim(max(0.0, lim[0]), lim[1])
                changed.add(self.ax_loss)
        if len(ly):
            hi = float(np.nanmax(ly)) if np.isfinite(ly).any() else 1e-3
            lim = grow_limits(self.ax_lr.get_ylim(), 0.0, hi)
            if lim is not None:
                self.ax_lr.set_ylim(0.0, lim[1])
                changed.add(self.ax_lr)
        g = gy[np.isfinite(gy) & (gy > 0)]
        if g.size:
            clip = getattr(self.app.config.optim, "grad_clip", 0.0)
            lo, hi = float(g.min()), float(g.max())
            if clip > 0:
                lo, hi = min(lo, clip), max(hi, clip)
            lim = grow_limits(self.ax_gn.get_ylim(), lo, hi, log=True)
            if lim is not None and all(math.isfinite(v) for v in lim):
                self.ax_gn.set_ylim(*lim)
                changed.add(self.ax_gn)
        return changed
