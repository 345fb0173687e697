"""The attention bench's PyTorch reference: scaled_dot_product_attention, forward and forward + backward.

One causal float32 head per T.

Imports only torch and the standard library, never the engine (as torch_child.py, and for the same
reason): `python torch_attention_child.py d T1 T2 ...` prints one JSON line, {"rows": [{"T", "fwd_ms",
"fwd_bwd_ms"}], "torch", "threads"}, each time the best of a few calls after one warm-up call.
"""

from __future__ import annotations

import json
import sys
import time

import torch
from torch.nn import functional as F


def best_ms(fn, reps: int = 5) -> float:
    """Fastest of `reps` calls of fn after one warm-up call, in ms."""
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def row(T: int, d: int) -> dict:
    """Forward, and forward + backward with an upstream gradient, of one causal float32 head of length T."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 1, T, d, requires_grad=True) for _ in range(3))
    dy = torch.randn(1, 1, T, d)

    def forward():
        with torch.no_grad():
            F.scaled_dot_product_attention(q, k, v, is_causal=True)

    def forward_backward():
        F.scaled_dot_product_attention(q, k, v, is_causal=True).backward(dy)

    return {"T": T, "fwd_ms": best_ms(forward), "fwd_bwd_ms": best_ms(forward_backward)}


def main(argv: list[str]) -> None:
    d, *Ts = (int(a) for a in argv)
    rows = [row(T, d) for T in Ts]
    print(json.dumps({"rows": rows, "torch": torch.__version__, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main(sys.argv[1:])
