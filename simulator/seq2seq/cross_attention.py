"""Cross-attention: queries from the decoder's stream, keys and values from the encoder's output.

    q = x Wq + bq            x (B Td, C): the decoder's (normed) stream
    [k | v] = m Wkv + bkv    m (B Te, C): the encoder's output, the same for every decoder layer
    y = softmax(q k^T / sqrt(HS), keys past m_len[b] hidden) v, per head
    out = y Wo + bo

The queries and keys differ in length (Td, Te), and there is no causal mask: every decoder position may
read the whole source (it is known before the first target word). Only the key side is padded, and a
padded key gets probability 0, so it passes no gradient back to the encoder either.

`CrossBuffers` holds one layer's cache (what the backward reads) and the scratch every layer shares.
The backward adds (+=) into dx, dm and the weights' gradients, as every backward op of the GPT does.
"""

from __future__ import annotations

import numpy as np

from simulator.kernels.cpu.linear import linear_backward, linear_forward
from simulator.seq2seq.kernels import (
    cross_heads_backward,
    cross_heads_forward,
    from_heads,
    merge_kv,
    split_kv,
    to_heads,
)

WEIGHTS = ("q.w", "q.b", "kv.w", "kv.b", "proj.w", "proj.b")


def weight_shapes(C: int) -> dict[str, tuple[int, ...]]:
    """The op's tensors by name (the model prefixes them with h{i}.cross.)."""
    return {"q.w": (C, C), "q.b": (C,), "kv.w": (C, 2 * C), "kv.b": (2 * C,), "proj.w": (C, C), "proj.b": (C,)}


def cache_shapes(B: int, Td: int, Te: int, C: int, NH: int) -> dict[str, tuple[int, ...]]:
    """What one layer's forward keeps for its backward."""
    HS = C // NH
    return {"q": (B * Td, C), "kv": (B * Te, 2 * C), "qh": (B, NH, Td, HS), "k": (B, NH, Te, HS),
            "v": (B, NH, Te, HS), "att": (B, NH, Td, Te), "yh": (B, NH, Td, HS), "y": (B * Td, C)}


def scratch_shapes(B: int, Td: int, Te: int, C: int, NH: int) -> dict[str, tuple[int, ...]]:
    """The backward's scratch, written whole before it is read (one set for every layer)."""
    HS = C // NH
    return {"dy": (B * Td, C), "dyh": (B, NH, Td, HS), "dq": (B, NH, Td, HS), "dk": (B, NH, Te, HS),
            "dv": (B, NH, Te, HS), "datt": (B, NH, Td, Te), "dqf": (B * Td, C), "dkv": (B * Te, 2 * C),
            "dx": (B * Td, C), "dm": (B * Te, C)}


def allocate(shapes: dict[str, tuple[int, ...]], dtype) -> dict[str, np.ndarray]:
    return {k: np.zeros(s, dtype) for k, s in shapes.items()}


def cross_attention_forward(out, x, m, m_len, W, cache) -> None:
    """Writes out (B Td, C) from the decoder's x (B Td, C) and the encoder's m (B Te, C); fills `cache`."""
    B, NH, Td, HS = cache["qh"].shape
    Te, C = cache["k"].shape[2], NH * HS
    linear_forward(cache["q"], x, W["q.w"], W["q.b"])  # (B Td, C)
    linear_forward(cache["kv"], m, W["kv.w"], W["kv.b"])  # (B Te, 2C)
    to_heads(cache["qh"], cache["q"].reshape(B, Td, C))
    split_kv(cache["k"], cache["v"], cache["kv"].reshape(B, Te, 2 * C))
    cross_heads_forward(cache["yh"], cache["att"], cache["qh"], cache["k"], cache["v"], 1.0 / np.sqrt(HS), m_len)
    from_heads(cache["y"].reshape(B, Td, C), cache["yh"])
    linear_forward(out, cache["y"], W["proj.w"], W["proj.b"])  # (B Td, C)


def cross_attention_backward(dx, dm, dW, dout, x, m, m_len, W, cache, s) -> None:
    """Adds the gradients of out's gradient `dout` into dx (B Td, C), dm (B Te, C) and dW (by WEIGHTS)."""
    B, NH, Td, HS = cache["qh"].shape
    Te, C = cache["k"].shape[2], NH * HS
    linear_backward(s["dy"], dW["proj.w"], dW["proj.b"], dout, cache["y"], W["proj.w"])  # writes dy
    to_heads(s["dyh"], s["dy"].reshape(B, Td, C))
    cross_heads_backward(s["dq"], s["dk"], s["dv"], s["datt"], s["dyh"], cache["qh"], cache["k"], cache["v"],
                         cache["att"], 1.0 / np.sqrt(HS), m_len)
    from_heads(s["dqf"].reshape(B, Td, C), s["dq"])
    merge_kv(s["dkv"].reshape(B, Te, 2 * C), s["dk"], s["dv"])
    linear_backward(dx, dW["q.w"], dW["q.b"], s["dqf"], x, W["q.w"], s["dx"])  # dx += dq Wq^T
    linear_backward(dm, dW["kv.w"], dW["kv.b"], s["dkv"], m, W["kv.w"], s["dm"])  # dm += dkv Wkv^T


def reference_forward(x, m, m_len, W, B: int, Td: int, Te: int, n_head: int):
    """Plain numpy (float64): (out (B Td, C), probabilities (B, NH, Td, Te)), for the tests."""
    C = x.shape[1]
    HS = C // n_head
    f = lambda a: np.asarray(a, np.float64)  # noqa: E731
    q = (f(x) @ f(W["q.w"]) + f(W["q.b"])).reshape(B, Td, n_head, HS).transpose(0, 2, 1, 3)
    kv = f(m) @ f(W["kv.w"]) + f(W["kv.b"])
    k = kv[:, :C].reshape(B, Te, n_head, HS).transpose(0, 2, 1, 3)
    v = kv[:, C:].reshape(B, Te, n_head, HS).transpose(0, 2, 1, 3)
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(HS)  # (B, NH, Td, Te)
    p = np.zeros_like(scores)
    for b in range(B):  # softmax over the first m_len[b] keys; no key: the row reads nothing
        n = int(m_len[b])
        if n > 0:
            e = np.exp(scores[b, :, :, :n] - scores[b, :, :, :n].max(axis=-1, keepdims=True))
            p[b, :, :, :n] = e / e.sum(axis=-1, keepdims=True)
    y = (p @ v).transpose(0, 2, 1, 3).reshape(B * Td, C)
    return y @ f(W["proj.w"]) + f(W["proj.b"]), p
