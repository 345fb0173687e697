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
    """(x, y) points with a bounded count; old points are decimated, recent ones kept.

    The points live in two float arrays of `cap + 1` places: a plot that draws 28 series of 2000 points
    at each statistics step takes them as arrays at the cost of a copy, not of converting Python floats
    (measured: 2.5 ms a refresh of the Gradients tab's curves, on the Tk thread, holding the GIL).
    """

    def __init__(self, cap: int = CAP):
        self.cap = cap
        self._x = np.empty(cap + 1)
        self._y = np.empty(cap + 1)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    @property
    def x(self) -> np.ndarray:
        """The steps (a copy)."""
        return self._x[:self._n].copy()

    @property
    def y(self) -> np.ndarray:
        """The values (a copy)."""
        return self._y[:self._n].copy()

    def last_x(self) -> float | None:
        """The newest point's step, None when there is none."""
        return float(self._x[self._n - 1]) if self._n else None

    def append(self, x: float, y: float) -> None:
        """Adds a point, thinning the older half when full."""
        n = self._n
        self._x[n], self._y[n] = x, y
        n += 1
        if n > self.cap:
            half = n // 2
            kept = len(range(0, half, 2))  # every other point of the older half, then the newer half whole
            for a in (self._x, self._y):
                a[:kept] = a[:half:2]
                a[kept:kept + n - half] = a[half:n]
            n = kept + n - half
        self._n = n

    def truncate(self, x_max: float) -> None:
        """Drops the points after x_max (a Rewind branches from there)."""
        self._n = int(np.searchsorted(self._x[:self._n], x_max, side="right"))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The points as float arrays (copies, safe to hand to a plot)."""
        return self.x, self.y

    def copy(self) -> Series:
        """An independent copy (a pinned run)."""
        s = Series(self.cap)
        s._x[:], s._y[:], s._n = self._x, self._y, self._n
        return s


def stacked_y(series: list[Series]) -> np.ndarray:
    """The values of series of one length as rows (len(series), points): one copy."""
    return np.stack([s._y[:s._n] for s in series]) if series else np.empty((0, 0))


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
        val = dict(zip(self.val.x.tolist(), self.val.y.tolist(), strict=True))
        lines = ["step,loss,val_loss,lr,grad_norm,tokens_per_second"]
        columns = (self.loss.y.tolist(), self.lr.y.tolist(), self.grad_norm.y.tolist(),
                   self.tokens_per_second.y.tolist())
        for s, loss, lr, gn, tps in zip(self.loss.x.tolist(), *columns, strict=True):
            v = val.get(s)
            lines.append(f"{int(s)},{loss:.6g},{'' if v is None else f'{v:.6g}'},{lr:.6g},{gn:.6g},{tps:.6g}")
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
