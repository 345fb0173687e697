"""Whole training steps on the CUDA backend (simulator/backend/cuda.py) against the CPU backend's.

The same TrainingSession, op list, phases and optimizer run with `train.backend: cuda`: device arrays
throughout, kernels from the backend. So this checks what the kernel tests cannot: that the twins are
drop-in through the seam (what is written, what is added, views and strides) across a forward, a backward,
clipping and AdamW, and that only host copies come out of the session's read API.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from simulator.config import AttentionConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
from simulator.gradcheck import check_gradients
from simulator.session import TrainingSession
from tests.cuda.test_cuda_stats import _same


def _config(dtype, impl, backend="cpu", **model):
    return RunConfig(
        name="t",
        model=ModelConfig(**{**dict(d_model=8, n_layer=1, n_head=2, seq_len=5, dropout=0.0,
                                    attention=AttentionConfig(impl=impl, n_kv_head=1)), **model}),
        optim=OptimConfig(name="adamw", lr=1e-2, grad_clip=0.5, weight_decay=0.1),
        train=TrainConfig(batch_size=2, seed=3, eval_every=0, stats_every=0, dtype=dtype, backend=backend))


def _run(cfg, steps):
    """Losses of `steps` steps, then the weights, and the gradients of the last step before and after clipping."""
    s = TrainingSession(cfg)
    losses = [s.step().loss for _ in range(steps)]
    grads = {n: (s.gradient(n), s.gradient(n, clipped=False)) for n in s.parameter_names}
    return s, losses, {n: s.parameter(n) for n in s.parameter_names}, grads


def _err(got, want):
    assert isinstance(got, np.ndarray) and got.shape == want.shape and got.dtype == want.dtype
    return float(np.max(np.abs(got.astype(np.float64) - want) / np.maximum(1.0, np.abs(want)), initial=0.0))


@pytest.mark.parametrize("dtype,tol,steps,impl,model", [
    # layernorm, GELU, learned positions, tiled attention, GQA; five AdamW steps on the same weights
    ("float64", 1e-10, 5, "tiled", {}),
    # one step in float32: RMSNorm, rope, SiLU, naive attention, an untied head
    ("float32", 2e-5, 1, "naive", {"norm": "rmsnorm", "positional": "rope", "activation": "silu",
                                   "tie_embeddings": False}),
    # local attention (window 2, one global token), both impls, two steps
    ("float64", 1e-10, 2, "tiled", {"attention": AttentionConfig(impl="tiled", mask="local", window=2,
                                                                 global_tokens=1)}),
    ("float64", 1e-10, 2, "naive", {"attention": AttentionConfig(impl="naive", mask="local", window=2,
                                                                 global_tokens=1)}),
])
def test_cuda_backend_steps_equal_cpu_steps(dtype, tol, steps, impl, model):
    cpu, losses_c, params_c, grads_c = _run(_config(dtype, impl, **model), steps)
    gpu, losses_g, params_g, grads_g = _run(_config(dtype, impl, "cuda", **model), steps)
    assert cpu.backend_name == "cpu" and gpu.backend_name == "cuda", (cpu.backend_name, gpu.backend_name)
    assert type(gpu.model.params).__module__.startswith("numba"), type(gpu.model.params)  # arrays on the device
    assert np.allclose(losses_g, losses_c, rtol=tol, atol=0), (losses_g, losses_c)
    for name in params_c:
        assert _err(params_g[name], params_c[name]) <= tol, name
        for got, want in zip(grads_g[name], grads_c[name], strict=True):
            assert _err(got, want) <= tol, name
    assert gpu.last_record.grad_norm == pytest.approx(cpu.last_record.grad_norm, rel=tol)


def test_cuda_backend_statistics_and_reads_equal_cpu():
    """The StepRecord's heavy statistics (reduced on the device, backend/device_stats.py), BatchNorm's running
    statistics, activations, the attention map and a gradient written back: the CPU's numbers."""
    cfg = _config("float64", "tiled", norm="batchnorm")
    # SGD: Adam would turn the rounding noise of gradients that are 0 in theory (below) into moves of 1e-11
    cfg = replace(cfg, train=replace(cfg.train, stats_every=2, eval_batches=1),
                  optim=OptimConfig(name="sgd", lr=0.1, momentum=0.9))
    cpu, gpu = TrainingSession(cfg), TrainingSession(replace(cfg, train=replace(cfg.train, backend="cuda")))
    recs = [(cpu.step(), gpu.step())]  # step 1 is a statistics step (stats_every counts from it)
    for rc, rg in recs:
        assert rg.loss == pytest.approx(rc.loss, rel=1e-10)
        for field in ("grad_norms", "param_norms", "update_ratios"):
            a, b = getattr(rc, field), getattr(rg, field)
            assert a.keys() == b.keys() and a, field
            # a bias whose gradient is 0 in theory (the branch outputs' biases: every BatchNorm after them removes
            # a per-channel constant) is rounding noise, and its update ratio a ratio of noises: left out
            noise = {k for k, v in rc.param_norms.items() if v < 1e-12} if field == "update_ratios" else set()
            bad = {k: (a[k], b[k]) for k in a if k not in noise and b[k] != pytest.approx(a[k], rel=1e-9, abs=1e-12)}
            assert not bad, (field, bad)
        assert rc.running_stats.keys() == rg.running_stats.keys() and rc.running_stats
        for k, v in rc.running_stats.items():
            assert np.allclose(rg.running_stats[k], v, rtol=1e-10, atol=1e-12), k
        # every other heavy field too (the device reductions of backend/device_stats.py)
        _same(rc, rg, 1e-9, 1e-12, noise={k for k, v in rc.param_norms.items() if v < 1e-12})
    for site in cpu.activation_sites:
        assert np.allclose(gpu.activation(site), cpu.activation(site), rtol=1e-10, atol=1e-12), site
    assert np.allclose(gpu.attention_map(0, row=1), cpu.attention_map(0, row=1), atol=1e-6)
    # eval mode runs on the running statistics, on both
    assert gpu.evaluate() == pytest.approx(cpu.evaluate(), rel=1e-10)
    # generation (on the CPU from host copies of the device weights) and the gradient check's float64 twin
    ids = cpu.model.ids[0, :3].copy()
    assert np.allclose(gpu.next_logits(ids), cpu.next_logits(ids), rtol=1e-10, atol=1e-12)
    rows_c, rows_g = check_gradients(cpu, n_per_tensor=1), check_gradients(gpu, n_per_tensor=1)
    assert [r.analytic for r in rows_g] == pytest.approx([r.analytic for r in rows_c], rel=1e-9, abs=1e-12)
    w = cpu.parameter("wte") * 0.5
    cpu.set_parameter("wte", w)
    gpu.set_parameter("wte", w)
    assert np.array_equal(gpu.parameter("wte"), w)
    # phase by phase (the step-through view): each PhaseEvent's tensors are host arrays, the CPU's numbers
    while True:
        ec, eg = cpu.step_into(), gpu.step_into()
        assert (eg.name, eg.last, list(eg.tensors)) == (ec.name, ec.last, list(ec.tensors))
        for name, t in ec.tensors.items():
            got = eg.tensors[name]
            assert isinstance(got, np.ndarray) and np.allclose(got, t, rtol=1e-9, atol=1e-12), (ec.name, name)
        if ec.last:
            break
    assert gpu.last_record.loss == pytest.approx(cpu.last_record.loss, rel=1e-10)
    assert np.allclose(gpu.next_logits(ids), cpu.next_logits(ids), rtol=1e-10, atol=1e-12)  # new weights followed


def test_cuda_dropout_masks_follow_the_seed():
    """Dropout on the device: masks from Philox keyed off the session's dropout stream (checkpointed), so a seed
    reproduces a run (the masks differ from the CPU's, whose uniforms come from numpy)."""
    import json

    cfg = _config("float64", "tiled", "cuda", dropout=0.3)
    a = TrainingSession(cfg)
    state = json.dumps(a.model.dropout_rng.bit_generator.state)
    assert np.isfinite(a.step().loss)
    dropped = a.activation("x0") == 0  # dropped entries are exact zeros, about 30% of them
    assert 0.1 < np.mean(dropped) < 0.5
    assert not np.array_equal(a.activation("h0.attn") == 0, dropped)  # each dropout call draws its own key
    # the same stream state draws the same mask again (Philox is a function of its key)
    a.model.dropout_rng.bit_generator.state = json.loads(state)
    a.model.forward(a.model.ids.copy())
    assert np.array_equal(a.activation("x0") == 0, dropped)
