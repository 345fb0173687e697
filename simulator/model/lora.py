"""Which linears carry LoRA adapters, the adapters' tensors, how they start, and how they merge.

A linear of the GPT computes y = x W + b with W stored (d_in, d_out). Its adapter is A (r, d_in) and
B (d_out, r), as the paper writes them, so y = x W + b + s (x A^T) B^T with s = alpha / r, and the
merged weight is W' = W + s (B A)^T. With LoRA on, the model's trainable layout holds only the
adapters; the base weights live in a second flat buffer that has no gradient and no optimizer state.
"""

from __future__ import annotations

import numpy as np

from simulator.config import ModelConfig
from simulator.model.layout import ParamLayout
from simulator.rules import Problem

# target name -> the linear's weight name inside a block
TARGET_WEIGHTS = {"qkv": "attn.qkv", "proj": "attn.proj", "fc": "mlp.fc", "fc2": "mlp.proj"}


def target_shapes(cfg: ModelConfig) -> dict[str, tuple[int, int]]:
    """Target name -> (d_in, d_out) of its linear."""
    C, H = cfg.d_model, cfg.d_hidden
    QKV = C + 2 * cfg.kv_heads * cfg.head_size
    return {"qkv": (C, QKV), "proj": (C, C), "fc": (C, H), "fc2": (H, C)}


def lora_problem(cfg: ModelConfig, given: bool) -> Problem | None:
    """The LoRA settings' cross-field problem (a rank no adapted linear can hold), or None.

    `given`: whether the preset sets model.lora at all (then it must set a rank: 0 is the default, off).
    """
    lora = cfg.lora
    if not lora.on:
        return Problem("model.lora.rank", "is needed to turn LoRA on", "e.g. rank: 4",
                       at=("model.lora.rank", "model.lora")) if given else None
    shapes = target_shapes(cfg)
    limit = min(min(shapes[t]) for t in lora.targets)
    if lora.rank > limit:
        worst = min(lora.targets, key=lambda t: min(shapes[t]))
        d_in, d_out = shapes[worst]
        return Problem("model.lora.rank", f"{lora.rank} is larger than min(d_in, d_out) = {limit} of target "
                       f"{worst} ({d_in} x {d_out}): a rank above it adds nothing a full matrix lacks",
                       f"use 1 to {limit}", at=("model.lora.rank",))
    from simulator.model.qlora import qlora_problem  # imported here: qlora builds on this module
    return qlora_problem(cfg)


def lora_sites(cfg: ModelConfig) -> list[tuple[str, int, int]]:
    """(linear name e.g. 'h0.attn.qkv', d_in, d_out) of every adapted linear, in forward order."""
    if not cfg.lora.on:
        return []
    shapes = target_shapes(cfg)
    return [(f"h{i}.{TARGET_WEIGHTS[t]}", *shapes[t]) for i in range(cfg.n_layer) for t in TARGET_WEIGHTS
            if t in cfg.lora.targets]


def lora_layout(cfg: ModelConfig) -> ParamLayout:
    """The trainable tensors of a LoRA model: A (r, d_in) and B (d_out, r) of each adapted linear."""
    r = cfg.lora.rank
    entries = []
    for site, d_in, d_out in lora_sites(cfg):
        entries += [(f"{site}.lora_A", (r, d_in), "matrix"), (f"{site}.lora_B", (d_out, r), "matrix")]
    return ParamLayout(entries)


def init_lora(views: dict[str, np.ndarray], cfg: ModelConfig, rng: np.random.Generator) -> None:
    """A uniform in +-1/sqrt(d_in) (the reference implementation's Kaiming-uniform bound), B zero: the
    adapter's output starts at exactly 0, so step 0 is the base model."""
    for site, d_in, _ in lora_sites(cfg):
        bound = 1.0 / np.sqrt(d_in)
        views[f"{site}.lora_A"][...] = rng.uniform(-bound, bound, size=views[f"{site}.lora_A"].shape)
        views[f"{site}.lora_B"][...] = 0.0


def lora_activation_shapes(cfg: ModelConfig, N: int) -> dict[str, tuple[int, ...]]:
    """The forward arena's LoRA part for N rows: each adapter's u = x A^T (and its dropout mask), scratch.

    Scratch: `lora_tmp` (the adapter's output before it is added; in the backward its input gradient),
    `lora_du`, `lora_x` (the dropped input, recomputed from the mask in the backward), and a gain/shift
    sized sink `dfrozen_w`/`dfrozen_b` the norm kernels add their (unused) frozen-parameter gradients into.
    """
    sites = lora_sites(cfg)
    if not sites:
        return {}
    r, drop = cfg.lora.rank, cfg.lora.dropout > 0
    shapes: dict[str, tuple[int, ...]] = {}
    for site, d_in, _ in sites:
        shapes[f"{site}.lora_u"] = (N, r)
        if drop:
            shapes[f"{site}.lora_mask"] = (N, d_in)
    widest = max(max(d_in, d_out) for _, d_in, d_out in sites)
    shapes.update({"lora_tmp": (N * widest,), "lora_du": (N, r)})
    if drop:
        shapes["lora_x"] = (N * max(d_in for _, d_in, _ in sites),)
    shapes.update({"dfrozen_w": (cfg.d_model,), "dfrozen_b": (cfg.d_model,)})
    if cfg.lora.quantized:  # QLoRA: one decoded tile of a weight and its product (kernels/cpu/qlora.py)
        from simulator.kernels.cpu.qlora import TILE
        shapes.update({"qlora_tile": (TILE * widest,), "qlora_prod": (N * TILE,)})
    return shapes


def merged_weights(base: dict[str, np.ndarray], adapters: dict[str, np.ndarray], cfg: ModelConfig
                   ) -> dict[str, np.ndarray]:
    """The base tensors with every adapter folded in: W' = W + (alpha / r) (B A)^T (copies; inputs untouched)."""
    out = {k: v.copy() for k, v in base.items()}
    s = cfg.lora.scale
    for site, _, _ in lora_sites(cfg):
        out[f"{site}.w"] += s * (adapters[f"{site}.lora_B"] @ adapters[f"{site}.lora_A"]).T
    return out
