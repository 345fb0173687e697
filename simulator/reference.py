"""The whole GPT and its AdamW step in plain numpy: the reference the numba engine is checked against.

Written on its own, without the engine's kernels or op list, so that agreement
between the two means something. It is vectorised (a few numpy calls per
layer), works in the dtype of the parameters it is given (float64 for
correctness checks, float32 for a speed comparison), and keeps each forward
next to its backward. Parameter names and shapes are those of
`simulator.model.params.build_layout`.

Shape alphabet: B batch, T time, C channels, NH heads, HS head size, H hidden
(MLP) width, V vocab, N = B*T rows. Weights are (C_in, C_out): y = x @ W + b.
Dropout sites (when masks are given): "x0" (the embedding sum), "h{i}.attn" and
"h{i}.mlp" (each branch output before its residual add); a mask holds the
per-element factor (inverted dropout: 0 or 1/(1-p); classic: 0 or 1 in training,
1-p at inference). BatchNorm normalizes each channel over all N rows with the
batch's (biased) variance, or, when `running` statistics are given (eval mode),
with those ("{norm}.running_mean" / "{norm}.running_var").
Attention follows `cfg.attention`: NKV key/value heads, each serving NH/NKV query
heads (np.repeat), causal or no mask, scores scaled by 1/sqrt(HS) or not, and
padding when `lengths` are given (keys past a row's length are hidden; the loss
averages the real positions only). Positions: learned (wpe), sinusoidal (a fixed
table scaled by init_std), none, or rope (q and k rotated as complex pairs).
"""

from __future__ import annotations

import math

import numpy as np

from simulator.attention_mask import key_mask
from simulator.config import ModelConfig
from simulator.model.params import build_layout

EPS = 1e-5  # LayerNorm and RMSNorm
GELU_K = math.sqrt(2.0 / math.pi)  # a Python float, so float32 data stays float32
GELU_A = 0.044715

Arrays = dict[str, np.ndarray]


# ------------------------------------------------------------------- norms

def layernorm_fwd(x, w, b):
    """LayerNorm over the last axis; returns out and the cache for the backward."""
    # x is (N, C)
    mu = x.mean(axis=-1, keepdims=True)
    xc = x - mu
    rstd = 1.0 / np.sqrt((xc * xc).mean(axis=-1, keepdims=True) + EPS)  # (N, 1)
    xhat = xc * rstd
    return xhat * w + b, (xhat, rstd, w)


def layernorm_bwd(dout, cache):
    """Gradients of layernorm_fwd: (dx, dw, db)."""
    xhat, rstd, w = cache
    dxhat = dout * w
    # the mean and the variance both depend on every x in the row, hence the two row averages
    dx = rstd * (dxhat - dxhat.mean(axis=-1, keepdims=True) - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True))
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)


def rmsnorm_fwd(x, w):
    """RMSNorm over the last axis (no centring, no bias); returns out and the cache."""
    rstd = 1.0 / np.sqrt((x * x).mean(axis=-1, keepdims=True) + EPS)  # (N, 1)
    xhat = x * rstd
    return xhat * w, (xhat, rstd, w)


def rmsnorm_bwd(dout, cache):
    """Gradients of rmsnorm_fwd: (dx, dw)."""
    xhat, rstd, w = cache
    dxhat = dout * w
    dx = rstd * (dxhat - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True))
    return dx, (dout * xhat).sum(axis=0)


def batchnorm_fwd(x, w, b, running_mean=None, running_var=None):
    """BatchNorm over the rows (axis 0): batch statistics, or the running ones when given; returns out, cache."""
    # x is (N, C); statistics are (C,)
    if running_mean is None:
        mu = x.mean(axis=0)
        xc = x - mu
        rstd = 1.0 / np.sqrt((xc * xc).mean(axis=0) + EPS)  # (C,), biased variance
    else:
        xc = x - running_mean
        rstd = 1.0 / np.sqrt(running_var + EPS)
    xhat = xc * rstd
    return xhat * w + b, (xhat, rstd, w, running_mean is None)


def batchnorm_bwd(dout, cache):
    """Gradients of batchnorm_fwd: (dx, dw, db)."""
    xhat, rstd, w, batch_stats = cache
    dxhat = dout * w
    if batch_stats:  # every row moves the column's mean and variance, hence the two column averages
        dx = rstd * (dxhat - dxhat.mean(axis=0) - xhat * (dxhat * xhat).mean(axis=0))
    else:
        dx = rstd * dxhat
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)


