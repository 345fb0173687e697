"""What a GPT session will allocate, computed before anything is allocated: a model that cannot fit is refused
with one sentence instead of dying in numpy.

The rows follow the buffers the session really makes (a test compares them with a built session's, byte for
byte): the flat weights and their gradients, the optimizer's state buffers and decay mask, the pre-clip gradient
copy, the forward arena (`activation_shapes`) and the activations' gradients (`activation_gradient_bytes`, which
mirrors `GPT._build_ops`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from simulator.config import ModelConfig, OptimConfig, RunConfig
from simulator.model.gpt import activation_shapes
from simulator.model.params import build_layout, has_final_norm

GIB = 1024 ** 3


@dataclass(frozen=True)
class MemoryBill:
    """Bytes a session of one config holds, by kind."""

    parameters: int
    gradients: int  # the gradients, plus the pre-clip copy while clipping is on
    optimizer: int  # the optimizer's state buffers and its weight-decay mask
    activations: int  # the forward arena: activations, caches for the backward, scratch
    activation_gradients: int

    @property
    def total(self) -> int:
        """Every row together."""
        return self.parameters + self.gradients + self.optimizer + self.activations + self.activation_gradients

    def sentence(self) -> str:
        """'5.2 GiB (weights 1 GiB, gradients 1 GiB, optimizer state 2 GiB, activations 1.2 GiB)'."""
        return (f"{gib(self.total)} (weights {gib(self.parameters)}, gradients {gib(self.gradients)}, optimizer "
                f"state {gib(self.optimizer)}, activations {gib(self.activations + self.activation_gradients)})")


def gib(n: int) -> str:
    """Bytes as GiB a person reads: '0.0234 GiB', '22.5 GiB', '5,070 GiB'."""
    v = n / GIB
    return f"{v:,.0f} GiB" if v >= 100 else f"{v:.3g} GiB"


def optimizer_tensors(optim: OptimConfig) -> int:
    """State buffers per parameter: SGD 0 (1 with momentum), AdaGrad 1, RMSProp 1 (2 with momentum), Adam 2, FTRL 2."""
    with_momentum = 1 if optim.momentum != 0 else 0
    return {"sgd": with_momentum, "momentum": 1, "nesterov": 1, "adagrad": 1, "rmsprop": 1 + with_momentum,
            "adam": 2, "adamw": 2, "adam_l2": 2, "ftrl": 2}[optim.name]


def activation_gradient_bytes(cfg: ModelConfig, B: int, T: int, itemsize: int) -> int:
    """The gradient arena of the activations, as `GPT._build_ops` lays it out.

    One (N, C) gradient for the stream entering the model and one for each norm's and each branch's output;
    a residual add keeps its stream's buffer; the gradients inside one op (before dropout, the heads, the
    fused qkv, the MLP's hidden layer, the tiled attention's q, k, v) share one buffer across layers.
    """
    C, N, L = cfg.d_model, B * T, cfg.n_layer
    NKV, HS = cfg.kv_heads, cfg.head_size
    per_stream = 1 + 1  # x0 and the shared pre-dropout buffer
    norms = 0 if cfg.norm == "none" else 2 * L + (1 if has_final_norm(cfg) else 0)
    branches = 2 * L
    floats = (per_stream + norms + branches) * N * C
    floats += N * C  # the heads' output (B, NH, T, HS), shared
    floats += N * (C + 2 * NKV * HS)  # the fused qkv, shared
    floats += N * cfg.d_hidden  # the MLP's hidden layer, shared
    if cfg.attention.impl == "tiled":  # its backward adds into dq, dk, dv (naive ones are scratch in the arena)
        floats += N * C + 2 * B * NKV * T * HS
    if cfg.positional != "learned":  # a fixed position table's gradient: computed, then dropped
        floats += T * C
    return floats * itemsize


def memory_bill(cfg: RunConfig, vocab_size: int | None = None) -> MemoryBill:
    """The bytes a TrainingSession of `cfg` allocates for training (vocab_size: when the config leaves it out)."""
    model = cfg.model
    if model.vocab_size is None:
        assert vocab_size is not None, "the vocabulary comes from the data: pass vocab_size"
        from dataclasses import replace
        model = replace(model, vocab_size=vocab_size)
    itemsize = np.dtype(cfg.train.dtype).itemsize
    n = build_layout(model).size
    B, T = cfg.train.batch_size, model.seq_len
    forward = sum(int(np.prod(s)) for s in activation_shapes(model, B, T).values()) * itemsize
    clip_copy = n * itemsize if cfg.optim.grad_clip > 0 else 0
    return MemoryBill(parameters=n * itemsize, gradients=n * itemsize + clip_copy,
                      optimizer=optimizer_tensors(cfg.optim) * n * itemsize + n,  # + the uint8 decay mask
                      activations=forward, activation_gradients=activation_gradient_bytes(model, B, T, itemsize))


def available_bytes() -> int | None:
    """Memory the system could give a new allocation now (Linux: MemAvailable), or None where it cannot tell."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
