"""Tensors -> plain statistics for a StepRecord (computed every `train.stats_every` steps)."""

from __future__ import annotations

import math

import numpy as np

from simulator.attention_mask import key_mask
from simulator.config import TrainConfig
from simulator.kernels.cpu import stats as _kernels
from simulator.kv_cache import kv_cache_bytes_per_token
from simulator.records import StepRecord


def _norm(x: np.ndarray) -> float:
    """The L2 norm of a 2-D block of any strides (a column block of qkv.w), accumulated in float64."""
    return math.sqrt(_kernels.squared_sum(x))


def step_statistics(record: StepRecord, model, params_before: np.ndarray | None, cfg: TrainConfig) -> None:
    """Fills the heavy fields of `record` from the model's current tensors.

    On a device backend the same numbers come from reductions on the device
    (simulator/backend/device_stats.py): only their results and a few small tensors cross.
    """
    bk = getattr(model, "bk", None)
    if bk is not None and not bk.on_host:
        from simulator.backend.device_stats import device_step_statistics

        device_step_statistics(record, model, params_before, cfg)
        return
    parameter_norms(record, model, params_before)
    params = model.layout.views(model.params)
    before = model.layout.views(params_before) if params_before is not None else None
    acts = model.acts
    for site in model.activation_sites:
        record.activations[site] = _kernels.moments(acts[site].ravel())
    watched_attention(record, model, cfg)
    qkv_gradient_norms(record, model)
    weights = before if before is not None else params
    if model.frozen is not None:  # LoRA: the base weights (frozen: the same before and after the update) by name too
        weights = {**model.frozen_layout.views(model.frozen), **weights}
    if model.qbase is not None:  # QLoRA: the NF4 weights decoded for the statistics (copies, dropped after)
        weights = {**{n: model.qbase.dequantized(n, model.dtype) for n in model.qbase.names}, **weights}
    stability_statistics(record, model, weights)
    activation_fractions(record, model)
    unit_spreads(record, model, weights)


def parameter_norms(record: StepRecord, model, params_before: np.ndarray | None) -> None:
    """Per parameter: its gradient's and weight's norms and (with `params_before`) its update's over its norm."""
    g, p = model.grads, model.params
    b = params_before if params_before is not None else p
    for spec in model.layout:
        lo, hi = spec.offset, spec.offset + spec.size
        sg, sp, sd = _kernels.squared_sums(g[lo:hi], p[lo:hi], b[lo:hi])
        pn = math.sqrt(sp)
        record.grad_norms[spec.name] = math.sqrt(sg)
        record.param_norms[spec.name] = pn
        if params_before is not None:
            record.update_ratios[spec.name] = math.sqrt(sd) / pn if pn > 0 else 0.0


def watched_attention(record: StepRecord, model, cfg: TrainConfig) -> None:
    """The watched head's attention map and the watched layer's attention statistics."""
    layer = min(cfg.watch_layer, model.cfg.n_layer - 1)
    head = min(cfg.watch_head, model.cfg.n_head - 1)
    probs = attention_probs(model, layer)  # (B, NH, T, T); tiled attention recomputes them from its lse
    record.attention = probs[0, head].astype(np.float32, copy=True)  # (T, T)
    attention_statistics(record, model, layer, probs)


def attention_statistics(record: StepRecord, model, layer: int, probs: np.ndarray) -> None:
    """Entropy and saturation per head of the watched layer, KV-cache bytes."""
    entropy, top = attention_rows(probs)
    record.attention_entropy = head_entropy(model, entropy)
    record.attention_saturated = head_saturation(model, top)
    record.kv_cache_bytes = kv_cache_bytes_per_token(model.cfg, model.dtype)


def qkv_gradient_norms(record: StepRecord, model) -> None:
    """The gradient norms of each layer's q, k and v columns of qkv.w."""
    cfg = model.cfg
    C, KV = cfg.d_model, cfg.kv_heads * cfg.head_size
    grads = model.layout.views(model.grads)
    for i in range(cfg.n_layer):
        if f"h{i}.attn.qkv.w" not in grads:  # frozen (LoRA): it has no gradient
            continue
        g = grads[f"h{i}.attn.qkv.w"]  # (C, C + 2 KV): columns [q | k | v]
        record.qkv_grad_norms[f"h{i}"] = (_norm(g[:, :C]), _norm(g[:, C:C + KV]), _norm(g[:, C + KV:]))


SATURATION_MARGIN = 0.01  # an activation this close to a bound passes on at most ~1% of its gradient
SATURATING = ("sigmoid", "tanh")  # the activations saturated_fraction measures


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


