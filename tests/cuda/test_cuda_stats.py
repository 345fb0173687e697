"""The statistics reductions (simulator/kernels/cuda/stats.py) against numpy, on odd segment sizes.

Segments of 1, 7, 67 (two chunks of at most 64 entries, set here so a GPU's larger default cuts them
the same) and 0 entries, a column block with a stride, and the unit-spread modes; float32 and float64
inputs, accumulated in float64 like numpy's statistics. Then the attention rows, the MLP fractions, the
identity path's row sums, and whole statistics steps against the CPU backend's.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.cuda.twins import DTYPES, dev, randn

CHUNK = 64  # entries per chunk in the kernel tests (the simulator's default)


def _segments():
    from simulator.kernels.cuda.stats import SPREAD_COLUMN, SPREAD_NONE, SPREAD_ROW

    # (start, rows, cols, stride, spread) in a flat buffer of 200 entries
    return [(0, 1, 1, 1, SPREAD_ROW),  # one entry
            (1, 1, 7, 7, SPREAD_ROW),  # a bias: |b - b[0]|
            (8, 5, 3, 3, SPREAD_ROW),  # (5, 3): |w - w[:, :1]|
            (23, 3, 5, 5, SPREAD_COLUMN),  # (3, 5): |w - w[:1]|
            (38, 1, 0, 1, SPREAD_NONE),  # empty
            (40, 67, 1, 1, SPREAD_NONE),  # 67 entries, two chunks
            (110, 6, 4, 11, SPREAD_NONE)]  # a column block: 6 rows of 4 columns out of 11 (cols 3..6 of (6, 11))


def _view(x, seg):
    start, rows, cols, stride, _ = seg
    if rows * cols == 0:
        return x[start:start]
    return np.lib.stride_tricks.as_strided(x[start:], (rows, cols), (stride * x.itemsize, x.itemsize))


@pytest.mark.parametrize("dtype", DTYPES)
def test_param_statistics_match_numpy(dtype, rng):
    from simulator.kernels.cuda.stats import PARAM_WIDTHS, SPREAD_COLUMN, SPREAD_NONE, Segments, param_statistics

    segs = _segments()
    g, p, b = (randn(rng, 200, dtype) for _ in range(3))
    b[40:107] += 3.0  # a large update in one segment
    plan = Segments(segs, PARAM_WIDTHS, chunk=CHUNK)
    assert plan.n_chunks == 7  # the 67 entries take two chunks, the empty segment none, the others one
    got = param_statistics(plan, *dev(g, p, b)).copy_to_host()
    assert got.shape == (len(segs), 4)
    for s, seg in enumerate(segs):
        gv, pv, bv = (_view(a, seg).astype(np.float64) for a in (g, p, b))
        want = [np.sum(gv ** 2), np.sum(pv ** 2), np.sum((pv - bv) ** 2), 0.0]
        if seg[4] != SPREAD_NONE and bv.size:
            want[3] = np.abs(bv - (bv[:1] if seg[4] == SPREAD_COLUMN else bv[:, :1])).max()
        assert np.allclose(got[s], want, rtol=1e-12, atol=0), (seg, got[s], want)
    assert got[3, 3] > 0 and got[5, 2] > 67 * 4  # the spread and the large update are there


@pytest.mark.parametrize("dtype", DTYPES)
def test_moment_statistics_match_numpy(dtype, rng):
    from simulator.kernels.cuda.stats import MOMENT_WIDTHS, Segments, moment_statistics, moments_from

    segs = [s for s in _segments() if s[1] * s[2]]  # an activation site is never empty
    x = (randn(rng, 200, dtype) * 2 + 5).astype(dtype)  # a mean far from 0: the two-pass std keeps its digits
    x[50] = -40.0  # max |x| from a negative entry
    plan = Segments(segs, MOMENT_WIDTHS, chunk=CHUNK)
    sums, centered = (a.copy_to_host() for a in moment_statistics(plan, dev(x)))
    got = moments_from(sums, centered, plan.sizes)
    for seg, (mean, std, amax) in zip(segs, got, strict=True):
        v = _view(x, seg).astype(np.float64)
        assert np.allclose([mean, std, amax], [v.mean(), v.std(), np.abs(v).max()], rtol=1e-12, atol=0), seg
    assert got[4][2] == 40.0


# ------------------------------------------------------------- whole statistics steps, CUDA against CPU

def _stats_config(dtype, backend, **model):
    from simulator.config import AttentionConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig

    attention = model.pop("attention", AttentionConfig(impl="tiled", n_kv_head=1))
    return RunConfig(
        name="t",
        model=ModelConfig(**{**dict(d_model=8, n_layer=2, n_head=2, seq_len=5, dropout=0.0, attention=attention),
                             **model}),
        # SGD: Adam would turn the rounding noise of gradients that are 0 in theory into moves of 1e-11
        optim=OptimConfig(name="sgd", lr=0.1, momentum=0.9),
        train=TrainConfig(batch_size=2, seed=3, eval_every=0, stats_every=2, dtype=dtype, backend=backend))


def _same(rc, rg, rtol, atol, noise=frozenset()):
    """Every heavy field of two StepRecords agrees (`noise`: tensors whose update ratio is a ratio of noises)."""
    for field in ("grad_norms", "param_norms", "update_ratios", "activations", "qkv_grad_norms", "norm_params",
                  "running_stats", "identity_fraction", "saturated_fraction", "dead_fraction", "unit_spread"):
        a, b = getattr(rc, field), getattr(rg, field)
        assert list(a) == list(b), (field, list(a), list(b))
        bad = {k: (a[k], b[k]) for k in a if not (field == "update_ratios" and k in noise)
               and not np.allclose(b[k], a[k], rtol=rtol, atol=atol)}
        assert not bad, (field, bad)
    for field in ("attention", "attention_entropy", "attention_saturated"):
        a, b = getattr(rc, field), getattr(rg, field)
        assert a is not None and b is not None and a.shape == b.shape and np.allclose(b, a, rtol=rtol, atol=atol), field
    assert rg.kv_cache_bytes == rc.kv_cache_bytes and rc.kv_cache_bytes


class _Copies:
    """Counts the bytes every device array's copy_to_host returns while installed (monkeypatch)."""

    def __init__(self, monkeypatch, device_array):
        cls = type(device_array)
        real, self.bytes = cls.copy_to_host, 0

        def counting(array, *args, **kwargs):
            out = real(array, *args, **kwargs)
            self.bytes += out.nbytes
            return out

        monkeypatch.setattr(cls, "copy_to_host", counting)

    def take(self) -> int:
        n, self.bytes = self.bytes, 0
        return n


