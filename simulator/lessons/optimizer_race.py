"""2-D optimizer races: several optimizers start from one point on one function and step side by side.

Each racer is the same optimizer class the GPT trains with (`make_optimizer`), driven over a
2-element flat buffer (x, y), so what a person sees here is what the real update does. The
functions, with the point each is built around:

    rosenbrock       (1 - x)^2 + 100 (y - x^2)^2                      a curved valley, minimum (1, 1)
    ravine           (x^2 + 50 y^2) / 2                               condition number 50, minimum (0, 0)
    saddle           x^2 + y^4 / 4 - y^2 / 2                          a saddle at (0, 0), minima (0, +-1)
    beale            (1.5 - x + xy)^2 + (2.25 - x + xy^2)^2 + (2.625 - x + xy^3)^2     minimum (3, 0.5)
    noisy_quadratic  (x^2 + 10 y^2) / 2, gradients plus N(0, noise^2) from a seeded generator

The noise of each racer comes from its own generator seeded with `seed`, so all racers see the same
noise draws at the same step. A racer whose position leaves the finite numbers (or |p| > 1e6) is
marked diverged and stays at its last finite position.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from simulator.config import OptimConfig
from simulator.i18n import N_, _
from simulator.lessons import Lesson, check, check_optim_at, optim_rules, register
from simulator.model.layout import ParamLayout
from simulator.optim import clip_gradients, lr_at, make_optimizer
from simulator.rules import non_empty, non_negative, one_of, positive_int
from simulator.yamlconfig import ParseContext

DIVERGED_AT = 1e6  # |position| beyond this counts as diverged


class RaceError(ValueError):
    """A racer asked for by a label the race does not have."""


class Function2D(NamedTuple):
    """A 2-D test function: value, gradient, a view box for contours and its minimum."""

    value: Callable[[float, float], float]
    grad: Callable[[float, float], tuple[float, float]]
    bounds: tuple[float, float, float, float]  # xmin, xmax, ymin, ymax
    minimum: tuple[float, float]


def _beale_terms(x, y):
    return 1.5 - x + x * y, 2.25 - x + x * y * y, 2.625 - x + x * y ** 3


def _beale(x, y):
    a, b, c = _beale_terms(x, y)
    return a * a + b * b + c * c


def _beale_grad(x, y):
    a, b, c = _beale_terms(x, y)
    return (2 * a * (y - 1) + 2 * b * (y * y - 1) + 2 * c * (y ** 3 - 1),
            2 * a * x + 2 * b * 2 * x * y + 2 * c * 3 * x * y * y)


FUNCTIONS: dict[str, Function2D] = {
    "rosenbrock": Function2D(lambda x, y: (1 - x) ** 2 + 100 * (y - x * x) ** 2,
                             lambda x, y: (-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)),
                             (-2.0, 2.0, -1.0, 3.0), (1.0, 1.0)),
    "ravine": Function2D(lambda x, y: 0.5 * (x * x + 50 * y * y), lambda x, y: (x, 50 * y),
                         (-8.0, 8.0, -2.5, 2.5), (0.0, 0.0)),
    "saddle": Function2D(lambda x, y: x * x + y ** 4 / 4 - y * y / 2, lambda x, y: (2 * x, y ** 3 - y),
                         (-2.0, 2.0, -1.6, 1.6), (0.0, 1.0)),
    "beale": Function2D(_beale, _beale_grad, (-4.5, 4.5, -4.5, 4.5), (3.0, 0.5)),
    "noisy_quadratic": Function2D(lambda x, y: 0.5 * (x * x + 10 * y * y), lambda x, y: (x, 10 * y),
                                  (-4.0, 4.0, -2.0, 2.0), (0.0, 0.0)),
}
RACE_FUNCTIONS = tuple(FUNCTIONS)


@dataclass(frozen=True)
class RaceEntry:
    """One racer: the name on the legend and its optimizer settings (schedule included)."""

    label: str = "sgd"
    optim: OptimConfig = field(default_factory=OptimConfig)


@dataclass(frozen=True)
class RaceConfig:
    """A race preset: the function, where everyone starts, for how long, and who runs."""

    name: str = "optimizer race"
    description: str = ""
    function: str = "ravine"
    start: tuple[float, float] = (-7.0, 2.0)
    steps: int = 200
    seed: int = 0  # noisy_quadratic: every racer's noise generator starts from this seed
    noise: float = 1.0  # noisy_quadratic: standard deviation of the gradient noise
    # contour view box xmin, xmax, ymin, ymax; None: the function's own
    bounds: tuple[float, float, float, float] | None = None
    optimizers: tuple[RaceEntry, ...] = ()


@dataclass
class RacePoint:
    """One racer after one step: plain data for the plot."""

    label: str
    step: int  # steps taken, counting this one
    position: np.ndarray  # (2,) after the step
    gradient: np.ndarray  # (2,) the gradient the step used (noisy for noisy_quadratic, after any clipping)
    update: np.ndarray  # (2,) position after minus position before
    state: dict[str, np.ndarray]  # optimizer state by name, (2,) copies
    loss: float  # function value at the new position (never noisy)
    lr: float
    diverged: bool


def validate(cfg: RaceConfig, ctx: ParseContext) -> RaceConfig:
    """What the race needs beyond each field's rule: a known function, a finite start, distinct labels."""
    if cfg.function not in FUNCTIONS:
        ctx.fail("function", _("unknown function {function!r}").format(function=cfg.function),
                 _("choose one of {items}").format(items=", ".join(RACE_FUNCTIONS)))
    if len(cfg.start) != 2 or not all(math.isfinite(v) for v in cfg.start):
        ctx.fail("start", _("must be two finite numbers, got {start}").format(start=cfg.start))
    if cfg.steps < 1:
        ctx.fail("steps", _("must be at least 1, got {steps}").format(steps=cfg.steps))
    if not cfg.noise >= 0:
        ctx.fail("noise", _("must be >= 0, got {noise}").format(noise=cfg.noise))
    if cfg.bounds is not None and not (cfg.bounds[0] < cfg.bounds[1] and cfg.bounds[2] < cfg.bounds[3]):
        ctx.fail("bounds", _("must be xmin < xmax, ymin < ymax, got {bounds}").format(bounds=cfg.bounds))
    if not cfg.optimizers:
        ctx.fail("optimizers", _("a race needs at least one optimizer entry"))
    labels = [e.label for e in cfg.optimizers]
    for i, entry in enumerate(cfg.optimizers):
        if labels.index(entry.label) != i:
            ctx.fail(f"optimizers[{i}].label", _("{label!r} is used twice").format(label=entry.label),
                     _("labels name the paths"))
        check_optim_at(ctx, f"optimizers[{i}].optim", entry.optim)
    return cfg


