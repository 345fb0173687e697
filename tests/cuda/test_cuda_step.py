"""Whole training steps of the real GPT with its kernels swapped for the CUDA twins, against the CPU steps.

Not the backend seam (that is not built yet): the model and the optimizer call their kernels by name, and
the test rebinds each name to its CUDA twin for the length of the test (numpy arrays go in and out of every
launch). So it checks what the kernel tests cannot: that the twins are drop-in, signature and contract
(what is written, what is added, views and strides) included, across a forward, a backward, clipping and
AdamW. Dropout stays on the CPU (its CUDA twin draws from Philox, not from the CPU's stream).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from simulator.config import AttentionConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
from simulator.kernels.cpu import activations as cpu_act
from simulator.session import TrainingSession
from tests.cuda import target

# host arrays go through every launch here; the simulator writes through numpy views (slices, transposes),
# a GPU launch copies a host argument in and out and refuses non-contiguous ones: there the backend seam's
# own step test (device arrays throughout) is the one to run
pytestmark = pytest.mark.skipif(target.MODE == "gpu", reason="rebinding kernels over host arrays needs the simulator")

MODEL_NAMES = {
    "elementwise": [],
    "linear": ["linear_forward", "linear_backward"],
    "norms": ["layernorm_forward", "layernorm_backward", "rmsnorm_forward", "rmsnorm_backward"],
    "embedding": ["embedding_forward", "embedding_backward"],
    "softmax": ["crossentropy_forward", "crossentropy_softmax_backward"],
    "attention": ["tiled_attention_forward", "tiled_attention_backward", "split_heads", "merge_heads",
                  "merge_qkv_grad", "split_heads_grad", "attention_heads_forward", "attention_heads_backward"],
    "rope": ["rope_forward", "rope_backward"],
}


@pytest.fixture
def cuda_kernels(monkeypatch):
    """Rebinds the GPT's and the optimizer's kernel names to the CUDA twins (undone after the test)."""
    import importlib

    from simulator.kernels.cuda import elementwise
    from simulator.kernels.cuda import optim as gpu_optim
    from simulator.model import gpt
    from simulator.optim import clip, kernels

    for module, names in MODEL_NAMES.items():
        twin = importlib.import_module(f"simulator.kernels.cuda.{module}")
        for name in names:
            monkeypatch.setattr(gpt, name, getattr(twin, name))
    monkeypatch.setattr(gpt, "act", SimpleNamespace(
        ACTIVATION_KERNELS=elementwise.ACTIVATION_KERNELS, residual_forward=elementwise.residual_forward,
        add_inplace=elementwise.add_inplace, dropout_forward=cpu_act.dropout_forward,
        dropout_classic_forward=cpu_act.dropout_classic_forward, dropout_backward=cpu_act.dropout_backward))
    monkeypatch.setattr(kernels, "adam_update", gpu_optim.adam_update)
    for name in ("sum_of_squares", "scale_inplace", "clamp_inplace"):
        monkeypatch.setattr(clip, name, getattr(gpu_optim, name))


def _config(dtype, impl, **model):
    return RunConfig(
        name="t",
        model=ModelConfig(d_model=8, n_layer=1, n_head=2, seq_len=5, dropout=0.0,
                          attention=AttentionConfig(impl=impl, n_kv_head=1), **model),
        optim=OptimConfig(name="adamw", lr=1e-2, grad_clip=0.5, weight_decay=0.1),
        train=TrainConfig(batch_size=2, seed=3, eval_every=0, stats_every=0, dtype=dtype))


def _run(cfg, steps):
    s = TrainingSession(cfg)
    losses = [s.step().loss for _ in range(steps)]
    return losses, {n: s.parameter(n) for n in s.parameter_names}, {n: s.gradient(n) for n in s.parameter_names}


@pytest.mark.parametrize("dtype,tol,steps,impl,model", [
    # layernorm, GELU, learned positions, tiled attention; the second step starts from AdamW's update
    ("float64", 1e-10, 2, "tiled", {}),
    ("float32", 2e-5, 1, "naive", {"norm": "rmsnorm", "positional": "rope", "activation": "silu"}),
])
def test_steps_with_cuda_kernels_equal_cpu_steps(dtype, tol, steps, impl, model, request):
    cfg = _config(dtype, impl, **model)
    losses_c, params_c, grads_c = _run(cfg, steps)
    request.getfixturevalue("cuda_kernels")
    losses_g, params_g, grads_g = _run(cfg, steps)
    assert np.allclose(losses_g, losses_c, rtol=tol, atol=0), (losses_g, losses_c)
    for name in params_c:
        for got, want in ((params_g[name], params_c[name]), (grads_g[name], grads_c[name])):
            err = np.max(np.abs(got - want) / np.maximum(1.0, np.abs(want)))
            assert err <= tol, f"{name}: {err:.3g}"
