"""The naive attention's per-head kernels (attention_heads.py) against a float64 numpy reference and finite
differences, and the rule by which attention_heads_* take them."""

import os
import subprocess
import sys

import numpy as np
import pytest

from simulator.kernels.cpu.attention import (
    attention_heads_backward,
    attention_heads_forward,
    blas_heads_backward,
    blas_heads_forward,
    per_head_pays,
)
from simulator.kernels.cpu.attention_heads import PER_HEAD_MAX_T, PER_HEAD_MIN_T, per_head_backward, per_head_forward
from tests.helpers import numeric_grad
from tests.test_attention_tiled import make, reference, rel_err


def run_per_head(q, k, v, kv_len, scale, causal, dy):
    """Forward and backward of the per-head kernels, every output NaN first (nothing may be left unwritten)."""
    B, NH, T, _ = q.shape
    y, att = np.full_like(q, np.nan), np.full((B, NH, T, T), np.nan, q.dtype)
    dq, dk, dv = np.full_like(q, np.nan), np.full_like(k, np.nan), np.full_like(v, np.nan)
    per_head_forward(y, att, q, k, v, scale, causal, kv_len)
    per_head_backward(dq, dk, dv, dy.astype(q.dtype), q, k, v, att, scale, causal, kv_len)
    return y, att, dq, dk, dv


