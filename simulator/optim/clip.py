"""Gradient clipping over the flat gradient buffer, by global norm or by value."""

from __future__ import annotations

import math

import numpy as np

from simulator.config import CLIP_MODES, OptimConfig
from simulator.i18n import _
from simulator.optim.kernels import clamp_inplace, scale_inplace, sum_of_squares


class ClipError(ValueError):
    """Clipping settings that do not make sense (one sentence names the field)."""


def check_clip(cfg: OptimConfig) -> None:
    """Raise ClipError with one sentence if the clipping settings are not usable."""
    if cfg.clip_mode not in CLIP_MODES:
        raise ClipError(_("optim.clip_mode: unknown mode {clip_mode!r}; choose norm or value").format(
                            clip_mode=cfg.clip_mode))
    if not cfg.grad_clip >= 0:
        raise ClipError(_("optim.grad_clip must be >= 0 (0 turns clipping off), got {grad_clip}").format(
                            grad_clip=cfg.grad_clip))


def global_norm(grads: np.ndarray) -> float:
    """sqrt(sum of squares) over the whole flat buffer, accumulated in float64."""
    return math.sqrt(sum_of_squares(grads))


def clip_gradients(grads: np.ndarray, cfg: OptimConfig, backend=None) -> tuple[float, bool]:
    """Clip `grads` in place; returns (global norm before clipping, whether clipping changed anything).

    norm:  if ||g|| > grad_clip, g *= grad_clip / ||g|| (the clipped norm is exactly grad_clip).
    value: each entry is clamped to [-grad_clip, grad_clip].
    A non-finite norm is returned as is and nothing is clipped: the session reports the divergence.
    `backend`: where grads live (simulator/backend/); a device backend clips with its twin of this function.
    """
    if backend is not None and not backend.on_host:
        return backend.clip_gradients(grads, cfg)
    norm = global_norm(grads)
    limit = float(cfg.grad_clip)
    if limit <= 0 or not math.isfinite(norm):
        return norm, False
    if cfg.clip_mode == "value":
        return norm, clamp_inplace(grads, limit) > 0
    if cfg.clip_mode != "norm":
        check_clip(cfg)
    if norm > limit:
        scale_inplace(grads, limit / norm)
        return norm, True
    return norm, False
