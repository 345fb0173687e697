"""Optimizers, learning-rate schedules and gradient clipping over flat buffers.

The training session uses exactly three names:
`make_optimizer(cfg, layout, dtype)`, `lr_at(step, cfg)` and `clip_gradients(grads, cfg)`.
"""

from simulator.optim.clip import CLIP_MODES, ClipError, clip_gradients, global_norm
from simulator.optim.optimizers import (
    OptimError,
    Optimizer,
    check_optim,
    decay_kinds,
    make_optimizer,
    optim_problem,
)
from simulator.optim.schedules import ScheduleError, check_schedule, lr_at

__all__ = ["CLIP_MODES", "ClipError", "OptimError", "Optimizer", "ScheduleError", "check_optim", "check_schedule",
           "clip_gradients", "decay_kinds", "global_norm", "lr_at", "make_optimizer", "optim_problem"]
