"""2-D optimizer races: the functions' gradients, the seed lessons of the shipped preset, the race mechanics."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from simulator.config import OptimConfig
from simulator.lessons import load_lesson
from simulator.lessons.optimizer_race import FUNCTIONS, Race, RaceConfig, RaceEntry, RaceError
from simulator.presets import PresetError, parse_any_text

PRESET = Path(__file__).resolve().parent.parent / "presets" / "optimizer-race.yaml"


def load_race(path) -> RaceConfig:
    return load_lesson(path, "optimizer_race")


def const(name, lr, **kw):
    return OptimConfig(name=name, lr=lr, schedule="constant", **kw)


@pytest.fixture(scope="module")
def ravine():
    """The shipped preset run to the end: label -> (positions (steps+1, 2), points)."""
    race = Race(load_race(PRESET))
    steps = race.run()
    paths = race.paths()
    return {label: (paths[label], [s[i] for s in steps]) for i, label in enumerate(race.labels)}


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_function_gradients_match_finite_differences(name):
    fn = FUNCTIONS[name]
    rng = np.random.default_rng(1)
    xmin, xmax, ymin, ymax = fn.bounds
    eps = 1e-6
    for _ in range(20):
        x, y = rng.uniform(xmin, xmax), rng.uniform(ymin, ymax)
        gx, gy = fn.grad(x, y)
        nx = (fn.value(x + eps, y) - fn.value(x - eps, y)) / (2 * eps)
        ny = (fn.value(x, y + eps) - fn.value(x, y - eps)) / (2 * eps)
        for a, n in ((gx, nx), (gy, ny)):
            assert abs(a - n) / max(1.0, abs(a), abs(n)) < 1e-6, (name, x, y, a, n)
    mx, my = fn.minimum
    around = ((0.01, 0), (-0.01, 0), (0, 0.01), (0, -0.01))
    assert all(fn.value(mx, my) < fn.value(mx + dx, my + dy) for dx, dy in around)
    assert np.allclose(fn.grad(*fn.minimum), 0.0)


def test_preset_loads_with_every_racer(ravine):
    cfg = load_race(PRESET)
    assert cfg.function == "ravine" and cfg.description.strip()
    assert list(ravine) == ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSProp", "Adam"]


def test_lesson_sgd_zigzags_across_the_ravine(ravine):
    path, _ = ravine["SGD"]
    y = path[:, 1]
    flips = np.sum(np.sign(y[1:]) != np.sign(y[:-1]))
    assert flips == len(y) - 1  # the steep coordinate changes sign on every step
    assert np.all(np.diff(path[:, 0]) > 0)  # while it creeps monotonically along the floor


def test_lesson_momentum_overshoots_and_nesterov_less(ravine):
    sgd_over = ravine["SGD"][0][:, 0].max()  # how far past x = 0 (the minimum) each gets; start is x = -7
    mom_over = ravine["Momentum"][0][:, 0].max()
    nag_over = ravine["Nesterov"][0][:, 0].max()
    assert sgd_over <= 0
    assert mom_over > 0.1
    assert 0 < nag_over < 0.85 * mom_over


def test_lesson_adagrad_rate_decays_and_stalls(ravine):
    path, points = ravine["AdaGrad"]
    rates = np.array([-p.update / p.gradient for p in points])  # effective per-coordinate rate, (steps, 2)
    assert np.all(np.diff(rates[:, 0]) <= 1e-15)  # only ever falls
    assert rates[-1, 0] < 0.3 * rates[0, 0]
    np.testing.assert_allclose(rates[-1], 0.5 / (np.sqrt(points[-1].state["sum_sq"]) + 1e-8), rtol=1e-12)
    rms_path, rms_points = ravine["RMSProp"]
    rms_rates = np.array([-p.update / p.gradient for p in rms_points])
    assert rms_rates[-1, 0] > rms_rates[20, 0]  # RMSProp forgets: its rate recovers as gradients shrink
    assert points[-1].loss > 10 * rms_points[-1].loss  # AdaGrad is left behind


def test_lesson_rmsprop_and_adam_adapt_per_coordinate(ravine):
    for label in ("RMSProp", "Adam"):
        points = ravine[label][1]
        first = -points[0].update / points[0].gradient
        assert first[0] > 5 * first[1]  # shallow x gets a far larger rate than steep y
        step = np.abs(points[0].update)
        assert step[0] / step[1] < 2  # so both coordinates move by comparable amounts
    sgd = ravine["SGD"][1][0]
    np.testing.assert_allclose(-sgd.update / sgd.gradient, [0.035, 0.035], rtol=1e-12)  # SGD: one rate for all
    assert ravine["Adam"][1][-1].loss < 1e-6 and ravine["RMSProp"][1][-1].loss < 1e-3


def test_race_point_is_the_real_update():
    cfg = RaceConfig(function="rosenbrock", start=(-1.5, 2.0), steps=3,
                     optimizers=(RaceEntry("sgd", const("sgd", 1e-3)), RaceEntry("adamw", const("adamw", 0.01))))
    race = Race(cfg)
    (sgd, adamw), = race.run(1)
    g = np.array(FUNCTIONS["rosenbrock"].grad(-1.5, 2.0))
    np.testing.assert_array_equal(sgd.gradient, g)
    np.testing.assert_allclose(sgd.position, [-1.5, 2.0] - 1e-3 * g, rtol=1e-15)
    np.testing.assert_allclose(sgd.update, -1e-3 * g, rtol=1e-12)
    assert sgd.loss == FUNCTIONS["rosenbrock"].value(*sgd.position) and sgd.lr == 1e-3 and sgd.step == 1
    np.testing.assert_allclose(adamw.state["m"], 0.1 * g, rtol=1e-15)
    np.testing.assert_allclose(adamw.update, -0.01 * np.sign(g), rtol=1e-6)  # Adam's first step is lr * sign(g)
    assert set(adamw.state) == {"m", "v"} and race.paths()["adamw"].shape == (2, 2)


def test_noisy_quadratic_is_seeded_and_shared():
    entries = (RaceEntry("a", const("sgd", 0.05)), RaceEntry("b", const("sgd", 0.05)),
               RaceEntry("c", const("adam", 0.05)))
    cfg = RaceConfig(function="noisy_quadratic", start=(3.0, 1.0), steps=30, seed=4, noise=2.0, optimizers=entries)
    one, two = Race(cfg), Race(cfg)
    one.run()
    two.run()
    p1, p2 = one.paths(), two.paths()
    np.testing.assert_array_equal(p1["a"], p2["a"])  # reproducible
    np.testing.assert_array_equal(p1["a"], p1["b"])  # same noise for every racer
    other = Race(dataclasses.replace(cfg, seed=5))
    other.run()
    assert not np.array_equal(other.paths()["a"], p1["a"])
    point = one.step()[2]
    assert point.loss == 0.5 * (point.position[0] ** 2 + 10 * point.position[1] ** 2)  # the loss is not noisy


def test_divergence_is_flagged_and_position_stays_finite():
    cfg = RaceConfig(function="ravine", start=(-7.0, 2.0), steps=60,
                     optimizers=(RaceEntry("fast", const("sgd", 0.05)), RaceEntry("ok", const("sgd", 0.03))))
    last = Race(cfg).run()[-1]
    assert last[0].diverged and np.all(np.isfinite(last[0].position)) and np.all(last[0].update == 0)
    assert not last[1].diverged


def test_grad_clip_applies_in_a_race():
    cfg = RaceConfig(function="ravine", start=(-7.0, 2.0), steps=1,
                     optimizers=(RaceEntry("clipped", const("sgd", 0.01, grad_clip=1.0)),))
    (point,), = Race(cfg).run()
    assert abs(np.linalg.norm(point.gradient) - 1.0) < 1e-12


def test_set_optim_live_keeps_state():
    cfg = RaceConfig(function="beale", start=(1.0, 1.5), steps=5,
                     optimizers=(RaceEntry("m", const("momentum", 0.001, momentum=0.9)),))
    race = Race(cfg)
    race.run()
    buf = race.step()[0].state["buf"]
    race.set_optim("m", const("momentum", 0.002, momentum=0.5))
    before = race.racers[0].position.copy()
    point = race.step()[0]
    np.testing.assert_allclose(point.state["buf"], 0.5 * buf + point.gradient, rtol=1e-14)
    np.testing.assert_allclose(point.position, before - 0.002 * point.state["buf"], rtol=1e-14)
    with pytest.raises(RaceError, match="no racer is labelled 'x'"):
        race.set_optim("x", const("sgd", 0.1))


def test_surface_grid():
    race = Race(RaceConfig(function="saddle", optimizers=(RaceEntry("s", const("sgd", 0.1)),)))
    xs, ys, z = race.surface(41)
    assert xs.shape == (41,) and ys.shape == (41,) and z.shape == (41, 41)
    assert z[7, 30] == FUNCTIONS["saddle"].value(xs[30], ys[7])
    assert (xs[0], xs[-1], ys[0], ys[-1]) == FUNCTIONS["saddle"].bounds
    bounded = Race(RaceConfig(function="saddle", bounds=(-1.0, 1.0, 0.0, 2.0), optimizers=race.cfg.optimizers))
    assert bounded.surface(5)[1][-1] == 2.0


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_every_function_races(name):
    fn = FUNCTIONS[name]
    start = (fn.minimum[0] - 0.5, fn.minimum[1] + 0.3)
    cfg = RaceConfig(function=name, start=start, steps=300,
                     optimizers=(RaceEntry("adam", const("adam", 0.01)),))
    race = Race(cfg)
    first = race.step()[0].loss
    last = race.run()[-1][0]
    assert np.isfinite(last.loss) and last.loss < first


RACE_YAML = """kind: optimizer_race
name: t
function: {function}
optimizers:
  - label: a
    optim: {{name: sgd, lr: 0.1}}
  - label: {label}
    optim:
      name: momentum
      momentum: {momentum}
