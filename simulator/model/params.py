"""Which parameter tensors a GPT has, and how they start."""

from __future__ import annotations

import numpy as np

from simulator.config import ModelConfig
from simulator.model.layout import ParamLayout


def build_layout(cfg: ModelConfig) -> ParamLayout:
    """The named tensors of a GPT for this config, in forward order."""
    V, C, H, T = cfg.vocab_size, cfg.d_model, cfg.d_hidden, cfg.seq_len
    entries = [("wte", (V, C), "embedding"), ("wpe", (T, C), "embedding")]

    def norm(prefix):
        if cfg.norm == "layernorm":
            return [(f"{prefix}.w", (C,), "norm"), (f"{prefix}.b", (C,), "norm")]
        if cfg.norm == "rmsnorm":
            return [(f"{prefix}.w", (C,), "norm")]
        return []

    for i in range(cfg.n_layer):
        p = f"h{i}"
        entries += norm(f"{p}.norm1")
        entries += [(f"{p}.attn.qkv.w", (C, 3 * C), "matrix"), (f"{p}.attn.qkv.b", (3 * C,), "bias"),
                    (f"{p}.attn.proj.w", (C, C), "matrix"), (f"{p}.attn.proj.b", (C,), "bias")]
        entries += norm(f"{p}.norm2")
        entries += [(f"{p}.mlp.fc.w", (C, H), "matrix"), (f"{p}.mlp.fc.b", (H,), "bias"),
                    (f"{p}.mlp.proj.w", (H, C), "matrix"), (f"{p}.mlp.proj.b", (C,), "bias")]
    if has_final_norm(cfg):
        entries += norm("norm_f")
    if not cfg.tie_embeddings:
        entries.append(("lm_head.w", (C, V), "matrix"))
    return ParamLayout(entries)


def has_final_norm(cfg: ModelConfig) -> bool:
    """Pre-norm stacks end with a norm before the head; post-norm blocks already end normalized."""
    return cfg.norm != "none" and cfg.norm_position == "pre"


def init_params(views: dict[str, np.ndarray], layout: ParamLayout, cfg: ModelConfig,
                rng: np.random.Generator) -> None:
    """Fills the parameter views in place: gains 1, biases 0, matrices and embeddings by `cfg.init`."""
    for spec in layout:
        w = views[spec.name]
        if spec.kind == "norm":
            w[...] = 1.0 if spec.name.endswith(".w") else 0.0
        elif spec.kind == "bias":
            w[...] = 0.0
        elif spec.kind == "embedding" or cfg.init == "normal":
            w[...] = rng.normal(0.0, cfg.init_std, size=spec.shape)
        elif cfg.init == "xavier":  # Glorot uniform: keeps variance through a linear layer both ways
            fan_in, fan_out = spec.shape
            bound = np.sqrt(6.0 / (fan_in + fan_out))
            w[...] = rng.uniform(-bound, bound, size=spec.shape)
        elif cfg.init == "he":  # Kaiming normal: variance 2/fan_in keeps ReLU activations from shrinking
            w[...] = rng.normal(0.0, np.sqrt(2.0 / spec.shape[0]), size=spec.shape)
        else:
            raise ValueError(f"unknown init {cfg.init!r}")
