"""Learning-rate schedules at their boundary steps, worked out by hand."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from simulator.config import SCHEDULES, OptimConfig
from simulator.optim import ScheduleError, check_schedule, lr_at

BASE = OptimConfig(lr=0.6, min_lr=0.1, warmup_steps=4, decay_steps=14, step_size=3, gamma=0.5)


def at(schedule, step, **changes):
    return lr_at(step, replace(BASE, schedule=schedule, **changes))


def close(a, b):
    return abs(a - b) <= 1e-15 * max(1.0, abs(b))


def test_constant_ignores_warmup():
    assert all(at("constant", s) == 0.6 for s in (0, 3, 4, 14, 10_000))


def test_linear_warmup():
    assert close(at("linear_warmup", 0), 0.6 * 1 / 4)  # never 0 at the first step
    assert close(at("linear_warmup", 2), 0.6 * 3 / 4)
    assert close(at("linear_warmup", 3), 0.6)  # warmup reaches lr at its last step
    assert at("linear_warmup", 4) == 0.6 and at("linear_warmup", 500) == 0.6


def test_warmup_cosine_boundaries():
    assert close(at("warmup_cosine", 0), 0.15)
    assert close(at("warmup_cosine", 3), 0.6)
    assert close(at("warmup_cosine", 4), 0.6)  # cosine starts at lr right after warmup
    assert close(at("warmup_cosine", 9), 0.1 + 0.5 * 0.5 * (1 + math.cos(math.pi * 5 / 10)))  # midpoint
    assert close(at("warmup_cosine", 9), 0.35)
    assert close(at("warmup_cosine", 13), 0.1 + 0.25 * (1 + math.cos(math.pi * 9 / 10)))
    assert at("warmup_cosine", 14) == 0.1  # reaches min_lr at decay_steps
    assert at("warmup_cosine", 10_000) == 0.1  # and stays there


def test_warmup_cosine_without_warmup_starts_at_lr():
    assert at("warmup_cosine", 0, warmup_steps=0) == 0.6
    assert close(at("warmup_cosine", 7, warmup_steps=0), 0.35)


def test_cosine_ignores_warmup():
    assert at("cosine", 0) == 0.6
    assert close(at("cosine", 7), 0.35)
    assert at("cosine", 14) == 0.1 and at("cosine", 99) == 0.1


def test_step_schedule():
    # warmup 0..3, then lr * 0.5 ** floor((s - 4) / 3)
    assert close(at("step", 1), 0.3)
    assert [at("step", s) for s in (4, 6, 7, 9, 10, 13)] == [0.6, 0.6, 0.3, 0.3, 0.15, 0.075]


def test_linear_decay():
    assert close(at("linear_decay", 3), 0.6)
    assert at("linear_decay", 4) == 0.6
    assert close(at("linear_decay", 9), 0.35)
    assert close(at("linear_decay", 13), 0.6 - 0.5 * 9 / 10)
    assert at("linear_decay", 14) == 0.1 and at("linear_decay", 20) == 0.1


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_pure_function_of_step(schedule):
    cfg = replace(BASE, schedule=schedule)
    check_schedule(cfg)
    curve = [lr_at(s, cfg) for s in range(30)]
    # asking again, in any order, gives the same numbers: resuming cannot change the rates
    assert [lr_at(s, cfg) for s in reversed(range(30))] == curve[::-1]
    assert all(0 <= x <= cfg.lr for x in curve)


@pytest.mark.parametrize("changes, message", [
    ({"schedule": "warmup_cosine", "warmup_steps": 20}, "warmup_steps: 20 is not less than optim.decay_steps 14"),
    ({"schedule": "linear_decay", "decay_steps": 4}, "warmup_steps: 4 is not less than optim.decay_steps 4"),
    ({"schedule": "step", "step_size": 0}, "step_size must be > 0"),
    ({"schedule": "cosine", "min_lr": 0.7}, "min_lr: 0.7 is larger than optim.lr 0.6"),
    ({"schedule": "cosine", "min_lr": -0.1}, "min_lr must be >= 0"),
    ({"schedule": "poly"}, "unknown schedule 'poly'"),
    ({"lr": -1.0}, "optim.lr must be a finite number"),
])
def test_bad_schedules_get_one_sentence(changes, message):
    with pytest.raises(ScheduleError, match=message):
        check_schedule(replace(BASE, **changes))


def test_negative_step_is_refused():
    with pytest.raises(ScheduleError, match="steps count from 0"):
        lr_at(-1, BASE)