class _Racer:
    """One optimizer's position, state and noise stream."""

    def __init__(self, entry: RaceEntry, layout: ParamLayout, start, seed: int):
        self.entry = entry
        self.opt = make_optimizer(entry.optim, layout, np.float64)
        self.position = np.array(start, dtype=np.float64)
        self.grad = np.zeros(2)
        self.rng = np.random.default_rng(seed)
        self.diverged = False
        self.path = [self.position.copy()]


class Race:
    """Runs every entry of a RaceConfig side by side; step() returns one RacePoint per racer."""

    def __init__(self, cfg: RaceConfig):
        check(cfg)
        self.cfg = cfg
        self.function = FUNCTIONS[cfg.function]
        self.layout = ParamLayout([("xy", (2,), "matrix")])  # one 2-vector, in the decay group
        self.racers = [_Racer(e, self.layout, cfg.start, cfg.seed) for e in cfg.optimizers]
        self.step_count = 0

    @property
    def labels(self) -> list[str]:
        """The racers' labels in order."""
        return [r.entry.label for r in self.racers]

    def loss(self, position) -> float:
        """The function value at a position."""
        return float(self.function.value(float(position[0]), float(position[1])))

    def set_optim(self, label: str, optim: OptimConfig) -> None:
        """Change one racer's hyper-parameters live (same optimizer name); its state is kept."""
        for racer in self.racers:
            if racer.entry.label == label:
                racer.opt.set_config(optim)
                racer.entry = RaceEntry(label, optim)
                return
        raise RaceError(_("no racer is labelled {label!r}; labels are {items}").format(
                            label=label, items=', '.join(self.labels)))

    def step(self) -> list[RacePoint]:
        """Every racer takes one optimizer step from its current position."""
        t = self.step_count + 1
        out = [self._step_one(racer, t) for racer in self.racers]
        self.step_count = t
        return out

    def _step_one(self, racer: _Racer, t: int) -> RacePoint:
        before = racer.position.copy()
        lr = lr_at(t - 1, racer.entry.optim)
        if not racer.diverged:
            gx, gy = self.function.grad(before[0], before[1])
            racer.grad[:] = (gx, gy)
            if self.cfg.function == "noisy_quadratic":
                racer.grad += self.cfg.noise * racer.rng.standard_normal(2)
            clip_gradients(racer.grad, racer.entry.optim)  # as in training: a no-op unless grad_clip > 0
            racer.opt.step(racer.position, racer.grad, lr)
            if not np.all(np.isfinite(racer.position)) or np.abs(racer.position).max() > DIVERGED_AT:
                racer.diverged = True
                racer.position[:] = before
        racer.path.append(racer.position.copy())
        return RacePoint(racer.entry.label, t, racer.position.copy(), racer.grad.copy(), racer.position - before,
                         {k: v.copy() for k, v in racer.opt.state.items()}, self.loss(racer.position), lr,
                         racer.diverged)

    def run(self, steps: int | None = None, cancelled=lambda: False) -> list[list[RacePoint]]:
        """Each step's points for `steps` steps (default: the config's; fewer when cancelled() turns True)."""
        return [self.step() for _ in range(self.cfg.steps if steps is None else steps) if not cancelled()]

    def paths(self) -> dict[str, np.ndarray]:
        """Label -> (steps + 1, 2) positions so far, the start included."""
        return {r.entry.label: np.array(r.path) for r in self.racers}

    def surface(self, n: int = 100) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A grid for a contour plot over the view box: xs (n,), ys (n,), values (n, n) indexed [iy, ix]."""
        return surface(self.cfg, n)


def surface(cfg: RaceConfig, n: int = 100) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The race's function over its view box: xs (n,), ys (n,), values (n, n) indexed [iy, ix]."""
    fn = FUNCTIONS[cfg.function]
    xmin, xmax, ymin, ymax = cfg.bounds or fn.bounds
    xs, ys = np.linspace(xmin, xmax, n), np.linspace(ymin, ymax, n)
    X, Y = np.meshgrid(xs, ys)  # (n, n) each, rows follow y
    return xs, ys, fn.value(X, Y)


