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
per-element factor, 0 or 1/(1-p).
"""

from __future__ import annotations

import math

import numpy as np

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


def _norm_fwd(kind, x, params, prefix):
    if kind == "layernorm":
        return layernorm_fwd(x, params[f"{prefix}.w"], params[f"{prefix}.b"])
    return rmsnorm_fwd(x, params[f"{prefix}.w"])


def _norm_bwd(kind, dout, cache, grads, prefix):
    """Returns dx; adds the parameter gradients into `grads`."""
    if kind == "layernorm":
        dx, dw, db = layernorm_bwd(dout, cache)
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


# ----------------------------------------------------------------- branches

def attention_fwd(x, params, prefix, B, T, NH):
    """Causal multi-head self-attention with input and output projections; returns out and the cache."""
    # x is (N, C)
    N, C = x.shape
    HS = C // NH
    qkv = x @ params[f"{prefix}.qkv.w"] + params[f"{prefix}.qkv.b"]  # (N, 3C)
    # contiguous heads: numpy's stacked matmul falls back to a slow loop on strided operands
    q, k, v = (np.ascontiguousarray(qkv[:, i * C:(i + 1) * C].reshape(B, T, NH, HS).transpose(0, 2, 1, 3))
               for i in range(3))  # (B, NH, T, HS)
    scale = 1.0 / math.sqrt(HS)
    s = (q @ k.transpose(0, 1, 3, 2)) * scale  # (B, NH, T, T)
    future = np.triu(np.ones((T, T), dtype=bool), k=1)
    s = np.where(future, -np.inf, s)
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    p = e / e.sum(axis=-1, keepdims=True)
    y = (p @ v).transpose(0, 2, 1, 3).reshape(N, C)  # (N, C)
    out = y @ params[f"{prefix}.proj.w"] + params[f"{prefix}.proj.b"]
    return out, (x, q, k, v, p, y, scale)


def attention_bwd(dout, cache, params, grads, prefix):
    """Returns dx; adds the projection gradients into `grads`."""
    x, q, k, v, p, y, scale = cache
    B, NH, T, HS = q.shape
    N, C = x.shape
    grads[f"{prefix}.proj.w"] += y.T @ dout
    grads[f"{prefix}.proj.b"] += dout.sum(axis=0)
    # (B, NH, T, HS), contiguous for the stacked products below
    dy = np.ascontiguousarray((dout @ params[f"{prefix}.proj.w"].T).reshape(B, T, NH, HS).transpose(0, 2, 1, 3))
    dp = dy @ v.transpose(0, 1, 3, 2)  # (B, NH, T, T)
    dv = p.transpose(0, 1, 3, 2) @ dy
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True)) * scale  # masked entries have p = 0
    dq = ds @ k
    dk = ds.transpose(0, 1, 3, 2) @ q
    dqkv = np.concatenate([d.transpose(0, 2, 1, 3).reshape(N, C) for d in (dq, dk, dv)], axis=1)  # (N, 3C)
    grads[f"{prefix}.qkv.w"] += x.T @ dqkv
    grads[f"{prefix}.qkv.b"] += dqkv.sum(axis=0)
    return dqkv @ params[f"{prefix}.qkv.w"].T


def mlp_fwd(x, params, prefix, activation):
    """fc -> GELU or ReLU -> proj; returns out and the cache."""
    h = x @ params[f"{prefix}.fc.w"] + params[f"{prefix}.fc.b"]  # (N, H)
    a = gelu_fwd(h) if activation == "gelu" else np.maximum(h, 0)
    return a @ params[f"{prefix}.proj.w"] + params[f"{prefix}.proj.b"], (x, h, a)


def mlp_bwd(dout, cache, params, grads, prefix, activation):
    """Returns dx; adds the layer gradients into `grads`."""
    x, h, a = cache
    grads[f"{prefix}.proj.w"] += a.T @ dout
    grads[f"{prefix}.proj.b"] += dout.sum(axis=0)
    da = dout @ params[f"{prefix}.proj.w"].T  # (N, H)
    dh = gelu_bwd(da, h) if activation == "gelu" else da * (h > 0)
    grads[f"{prefix}.fc.w"] += x.T @ dh
    grads[f"{prefix}.fc.b"] += dh.sum(axis=0)
    return dh @ params[f"{prefix}.fc.w"].T


# -------------------------------------------------------------------- model

def _branch_fwd(kind, x, params, cfg, i, B, T):
    if kind == "attn":
        return attention_fwd(x, params, f"h{i}.attn", B, T, cfg.n_head)
    return mlp_fwd(x, params, f"h{i}.mlp", cfg.activation)


def _branch_bwd(kind, dout, cache, params, grads, cfg, i):
    if kind == "attn":
        return attention_bwd(dout, cache, params, grads, f"h{i}.attn")
    return mlp_bwd(dout, cache, params, grads, f"h{i}.mlp", cfg.activation)


def _sublayer_fwd(x, params, cfg, i, kind, site, masks, B, T):
    """One half-block on stream x (N, C): pre: x + f(norm(x)); post: norm(x + f(x)). Returns out, cache."""
    has_norm, pre = cfg.norm != "none", cfg.norm_position == "pre"
    prefix = f"h{i}.{site}"
    ncache = None
    h = x
    if pre and has_norm:
        h, ncache = _norm_fwd(cfg.norm, x, params, prefix)
    f, fcache = _branch_fwd(kind, h, params, cfg, i, B, T)
    mask = None if masks is None else masks.get(f"h{i}.{kind}")
    if mask is not None:
        f = f * mask.reshape(f.shape)
    out = x + f if cfg.residual else f
    if not pre and has_norm:
        out, ncache = _norm_fwd(cfg.norm, out, params, prefix)
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


def reference_forward(params: Arrays, cfg: ModelConfig, ids, dropout_masks: Arrays | None = None):
    """Logits (B, T, V) and the caches the backward needs."""
    ids = np.asarray(ids)
    B, T = ids.shape
    N, C = B * T, cfg.d_model
    x = (params["wte"][ids] + params["wpe"][:T]).reshape(N, C)  # (N, C)
    mask0 = None if dropout_masks is None else dropout_masks.get("x0")
    if mask0 is not None:
        x = x * mask0.reshape(N, C)
    caches = []
    for i in range(cfg.n_layer):
        for kind, site in (("attn", "norm1"), ("mlp", "norm2")):
            x, c = _sublayer_fwd(x, params, cfg, i, kind, site, dropout_masks, B, T)
            caches.append(c)
    fcache = None
    if cfg.norm != "none" and cfg.norm_position == "pre":
        x, fcache = _norm_fwd(cfg.norm, x, params, "norm_f")
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
    grads["wpe"][:T] += dx.reshape(B, T, -1).sum(axis=0)
    return grads


def reference_cross_entropy(logits, targets):
    """Mean cross-entropy over all positions and its gradient with respect to the logits."""
    # logits is (B, T, V), targets is (B, T)
    V = logits.shape[-1]
    z = logits.reshape(-1, V)
    t = np.asarray(targets).reshape(-1)
    N = z.shape[0]
    shifted = z - z.max(axis=1, keepdims=True)  # any scale is safe once the row max is 0
    e = np.exp(shifted)
    total = e.sum(axis=1, keepdims=True)
    rows = np.arange(N)
    loss = float(np.mean(np.log(total[:, 0]) - shifted[rows, t], dtype=np.float64))
    dz = e / total
    dz[rows, t] -= 1.0
    dz /= N
    return loss, dz.reshape(logits.shape)


def reference_loss_and_grads(params: Arrays, cfg: ModelConfig, ids, targets, dropout_masks: Arrays | None = None):
    """(mean loss, logits (B, T, V), gradients by tensor name) of the GPT `cfg` describes."""
    logits, state = reference_forward(params, cfg, ids, dropout_masks)
    loss, dlogits = reference_cross_entropy(logits, targets)
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
