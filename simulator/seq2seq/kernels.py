"""The kernels cross-attention needs beside the GPT's: head layout moves and a rectangular masked softmax.

Self-attention's kernels assume one length for queries and keys (a (T, T) score matrix, keys masked
past a causal diagonal); cross-attention's queries are the decoder's Td positions and its keys the
encoder's Te, so its scores are (Td, Te) and only the key side is masked (padding of the source).

Shape alphabet: B batch, NH heads, HS head size, C = NH HS channels, Tq query positions, Tk key positions.
"""

import numpy as np
from numba import prange

from simulator.kernels.cpu.jit import FAST, wide


@wide
def to_heads(xh, x):
    """Writes xh[b, h, t, i] = x[b, t, h HS + i] (one projection split into its heads)."""
    # xh is (B, NH, T, HS), x is (B, T, C)
    B, NH, T, HS = xh.shape
    for bt in prange(B * T):
        b, t = bt // T, bt % T
        for h in range(NH):
            for i in range(HS):
                xh[b, h, t, i] = x[b, t, h * HS + i]


@wide
def from_heads(x, xh):
    """Writes x[b, t, h HS + i] = xh[b, h, t, i] (the heads merged back; also the backward of to_heads)."""
    # x is (B, T, C), xh is (B, NH, T, HS)
    B, NH, T, HS = xh.shape
    for bt in prange(B * T):
        b, t = bt // T, bt % T
        for h in range(NH):
            for i in range(HS):
                x[b, t, h * HS + i] = xh[b, h, t, i]


@wide
def split_kv(k, v, kv):
    """Writes the key and value heads from the fused projection kv laid out [k | v]."""
    # k, v are (B, NH, T, HS), kv is (B, T, 2 C)
    B, NH, T, HS = k.shape
    C = NH * HS
    for bt in prange(B * T):
        b, t = bt // T, bt % T
        for h in range(NH):
            for i in range(HS):
                k[b, h, t, i] = kv[b, t, h * HS + i]
                v[b, h, t, i] = kv[b, t, C + h * HS + i]


@wide
def merge_kv(kv, k, v):
    """Writes kv (B, T, 2 C) laid out [k | v] from per-head arrays (the backward of split_kv, on gradients)."""
    B, NH, T, HS = k.shape
    C = NH * HS
    for bt in prange(B * T):
        b, t = bt // T, bt % T
        for h in range(NH):
            for i in range(HS):
                kv[b, t, h * HS + i] = k[b, h, t, i]
                kv[b, t, C + h * HS + i] = v[b, h, t, i]


@wide(fastmath=FAST)
def cross_softmax_forward(att, scale, kv_len):
    """In place: att = softmax(scale * att) over each row's first kv_len[b] keys; padding keys get 0.

    A row whose source is empty (kv_len 0) outputs 0: it reads nothing.
    """
    # att is (B, NH, Tq, Tk) raw scores in, probabilities out; kv_len is (B,) int32
    B, NH, Tq, Tk = att.shape
    for r in prange(B * NH * Tq):
        b, h, t = r // (NH * Tq), (r // Tq) % NH, r % Tq
        row = att[b, h, t]
        n = min(max(kv_len[b], 0), Tk)
        if n == 0:
            row[:] = 0.0
            continue
        mx = row[0]  # the largest score (the smallest under a negative scale), so exp() stays finite
        for j in range(1, n):
            mx = row[j] if (row[j] > mx) == (scale >= 0) else mx
        s = 0.0
        for j in range(n):
            e = np.exp(scale * (row[j] - mx))
            row[j] = e
            s += e
        inv = 1.0 / s
        for j in range(n):
            row[j] *= inv
        for j in range(n, Tk):
            row[j] = 0.0


@wide(fastmath=FAST)
def cross_softmax_backward(datt, att, scale, kv_len):
    """In place: datt (dL/dprobs) becomes dL/dscores = scale p (dp - sum(dp p)); padding keys get 0."""
    # datt, att are (B, NH, Tq, Tk)
    B, NH, Tq, Tk = att.shape
    for r in prange(B * NH * Tq):
        b, h, t = r // (NH * Tq), (r // Tq) % NH, r % Tq
        n = min(max(kv_len[b], 0), Tk)
        drow, prow = datt[b, h, t], att[b, h, t]
        dot = 0.0
        for j in range(n):
            dot += drow[j] * prow[j]
        for j in range(n):
            drow[j] = scale * prow[j] * (drow[j] - dot)
        for j in range(n, Tk):
            drow[j] = 0.0


def cross_heads_forward(yh, att, q, k, v, scale, kv_len):
    """Writes yh = softmax(scale q k^T) v per head over the visible keys; keeps the probabilities in att."""
    # q, yh are (B, NH, Tq, HS); k, v are (B, NH, Tk, HS); att is (B, NH, Tq, Tk)
    np.matmul(q, k.transpose(0, 1, 3, 2), out=att)
    cross_softmax_forward(att, att.dtype.type(scale), kv_len)
    np.matmul(att, v, out=yh)


def cross_heads_backward(dq, dk, dv, datt, dyh, q, k, v, att, scale, kv_len):
    """Writes dq, dk, dv (each one BLAS product) from dyh; datt is scratch."""
    np.matmul(dyh, v.transpose(0, 1, 3, 2), out=datt)  # dL/dprobs (B, NH, Tq, Tk)
    np.matmul(att.transpose(0, 1, 3, 2), dyh, out=dv)  # (B, NH, Tk, HS)
    cross_softmax_backward(datt, att, att.dtype.type(scale), kv_len)  # now dL/dscores
    np.matmul(datt, k, out=dq)  # (B, NH, Tq, HS)
    np.matmul(datt.transpose(0, 1, 3, 2), q, out=dk)  # (B, NH, Tk, HS)
