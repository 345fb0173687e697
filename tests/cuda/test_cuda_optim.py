"""Every optimizer kernel, the global norm and clipping on the GPU against the CPU kernels (flat buffers)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from simulator.optim import clip as cpu_clip
from simulator.optim import kernels as cpu
from tests.cuda.twins import DTYPES, close, dev, host, randn

N = 45  # flat parameters: not a multiple of the block


def _state(rng, dtype):
    w, g = randn(rng, N, dtype), randn(rng, N, dtype)
    mask = (rng.random(N) < 0.6).astype(np.uint8)
    return w, g, mask


CASES = {
    "sgd": lambda s: ("sgd_update", [s.w, s.buf, s.g, s.mask], [0.1, 0.0, 0.0, 0.01, False, True]),
    "momentum_first": lambda s: ("sgd_update", [s.w, s.buf, s.g, s.mask], [0.1, 0.9, 0.1, 0.01, False, True]),
    "nesterov": lambda s: ("sgd_update", [s.w, s.buf, s.g, s.mask], [0.1, 0.9, 0.0, 0.01, True, False]),
    "adagrad": lambda s: ("adagrad_update", [s.w, s.a, s.g, s.mask], [0.1, 1e-8, 0.01]),
    "rmsprop": lambda s: ("rmsprop_update", [s.w, s.a, s.buf, s.g, s.mask], [0.01, 0.9, 1e-8, 0.01, 0.5]),
    "adam": lambda s: ("adam_update", [s.w, s.m, s.a, s.g, s.mask], [1e-2, 0.9, 0.999, 1e-8, 0.1, False, 0.19, 0.002]),
    "adamw": lambda s: ("adam_update", [s.w, s.m, s.a, s.g, s.mask], [1e-2, 0.9, 0.999, 1e-8, 0.1, True, 0.19, 0.002]),
    "ftrl": lambda s: ("ftrl_update", [s.w, s.m, s.a, s.g, s.mask], [0.1, 1.0, 1.0, 0.01]),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(CASES))
def test_optimizer_three_steps(case, dtype, rng):
    from simulator.kernels.cuda import optim as gpu

    w, g, mask = _state(rng, dtype)
    s = SimpleNamespace(w=w, g=g, mask=mask, buf=randn(rng, N, dtype), m=randn(rng, N, dtype, 0.1),
                        a=np.abs(randn(rng, N, dtype, 0.1)))
    s.m[:5] = 0  # FTRL's z: |z| <= l1 gives an exact zero weight
    name, arrays, scalars = CASES[case](s)
    cpu_arrays = [a.copy() for a in arrays]
    gpu_arrays = list(dev(*arrays))
    for _ in range(3):
        getattr(cpu, name)(*cpu_arrays, *scalars)
        getattr(gpu, name)(*gpu_arrays, *scalars)
    for ga, ca in zip(gpu_arrays, cpu_arrays, strict=True):
        close(host(ga), ca, dtype, scale=4)
    if case == "ftrl":
        assert np.count_nonzero(cpu_arrays[0] == 0) > 0  # the exact-zero branch ran
        assert np.array_equal(host(gpu_arrays[0]) == 0, cpu_arrays[0] == 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sum_of_squares_and_scale(dtype, rng):
    from simulator.kernels.cuda import optim as gpu

    x = randn(rng, 301, dtype, 3.0)  # more than MAX_BLOCKS blocks of the simulator: the grid stride runs
    d_x = dev(x)
    scratch = gpu.reduction_scratch(x.shape[0])
    got = gpu.sum_of_squares(d_x, scratch)
    assert abs(got - cpu.sum_of_squares(x)) <= 1e-12 * cpu.sum_of_squares(x)
    assert gpu.global_norm(d_x) == pytest.approx(math.sqrt(got), rel=1e-15)
    gpu.scale_inplace(d_x, 0.25)
    cpu.scale_inplace(x, 0.25)
    close(host(d_x), x, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode,limit", [("norm", 0.5), ("norm", 1e9), ("value", 0.7), ("norm", 0.0)])
def test_clip_gradients(mode, limit, dtype, rng):
    from simulator.kernels.cuda import optim as gpu

    cfg = SimpleNamespace(grad_clip=limit, clip_mode=mode)
    g = randn(rng, 53, dtype)
    d_g = dev(g)
    norm_c, clipped_c = cpu_clip.clip_gradients(g, cfg)
    norm_g, clipped_g = gpu.clip_gradients(d_g, cfg)
    assert norm_g == pytest.approx(norm_c, rel=1e-12)
    assert clipped_g == clipped_c == (limit != 1e9 and limit > 0)
    close(host(d_g), g, dtype)


def test_clip_leaves_nonfinite_norm_alone(rng):
    from simulator.kernels.cuda import optim as gpu

    g = randn(rng, 20, np.float32)
    g[3] = np.inf
    d_g = dev(g)
    norm, clipped = gpu.clip_gradients(d_g, SimpleNamespace(grad_clip=1.0, clip_mode="norm"))
    assert norm == math.inf and not clipped
    assert np.array_equal(host(d_g), g)


def test_clamp_counts(rng):
    from simulator.kernels.cuda import optim as gpu

    x = randn(rng, 77, np.float64, 2.0)
    d_x = dev(x)
    assert gpu.clamp_inplace(d_x, 1.0) == cpu.clamp_inplace(x, 1.0) > 0
    assert np.array_equal(host(d_x), x)