def stability_statistics(record: StepRecord, model, params: dict[str, np.ndarray], identity=None) -> None:
    """Norm gains/biases, BatchNorm running statistics, identity path (activation_fractions, unit_spreads: the rest).

    `params`: the weight views of this step's forward (before its update), so gains
    and the identity path describe the same forward as the activations. `identity`:
    what computes identity_fractions(model, params) (a device backend's own).
    """
    for spec in [*(model.frozen_layout or []), *model.layout]:  # under LoRA the norms are in the frozen base
        if spec.kind == "norm":
            record.norm_params[spec.name] = summary4(params[spec.name])
    for name, buf in model.buffers.items():
        if name.endswith(".running_mean"):
            site = name[:-len(".running_mean")]
            record.running_stats[site] = (float(buf.mean()), float(model.buffers[f"{site}.running_var"].mean()))
    record.identity_fraction.update((identity or identity_fractions)(model, params))


def activation_fractions(record: StepRecord, model) -> None:
    """Saturated MLP activations (sigmoid, tanh) and dead ReLU units per layer."""
    cfg, acts = model.cfg, model.acts
    for i in range(cfg.n_layer):
        p = f"h{i}"
        if cfg.activation in SATURATING:
            record.saturated_fraction[p] = saturated_fraction(acts[f"{p}.act"], cfg.activation)
        if cfg.activation == "relu":
            record.dead_fraction[p] = dead_fraction(acts[f"{p}.fc"], cfg.activation)


def unit_spreads(record: StepRecord, model, params: dict[str, np.ndarray]) -> None:
    """How far each layer's MLP units are from identical (0: a symmetric start no gradient can break)."""
    for i in range(model.cfg.n_layer):
        p = f"h{i}"
        fc_w, fc_b, proj_w = (params[f"{p}.mlp.{k}"].astype(np.float64) for k in ("fc.w", "fc.b", "proj.w"))
        record.unit_spread[p] = float(max(np.abs(fc_w - fc_w[:, :1]).max(), np.abs(fc_b - fc_b[0]).max(),
                                          np.abs(proj_w - proj_w[:1]).max()))


# ------------------------------------------------------------ attention, for display

def attention_probs(model, layer: int) -> np.ndarray:
    """A layer's attention probabilities (B, NH, T, T) in the model's last forward.

    Naive attention keeps them. Tiled attention keeps only each row's
    log-sum-exp, so they are recomputed exactly as its backward does:
    P = exp(scale q k^T - lse) on the visible keys (a new array, on request).
    """
    A, p = model.acts, f"h{layer}"
    if model.cfg.attention.impl == "naive":
        return A[f"{p}.att"]
    q, k = A[f"{p}.q"].astype(np.float64), A[f"{p}.k"].astype(np.float64)
    B, NH, T, HS = q.shape
    nkv = k.shape[1]
    s = (q.reshape(B, nkv, -1, HS) @ k.transpose(0, 1, 3, 2)).reshape(B, NH, T, T) * model.attention_scale()
    lse = A[f"{p}.lse"].astype(np.float64)
    visible = np.arange(T)[None, None, None, :] < model.kv_len[:, None, None, None]  # (B, 1, 1, T) keys
    if model.cfg.attention.mask != "none":  # causal, local
        a = model.cfg.attention
        visible = visible & key_mask(T, a.mask, a.window, a.global_tokens)
    lse = np.where(np.isfinite(lse), lse, np.inf)  # a row without keys: all zeros
    return np.where(visible, np.exp(np.where(visible, s, 0.0) - lse[..., None]), 0.0).astype(model.dtype)


def attention_entropy(model, layer: int, probs: np.ndarray | None = None) -> np.ndarray:
    """(NH,) mean entropy in nats of each head's attention rows in a layer (real tokens only).

    0 means every query looks at one key (a saturated softmax); log(n) is
    uniform attention over n keys. `probs`: attention_probs(model, layer), if at hand.
    """
    return head_entropy(model, attention_rows(attention_probs(model, layer) if probs is None else probs)[0])


