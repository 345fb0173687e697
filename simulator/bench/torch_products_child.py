"""The products bench's PyTorch reference: the matrix products of one training step's linears, through torch.

Imports only torch and the standard library, never the engine (as torch_child.py, and for the same
reason): `python torch_products_child.py '[[m, k, n, "nn"], ...]' repeats` prints one JSON line,
{"seconds", "torch", "threads"}: the sum over the products of each one's median time. Layouts as in
simulator/bench/products.py: "nn" is A (m, k) times B (k, n); "nt" takes B stored (n, k) and "tn" A
stored (k, m), transposed views as a linear's backward uses them.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import torch


def product_seconds(m: int, k: int, n: int, layout: str, repeats: int) -> float:
    """Median seconds of one float32 product c = op(a) op(b) into a preallocated c."""
    g = torch.Generator().manual_seed(0)
    a = torch.rand((k, m) if layout == "tn" else (m, k), generator=g)
    b = torch.rand((n, k) if layout == "nt" else (k, n), generator=g)
    a, b = (a.t() if layout == "tn" else a), (b.t() if layout == "nt" else b)
    c = torch.empty(m, n)
    torch.mm(a, b, out=c)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b, out=c)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str]) -> None:
    products, repeats = json.loads(argv[0]), int(argv[1])
    seconds = sum(product_seconds(m, k, n, layout, repeats) for m, k, n, layout in products)
    print(json.dumps({"seconds": seconds, "torch": torch.__version__, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main(sys.argv[1:])