def _norm_fwd(kind, x, params, prefix, running=None):
    if kind == "layernorm":
        return layernorm_fwd(x, params[f"{prefix}.w"], params[f"{prefix}.b"])
    if kind == "batchnorm":
        if running is None:
            return batchnorm_fwd(x, params[f"{prefix}.w"], params[f"{prefix}.b"])
        return batchnorm_fwd(x, params[f"{prefix}.w"], params[f"{prefix}.b"], running[f"{prefix}.running_mean"],
                             running[f"{prefix}.running_var"])
    return rmsnorm_fwd(x, params[f"{prefix}.w"])


def _norm_bwd(kind, dout, cache, grads, prefix):
    """Returns dx; adds the parameter gradients into `grads`."""
    if kind in ("layernorm", "batchnorm"):
        dx, dw, db = (layernorm_bwd if kind == "layernorm" else batchnorm_bwd)(dout, cache)
        grads[f"{prefix}.b"] += db
    else:
        dx, dw = rmsnorm_bwd(dout, cache)
    grads[f"{prefix}.w"] += dw
    return dx


# --------------------------------------------------------------- activations

def gelu_fwd(x):
    """GELU, tanh approximation."""
    return 0.5 * x * (1.0 + np.tanh(GELU_K * (x + GELU_A * x * x * x)))  # x*x*x: x**3 is a slow pow call


def gelu_bwd(dout, x):
    """dL/dx of gelu_fwd."""
    th = np.tanh(GELU_K * (x + GELU_A * x * x * x))
    return dout * (0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * GELU_K * (1.0 + 3.0 * GELU_A * x * x))


def sigmoid_fwd(x):
    """1 / (1 + exp(-x)), written with tanh so it never overflows."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def act_fwd(x, activation):
    """The MLP's activation by name."""
    if activation == "gelu":
        return gelu_fwd(x)
    if activation == "relu":
        return np.maximum(x, 0)
    if activation == "silu":
        return x * sigmoid_fwd(x)
    if activation == "sigmoid":
        return sigmoid_fwd(x)
    return np.tanh(x)


def act_bwd(dout, x, activation):
    """dL/dx of act_fwd."""
    if activation == "gelu":
        return gelu_bwd(dout, x)
    if activation == "relu":
        return dout * (x > 0)
    if activation == "tanh":
        return dout * (1.0 - np.tanh(x) ** 2)
    s = sigmoid_fwd(x)
    return dout * (s + x * s * (1.0 - s)) if activation == "silu" else dout * s * (1.0 - s)


# ----------------------------------------------------------------- branches

def sinusoid_positions(T, C, dtype):
    """The fixed (T, C) encoding: sin(t / 10000^(2i/C)) in channel 2i, cos of the same angle in 2i + 1."""
    pe = np.zeros((T, C))
    for c in range(C):
        angle = np.arange(T) / np.power(10000.0, (c - c % 2) / C)
        pe[:, c] = np.sin(angle) if c % 2 == 0 else np.cos(angle)
    return pe.astype(dtype)


def rotate_pairs(x, sign=1.0):
    """RoPE on (B, H, T, HS): channel pairs (i, i + HS/2) as complex numbers times exp(sign i t 10000^(-2i/HS))."""
    B, H, T, HS = x.shape
    half = HS // 2
    theta = np.arange(T)[:, None] * np.power(10000.0, -np.arange(half) / half)  # (T, HS/2)
    z = (x[..., :half] + 1j * x[..., half:]) * np.exp(1j * sign * theta)
    return np.concatenate([z.real, z.imag], axis=-1).astype(x.dtype)


def _heads(a, B, T, H):
    """(N, H HS) -> (B, H, T, HS), contiguous: numpy's stacked matmul falls back to a slow loop on strided operands."""
    return np.ascontiguousarray(a.reshape(B, T, H, -1).transpose(0, 2, 1, 3))


