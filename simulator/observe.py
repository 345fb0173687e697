"""Tensors -> plain statistics for a StepRecord (computed every `train.stats_every` steps)."""

from __future__ import annotations

import numpy as np

from simulator.config import TrainConfig
from simulator.kv_cache import kv_cache_bytes_per_token
from simulator.records import StepRecord


def _norm(x: np.ndarray) -> float:
    return float(np.sqrt(np.dot(x.ravel().astype(np.float64), x.ravel().astype(np.float64))))


def step_statistics(record: StepRecord, model, params_before: np.ndarray | None, cfg: TrainConfig) -> None:
    """Fills the heavy fields of `record` from the model's current tensors."""
    grads = model.layout.views(model.grads)
    params = model.layout.views(model.params)
    before = model.layout.views(params_before) if params_before is not None else None
    for spec in model.layout:
        name = spec.name
        record.grad_norms[name] = _norm(grads[name])
        pn = _norm(params[name])
        record.param_norms[name] = pn
        if before is not None:
            record.update_ratios[name] = _norm(params[name] - before[name]) / pn if pn > 0 else 0.0
    acts = model.acts
    for site in model.activation_sites:
        x = acts[site].astype(np.float64, copy=False)
        record.activations[site] = (float(x.mean()), float(x.std()), float(np.abs(x).max()))
    layer = min(cfg.watch_layer, model.cfg.n_layer - 1)
    head = min(cfg.watch_head, model.cfg.n_head - 1)
    probs = model.attention_probs(layer)  # (B, NH, T, T); tiled attention recomputes them from its lse
    record.attention = probs[0, head].astype(np.float32, copy=True)  # (T, T)
    attention_statistics(record, model, layer, probs)
    stability_statistics(record, model, before if before is not None else params)


def attention_statistics(record: StepRecord, model, layer: int, probs: np.ndarray) -> None:
    """Entropy and saturation per head of the watched layer, q/k/v gradient norms per layer, KV-cache bytes."""
    cfg = model.cfg
    record.attention_entropy = model.attention_entropy(layer, probs)
    record.attention_saturated = model.attention_saturation(layer, probs)
    C, KV = cfg.d_model, cfg.kv_heads * cfg.head_size
    grads = model.layout.views(model.grads)
    for i in range(cfg.n_layer):
        g = grads[f"h{i}.attn.qkv.w"]  # (C, C + 2 KV): columns [q | k | v]
        record.qkv_grad_norms[f"h{i}"] = (_norm(g[:, :C]), _norm(g[:, C:C + KV]), _norm(g[:, C + KV:]))
    record.kv_cache_bytes = kv_cache_bytes_per_token(cfg, model.dtype)


SATURATION_MARGIN = 0.01  # an activation this close to a bound passes on at most ~1% of its gradient


def saturated_fraction(out: np.ndarray, activation: str) -> float | None:
    """Share of activations within SATURATION_MARGIN of a bound (sigmoid: 0, 1; tanh: -1, 1); None for others."""
    if activation == "sigmoid":
        return float(np.mean((out < SATURATION_MARGIN) | (out > 1.0 - SATURATION_MARGIN)))
    if activation == "tanh":
        return float(np.mean(np.abs(out) > 1.0 - SATURATION_MARGIN))
    return None


def dead_fraction(pre: np.ndarray, activation: str) -> float | None:
    """Share of ReLU units (columns of the (N, H) pre-activation) that are <= 0 on every row; None for others."""
    if activation != "relu":
        return None
    return float(np.mean(np.all(pre <= 0, axis=0)))


def summary4(x: np.ndarray) -> tuple[float, float, float, float]:
    """(mean, std, min, max) of a tensor, as plain floats."""
    x = x.astype(np.float64, copy=False)
    return float(x.mean()), float(x.std()), float(x.min()), float(x.max())


def stability_statistics(record: StepRecord, model, params: dict[str, np.ndarray]) -> None:
    """Norm gains/biases, BatchNorm running statistics, identity path, saturation, dead units, unit spread.

    `params`: the weight views of this step's forward (before its update), so gains
    and the identity path describe the same forward as the activations.
    """
    cfg, acts = model.cfg, model.acts
    for spec in model.layout:
        if spec.kind == "norm":
            record.norm_params[spec.name] = summary4(params[spec.name])
    for name, buf in model.buffers.items():
        if name.endswith(".running_mean"):
            site = name[:-len(".running_mean")]
            record.running_stats[site] = (float(buf.mean()), float(model.buffers[f"{site}.running_var"].mean()))
    record.identity_fraction.update(model.identity_fractions(params))
    for i in range(cfg.n_layer):
        p = f"h{i}"
        sat = saturated_fraction(acts[f"{p}.act"], cfg.activation)
        if sat is not None:
            record.saturated_fraction[p] = sat
        dead = dead_fraction(acts[f"{p}.fc"], cfg.activation)
        if dead is not None:
            record.dead_fraction[p] = dead
        fc_w, fc_b, proj_w = (params[f"{p}.mlp.{k}"].astype(np.float64) for k in ("fc.w", "fc.b", "proj.w"))
        record.unit_spread[p] = float(max(np.abs(fc_w - fc_w[:, :1]).max(), np.abs(fc_b - fc_b[0]).max(),
                                          np.abs(proj_w - proj_w[:1]).max()))
