"""Token + position embedding on the GPU (twin of kernels/cpu/embedding.py)."""

from __future__ import annotations

from numba import cuda

from simulator.kernels.cuda.launch import THREADS, blocks


@cuda.jit
def _forward(out, ids, wte, wpe):
    # out is (B, T, C), ids (B, T) ints, wte (V, C), wpe (>= T, C): one thread per output element
    i = cuda.grid(1)
    B, T, C = out.shape
    if i < B * T * C:
        b, t, c = i // (T * C), (i // C) % T, i % C
        out[b, t, c] = wte[ids[b, t], c] + wpe[t, c]


@cuda.jit
def _backward_wpe(dwpe, dout):
    # one thread per (t, c) sums over the batch: no two threads write one element, no atomics
    i = cuda.grid(1)
    B, T, C = dout.shape
    if i < T * C:
        t, c = i // C, i % C
        acc = dwpe[t, c]
        for b in range(B):
            acc += dout[b, t, c]
        dwpe[t, c] = acc


@cuda.jit
def _backward_wte(dwte, dout, ids):
    # a scatter-add: positions that hold the same token add into one row, so the add is atomic
    # (float atomics: the order of the adds, and so the last bits in float32, vary between runs)
    i = cuda.grid(1)
    B, T, C = dout.shape
    if i < B * T * C:
        b, t, c = i // (T * C), (i // C) % T, i % C
        cuda.atomic.add(dwte, (ids[b, t], c), dout[b, t, c])


def embedding_forward(out, ids, wte, wpe):
    """out[b, t] = wte[ids[b, t]] + wpe[t]."""
    B, T, C = out.shape
    _forward[blocks(B * T * C), THREADS](out, ids, wte, wpe)


def embedding_backward(dwte, dwpe, dout, ids):
    """Accumulates dout into the rows of the tables that were read."""
    B, T, C = dout.shape
    _backward_wpe[blocks(T * C), THREADS](dwpe, dout)
    _backward_wte[blocks(B * T * C), THREADS](dwte, dout, ids)
