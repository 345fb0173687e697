"""The matrix products of one training step's linears alone, through this engine's BLAS and through torch's.

A floor under each step: whatever else an engine does, its linears' products cost at least this
much on its BLAS. numpy's BLAS (OpenBLAS in the pip wheels) and torch's (MKL on x86) differ on
the same shapes, so the ratio of the two floors bounds how far the step's ratio can go. Every
block's four linears and the head, forward (X W) and backward (dY W^T, X^T dY), float32, each
product timed alone (median of repeats) and summed. Attention's products are left out: each
engine forms them its own way. The torch side runs in a clean child process
(torch_products_child.py), as every reference does.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from simulator.bench.step import Shape, run_torch_child
from simulator.i18n import _

TORCH_PRODUCTS_CHILD = Path(__file__).with_name("torch_products_child.py")


def step_products(s: Shape) -> list[tuple[int, int, int, str]]:
    """(m, k, n, layout) of every product of the linears in one training step of shape s.

    "nn": A (m, k) times B (k, n), the forward X W; "nt": B stored (n, k), dX = dY W^T; "tn": A
    stored (k, m), dW = X^T dY.
    """
    N, C = s.B * s.T, s.d
    linears = [(C, 3 * C), (C, C), (C, 4 * C), (4 * C, C)] * s.L + [(C, s.V)]  # (in, out); the head last
    products = []
    for c_in, c_out in linears:
        products += [(N, c_in, c_out, "nn"), (N, c_out, c_in, "nt"), (c_in, N, c_out, "tn")]
    return products


def numpy_product_seconds(m: int, k: int, n: int, layout: str, repeats: int) -> float:
    """Median seconds of one float32 product through numpy's BLAS, into a preallocated output."""
    rng = np.random.default_rng(0)
    a = rng.random((k, m) if layout == "tn" else (m, k), dtype=np.float32)
    b = rng.random((n, k) if layout == "nt" else (k, n), dtype=np.float32)
    a, b = (a.T if layout == "tn" else a), (b.T if layout == "nt" else b)
    c = np.empty((m, n), np.float32)
    np.matmul(a, b, out=c)
    times = []
    for _i in range(repeats):
        t0 = time.perf_counter()
        np.matmul(a, b, out=c)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def bench_products(s: Shape, repeats: int) -> dict:
    """{"engine": seconds, "torch": seconds or why there is none} of one step's linear products."""
    products = step_products(s)
    engine = sum(numpy_product_seconds(*p, repeats) for p in products)
    torch = run_torch_child(TORCH_PRODUCTS_CHILD, [json.dumps(products), repeats])
    return {"engine": engine, "torch": torch if isinstance(torch, str) else torch["seconds"]}


def print_products(shapes: list[Shape], step_seconds: dict[str, float], repeats: int) -> None:
    """The table: each model's linear products through numpy's BLAS and torch's, and their share of our step."""
    print("\n" + _("matrix products of the linears alone, one step (ms), each product timed on its own: the floor "
                   "under each engine's step on its BLAS:"))
    print(f"{'model':<7} {'numpy BLAS':>10} {'torch BLAS':>10} {'vs torch':>8} {'of our step':>11}")
    for s in shapes:
        r = bench_products(s, repeats)
        ours, theirs = r["engine"], r["torch"]
        torch_cells = f"{theirs:>19}" if isinstance(theirs, str) else f"{theirs * 1e3:10.2f} {theirs / ours:7.2f}x"
        print(f"{s.name:<7} {ours * 1e3:10.2f} {torch_cells} {100 * ours / step_seconds[s.name]:10.0f}%")
    print(_("'vs torch': how many times faster numpy's BLAS is than torch's on these products (below 1: slower)."))