def attention_rows(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of attention probabilities (B, NH, T, T): its entropy in nats and its top probability, (B, NH, T)
    float64 each, in one pass (NaN for a row with a NaN)."""
    entropy, top = (np.empty(probs.shape[:3]) for _ in range(2))
    _kernels.attention_row_statistics(probs, entropy, top)
    return entropy, top


def head_entropy(model, h: np.ndarray) -> np.ndarray:
    """(NH,) mean of the rows' entropies h (B, NH, T) over the real tokens."""
    B, NH, T = h.shape
    rows = model.acts["rowmask"].reshape(B, 1, T).astype(np.float64)
    return (h * rows).sum(axis=(0, 2)) / max(float(rows.sum()), 1.0)


def attention_saturation(model, layer: int, probs: np.ndarray | None = None, margin: float = 0.01) -> np.ndarray:
    """(NH,) share of each head's rows (real tokens with two or more visible keys) whose top probability > 1-margin.

    Such a softmax row is nearly one-hot: with top probability 1 - e, its score
    gradient dS = p (dP - sum(p dP)) has |dS|_1 <= 4 e max|dP|, so q and k learn
    almost nothing from it, however large the gradient dP arriving from above.
    """
    return head_saturation(model, attention_rows(attention_probs(model, layer) if probs is None else probs)[1], margin)


def head_saturation(model, top: np.ndarray, margin: float = 0.01) -> np.ndarray:
    """(NH,) share of the rows (real tokens with two or more visible keys) whose top probability top (B, NH, T)
    exceeds 1 - margin."""
    B, NH, T = top.shape
    keys = np.minimum(model.kv_len[:, None], T)  # (B, 1): visible keys per query row
    if model.cfg.attention.mask == "causal":
        keys = np.minimum(keys, np.arange(1, T + 1)[None, :])  # (B, T)
    elif model.cfg.attention.mask == "local":  # the keys each row's window shows
        a = model.cfg.attention
        keys = np.minimum(keys, key_mask(T, a.mask, a.window, a.global_tokens).sum(axis=1)[None, :])
    rows = (np.broadcast_to(keys, (B, T)) >= 2) & (model.acts["rowmask"].reshape(B, T) != 0)
    return ((top > 1.0 - margin) & rows[:, None, :]).sum(axis=(0, 2)) / max(int(rows.sum()), 1)


# ------------------------------------------------------------------ identity path

NORM_EPS = 1e-5  # the norms' eps

def identity_fractions(model, params: dict[str, np.ndarray] | None = None) -> dict[str, float]:
    """Per residual sublayer ("h0.attn", "h0.mlp", ...): how much of its input reaches its output unchanged.

    A sublayer maps its input stream x (N, C) to y = x + f (pre-norm, or no norm)
    or to y = norm(x + f) (post-norm), f being the branch output. With its
    statistics fixed, a norm is linear plus a bias, so y = S(x) + S(f) + beta,
    where S is what the skip path does to x: the identity for pre-norm; for
    post-norm the norm's centring and scaling with the statistics of x + f
    (LayerNorm: gamma (x - row mean) row_rstd; RMSNorm: gamma x row_rstd;
    BatchNorm: gamma (x - channel mean) channel_rstd). The fraction is
    ||S(x)|| / ||S0(x)||, where S0 is the same map with the statistics of x
    alone, i.e. what would reach the output if the branch added nothing. So it
    is exactly 1 for pre-norm (and without norms), 0 without residuals, and for
    post-norm about rms(x) / rms(x + f): 1/sqrt(2) once the branch is as large
    as the stream and uncorrelated with it. Computed from the last forward's
    tensors; `params`: the weight views that forward used (default: current).
    """
    cfg, A = model.cfg, model.acts
    P = model.p if params is None else params
    out: dict[str, float] = {}
    post = cfg.norm != "none" and cfg.norm_position == "post"
    x_name = "x0"
    for i in range(cfg.n_layer):
        for branch, site in (("attn", "norm1"), ("mlp", "norm2")):
            key = f"h{i}.{branch}"
            if not cfg.residual:
                out[key] = 0.0
            elif not post:
                out[key] = 1.0
            else:
                norm = f"h{i}.{site}"
                x, gamma = A[x_name].astype(np.float64), P[f"{norm}.w"].astype(np.float64)
                through = np.linalg.norm(_norm_linear_part(model, x, norm, gamma, own_statistics=False))
                alone = np.linalg.norm(_norm_linear_part(model, x, norm, gamma, own_statistics=True))
                out[key] = float(through / alone) if alone > 0 else 0.0
                x_name = norm
    return out


def _norm_linear_part(model, x: np.ndarray, site: str, gamma: np.ndarray, own_statistics: bool) -> np.ndarray:
    """What norm `site` does to x along the skip path: with the last forward's statistics, or with x's own."""
    A, kind, eps = model.acts, model.cfg.norm, NORM_EPS
    if kind == "batchnorm":
        valid = A["rowmask"] != 0
        if not model.norm_trained.get(site, True):  # running statistics: a fixed map, whatever x is
            return gamma * x * A[f"{site}.rstd"].astype(np.float64)
        xc = x - x[valid].mean(axis=0)
        rstd = 1.0 / np.sqrt((xc[valid] ** 2).mean(axis=0) + eps) if own_statistics else \
            A[f"{site}.rstd"].astype(np.float64)
        return gamma * xc * rstd
    xc = x - x.mean(axis=1, keepdims=True) if kind == "layernorm" else x
    rstd = 1.0 / np.sqrt((xc ** 2).mean(axis=1) + eps) if own_statistics else A[f"{site}.rstd"].astype(np.float64)
    return gamma * xc * rstd[:, None]
