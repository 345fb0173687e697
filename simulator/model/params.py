"""Which parameter tensors a GPT has, and how they start."""

from __future__ import annotations

import numpy as np

from simulator.config import ModelConfig
from simulator.model.layout import ParamLayout


def build_layout(cfg: ModelConfig) -> ParamLayout:
    """The named tensors of a GPT for this config, in forward order."""
    V, C, H, T = cfg.vocab_size, cfg.d_model, cfg.d_hidden, cfg.seq_len
    QKV = C + 2 * cfg.kv_heads * cfg.head_size  # queries for every head, keys and values for the kv heads
    entries = [("wte", (V, C), "embedding")]
    if cfg.positional == "learned":  # the other encodings are fixed functions of the position, not parameters
        entries.append(("wpe", (T, C), "embedding"))

    def norm(prefix):
        if cfg.norm in ("layernorm", "batchnorm"):
            return [(f"{prefix}.w", (C,), "norm"), (f"{prefix}.b", (C,), "norm")]
        if cfg.norm == "rmsnorm":
            return [(f"{prefix}.w", (C,), "norm")]
        return []

    for i in range(cfg.n_layer):
        p = f"h{i}"
        entries += norm(f"{p}.norm1")
        entries += [(f"{p}.attn.qkv.w", (C, QKV), "matrix"), (f"{p}.attn.qkv.b", (QKV,), "bias"),
                    (f"{p}.attn.proj.w", (C, C), "matrix"), (f"{p}.attn.proj.b", (C,), "bias")]
        entries += norm(f"{p}.norm2")
        entries += [(f"{p}.mlp.fc.w", (C, H), "matrix"), (f"{p}.mlp.fc.b", (H,), "bias"),
                    (f"{p}.mlp.proj.w", (H, C), "matrix"), (f"{p}.mlp.proj.b", (C,), "bias")]
    if has_final_norm(cfg):
        entries += norm("norm_f")
    if not cfg.tie_embeddings:
        entries.append(("lm_head.w", (C, V), "matrix"))
    return ParamLayout(entries)


def norm_sites(cfg: ModelConfig) -> list[str]:
    """The name of every norm of the model, in forward order (empty for norm: none)."""
    if cfg.norm == "none":
        return []
    sites = [f"h{i}.{s}" for i in range(cfg.n_layer) for s in ("norm1", "norm2")]
    return sites + (["norm_f"] if has_final_norm(cfg) else [])


def build_buffers(cfg: ModelConfig, dtype) -> dict[str, np.ndarray]:
    """State that is not a parameter (no gradient, no optimizer): BatchNorm's running mean 0 and variance 1."""
    out = {}
    if cfg.norm == "batchnorm":
        for site in norm_sites(cfg):
            out[f"{site}.running_mean"] = np.zeros(cfg.d_model, dtype=dtype)
            out[f"{site}.running_var"] = np.ones(cfg.d_model, dtype=dtype)
    return out


def has_final_norm(cfg: ModelConfig) -> bool:
    """Pre-norm stacks end with a norm before the head; post-norm blocks already end normalized."""
    return cfg.norm != "none" and cfg.norm_position == "pre"


def init_params(views: dict[str, np.ndarray], layout: ParamLayout, cfg: ModelConfig,
                rng: np.random.Generator) -> None:
    """Fills the parameter views in place: gains 1, biases 0, embeddings normal(init_std), matrices by `cfg.init`."""
    residual_std = cfg.init_std / np.sqrt(2.0 * cfg.n_layer)
    for spec in layout:
        # GPT-2: each block adds two projections onto the stream, so scale them down
        std = residual_std if cfg.init == "gpt2" and _is_residual_projection(spec.name) else cfg.init_std
        init_tensor(views[spec.name], spec.kind, spec.name, cfg.init, rng, std, cfg.init_constant)


def init_tensor(w: np.ndarray, kind: str, name: str, scheme: str, rng: np.random.Generator, std: float,
                constant: float = 0.0) -> None:
    """Fills one tensor in place: norm gains 1 and shifts 0, biases 0, embeddings normal(std), matrices by `scheme`."""
    if kind == "norm":
        w[...] = 1.0 if name.endswith(".w") else 0.0
    elif kind == "bias":
        w[...] = 0.0
    elif kind == "embedding" or scheme in ("normal", "gpt2"):
        w[...] = rng.normal(0.0, std, size=w.shape)
    elif scheme in ("zeros", "constant"):  # every unit of a layer starts equal: the symmetry lesson
        w[...] = 0.0 if scheme == "zeros" else constant
    elif scheme == "xavier":  # Glorot uniform: keeps variance through a linear layer both ways
        fan_in, fan_out = w.shape
        bound = np.sqrt(6.0 / (fan_in + fan_out))
        w[...] = rng.uniform(-bound, bound, size=w.shape)
    elif scheme == "xavier_normal":  # Glorot normal: the same variance 2 / (fan_in + fan_out)
        fan_in, fan_out = w.shape
        w[...] = rng.normal(0.0, np.sqrt(2.0 / (fan_in + fan_out)), size=w.shape)
    elif scheme == "he":  # Kaiming normal: variance 2/fan_in keeps ReLU activations from shrinking
        w[...] = rng.normal(0.0, np.sqrt(2.0 / w.shape[0]), size=w.shape)
    else:
        raise ValueError(f"unknown init {scheme!r}")


def _is_residual_projection(name: str) -> bool:
    """The matrices whose output is added onto the residual stream (GPT-2's c_proj)."""
    return name.endswith(".attn.proj.w") or name.endswith(".mlp.proj.w")
