"""The StepRecord's heavy statistics for a model whose arrays live on a device (observe.step_statistics).

The numbers are observe.py's; where they come from differs. Reduced on the device
(simulator/kernels/cuda/stats.py), a launch or two and one small copy each:

* per parameter: the gradient's and the weight's norm, the update's norm (params - params_before),
  the unit spread of each MLP's weights; per layer the q, k and v column blocks' gradient norms.
  (segments + 3 L) x 4 float64 numbers cross, where numpy would need the weight, gradient and
  before-update buffers whole;
* per activation site: mean, std and max|x|: sites x 3 float64 numbers, not the activations;
* the watched layer's attention: per row (B, NH, T) its entropy and top probability, from the
  probabilities naive attention keeps or recomputed from q, k and the log-sum-exp (tiled), as
  observe.attention_probs does; 2 B NH T float64 and the watched head's (T, T) map cross, not the
  layer's B NH T T probabilities. The head averages (real rows, rows with two keys) are numpy's.

* the MLP's saturated share (sigmoid, tanh: one count per layer) and dead ReLU units (one int8 flag
  per unit and layer), not its (N, 4C) activations.

* the identity path of post-LayerNorm and post-RMSNorm models: per sublayer two sums over rows
  (what the skip path passes with the forward's statistics and with its input's own), not the
  stream into each norm.

Read whole, through a HostModel (simulator/backend/host.py), because they are small: the row mask;
the norms' gains and biases; BatchNorm's running statistics; for post-BatchNorm models the stream
into each norm and its rstd (the identity path from column statistics, (N, C) per sublayer).
"""

from __future__ import annotations

import math
import weakref

import numpy as np

from simulator import observe
from simulator.backend.host import HostModel, HostSlices
from simulator.kernels.cuda import stats as _stats

_PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {key: Segments}

_SPREAD = {"mlp.fc.w": _stats.SPREAD_ROW, "mlp.fc.b": _stats.SPREAD_ROW, "mlp.proj.w": _stats.SPREAD_COLUMN}


def _tensor_segment(offset: int, shape: tuple[int, ...], spread: int) -> tuple[int, int, int, int, int]:
    cols = int(shape[-1]) if shape else 1
    rows = int(np.prod(shape[:-1], dtype=np.int64)) if len(shape) > 1 else 1
    return offset, rows, cols, cols, spread


def param_segments(model) -> tuple[list, dict[str, tuple[int, int, int]]]:
    """Segments of every parameter (unit-spread modes on the MLPs' weights), then of each qkv.w's q, k, v column
    blocks; and layer -> the indices of its q, k, v segments."""
    cfg = model.cfg
    segs = [_tensor_segment(s.offset, s.shape, _SPREAD.get(s.name.split(".", 1)[-1], _stats.SPREAD_NONE))
            for s in model.layout]
    C, KV = cfg.d_model, cfg.kv_heads * cfg.head_size
    qkv = {}
    for i in range(cfg.n_layer):
        spec = model.layout.by_name.get(f"h{i}.attn.qkv.w")
        if spec is None:
            continue
        width = C + 2 * KV  # (C, C + 2 KV): columns [q | k | v]
        qkv[f"h{i}"] = tuple(range(len(segs), len(segs) + 3))
        segs += [(spec.offset + c0, C, w, width, _stats.SPREAD_NONE) for c0, w in ((0, C), (C, KV), (C + KV, KV))]
    return segs, qkv


def _plans(model) -> dict:
    plans = _PLANS.get(model)
    if plans is None:
        plans = _PLANS[model] = {}
    return plans


def _param_plan(model):
    plans = _plans(model)
    if "params" not in plans:
        segs, qkv = param_segments(model)
        plans["params"] = (_stats.Segments(segs, _stats.PARAM_WIDTHS), qkv)
    return plans["params"]


def _arena_plan(model, kind: str, names: list[str], widths: tuple[int, ...]):
    """A plan over the activation arena's arrays `names` (each contiguous), rebuilt with the arena (a new B, T)."""
    A, plans = model.acts, _plans(model)
    key = (kind, id(A))
    if key not in plans:
        for k in [k for k in plans if k[0] == kind]:
            del plans[k]
        segs = [(A.offsets[n], 1, A[n].size, A[n].size, _stats.SPREAD_NONE) for n in names]
        plans[key] = (_stats.Segments(segs, widths), A)  # the arena kept alive, so its id stays its own
    return plans[key][0]