"""


@pytest.mark.parametrize("fields, message", [
    ({"function": "himmelblau"}, "t.yaml:3: function: 'himmelblau' is not one of"),
    ({"label": "a"}, "optimizers\\[1\\].label: 'a' is used twice"),
    ({"momentum": 0.0}, "t.yaml:10: optimizers\\[1\\].optim.momentum: must be greater than 0 for optimizer momentum"),
    ({"momentum": -1}, "t.yaml:10: optimizers\\[1\\].optim.momentum: must be at least 0"),
])
def test_bad_race_presets_get_one_line(fields, message):
    values = {"function": "ravine", "label": "b", "momentum": 0.9, **fields}
    with pytest.raises(PresetError, match=message):
        parse_any_text(RACE_YAML.format(**values), "t.yaml")


def test_check_race_refuses_nonsense():
    entry = (RaceEntry("a", const("sgd", 0.1)),)
    with pytest.raises(PresetError, match="^optimizers: a race needs at least one optimizer"):
        Race(RaceConfig())
    with pytest.raises(PresetError, match="^steps: must be at least 1"):
        Race(RaceConfig(steps=0, optimizers=entry))
    with pytest.raises(PresetError, match="^optimizers\\[0\\].optim.beta1: must be in"):
        Race(RaceConfig(optimizers=(RaceEntry("a", const("adam", 0.1, beta1=1.0)),)))