# -------------------------------------------------------------------------------------------- lesson
def run(cfg: RaceConfig, steps: int | None = None, cancelled=lambda: False) -> list[list[RacePoint]]:
    """Every racer's point after each step (`steps` of them, default the config's; fewer when cancelled)."""
    return Race(cfg).run(steps, cancelled)


def summary(cfg: RaceConfig, frames: list[list[RacePoint]]) -> str:
    """Where each racer got to: its loss and position, and whether it diverged."""
    last = frames[-1]
    lines = [_("{function}, {steps} steps from {start}:").format(function=cfg.function, steps=last[0].step,
                                                                 start=tuple(cfg.start))]
    for p in last:
        row = (_("loss {loss:11.4g}  at ({x: .4f}, {y: .4f}) diverged") if p.diverged else
               _("loss {loss:11.4g}  at ({x: .4f}, {y: .4f})"))
        lines.append(f"  {p.label:<16} " + row.format(loss=p.loss, x=p.position[0], y=p.position[1]))

    return "\n".join(lines)


_RULES = {**optim_rules("optimizers.optim."), "name": non_empty, "optimizers.label": non_empty,
          "function": one_of(RACE_FUNCTIONS), "steps": positive_int, "seed": non_negative, "noise": non_negative}
LESSON = register(Lesson("optimizer_race", N_("Optimizer race"), RaceConfig, _RULES, validate, run, summary,
                         preset="optimizer-race"))