CASES = [  # (B, NH, NKV, T, HS, kv_len, causal, scale): odd sizes (not multiples of the 4-wide blocks)
    (2, 2, 2, 7, 5, (7, 4), True, 0.45),  # MHA, padding in batch 1
    (1, 4, 2, 33, 3, (30,), True, 0.6),  # GQA
    (1, 3, 1, 21, 4, (21,), False, 0.5),  # MQA, no mask
    (2, 2, 1, 66, 17, (66, 0), True, -0.7),  # a row of padding only, and a negative scale (its min is the top)
    (3, 2, 2, 130, 9, (130, 129, 2), False, 0.3),
    (1, 1, 1, 1, 1, (1,), True, 1.0),
    (2, 2, 2, 203, 32, (203, 150), True, 0.17),  # inside the range attention_heads_* hand to these kernels
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
def test_per_head_matches_the_reference(dtype, case):
    B, NH, NKV, T, HS, kv_len, causal, scale = case
    rng = np.random.default_rng(T + HS)
    q, k, v, dy = make(rng, B, NH, NKV, T, HS, dtype)
    kv_len = np.array(kv_len, np.int32)
    want_y, _, want_dq, want_dk, want_dv = reference(q, k, v, kv_len, scale, causal, dy)
    y, att, dq, dk, dv = run_per_head(q, k, v, kv_len, scale, causal, dy)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for name, got, want in (("y", y, want_y), ("dq", dq, want_dq), ("dk", dk, want_dk), ("dv", dv, want_dv)):
        assert rel_err(got, want) < tol, name
    # att as the BLAS path keeps it: the same probabilities, 0 wherever a key is hidden
    blas_att = np.full_like(att, np.nan)
    blas_heads_forward(np.empty_like(q), blas_att, q, k, v, scale, causal, kv_len)
    assert rel_err(att, blas_att) < tol
    visible = np.arange(T)[None, :] < kv_len[:, None]
    hidden = ~np.broadcast_to(visible[:, None, None, :], att.shape)
    if causal:
        hidden = hidden | np.triu(np.ones((T, T), bool), 1)
    assert np.all(att[hidden] == 0)


def test_per_head_gradients_match_central_finite_differences():
    rng = np.random.default_rng(5)
    B, NH, NKV, T, HS = 2, 2, 1, 9, 3  # GQA over a group of two, with a padded row in batch 1
    q, k, v, dy = make(rng, B, NH, NKV, T, HS, np.float64)
    kv_len, scale = np.array([T, 6], np.int32), 0.8

    def loss():
        y, att = np.empty_like(q), np.empty((B, NH, T, T))
        per_head_forward(y, att, q, k, v, scale, True, kv_len)
        return float(np.sum(y * dy))

    _, _, dq, dk, dv = run_per_head(q, k, v, kv_len, scale, True, dy)
    for x, dx in ((q, dq), (k, dk), (v, dv)):
        assert rel_err(dx, numeric_grad(loss, x)) < 1e-8


def test_attention_heads_take_the_per_head_kernels_only_where_they_pay():
    assert per_head_pays(PER_HEAD_MIN_T, True) and per_head_pays(PER_HEAD_MAX_T, True)
    assert not per_head_pays(PER_HEAD_MIN_T - 1, True) and not per_head_pays(PER_HEAD_MAX_T + 1, True)
    assert not per_head_pays(256, False)  # without the mask BLAS is as fast
    assert not per_head_pays(256, True, window=64)  # a local window keeps the BLAS row blocks
    rng = np.random.default_rng(2)
    for T, per_head in ((PER_HEAD_MIN_T, True), (PER_HEAD_MIN_T - 1, False)):
        q, k, v, dy = make(rng, 1, 2, 2, T, 4, np.float32)
        kv_len, dy = np.array([T], np.int32), dy.astype(np.float32)
        y, att = np.empty_like(q), np.empty((1, 2, T, T), np.float32)
        attention_heads_forward(y, att, q, k, v, 0.5, True, kv_len)
        grads = [np.empty_like(a) for a in (q, k, v)]
        attention_heads_backward(*grads, np.empty_like(att), dy, q, k, v, att, 0.5, True, kv_len)
        want_y, want_att = np.empty_like(q), np.empty_like(att)
        want_grads = [np.empty_like(a) for a in (q, k, v)]
        if per_head:
            per_head_forward(want_y, want_att, q, k, v, 0.5, True, kv_len)
            per_head_backward(*want_grads, dy, q, k, v, want_att, 0.5, True, kv_len)
        else:
            blas_heads_forward(want_y, want_att, q, k, v, 0.5, True, kv_len)
            blas_heads_backward(*want_grads, np.empty_like(att), dy, q, k, v, want_att, 0.5, True, kv_len)
        assert np.array_equal(y, want_y) and np.array_equal(att, want_att)  # bit for bit: the same kernels ran
        assert all(np.array_equal(g, w) for g, w in zip(grads, want_grads, strict=True))


@pytest.mark.parametrize("users, seen", [(None, "4"), ("20", "20")])
def test_the_engine_lets_openblas_threads_sleep_unless_the_user_says_otherwise(users, seen):
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    if users is not None:
        env["OPENBLAS_THREAD_TIMEOUT"] = users
    code = "import os, simulator; print(os.environ['OPENBLAS_THREAD_TIMEOUT'])"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == seen


SPIN_PROBE = """
import time, numpy as np
a = np.ones((1024, 256), np.float32); b = np.ones((256, 512), np.float32)
a @ b
time.sleep(0.3)  # the workers of the first product settle
a @ b
c0 = time.process_time(); time.sleep(0.2)
print(time.process_time() - c0)  # CPU the process used while its main thread slept
"""


def _cpu_while_asleep(first: str) -> float:
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    env["OPENBLAS_NUM_THREADS"] = "2"
    done = subprocess.run([sys.executable, "-c", first + SPIN_PROBE], env=env, capture_output=True, text=True,
                          check=True)
    return float(done.stdout.strip())


def test_openblas_workers_sleep_after_a_product_when_the_engine_is_imported_first():
    if (os.cpu_count() or 1) < 2:
        pytest.skip("OpenBLAS runs no worker thread on one CPU")
    # OpenBLAS's default spins a worker for about 0.1 s after the product; the engine's setting, about 0
    assert _cpu_while_asleep("import simulator\n") < 0.04


@pytest.mark.parametrize("first, late", [("import simulator, numpy", False), ("import numpy, simulator", True)])
def test_the_bench_says_when_numpy_came_first_and_openblas_missed_the_setting(first, late):
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    code = f"{first}\nfrom simulator.bench.environment import describe\nprint(describe(simulator.USER_ENVIRON)[-2])"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert "OPENBLAS_THREAD_TIMEOUT=4" in done.stdout
    assert ("too late" in done.stdout) == late
