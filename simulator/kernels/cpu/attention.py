"""Multi-head self-attention, the plain reference version: it forms the (T, T) score matrix.

The tiled (FlashAttention-style) version lives in attention_tiled.py with the
same q/k/v layout. Here the products go to BLAS over the (B, NH) stack and
numba does the layout changes and the masked softmax.
"""

import numpy as np
from numba import njit, prange


@njit(cache=True, nogil=True, parallel=True)
def split_heads(q, k, v, qkv):
    """Writes q, k, v from the fused projection qkv."""
    # qkv is (B, T, 3C) laid out [q | k | v]; q, k, v are (B, NH, T, HS)
    B, NH, T, HS = q.shape
    C = NH * HS
    for bh in prange(B * NH):
        b, h = bh // NH, bh % NH
        for t in range(T):
            for i in range(HS):
                q[b, h, t, i] = qkv[b, t, h * HS + i]
                k[b, h, t, i] = qkv[b, t, C + h * HS + i]
                v[b, h, t, i] = qkv[b, t, 2 * C + h * HS + i]


@njit(cache=True, nogil=True, parallel=True)
def merge_qkv_grad(dqkv, dq, dk, dv):
    """Writes dqkv from the per-head gradients (the backward of split_heads)."""
    B, NH, T, HS = dq.shape
    C = NH * HS
    for b in prange(B):
        for t in range(T):
            for h in range(NH):
                for i in range(HS):
                    dqkv[b, t, h * HS + i] = dq[b, h, t, i]
                    dqkv[b, t, C + h * HS + i] = dk[b, h, t, i]
                    dqkv[b, t, 2 * C + h * HS + i] = dv[b, h, t, i]


@njit(cache=True, nogil=True, parallel=True)
def merge_heads(out, yh):
    """Writes out[b, t, h*HS + i] = yh[b, h, t, i]."""
    # out is (B, T, C), yh is (B, NH, T, HS)
    B, NH, T, HS = yh.shape
    for b in prange(B):
        for t in range(T):
            for h in range(NH):
                for i in range(HS):
                    out[b, t, h * HS + i] = yh[b, h, t, i]


@njit(cache=True, nogil=True, parallel=True)
def split_heads_grad(dyh, dout):
    """Writes dyh from dout (the backward of merge_heads)."""
    B, NH, T, HS = dyh.shape
    for bh in prange(B * NH):
        b, h = bh // NH, bh % NH
        for t in range(T):
            for i in range(HS):
                dyh[b, h, t, i] = dout[b, t, h * HS + i]


@njit(cache=True, nogil=True, parallel=True)
def _attention_softmax_forward(att, scale, causal):
    # att is (B, NH, T, T): raw scores q.k in, probabilities out; scale has att's dtype so
    # float32 scores are exponentiated in float32 (the sum is kept in float64)
    B, NH, T, _ = att.shape
    for r in prange(B * NH * T):
        b, h, t = r // (NH * T), (r // T) % NH, r % T
        row = att[b, h, t]
        n = t + 1 if causal else T
        mx = row[0] * scale
        for j in range(1, n):
            mx = max(mx, scale * row[j])
        s = 0.0
        for j in range(n):
            e = np.exp(scale * row[j] - mx)
            row[j] = e
            s += e
        inv = 1.0 / s
        for j in range(n):
            row[j] *= inv
        for j in range(n, T):
            row[j] = 0.0


def attention_softmax_forward(att, scale, causal):
    """In place: att = softmax(scale * att) per row; future keys get probability 0 when causal."""
    _attention_softmax_forward(att, att.dtype.type(scale), causal)


def attention_softmax_backward(datt, att, scale):
    """In place: datt (dL/dprobs) becomes dL/dscores = scale * p * (dp - sum(dp * p))."""
    _attention_softmax_backward(datt, att, att.dtype.type(scale))


@njit(cache=True, nogil=True, parallel=True)
def _attention_softmax_backward(datt, att, scale):
    # masked entries have p = 0 and so get 0
    B, NH, T, _ = att.shape
    for r in prange(B * NH * T):
        b, h, t = r // (NH * T), (r // T) % NH, r % T
        dot = 0.0
        for j in range(T):
            dot += datt[b, h, t, j] * att[b, h, t, j]
        for j in range(T):
            datt[b, h, t, j] = scale * att[b, h, t, j] * (datt[b, h, t, j] - dot)


def attention_forward(out, q, k, v, att, yh, qkv, scale, causal):
    """Writes out (B, T, C) and caches q, k, v, att (the probabilities) and yh."""
    # qkv is (B, T, 3C); q, k, v, yh are (B, NH, T, HS); att is (B, NH, T, T)
    split_heads(q, k, v, qkv)
    np.matmul(q, k.transpose(0, 1, 3, 2), out=att)  # (B, NH, T, T) raw scores
    attention_softmax_forward(att, scale, causal)
    np.matmul(att, v, out=yh)  # (B, NH, T, HS)
    merge_heads(out, yh)


def attention_backward(dqkv, dq, dk, dv, datt, dyh, dout, q, k, v, att, scale):
    """Writes dqkv (B, T, 3C) from dout (B, T, C); dq, dk, dv, datt, dyh are scratch."""
    split_heads_grad(dyh, dout)
    np.matmul(dyh, v.transpose(0, 1, 3, 2), out=datt)  # dL/dprobs (B, NH, T, T)
    np.matmul(att.transpose(0, 1, 3, 2), dyh, out=dv)  # (B, NH, T, HS)
    attention_softmax_backward(datt, att, scale)  # now dL/d(q.k)
    np.matmul(datt, k, out=dq)
    np.matmul(datt.transpose(0, 1, 3, 2), q, out=dk)
    merge_qkv_grad(dqkv, dq, dk, dv)