def attention_fwd(x, params, prefix, cfg, B, T, lengths=None):
    """Self-attention (causal or not, GQA, rope, padding) with input and output projections; returns out, cache."""
    # x is (N, C); lengths (B,): keys at t >= lengths[b] are padding
    N, C = x.shape
    NH, NKV, HS = cfg.n_head, cfg.kv_heads, cfg.head_size
    group = NH // NKV
    qkv = x @ params[f"{prefix}.qkv.w"] + params[f"{prefix}.qkv.b"]  # (N, C + 2 NKV HS)
    q = _heads(qkv[:, :C], B, T, NH)  # (B, NH, T, HS)
    k = _heads(qkv[:, C:C + NKV * HS], B, T, NKV)  # (B, NKV, T, HS)
    v = _heads(qkv[:, C + NKV * HS:], B, T, NKV)
    rope = cfg.positional == "rope"
    if rope:
        q, k = rotate_pairs(q), rotate_pairs(k)
    kk, vv = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)  # the kv head of each query head
    scale = 1.0 / math.sqrt(HS) if cfg.attention.scale == "sqrt_dk" else 1.0
    s = (q @ kk.transpose(0, 1, 3, 2)) * scale  # (B, NH, T, T)
    n = np.full(B, T) if lengths is None else np.asarray(lengths)
    visible = np.arange(T)[None, None, None, :] < n[:, None, None, None]  # (B, 1, 1, T)
    if cfg.attention.mask != "none":  # causal, local: the explicit (T, T) mask
        a = cfg.attention
        visible = visible & key_mask(T, a.mask, a.window, a.global_tokens)
    s = np.where(visible, s, -np.inf)
    mx = s.max(axis=-1, keepdims=True)
    e = np.exp(s - np.where(np.isfinite(mx), mx, 0.0))
    z = e.sum(axis=-1, keepdims=True)
    p = e / np.where(z > 0, z, 1.0)  # a row without a visible key outputs 0
    y = (p @ vv).transpose(0, 2, 1, 3).reshape(N, C)  # (N, C)
    out = y @ params[f"{prefix}.proj.w"] + params[f"{prefix}.proj.b"]
    return out, (x, q, kk, vv, p, y, scale, group, rope)


