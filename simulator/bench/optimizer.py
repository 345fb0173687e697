"""Time one AdamW step: the numba kernel against the same update written in plain numpy."""

from __future__ import annotations

import time

import numpy as np

from simulator.optim.kernels import adam_update

# Bytes one AdamW step must move per parameter: read w, g, m, v (4 x 4) and the
# 1-byte decay mask, write w, m, v (3 x 4). Both versions are billed the same
# logical traffic; numpy's temporaries make it move more, which is the point.
BYTES_PER_PARAM_F32 = 4 * 4 + 1 + 3 * 4


def adamw_numpy(params, m, v, grads, decay_mask, lr, beta1, beta2, eps, weight_decay, bc1, bc2):
    """The reference AdamW step in numpy (in place on params, m, v); formula as adam_update with decoupled=True."""
    m *= beta1
    m += (1.0 - beta1) * grads
    v *= beta2
    v += (1.0 - beta2) * grads * grads
    params -= (lr * weight_decay) * decay_mask * params
    params -= lr * (m / bc1) / (np.sqrt(v / bc2) + eps)


def _time(fn, repeats: int) -> float:
    """Best wall time of `repeats` calls, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_optimizer(n: int = 5_000_000, repeats: int = 5) -> list[dict]:
    """One AdamW step over n float32 parameters, numba vs numpy: rows of impl, ms and GB/s."""
    rng = np.random.default_rng(0)
    params = rng.standard_normal(n, dtype=np.float32)
    grads = rng.standard_normal(n, dtype=np.float32)
    m = np.zeros(n, np.float32)
    v = np.zeros(n, np.float32)
    mask = np.ones(n, np.uint8)
    mask[: n // 10] = 0  # some tensors outside the decay group, as in a real model
    lr, b1, b2, eps, wd = 1e-3, 0.9, 0.999, 1e-8, 0.1
    bc1, bc2 = 1.0 - b1 ** 10, 1.0 - b2 ** 10
    adam_update(params[:8], m[:8], v[:8], grads[:8], mask[:8], lr, b1, b2, eps, wd, True, bc1, bc2)  # compile
    rows = []
    for impl, fn in [("numba", lambda: adam_update(params, m, v, grads, mask, lr, b1, b2, eps, wd, True, bc1, bc2)),
                     ("numpy", lambda: adamw_numpy(params, m, v, grads, mask, lr, b1, b2, eps, wd, bc1, bc2))]:
        seconds = _time(fn, repeats)
        rows.append({"impl": impl, "n": n, "ms": seconds * 1e3,
                     "gb_per_s": BYTES_PER_PARAM_F32 * n / seconds / 1e9})
    return rows
