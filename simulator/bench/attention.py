"""Times tiled attention against the naive (T x T) version and the BLAS roof: one causal head, float32.

The roof is the time the two matrix products of a causal attention (Q K^T and P V, half of each
under the mask: 2 T^2 d flops in all) would take at the BLAS rate measured in the same run.
Extra memory is counted, not sampled: bytes a method holds beyond its inputs and its output.
The naive version holds S (T^2 floats, P overwrites it in place) and a T x T boolean causal mask
(a buffer kept between calls, as nanoGPT keeps it); the tiled forward holds lse (T floats, kept
for the backward) and one tile of scratch per thread. PyTorch's scaled_dot_product_attention forward +
backward on the same head is measured in the same run, in a child process that imports only torch
(torch_attention_child.py), where torch is installed. Run it as `python -m simulator.bench.attention`
(`python main.py bench` prints it too).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numba
import numpy as np

from simulator.bench.step import run_torch_child
from simulator.i18n import _
from simulator.kernels.cpu.attention_tiled import (
    BACKWARD_TILE_K,
    BACKWARD_TILE_Q,
    TILE_K,
    TILE_Q,
    tiled_attention_backward,
    tiled_attention_forward,
)

TORCH_ATTENTION_CHILD = Path(__file__).with_name("torch_attention_child.py")


def best_seconds(fn, *args, budget_s=0.5, max_reps=7):
    """Fastest of repeated calls of fn(*args) after one warm-up call, within about budget_s."""
    fn(*args)
    best, spent, reps = math.inf, 0.0, 0
    while reps < max_reps and (reps < 2 or spent < budget_s):
        t = time.perf_counter()
        fn(*args)
        dt = time.perf_counter() - t
        best, spent, reps = min(best, dt), spent + dt, reps + 1
    return best


def blas_gflops(n=2048, d=64):
    """Measured float32 GFLOP/s of numpy's BLAS on an (n, d) @ (d, n) product (the shape of Q K^T)."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, d), np.float32), rng.standard_normal((d, n), np.float32)
    out = np.empty((n, n), np.float32)
    return 2 * n * n * d / best_seconds(np.matmul, a, b, out) / 1e9


def naive_attention(q, k, v, scale, future):
    """softmax(scale q k^T masked) v for one head, forming the (T, T) matrix; future is the (T, T) mask."""
    s = q @ k.T  # (T, T)
    s *= scale
    np.putmask(s, future, -np.inf)
    s -= s.max(axis=1, keepdims=True)
    np.exp(s, out=s)
    s /= s.sum(axis=1, keepdims=True)
    return s @ v  # (T, d)


def naive_extra_bytes(T, itemsize=4):
    """S (T x T, P in place), the boolean causal mask and the row max and sum."""
    return itemsize * T * T + T * T + 2 * itemsize * T