def identity_fractions(model, host, weights, flat_weights) -> dict[str, float]:
    """observe.identity_fractions; for post-LayerNorm and post-RMSNorm from per-row sums on the device (2 float64
    per sublayer cross, not the stream into each norm). Its constants (pre-norm, no norm, no residuals) and
    post-BatchNorm (column statistics) are numpy's, on host copies. flat_weights: the flat buffer of `weights`."""
    cfg, A, bk = model.cfg, model.acts, model.bk
    if not (cfg.residual and cfg.norm in ("layernorm", "rmsnorm") and cfg.norm_position == "post"):
        return observe.identity_fractions(host, weights)
    sub = [(f"h{i}.{branch}", f"h{i}.{site}") for i in range(cfg.n_layer)
           for branch, site in (("attn", "norm1"), ("mlp", "norm2"))]
    N, plans = A["rowmask"].shape[0], _plans(model)
    key = ("identity", id(A))
    if key not in plans:
        for k in [k for k in plans if k[0] == "identity"]:
            del plans[k]
        plans[key] = (_stats.Segments([(0, 1, N, N, _stats.SPREAD_NONE)] * len(sub), _stats.IDENTITY_WIDTHS,
                                      chunk=1), A)
    plan, x_name = plans[key][0], "x0"
    for s, (_, norm) in enumerate(sub):  # the stream into norm2 is norm1's output
        spec = model.layout.by_name[f"{norm}.w"]
        gamma = flat_weights[spec.offset:spec.offset + spec.size]
        _stats.identity_rows(plan, s, A[x_name], gamma, A[f"{norm}.rstd"], cfg.norm == "layernorm",
                             observe.NORM_EPS)
        x_name = norm
    sums = bk.to_host(_stats.identity_sums(plan))
    return {k: float(math.sqrt(t) / math.sqrt(a)) if a > 0 else 0.0 for (k, _), (t, a) in zip(sub, sums, strict=True)}


def activation_fractions(record, model) -> None:
    """observe.activation_fractions on the device: per layer one saturated count (sigmoid, tanh) or one flag per
    ReLU unit (dead: <= 0 on every row) crosses, not the MLP's (N, 4C) activations."""
    cfg, A, bk = model.cfg, model.acts, model.bk
    layers = [f"h{i}" for i in range(cfg.n_layer)]
    if cfg.activation in observe.SATURATING:
        plan = _arena_plan(model, "saturation", [f"{p}.act" for p in layers], _stats.COUNT_WIDTHS)
        counts = bk.to_host(_stats.saturated_counts(plan, A.flat, cfg.activation, observe.SATURATION_MARGIN))
        for p, n, size in zip(layers, counts[:, 0], plan.sizes, strict=True):
            record.saturated_fraction[p] = float(n / size)
    if cfg.activation == "relu":
        for p in layers:
            record.dead_fraction[p] = float(np.mean(bk.to_host(_stats.live_columns(A[f"{p}.fc"])) == 0))


def watched_attention(record, model, host, cfg) -> None:
    """observe.watched_attention from the device's per-row entropies and top probabilities (2 B NH T float64)
    and the watched head's (T, T) map: the layer's probabilities (B, NH, T, T) stay where they are."""
    layer = min(cfg.watch_layer, model.cfg.n_layer - 1)
    head = min(cfg.watch_head, model.cfg.n_head - 1)
    A, a, p = model.acts, model.cfg.attention, f"h{layer}"
    B, T = model.shape
    shape, kv_len = (B, model.cfg.n_head, T), model.bk.from_host(model.kv_len)  # (B,) int32: the real keys per row
    if a.impl == "naive":
        rows = _stats.attention_rows(shape, head, kv_len, att=A[f"{p}.att"])
    else:
        local = a.mask == "local"
        rows = _stats.attention_rows(shape, head, kv_len, q=A[f"{p}.q"], k=A[f"{p}.k"], lse=A[f"{p}.lse"],
                                     scale=model.attention_scale(), causal=a.mask != "none",
                                     window=a.window if local else 0, n_global=a.global_tokens if local else 0)
    entropy, top, amap = (model.bk.to_host(r) for r in rows)
    record.attention = amap
    record.attention_entropy = observe.head_entropy(host, entropy)
    record.attention_saturated = observe.head_saturation(host, top)
    record.kv_cache_bytes = observe.kv_cache_bytes_per_token(model.cfg, model.dtype)


def device_step_statistics(record, model, params_before, cfg) -> None:
    """observe.step_statistics for a device model: the same fields, reduced on the device where they are large."""
    bk = model.bk
    plan, qkv = _param_plan(model)
    before = params_before if params_before is not None else model.params
    res = bk.to_host(_stats.param_statistics(plan, model.grads, model.params, before))  # (segments, 4)
    for s, spec in enumerate(model.layout):
        record.grad_norms[spec.name] = math.sqrt(res[s, 0])
        pn = math.sqrt(res[s, 1])
        record.param_norms[spec.name] = pn
        if params_before is not None:
            record.update_ratios[spec.name] = math.sqrt(res[s, 2]) / pn if pn > 0 else 0.0
    sites = model.activation_sites
    act_plan = _arena_plan(model, "moments", sites, _stats.MOMENT_WIDTHS)
    sums, centered = (bk.to_host(a) for a in _stats.moment_statistics(act_plan, model.acts.flat))
    for site, moments in zip(sites, _stats.moments_from(sums, centered, act_plan.sizes), strict=True):
        record.activations[site] = moments
    host = HostModel(model)  # copies only what is read below
    watched_attention(record, model, host, cfg)
    for layer, (q, k, v) in qkv.items():
        record.qkv_grad_norms[layer] = (math.sqrt(res[q, 0]), math.sqrt(res[k, 0]), math.sqrt(res[v, 0]))
    observe.stability_statistics(record, host, HostSlices(before, model.layout, bk),
                                 identity=lambda host, weights: identity_fractions(model, host, weights, before))
    activation_fractions(record, model)
    index = {s.name: i for i, s in enumerate(model.layout)}
    for i in range(model.cfg.n_layer):
        names = [f"h{i}.{k}" for k in _SPREAD]
        record.unit_spread[f"h{i}"] = float(max(res[index[n], 3] for n in names))
