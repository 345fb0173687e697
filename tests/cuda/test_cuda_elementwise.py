"""Elementwise CUDA kernels against their CPU twins: activations, residual, bias add, dropout (Philox)."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.kernels.cpu import activations as cpu
from simulator.kernels.cpu.linear import bias_add as cpu_bias_add
from simulator.kernels.cuda import philox
from tests.cuda.twins import DTYPES, close, dev, host, randn

SHAPE = (3, 19)  # 57 elements: not a multiple of the simulator's 32-thread block


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["gelu", "relu", "silu", "sigmoid", "tanh"])
def test_activation_forward_backward(name, dtype, rng):
    from simulator.kernels.cuda import elementwise as gpu

    x = randn(rng, SHAPE, dtype, 3.0)
    x[0, :3] = [0.0, 40.0, -40.0]  # the subgradient at 0, and saturation (exp must not overflow)
    dout = randn(rng, SHAPE, dtype)
    dinp0 = randn(rng, SHAPE, dtype)  # gradient already there: the backward must add
    fwd_c, bwd_c = cpu.ACTIVATION_KERNELS[name]
    fwd_g, bwd_g = gpu.ACTIVATION_KERNELS[name]
    out_c, dinp_c = np.empty_like(x), dinp0.copy()
    fwd_c(out_c, x)
    bwd_c(dinp_c, x, dout)
    d_out, d_x, d_dout, d_dinp = dev(np.zeros_like(x), x, dout, dinp0)
    fwd_g(d_out, d_x)
    bwd_g(d_dinp, d_x, d_dout)
    close(host(d_out), out_c, dtype)
    close(host(d_dinp), dinp_c, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_residual_add_bias(dtype, rng):
    from simulator.kernels.cuda import elementwise as gpu

    a, b, bias = randn(rng, SHAPE, dtype), randn(rng, SHAPE, dtype), randn(rng, SHAPE[1], dtype)
    d_out, d_a, d_b, d_bias = dev(np.zeros_like(a), a, b, bias)
    gpu.residual_forward(d_out, d_a, d_b)
    out_c = np.empty_like(a)
    cpu.residual_forward(out_c, a, b)
    close(host(d_out), out_c, dtype)
    gpu.add_inplace(d_a, d_b)
    cpu.add_inplace(a, b)
    close(host(d_a), a, dtype)
    gpu.bias_add(d_b, d_bias)
    cpu_bias_add(b, bias)
    close(host(d_b), b, dtype)


def test_philox_known_answers():
    """Random123's published Philox4x32-10 vectors: the numpy definition the CUDA kernels follow."""
    f = 0xFFFFFFFF
    cases = [((0, 0, 0, 0, 0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
             ((f, f, f, f, f, f), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
             ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344, 0xA4093822, 0x299F31D0),
              (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1))]
    for args, want in cases:
        assert tuple(int(w) for w in philox.philox4x32(*args)) == want


def test_uniforms_device_equal_numpy_and_look_uniform():
    from simulator.kernels.cuda.dropout import dropout_uniform

    seed, call, n = 2**40 + 12345, 2**33 + 7, 203
    d_u = dev(np.zeros(n, np.float64))
    dropout_uniform(d_u, seed, call)
    u = host(d_u)
    assert np.array_equal(u, philox.uniforms(seed, call, n, np.float64))
    assert np.array_equal(u.astype(np.float32), philox.uniforms(seed, call, n, np.float32))  # 24 bits: exact
    big = philox.uniforms(seed, call, 1 << 16, np.float64)  # numpy only: cheap
    assert 0.0 <= big.min() and big.max() < 1.0
    assert abs(big.mean() - 0.5) < 0.01 and abs(big.var() - 1 / 12) < 0.005
    assert not np.array_equal(big, philox.uniforms(seed, call + 1, 1 << 16))  # another call, another mask
    assert not np.array_equal(big, philox.uniforms(seed + 1, call, 1 << 16))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("classic", [False, True])
def test_dropout_equals_cpu_with_philox_draws(classic, dtype, rng):
    from simulator.kernels.cuda import dropout as gpu

    p, seed, call = 0.3, 99, 5
    x, dout, dinp0 = randn(rng, SHAPE, dtype), randn(rng, SHAPE, dtype), randn(rng, SHAPE, dtype)
    u = philox.uniforms(seed, call, x.size, dtype).reshape(SHAPE)
    out_c, scale_c, dinp_c = np.empty_like(x), np.empty_like(x), dinp0.copy()
    (cpu.dropout_classic_forward if classic else cpu.dropout_forward)(out_c, scale_c, x, u, p)
    cpu.dropout_backward(dinp_c, dout, scale_c)
    d_out, d_scale, d_x, d_dout, d_dinp = dev(np.zeros_like(x), np.zeros_like(x), x, dout, dinp0)
    (gpu.dropout_classic_forward if classic else gpu.dropout_forward)(d_out, d_scale, d_x, seed, call, p)
    gpu.dropout_backward(d_dinp, d_dout, d_scale)
    scale_g = host(d_scale)
    assert np.array_equal(scale_g != 0, scale_c != 0)  # the same elements kept
    assert 0 < np.count_nonzero(scale_g) < x.size
    close(scale_g, scale_c, dtype)
    close(host(d_out), out_c, dtype)
    close(host(d_dinp), dinp_c, dtype)
    d_out2 = dev(np.zeros_like(x))
    (gpu.dropout_classic_forward if classic else gpu.dropout_forward)(d_out2, d_scale, d_x, seed, call, p)
    assert np.array_equal(host(d_out2), host(d_out))  # a seed and a call reproduce the mask