def _record():
    from simulator.records import StepRecord

    return StepRecord(step=1, loss=0.0, lr=0.0, grad_norm=0.0, clipped=False, tokens=0, seconds=0.0, phase_seconds={})


def test_statistics_steps_equal_cpu_and_copy_only_small_results(monkeypatch, capsys):
    """Two statistics steps of a float32 post-norm ReLU model with naive attention and GQA (the identity path,
    dead units, q/k/v blocks of two widths): every heavy field of the CUDA backend's StepRecord is the CPU's.
    Then the device reductions against numpy over host copies of the same device tensors (what a statistics
    step did before them), and the bytes each copies to the host."""
    from simulator.backend.device_stats import param_segments
    from simulator.backend.host import HostModel
    from simulator.config import AttentionConfig
    from simulator.observe import step_statistics
    from simulator.session import TrainingSession

    model = dict(norm_position="post", activation="relu", n_layer=1,
                 attention=AttentionConfig(impl="naive", n_kv_head=1))
    cpu = TrainingSession(_stats_config("float32", "cpu", **model))
    gpu = TrainingSession(_stats_config("float32", "cuda", **model))
    assert gpu.backend_name == "cuda"
    m = gpu.model
    copies = _Copies(monkeypatch, m.params)
    for _ in range(2):  # step 1 and step 2 (stats_every 2) are statistics steps
        rc, rg = cpu.step(), gpu.step()
        noise = {k for k, v in rc.param_norms.items() if v < 1e-6}
        _same(rc, rg, 2e-4, 2e-5, noise)
        assert copies.take() < m.params.nbytes  # the whole step, statistics included
    assert rc.dead_fraction and 0 < min(rc.identity_fraction.values()) < 1 and not rc.saturated_fraction
    assert len(set(rc.qkv_grad_norms["h0"])) == 3

    before, cfg = gpu._step_state["params_before"], gpu.config.train
    assert before is not None and not m.bk.on_host
    old = _record()
    step_statistics(old, HostModel(m), m.bk.as_host(before), cfg)  # a HostModel has no backend: numpy on copies
    old_bytes = copies.take()
    new = _record()
    step_statistics(new, m, before, cfg)
    new_bytes = copies.take()
    _same(old, new, 1e-6, 1e-9)  # the same float32 tensors: only the order of the float64 sums differs
    # What may cross: 4 float64 results per parameter and q/k/v block, 3 per activation site; the watched
    # layer's entropy and top probability per row (2 B NH T float64), its watched head's (T, T) float32 map
    # and the row mask; the norms' gains and biases; 2 float64 per sublayer for the identity path (post-norm);
    # a live flag per ReLU unit (int8). Not the layer's (B, NH, T, T) probabilities, nor the stream into a
    # norm, nor the MLP's activations, nor one of the weight, gradient or activation buffers whole.
    A, (B, T) = m.acts, m.shape
    bound = 8 * (4 * len(param_segments(m)[0]) + 3 * len(m.activation_sites)) + 16 * B * m.cfg.n_head * T
    bound += 4 * T * T + A["h0.fc"].shape[1] + A["rowmask"].nbytes + 16 * 2 * m.cfg.n_layer
    bound += np.dtype(m.dtype).itemsize * sum(s.size for s in m.layout if s.kind == "norm")
    assert new_bytes <= bound < A.flat.nbytes, (new_bytes, bound, A.flat.nbytes)
    assert new_bytes < m.params.nbytes
    assert old_bytes >= 3 * m.params.nbytes  # weights, gradients and the weights before the update, whole
    # the saturation branch on the same tensors, read as sigmoid outputs (the ReLU's zeros are within its margin)
    from dataclasses import replace

    from simulator.backend.device_stats import activation_fractions
    from simulator.observe import activation_fractions as numpy_fractions

    monkeypatch.setattr(m, "cfg", replace(m.cfg, activation="sigmoid"))
    old, new = _record(), _record()
    numpy_fractions(old, HostModel(m))
    activation_fractions(new, m)
    assert list(new.saturated_fraction) == ["h0"] and 0 < old.saturated_fraction["h0"] < 1
    assert new.saturated_fraction == pytest.approx(old.saturated_fraction, abs=1e-12)
    with capsys.disabled():
        print(f"\nstatistics step, device to host: {old_bytes} bytes copied for numpy, {new_bytes} with the device "
              f"reductions (weights {m.params.nbytes}, activations {A.flat.nbytes})")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl,mask", [("tiled", "causal"), ("tiled", "local"), ("naive", "causal")])