def tiled_extra_bytes(T, d, tile_q=TILE_Q, tile_k=TILE_K, threads=None, itemsize=4):
    """lse (T floats) plus one tile of scratch per thread, as tiled_attention_forward allocates it."""
    threads = numba.get_num_threads() if threads is None else threads
    br, bc = min(tile_q, T), min(tile_k, T)
    d4, bc4 = -(-d // 4) * 4, -(-bc // 4) * 4
    per_thread = itemsize * (2 * d4 * br + bc4 * br + 2 * bc4 * d4 + 4 * br) + 4 * br
    return itemsize * T + threads * per_thread


def bench_attention(Ts=(1024, 4096, 16384), d=64, backward_max_T=4096, naive_max_bytes=2**30, seed=0, torch=True):
    """One row of timings (ms) and memory (bytes) per sequence length T; see the module docstring.

    torch: PyTorch's scaled_dot_product_attention forward and forward + backward on the same head,
    measured in a child process now (torch_attention_child.py) where T has a backward row.
    """
    rng = np.random.default_rng(seed)
    gflops = blas_gflops(d=d)
    rows = [_bench_one(T, d, gflops, T <= backward_max_T, naive_max_bytes, rng) for T in Ts]
    with_backward = [r["T"] for r in rows if r["tiled_bwd_ms"] is not None]
    reference = run_torch_child(TORCH_ATTENTION_CHILD, [d, *with_backward]) if torch and with_backward else None
    for r in rows:
        r["torch_fwd_ms"] = r["torch_fwd_bwd_ms"] = None
        r["torch_note"] = reference if isinstance(reference, str) else ""
        if isinstance(reference, dict):
            theirs = next((t for t in reference["rows"] if t["T"] == r["T"]), None)
            if theirs is not None:
                r["torch_fwd_ms"], r["torch_fwd_bwd_ms"] = theirs["fwd_ms"], theirs["fwd_bwd_ms"]
                r["torch"] = f"PyTorch {reference['torch']}, {reference['threads']} threads"
    return rows


def _bench_one(T, d, gflops, backward, naive_max_bytes, rng):
    """The row of bench_attention for one T."""
    q, k, v, dy = (rng.standard_normal((1, 1, T, d), np.float32) for _ in range(4))
    scale = 1 / math.sqrt(d)
    kv_len = np.array([T], np.int32)
    y, lse = np.empty_like(q), np.empty((1, 1, T), np.float32)
    dq, dk, dv = np.zeros_like(q), np.zeros_like(k), np.zeros_like(v)
    fwd = best_seconds(tiled_attention_forward, y, lse, q, k, v, kv_len, scale, True, TILE_Q, TILE_K)
    row = dict(T=T, d=d, threads=numba.get_num_threads(), blas_gflops=gflops,
               roof_ms=2 * T * T * d / (gflops * 1e9) * 1e3, tiled_fwd_ms=1e3 * fwd,
               tiled_bwd_ms=None, naive_fwd_ms=None, naive_note="", max_abs_diff=None,
               tiled_extra_bytes=tiled_extra_bytes(T, d), naive_extra_bytes=naive_extra_bytes(T))
    if backward:
        row["tiled_bwd_ms"] = 1e3 * best_seconds(tiled_attention_backward, dq, dk, dv, dy, q, k, v, y, lse, kv_len,
                                                 scale, True, BACKWARD_TILE_Q, BACKWARD_TILE_K)
    if row["naive_extra_bytes"] > naive_max_bytes:
        row["naive_note"] = f"skipped: needs {row['naive_extra_bytes'] / 2**30:.2f} GiB"
        return row
    future = np.triu(np.ones((T, T), bool), 1)
    args = (q[0, 0], k[0, 0], v[0, 0], scale, future)
    row["naive_fwd_ms"] = 1e3 * best_seconds(naive_attention, *args)
    row["max_abs_diff"] = float(np.abs(naive_attention(*args) - y[0, 0]).max())
    return row


def format_rows(rows):
    """A plain-text table of bench_attention rows."""

    def ms(x):
        return "-" if x is None else f"{x:.2f}"

    def mib(b):
        return f"{b / 2**20:.2f}"

    lines = [f"one causal head, float32, d = {rows[0]['d']}, {rows[0]['threads']} threads, "
             f"BLAS {rows[0]['blas_gflops']:.0f} GFLOP/s (times in ms, memory in MiB)",
             f"{'T':>6} {'tiled fwd':>10} {'tiled bwd':>10} {'naive fwd':>10} {'BLAS roof':>10} "
             f"{'tiled MiB':>10} {'naive MiB':>10} {'torch f+b':>10} {'vs torch':>9}  max |tiled - naive|"]
    for r in rows:
        diff = r["naive_note"] if r["max_abs_diff"] is None else f"{r['max_abs_diff']:.1e}"
        ours = None if r["tiled_bwd_ms"] is None else r["tiled_fwd_ms"] + r["tiled_bwd_ms"]
        theirs = r.get("torch_fwd_bwd_ms")
        ratio = "-" if ours is None or theirs is None else f"{theirs / ours:.2f}x"
        lines.append(f"{r['T']:>6} {ms(r['tiled_fwd_ms']):>10} {ms(r['tiled_bwd_ms']):>10} "
                     f"{ms(r['naive_fwd_ms']):>10} {ms(r['roof_ms']):>10} {mib(r['tiled_extra_bytes']):>10} "
                     f"{mib(r['naive_extra_bytes']):>10} {ms(theirs):>10} {ratio:>9}  {diff}")
    note = next((r["torch_note"] for r in rows if r.get("torch_note")), "")
    measured = next((r["torch"] for r in rows if r.get("torch")), "")
    if measured:
        lines.append(_("torch f+b: {torch}, scaled_dot_product_attention forward + backward, measured now; "
                       "'vs torch': how many times faster tiled forward + backward is").format(torch=measured))
    elif note:
        lines.append(f"torch f+b: {note}")
    return "\n".join(lines)


def print_attention_bench(quick: bool = False) -> None:
    """Prints the tiled vs naive attention table (T = 1024, 4096, 16384; quick: the first two) and KV-cache sizes."""
    from simulator.config import AttentionConfig, ModelConfig
    from simulator.kv_cache import kv_cache_bytes_per_token

    print(_("attention, tiled (FlashAttention-style) vs naive; extra memory = bytes held beyond inputs and output:"))
    print(format_rows(bench_attention(Ts=(1024, 4096) if quick else (1024, 4096, 16384))))
    cfg = ModelConfig(d_model=256, n_layer=6, n_head=8, attention=AttentionConfig(n_kv_head=2))
    sizes = kv_cache_bytes_per_token(cfg, np.float32)
    print("\n" + _("KV cache per generated token, d_model 256, 6 layers, 8 heads, float32: ")

          + ", ".join(f"{k} {v / 1024:.1f} KiB" for k, v in sizes.items() if k != "model"))


if __name__ == "__main__":
    print_attention_bench()
