"""NF4: the level table against the paper's, the quantize / pack / dequantize kernels against numpy references
on odd sizes, double quantization of the scales, and NF4 vs int4 absmax error measured on the same weights."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.quant.nf4 import (
    QuantError,
    bits_per_weight,
    dequantize,
    int4_levels,
    nf4_levels,
    quantize,
)

# Dettmers et al. 2023 (QLoRA), Appendix E: the NF4 data type's 16 values
PAPER_NF4 = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
             -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
             0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
             0.7229568362236023, 1.0]


def reference_quantize(w, levels, block):
    """numpy: per block absmax, then the nearest level's index (ties to the lower), packed high nibble first."""
    blocks = w.reshape(-1, block).astype(np.float64)
    absmax = np.abs(blocks).max(axis=1)
    x = blocks / np.where(absmax > 0, absmax, 1.0)[:, None]
    codes = np.abs(x[..., None] - levels.astype(np.float64)).argmin(axis=-1).reshape(-1).astype(np.uint8)
    return (codes[0::2] << 4) | codes[1::2], absmax.astype(np.float32), codes


def test_levels_are_the_papers_table():
    levels = nf4_levels()
    assert levels.shape == (16,) and np.all(np.diff(levels) > 0)
    assert np.abs(levels - np.array(PAPER_NF4)).max() < 1e-6
    assert levels[7] == 0.0 and levels[0] == -1.0 and levels[-1] == 1.0
    assert (levels > 0).sum() == 8 and (levels < 0).sum() == 7  # asymmetric: one more positive level


@pytest.mark.parametrize("n, block, grid", [(64 * 7, 64, "nf4"), (6 * 10, 6, "nf4"), (2, 2, "nf4"),
                                            (64 * 3, 64, "int4")])
def test_quantize_and_dequantize_equal_the_numpy_reference(n, block, grid):
    rng = np.random.default_rng(n)
    w = (rng.standard_t(5, n) * 0.05).astype(np.float32)
    w[:block] = 0.0  # an all-zero block: its codes are zero's and it comes back exactly
    levels = nf4_levels() if grid == "nf4" else int4_levels()
    q = quantize(w, levels, block=block)
    packed, absmax, codes = reference_quantize(w, levels, block)
    assert np.array_equal(q.packed, packed) and np.array_equal(q.absmax, absmax)
    back = dequantize(q)
    want = levels[codes].astype(np.float64) * np.repeat(absmax, block)
    assert np.allclose(back, want, rtol=0, atol=1e-7) and np.all(back[:block] == 0)
    # every weight is within half the widest gap of its level (times its block's absmax)
    assert np.all(np.abs(back - w) <= np.repeat(absmax, block) * np.diff(levels).max() / 2 + 1e-7)


def test_a_2d_tensor_round_trips_in_its_shape_and_the_block_must_divide_it():
    w = np.random.default_rng(0).normal(0, 0.02, (48, 20)).astype(np.float32)
    q = quantize(w)
    assert dequantize(q).shape == (48, 20) and q.packed.nbytes == 48 * 20 // 2
    with pytest.raises(QuantError, match="block size 64 does not divide its 1000 weights"):
        quantize(np.zeros((50, 20), np.float32), name="h0.mlp.fc.w")
    with pytest.raises(QuantError, match="even"):
        quantize(w, block=5)


def test_double_quantization_stores_the_scales_in_8_bits():
    rng = np.random.default_rng(1)
    w = rng.normal(0, 0.02, 64 * 600).astype(np.float32)  # 600 scales: blocks of 256, 256 and a short one of 88
    plain, dq = quantize(w), quantize(w, double=True)
    assert np.array_equal(plain.packed, dq.packed)  # the codes do not change, only how the scales are kept
    assert dq.absmax is None and dq.scale_codes.dtype == np.int8 and dq.scale_absmax.shape == (3,)
    centred = plain.absmax.astype(np.float64) - dq.scale_mean
    step = np.repeat(dq.scale_absmax, 256)[:600] / 127
    ref = np.rint(centred / step) * step + dq.scale_mean  # numpy reference of the 8-bit scales
    assert np.allclose(dq.scales(), ref, atol=1e-7)
    assert np.all(np.abs(dq.scales() - plain.absmax) <= step / 2 + 1e-7)
    assert bits_per_weight(plain) == 4.5
    assert abs(bits_per_weight(dq) - (4 + 8 / 64 + (3 * 32 + 32) / w.size)) < 1e-12
    err_plain = np.mean((dequantize(plain) - w) ** 2)
    err_dq = np.mean((dequantize(dq) - w) ** 2)
    assert err_dq < 1.05 * err_plain  # the scales' 8 bits cost little


def test_nf4_beats_int4_on_normal_weights_and_not_on_uniform_ones():
    """Measured on the same weights: NF4's levels follow a normal's mass, int4's are evenly spaced."""
    rng = np.random.default_rng(2)

    def mse(w, levels):
        return float(np.mean((dequantize(quantize(w, levels)).astype(np.float64) - w) ** 2))

    normal = rng.normal(0, 0.02, 64 * 512).astype(np.float32)
    nf4, int4 = mse(normal, nf4_levels()), mse(normal, int4_levels())
    assert nf4 < 0.9 * int4, (nf4, int4)
    uniform = rng.uniform(-0.02, 0.02, 64 * 512).astype(np.float32)
    assert mse(uniform, int4_levels()) < mse(uniform, nf4_levels())


def test_roundtrip_quantizes_the_named_tensors_only_and_reports_their_error():
    from simulator.quant.nf4 import roundtrip
    rng = np.random.default_rng(3)
    tensors = {"a": rng.normal(0, 0.02, (8, 16)).astype(np.float32), "b": rng.normal(0, 1, (4, 16)).astype(np.float32)}
    keep = {k: v.copy() for k, v in tensors.items()}
    out, mse = roundtrip(tensors, ["a"])
    assert out["b"] is tensors["b"] and list(mse) == ["a"]
    assert np.array_equal(out["a"], dequantize(quantize(tensors["a"])))
    assert mse["a"] == pytest.approx(float(np.mean((out["a"].astype(np.float64) - keep["a"]) ** 2)))
    assert all(np.array_equal(tensors[k], keep[k]) for k in keep)  # the inputs are untouched