def test_attention_rows_match_numpy(impl, mask, dtype, rng):
    """Row entropy, top probability and the watched head's map: B 2, NH 3 over NKV 1 (GQA), T 5, HS 3, the second
    batch row padded after 3 keys, local attention with window 2 and one global token."""
    from simulator.attention_mask import key_mask
    from simulator.kernels.cuda.stats import attention_rows

    B, NH, NKV, T, HS, head, scale = 2, 3, 1, 5, 3, 2, 0.7
    window, n_global = (2, 1) if mask == "local" else (0, 0)
    q, k = randn(rng, (B, NH, T, HS), dtype, 2.0), randn(rng, (B, NKV, T, HS), dtype, 2.0)
    kv_len = np.array([T, 3], np.int32)
    s = np.einsum("bhid,bjd->bhij", q.astype(np.float64), k[:, 0].astype(np.float64)) * scale
    visible = key_mask(T, mask, window, n_global)[None, None] & (np.arange(T) < kv_len[:, None, None, None])
    e = np.where(visible, np.exp(s - np.where(visible, s, -np.inf).max(-1, keepdims=True)), 0.0)
    P = e / e.sum(-1, keepdims=True)  # every row sees key 0
    lse = np.log(np.where(visible, np.exp(s), 0.0).sum(-1))
    if impl == "naive":
        out = attention_rows((B, NH, T), head, dev(kv_len), att=dev(P.astype(dtype)))
        P = P.astype(dtype).astype(np.float64)
    else:
        out = attention_rows((B, NH, T), head, dev(kv_len), q=dev(q), k=dev(k), lse=dev(lse.astype(dtype)),
                             scale=scale, causal=True, window=window, n_global=n_global)
    entropy, top, amap = (a.copy_to_host() for a in out)
    tol = 1e-12 if dtype == np.float64 or impl == "naive" else 1e-5
    assert np.allclose(entropy, -(P * np.log(np.where(P > 0, P, 1.0))).sum(-1), rtol=tol, atol=tol)
    assert np.allclose(top, P.max(-1), rtol=tol, atol=tol)
    assert amap.dtype == np.float32 and np.allclose(amap, P[0, head], rtol=1e-6, atol=1e-7)
    assert (amap == 0).any() and top.min() < 1.0  # masked keys, and no one-hot rows only


