"""The kernel names a backend provides: what the GPT's op list and the optimizer call, one list for both.

`KERNEL_MODULES` maps each name to the CPU module that defines it; the CUDA backend finds each twin
through `simulator/kernels/cuda/table.py` (its module map), so the two lists cannot drift apart.
"""

from __future__ import annotations

import importlib
from types import SimpleNamespace

# CPU module -> the kernel names the model, the optimizer and clipping call through a backend
KERNEL_MODULES = {
    "simulator.kernels.cpu.activations": ("ACTIVATION_KERNELS", "residual_forward", "dropout_backward"),
    "simulator.kernels.cpu.embedding": ("embedding_forward", "embedding_backward"),
    "simulator.kernels.cpu.linear": ("linear_forward", "linear_backward"),
    "simulator.kernels.cpu.norms": ("layernorm_forward", "layernorm_backward", "rmsnorm_forward",
                                    "rmsnorm_backward"),
    "simulator.model.batchnorm_mode": ("batchnorm_mode_forward", "batchnorm_mode_backward"),
    "simulator.kernels.cpu.softmax": ("crossentropy_forward", "crossentropy_softmax_backward"),
    "simulator.kernels.cpu.rope": ("rope_forward", "rope_backward"),
    "simulator.kernels.cpu.attention": ("attention_heads_forward", "attention_heads_backward", "split_heads",
                                        "merge_heads", "merge_qkv_grad", "split_heads_grad"),
    "simulator.kernels.cpu.attention_tiled": ("tiled_attention_forward", "tiled_attention_backward"),
    "simulator.optim.kernels": ("sgd_update", "adagrad_update", "rmsprop_update", "adam_update", "ftrl_update"),
}

NAMES = tuple(name for names in KERNEL_MODULES.values() for name in names)


def kernel_namespace(module_of) -> SimpleNamespace:
    """Every name of KERNEL_MODULES, found in module `module_of(cpu_module, name)` (a module name)."""
    out = {}
    for cpu_module, names in KERNEL_MODULES.items():
        for name in names:
            out[name] = getattr(importlib.import_module(module_of(cpu_module, name)), name)
    return SimpleNamespace(**out)
