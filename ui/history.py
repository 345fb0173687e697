"""Bounded histories of a run: what the plots draw and what a pinned run keeps.

A series holds at most `cap` points; when it is full, the older half is thinned to every
other point, so recent steps stay exact and a long run costs bounded memory and drawing time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from simulator.config import changed_paths
from simulator.i18n import _
from simulator.records import StepRecord

CAP = 2000  # points per series
HEATMAP_COLUMNS = 240  # statistics columns kept for the layer x step heatmap


class Series:
    """(x, y) points with a bounded count; old points are decimated, recent ones kept."""

    def __init__(self, cap: int = CAP):
        self.cap = cap
        self.x: list[float] = []
        self.y: list[float] = []

    def __len__(self) -> int:
        return len(self.x)

    def append(self, x: float, y: float) -> None:
        """Adds a point, thinning the older half when full."""
        self.x.append(x)
        self.y.append(y)
        if len(self.x) > self.cap:
            half = len(self.x) // 2
            self.x = self.x[:half:2] + self.x[half:]
            self.y = self.y[:half:2] + self.y[half:]

    def truncate(self, x_max: float) -> None:
        """Drops the points after x_max (a Rewind branches from there)."""
        n = int(np.searchsorted(np.asarray(self.x), x_max, side="right"))
        del self.x[n:], self.y[n:]

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The points as float arrays (copies, safe to hand to a plot)."""
        return np.asarray(self.x, dtype=float), np.asarray(self.y, dtype=float)

    def copy(self) -> Series:
        """An independent copy (a pinned run)."""
        s = Series(self.cap)
        s.x, s.y = list(self.x), list(self.y)
        return s


def layer_of(tensor: str) -> str:
    """The row of the gradient heatmap a parameter tensor belongs to: 'embed', 'block 0', ..., 'head'."""
    if tensor in ("wte", "wpe"):
        return "embed"
    if tensor.startswith("h") and "." in tensor and tensor[1:tensor.index(".")].isdigit():
        return f"block {tensor[1:tensor.index('.')]}"
    return "head"


@dataclass
class RunHistory:
    """Everything the plots show about the current run, bounded."""

    loss: Series = field(default_factory=Series)
    val: Series = field(default_factory=Series)
    lr: Series = field(default_factory=Series)
    grad_norm: Series = field(default_factory=Series)
    tokens_per_second: Series = field(default_factory=Series)
    grad_norms: dict[str, Series] = field(default_factory=dict)  # tensor -> series
    update_ratios: dict[str, Series] = field(default_factory=dict)
    layer_steps: list[int] = field(default_factory=list)  # heatmap columns: the statistics steps
    layer_norms: list[dict[str, float]] = field(default_factory=list)  # per column: layer row -> grad norm
    activations: list[tuple[int, dict]] = field(default_factory=list)  # (step, site -> (mean, std, max))
    last: StepRecord | None = None
    last_stats: StepRecord | None = None
    version: int = 0  # bumped on every change, so a plot knows whether to redraw

    def add(self, rec: StepRecord) -> None:
        """Takes one step's record."""
        self.version += 1
        self.last = rec
        if rec.nonfinite is not None:
            return
        s = rec.step
        self.loss.append(s, rec.loss)
        self.lr.append(s, rec.lr)
        self.grad_norm.append(s, rec.grad_norm)
        self.tokens_per_second.append(s, rec.tokens_per_second)
        if rec.val_loss is not None:
            self.val.append(s, rec.val_loss)
        if rec.grad_norms:
            self.last_stats = rec
            for name, v in rec.grad_norms.items():
                self.grad_norms.setdefault(name, Series()).append(s, v)
            for name, v in rec.update_ratios.items():
                self.update_ratios.setdefault(name, Series()).append(s, v)
            layers: dict[str, float] = {}
            for name, v in rec.grad_norms.items():
                row = layer_of(name)
                layers[row] = math.hypot(layers.get(row, 0.0), v)
            self.layer_steps.append(s)
            self.layer_norms.append(layers)
            if len(self.layer_steps) > HEATMAP_COLUMNS:
                half = len(self.layer_steps) // 2
                self.layer_steps = self.layer_steps[:half:2] + self.layer_steps[half:]
                self.layer_norms = self.layer_norms[:half:2] + self.layer_norms[half:]
            if rec.activations:
                self.activations = (self.activations + [(s, dict(rec.activations))])[-6:]

    def truncate(self, step: int) -> None:
        """Forgets everything after `step` (Rewind)."""
        self.version += 1
        for s in (self.loss, self.val, self.lr, self.grad_norm, self.tokens_per_second,
                  *self.grad_norms.values(), *self.update_ratios.values()):
            s.truncate(step)
        keep = [i for i, s in enumerate(self.layer_steps) if s <= step]
        self.layer_steps = [self.layer_steps[i] for i in keep]
        self.layer_norms = [self.layer_norms[i] for i in keep]
        self.activations = [a for a in self.activations if a[0] <= step]
        if self.last is not None and self.last.step > step:
            self.last = None
        if self.last_stats is not None and self.last_stats.step > step:
            self.last_stats = None

    def csv(self) -> str:
        """The scalar metrics as CSV text: step, loss, val_loss, lr, grad_norm, tokens_per_second."""
        val = dict(zip(self.val.x, self.val.y, strict=True))
        lines = ["step,loss,val_loss,lr,grad_norm,tokens_per_second"]
        for i, s in enumerate(self.loss.x):
            v = val.get(s)
            lines.append(f"{int(s)},{self.loss.y[i]:.6g},{'' if v is None else f'{v:.6g}'},{self.lr.y[i]:.6g},"
                         f"{self.grad_norm.y[i]:.6g},{self.tokens_per_second.y[i]:.6g}")
        return "\n".join(lines) + "\n"


@dataclass
class PinnedRun:
    """A run kept as a faded overlay: its curves and the config it ran with."""

    config: object
    loss: Series
    val: Series
    label: str = ""


def config_diff(pinned, current) -> str:
    """How a pinned run's config differs from the current one, short enough for a legend."""
    paths = changed_paths(pinned, current) if type(pinned) is type(current) else [_("another kind of run")]
    paths = [p for p in paths if p not in ("name", "description") and not p.startswith("sampling.")]
    if not paths:
        return "same config"
    parts = []
    for p in paths[:3]:
        v = pinned
        for part in p.split("."):
            v = getattr(v, part)
        parts.append(f"{p.split('.')[-1]}={v:g}" if isinstance(v, float) else f"{p.split('.')[-1]}={v}")
    return ", ".join(parts) + (" …" if len(paths) > 3 else "")