@pytest.mark.parametrize("dtype", DTYPES)
def test_saturation_and_live_columns_match_numpy(dtype, rng):
    from simulator.kernels.cuda.stats import COUNT_WIDTHS, Segments, live_columns, saturated_counts
    from simulator.observe import SATURATION_MARGIN, dead_fraction, saturated_fraction

    segs = [s for s in _segments() if s[1] * s[2]]
    x = rng.uniform(-1.0, 1.0, 200).astype(dtype)
    x[::5] = np.sign(x[::5]) * (1.0 - rng.uniform(0.0, 0.02, 40))  # near the tanh bounds, some inside the margin
    x[1::7] = rng.uniform(0.0, 0.02, x[1::7].size)  # near sigmoid's 0
    plan = Segments(segs, COUNT_WIDTHS, chunk=CHUNK)
    for activation in ("sigmoid", "tanh"):
        got = saturated_counts(plan, dev(x), activation, SATURATION_MARGIN).copy_to_host()[:, 0]
        want = [saturated_fraction(_view(x, s), activation) * s[1] * s[2] for s in segs]
        assert np.allclose(got, want, rtol=0, atol=1e-9) and 0 < got.sum() < 200, (activation, got, want)
    pre = randn(rng, (7, 37), dtype)  # 37 units over 32 threads, 7 rows
    pre[:, ::3] = -np.abs(pre[:, ::3])  # dead units
    pre[6, 3] = 0.0  # a unit only its zeros keep dead
    pre[:6, 3] = -1.0
    live = live_columns(dev(pre)).copy_to_host()
    assert np.array_equal(live == 0, np.all(pre <= 0, axis=0)) and live[3] == 0
    assert np.mean(live == 0) == dead_fraction(pre, "relu") > 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("centre", [True, False])
def test_identity_rows_match_numpy(centre, dtype, rng):
    """Two sublayers' skip-path norms (LayerNorm: centre; RMSNorm) against numpy: N 7 rows of C 11 over 8 threads."""
    from simulator.kernels.cuda.stats import IDENTITY_WIDTHS, SPREAD_NONE, Segments, identity_rows, identity_sums

    N, C, eps = 7, 11, 1e-5
    plan = Segments([(0, 1, N, N, SPREAD_NONE)] * 2, IDENTITY_WIDTHS, chunk=1)
    want = []
    for s in range(2):
        x, gamma = randn(rng, (N, C), dtype) + 0.5, randn(rng, C, dtype)
        rstd = rng.uniform(0.5, 2.0, N).astype(dtype)  # the forward's (of x + f), not x's own
        identity_rows(plan, s, *dev(x, gamma, rstd), centre, eps)
        x64, g64 = x.astype(np.float64), gamma.astype(np.float64)
        xc = x64 - x64.mean(axis=1, keepdims=True) if centre else x64
        own = 1.0 / np.sqrt((xc ** 2).mean(axis=1) + eps)
        fwd = rstd.astype(np.float64)[:, None]
        want.append([np.sum((g64 * xc * fwd) ** 2), np.sum((g64 * xc * own[:, None]) ** 2)])
    got = identity_sums(plan).copy_to_host()
    assert np.allclose(got, want, rtol=1e-12, atol=0), (got, want)