def attention_bwd(dout, cache, params, grads, prefix):
    """Returns dx; adds the projection gradients into `grads`."""
    x, q, kk, vv, p, y, scale, group, rope = cache
    B, NH, T, HS = q.shape
    N, C = x.shape
    grads[f"{prefix}.proj.w"] += y.T @ dout
    grads[f"{prefix}.proj.b"] += dout.sum(axis=0)
    # (B, NH, T, HS), contiguous for the stacked products below
    dy = np.ascontiguousarray((dout @ params[f"{prefix}.proj.w"].T).reshape(B, T, NH, HS).transpose(0, 2, 1, 3))
    dp = dy @ vv.transpose(0, 1, 3, 2)  # (B, NH, T, T)
    dvv = p.transpose(0, 1, 3, 2) @ dy
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True)) * scale  # masked entries have p = 0
    dq = ds @ kk
    dkk = ds.transpose(0, 1, 3, 2) @ q
    # a kv head served `group` query heads: its gradient is their sum
    dk, dv = (d.reshape(B, NH // group, group, T, HS).sum(axis=2) for d in (dkk, dvv))
    if rope:
        dq, dk = rotate_pairs(dq, -1.0), rotate_pairs(dk, -1.0)
    dqkv = np.concatenate([d.transpose(0, 2, 1, 3).reshape(N, -1) for d in (dq, dk, dv)], axis=1)
    grads[f"{prefix}.qkv.w"] += x.T @ dqkv
    grads[f"{prefix}.qkv.b"] += dqkv.sum(axis=0)
    return dqkv @ params[f"{prefix}.qkv.w"].T


def mlp_fwd(x, params, prefix, activation):
    """fc -> activation -> proj; returns out and the cache."""
    h = x @ params[f"{prefix}.fc.w"] + params[f"{prefix}.fc.b"]  # (N, H)
    a = act_fwd(h, activation)
    return a @ params[f"{prefix}.proj.w"] + params[f"{prefix}.proj.b"], (x, h, a)


def mlp_bwd(dout, cache, params, grads, prefix, activation):
    """Returns dx; adds the layer gradients into `grads`."""
    x, h, a = cache
    grads[f"{prefix}.proj.w"] += a.T @ dout
    grads[f"{prefix}.proj.b"] += dout.sum(axis=0)
    da = dout @ params[f"{prefix}.proj.w"].T  # (N, H)
    dh = act_bwd(da, h, activation)
    grads[f"{prefix}.fc.w"] += x.T @ dh
    grads[f"{prefix}.fc.b"] += dh.sum(axis=0)
    return dh @ params[f"{prefix}.fc.w"].T


# -------------------------------------------------------------------- model

def _branch_fwd(kind, x, params, cfg, i, B, T, lengths=None):
    if kind == "attn":
        return attention_fwd(x, params, f"h{i}.attn", cfg, B, T, lengths)
    return mlp_fwd(x, params, f"h{i}.mlp", cfg.activation)


def _branch_bwd(kind, dout, cache, params, grads, cfg, i):
    if kind == "attn":
        return attention_bwd(dout, cache, params, grads, f"h{i}.attn")
    return mlp_bwd(dout, cache, params, grads, f"h{i}.mlp", cfg.activation)


def _sublayer_fwd(x, params, cfg, i, kind, site, masks, B, T, running=None, lengths=None):
    """One half-block on stream x (N, C): pre: x + f(norm(x)); post: norm(x + f(x)). Returns out, cache."""
    has_norm, pre = cfg.norm != "none", cfg.norm_position == "pre"
    prefix = f"h{i}.{site}"
    ncache = None
    h = x
    if pre and has_norm:
        h, ncache = _norm_fwd(cfg.norm, x, params, prefix, running)
    f, fcache = _branch_fwd(kind, h, params, cfg, i, B, T, lengths)
    mask = None if masks is None else masks.get(f"h{i}.{kind}")
    if mask is not None:
        f = f * mask.reshape(f.shape)
    out = x + f if cfg.residual else f
    if not pre and has_norm:
        out, ncache = _norm_fwd(cfg.norm, out, params, prefix, running)
    return out, (ncache, fcache, mask)


def _sublayer_bwd(dout, cache, params, grads, cfg, i, kind, site):
    """Backward of _sublayer_fwd: returns the gradient of its input stream."""
    ncache, fcache, mask = cache
    has_norm, pre = cfg.norm != "none", cfg.norm_position == "pre"
    prefix = f"h{i}.{site}"
    if not pre and has_norm:
        dout = _norm_bwd(cfg.norm, dout, ncache, grads, prefix)
    df = dout * mask.reshape(dout.shape) if mask is not None else dout
    dh = _branch_bwd(kind, df, fcache, params, grads, cfg, i)
    if pre and has_norm:
        dh = _norm_bwd(cfg.norm, dh, ncache, grads, prefix)
    return dout + dh if cfg.residual else dh


def reference_forward(params: Arrays, cfg: ModelConfig, ids, dropout_masks: Arrays | None = None,
                      running: Arrays | None = None, lengths=None):
    """Logits (B, T, V) and the caches the backward needs; `running`: BatchNorm in eval mode on these.

    `lengths` (B,): real tokens per row; keys past them are padding that attention never sees.
    """
    ids = np.asarray(ids)
    B, T = ids.shape
    N, C = B * T, cfg.d_model
    x = params["wte"][ids]  # (B, T, C)
    if cfg.positional == "learned":
        x = x + params["wpe"][:T]
    elif cfg.positional == "sinusoidal":  # fixed, so defined for any T (beyond seq_len too); at the tokens' scale
        x = x + cfg.init_std * sinusoid_positions(T, C, np.float64).astype(x.dtype)
    x = x.reshape(N, C)  # (N, C); rope rotates q and k inside attention instead
    mask0 = None if dropout_masks is None else dropout_masks.get("x0")
    if mask0 is not None:
        x = x * mask0.reshape(N, C)
    caches = []
    for i in range(cfg.n_layer):
        for kind, site in (("attn", "norm1"), ("mlp", "norm2")):
            x, c = _sublayer_fwd(x, params, cfg, i, kind, site, dropout_masks, B, T, running, lengths)
            caches.append(c)
    fcache = None
    if cfg.norm != "none" and cfg.norm_position == "pre":
        x, fcache = _norm_fwd(cfg.norm, x, params, "norm_f", running)
    head = params["wte"].T if cfg.tie_embeddings else params["lm_head.w"]  # (C, V)
    logits = x @ head  # (N, V)
    return logits.reshape(B, T, -1), (ids, mask0, caches, fcache, x, head)


def reference_backward(dlogits, state, params: Arrays, cfg: ModelConfig) -> Arrays:
    """Gradients of every parameter tensor from dlogits (B, T, V) and reference_forward's caches."""
    ids, mask0, caches, fcache, xf, head = state
    B, T = ids.shape
    N = B * T
    grads = {name: np.zeros_like(w) for name, w in params.items()}
    dl = dlogits.reshape(N, -1)  # (N, V)
    dhead = xf.T @ dl  # (C, V)
    if cfg.tie_embeddings:
        grads["wte"] += dhead.T
    else:
        grads["lm_head.w"] += dhead
    dx = dl @ head.T  # (N, C)
    if fcache is not None:
        dx = _norm_bwd(cfg.norm, dx, fcache, grads, "norm_f")
    for i in reversed(range(cfg.n_layer)):
        for kind, site in (("mlp", "norm2"), ("attn", "norm1")):
            dx = _sublayer_bwd(dx, caches.pop(), params, grads, cfg, i, kind, site)
    if mask0 is not None:
        dx = dx * mask0.reshape(dx.shape)
    np.add.at(grads["wte"], ids.reshape(-1), dx)  # a token seen twice collects both gradients
    if cfg.positional == "learned":
        grads["wpe"][:T] += dx.reshape(B, T, -1).sum(axis=0)
    return grads


def reference_cross_entropy(logits, targets, lengths=None):
    """Mean cross-entropy over all positions (or the first lengths[b] of row b) and its gradient."""
    # logits is (B, T, V), targets is (B, T)
    B, T, V = logits.shape
    z = logits.reshape(-1, V)
    t = np.asarray(targets).reshape(-1)
    N = z.shape[0]
    shifted = z - z.max(axis=1, keepdims=True)  # any scale is safe once the row max is 0
    e = np.exp(shifted)
    total = e.sum(axis=1, keepdims=True)
    rows = np.arange(N)
    per_row = np.log(total[:, 0]) - shifted[rows, t]
    dz = e / total
    dz[rows, t] -= 1.0
    if lengths is None:
        loss = float(np.mean(per_row, dtype=np.float64))
        dz /= N
    else:  # padding positions are not predictions: they count neither in the mean nor in the gradient
        real = (np.arange(T)[None, :] < np.asarray(lengths)[:, None]).reshape(-1)
        loss = float(per_row[real].sum(dtype=np.float64) / real.sum())
        dz *= real[:, None] / real.sum()
    return loss, dz.reshape(logits.shape)


def reference_loss_and_grads(params: Arrays, cfg: ModelConfig, ids, targets, dropout_masks: Arrays | None = None,
                             running: Arrays | None = None, lengths=None):
    """(mean loss, logits (B, T, V), gradients by tensor name) of the GPT `cfg` describes."""
    logits, state = reference_forward(params, cfg, ids, dropout_masks, running, lengths)
    loss, dlogits = reference_cross_entropy(logits, targets, lengths)
    return loss, logits, reference_backward(dlogits, state, params, cfg)


# -------------------------------------------------------------- optimizer

def reference_adamw_step(params, grads, m, v, t, lr, beta1, beta2, eps, weight_decay, decay_mask):
    """One AdamW update (decoupled decay, bias-corrected) of arrays of one shape, in place."""
    # t is the 1-based step; decay_mask is 1 where weight decay applies (matrices), 0 elsewhere
    m *= beta1
    m += (1.0 - beta1) * grads
    v *= beta2
    v += (1.0 - beta2) * grads * grads
    mhat = m / (1.0 - beta1 ** t)
    vhat = v / (1.0 - beta2 ** t)
    params -= lr * weight_decay * decay_mask * params  # shrink by the old weight, outside the moments
    params -= lr * mhat / (np.sqrt(vhat) + eps)
    return params


def reference_train_step(state: dict, cfg: ModelConfig, ids, targets, lr: float, beta1=0.9, beta2=0.999, eps=1e-8,
                         weight_decay=0.0, decay_mask=None) -> float:
    """Forward, backward and one AdamW update of state["params"] in place; returns the loss before the update."""
    # state: {"params": {name: array}, "m": dict or None, "v": dict or None, "t": steps done}; m and v start at 0.
    # decay_mask: {name: 0/1 factor}, or a ParamLayout / None to decay the matrices as the engine does by default.
    params = state["params"]
    loss, _, grads = reference_loss_and_grads(params, cfg, ids, targets)
    if state.get("m") is None:
        state["m"] = {k: np.zeros_like(w) for k, w in params.items()}
        state["v"] = {k: np.zeros_like(w) for k, w in params.items()}
    if not isinstance(decay_mask, dict):
        layout = decay_mask if decay_mask is not None else build_layout(cfg)
        decay_mask = {s.name: 1.0 if s.kind == "matrix" else 0.0 for s in layout}
    state["t"] = t = state.get("t", 0) + 1
    for name, w in params.items():
        reference_adamw_step(w, grads[name], state["m"][name], state["v"][name], t, lr, beta1, beta2, eps,
                             weight_decay, decay_mask[name])
    return loss
