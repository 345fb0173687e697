"""Learning-rate schedules: pure functions of the 0-based step index and the config.

With s the 0-based step, W = warmup_steps, D = decay_steps, lr and min_lr from the config:

    warmup (W > 0, s < W)   lr * (s + 1) / W            ramps up to lr, reaching it at s = W - 1
    constant                lr                           (ignores W)
    linear_warmup           warmup, then lr
    cosine                  min_lr + (lr - min_lr) * (1 + cos(pi * s / D)) / 2 for s < D, then min_lr  (ignores W)
    warmup_cosine           warmup, then the cosine over [W, D]: lr at s = W, min_lr at s = D and after
    step                    warmup, then lr * gamma ** floor((s - W) / step_size)
    linear_decay            warmup, then a straight line from lr at s = W to min_lr at s = D, then min_lr

The horizon is always D (`decay_steps`), never the length of the current run, so
a resumed run sees exactly the rates an uninterrupted one would.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from simulator.config import SCHEDULES, OptimConfig
from simulator.i18n import _
from simulator.rules import Problem

DECAYING = ("cosine", "warmup_cosine", "linear_decay")  # go from lr down to min_lr
WARMUP_THEN_DECAY = ("warmup_cosine", "linear_decay")  # decay between warmup_steps and decay_steps


class ScheduleError(ValueError):
    """A schedule's settings do not make sense (one sentence names the field)."""


def schedule_problem(cfg: OptimConfig, name: Callable[[str], str] = str) -> Problem | None:
    """The schedule's cross-field problem (min_lr above lr, warmup not before the decay's end), or None.

    One check for both readers: the preset validation (which adds the file and line) and `check_schedule`.
    `name` is how a message names the other field (an override on the command line shows it as '--lr').
    """
    if cfg.schedule in DECAYING and cfg.min_lr > cfg.lr:
        return Problem("optim.min_lr", _("{min_lr!r} is larger than {key} {lr!r}").format(
            min_lr=cfg.min_lr, key=name("optim.lr"), lr=cfg.lr),
            _("schedule {schedule} goes from lr down to min_lr").format(schedule=cfg.schedule),
            at=("optim.min_lr", "optim.lr"))
    if cfg.schedule in WARMUP_THEN_DECAY and cfg.warmup_steps >= cfg.decay_steps:
        return Problem("optim.warmup_steps", _("{warmup_steps} is not less than {key} {decay_steps}").format(
            warmup_steps=cfg.warmup_steps, key=name("optim.decay_steps"), decay_steps=cfg.decay_steps),
            _("schedule {schedule} decays between the two").format(schedule=cfg.schedule),
            at=("optim.warmup_steps", "optim.decay_steps"))

    return None


def check_schedule(cfg: OptimConfig) -> None:
    """Raise ScheduleError with one sentence if the schedule settings are not usable."""
    if cfg.schedule not in SCHEDULES:
        raise ScheduleError(_("optim.schedule: unknown schedule {schedule!r}; choose one of {items}").format(
                                schedule=cfg.schedule, items=', '.join(SCHEDULES)))
    if not (cfg.lr >= 0 and math.isfinite(cfg.lr)):
        raise ScheduleError(_("optim.lr must be a finite number >= 0, got {lr}").format(lr=cfg.lr))
    if cfg.schedule in DECAYING and not cfg.min_lr >= 0:  # also catches NaN
        raise ScheduleError(_("optim.min_lr must be >= 0, got {min_lr}").format(min_lr=cfg.min_lr))
    if cfg.warmup_steps < 0:
        raise ScheduleError(_("optim.warmup_steps must be >= 0, got {warmup_steps}").format(
                                warmup_steps=cfg.warmup_steps))
    problem = schedule_problem(cfg)
    if problem is not None:
        raise ScheduleError(problem.sentence())
    if cfg.schedule == "cosine" and cfg.decay_steps <= 0:
        raise ScheduleError(_("optim.decay_steps must be > 0 for schedule cosine, got {decay_steps}").format(
                                decay_steps=cfg.decay_steps))
    if cfg.schedule == "step" and cfg.step_size <= 0:
        raise ScheduleError(_("optim.step_size must be > 0 for schedule step, got {step_size}").format(
                                step_size=cfg.step_size))
    if cfg.schedule == "step" and cfg.gamma < 0:
        raise ScheduleError(_("optim.gamma must be >= 0 for schedule step, got {gamma}").format(gamma=cfg.gamma))


def lr_at(step: int, cfg: OptimConfig) -> float:
    """The learning rate of 0-based step `step` under `cfg` (see the module docstring for the formulas)."""
    s, lr, w, d = int(step), float(cfg.lr), int(cfg.warmup_steps), int(cfg.decay_steps)
    kind = cfg.schedule
    if s < 0:
        raise ScheduleError(_("learning-rate schedule asked for step {s}; steps count from 0").format(s=s))
    if kind == "constant":
        return lr
    if kind == "cosine":
        return _cosine(s, 0, d, lr, cfg.min_lr)
    if kind not in SCHEDULES:
        check_schedule(cfg)  # raises the one-sentence error
    if s < w:
        return lr * (s + 1) / w
    if kind == "linear_warmup":
        return lr
    if kind == "warmup_cosine":
        return _cosine(s, w, d, lr, cfg.min_lr)
    if kind == "step":
        return lr * cfg.gamma ** ((s - w) // cfg.step_size)
    # linear_decay
    if s >= d:
        return float(cfg.min_lr)
    return lr + (cfg.min_lr - lr) * (s - w) / (d - w)


def _cosine(s: int, start: int, end: int, lr: float, min_lr: float) -> float:
    """Half a cosine from lr at `start` down to min_lr at `end`, flat at min_lr after."""
    if s >= end:
        return float(min_lr)
    progress = (s - start) / (end - start)
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
