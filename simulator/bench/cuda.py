"""`python main.py bench --backend cuda`: the training step and tiled attention on the GPU, against
references measured in the same run.

Numbers, not pass/fail. First the device and the float32 matrix rate measured now (our tiled numba
GEMM; cuBLAS through CuPy beside it when CuPy is installed). Then, for each model shape, ms/step and
tokens/s of the same TrainingSession on `train.backend: cuda`, its GFLOP/s and share of that rate,
the speed-up over our CPU backend on the same shape, and PyTorch CUDA eager when the torch child finds
a GPU (torch_child.py, a clean process). Then one causal head's attention forward + backward at long
T: the tiled kernels against the naive ones (scores in a T x T matrix), with the bytes each holds.

On numba-cuda's simulator (NUMBA_ENABLE_CUDASIM=1) the same code runs at toy shapes and says so: its
times are a Python interpreter's, not a GPU's, and show only that every part runs.
"""

from __future__ import annotations

import math
import time

import numpy as np

from simulator.bench.step import TORCH_CHILD, Shape, run_torch_child, step_flops, synthetic_dataset
from simulator.config import ModelConfig, OptimConfig, RunConfig, TrainConfig
from simulator.i18n import _
from simulator.session import TrainingSession
from simulator.textcols import heading

GPU_SHAPES = [Shape("medium", 256, 256, 6, 8, 256, 8), Shape("large", 256, 512, 8, 8, 512, 32)]
SIMULATED_SHAPES = [Shape("toy", 16, 16, 1, 2, 8, 2)]
GPU_ATTENTION_T = (1024, 2048, 4096, 8192, 16384)
SIMULATED_ATTENTION_T = (8, 16)
ATTENTION_HEAD = 64  # one causal head of this size, batch 1 (the simulator's kernels hold 16 at most)
SIMULATED_HEAD = 16
NAIVE_SHARE = 0.5  # the naive kernels run where their T x T matrices take at most this share of free memory


def _sync() -> None:
    from numba import cuda
    cuda.synchronize()


def device_seconds(fn, repeats: int) -> float:
    """Median wall time of fn() with the device drained before and after each call."""
    fn()
    _sync()
    times = []
    for _i in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def describe_device(simulated: bool) -> list[str]:
    """The device, in a line or two."""
    from numba import cuda
    if simulated:
        return [_("device: numba-cuda's simulator (NUMBA_ENABLE_CUDASIM=1): toy shapes; its times are a Python "
                  "interpreter's, not a GPU's, and show only that every part runs")]
    dev = cuda.get_current_device()
    free, total = cuda.current_context().get_memory_info()
    name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
    major, minor = dev.compute_capability
    return [_("device: {name}, compute capability {major}.{minor}, {total:.1f} GiB ({free:.1f} GiB free)").format(
        name=name, major=major, minor=minor, total=total / 2 ** 30, free=free / 2 ** 30)]


def gemm_rates(n: int, repeats: int) -> dict[str, float]:
    """float32 GFLOP/s of an n x n x n product on the device now: our tiled GEMM, and cuBLAS when CuPy is here."""
    from numba import cuda

    from simulator.kernels.cuda import gemm as g
    rng = np.random.default_rng(0)
    a = cuda.to_device(rng.standard_normal((n, n)).astype(np.float32))
    b = cuda.to_device(rng.standard_normal((n, n)).astype(np.float32))
    c = cuda.device_array((n, n), np.float32)
    flops = 2.0 * n ** 3
    rates = {"numba": flops / device_seconds(lambda: g.tiled_gemm(c, a, b), repeats) / 1e9}
    cp = g.cublas()
    if cp is not None:
        rates["cublas"] = flops / device_seconds(lambda: g._cublas_gemm(cp, c, a, b, False, False, False),
                                                 repeats) / 1e9
    return rates


def _config(s: Shape, backend: str) -> RunConfig:
    return RunConfig(name=s.name, model=ModelConfig(d_model=s.d, n_layer=s.L, n_head=s.H, seq_len=s.T),
                     optim=OptimConfig(name="adamw", lr=1e-3, weight_decay=0.1, grad_clip=1.0),
                     train=TrainConfig(batch_size=s.B, eval_every=0, stats_every=0, backend=backend))


def step_seconds(s: Shape, backend: str, repeats: int) -> float:
    """Median seconds of a whole training step of `s` on `backend` (the device drained after each)."""
    session = TrainingSession(_config(s, backend), synthetic_dataset(s.V))
    if backend == "cuda":
        return device_seconds(session.step, repeats)
    session.step()
    times = [session.step().seconds for _i in range(repeats)]
    return float(np.median(times))


def torch_cuda(s: Shape, repeats: int) -> dict | str:
    """PyTorch CUDA eager on the same shape (the torch child with device cuda, a clean process), or why there is
    none."""
    return run_torch_child(TORCH_CHILD, [s.V, s.d, s.L, s.H, s.T, s.B, repeats, "cuda"])


# ----------------------------------------------------------------------------- attention at long T
def attention_bytes(impl: str, T: int, d: int = ATTENTION_HEAD) -> int:
    """Device bytes one head's forward + backward holds (float32): q, k, v, y, dy, dq, dk, dv, and the T x T
    probabilities and their gradient (naive) or the T log-sum-exps (tiled)."""
    vectors = 8 * T * d
    return 4 * (vectors + (2 * T * T if impl == "naive" else T))


class _Head:
    """One causal head's arrays on the device (B 1, H 1), for either implementation."""

    def __init__(self, T: int, impl: str, d: int = ATTENTION_HEAD):
        from numba import cuda

        from simulator.backend import get_backend
        rng = np.random.default_rng(T)
        up = lambda: cuda.to_device(rng.standard_normal((1, 1, T, d)).astype(np.float32))  # noqa: E731
        self.q, self.k, self.v, self.dy = up(), up(), up(), up()
        self.y = cuda.device_array((1, 1, T, d), np.float32)
        self.dq, self.dk, self.dv = (cuda.device_array((1, 1, T, d), np.float32) for _i in range(3))
        self.kv_len = cuda.to_device(np.full(1, T, dtype=np.int32))
        self.impl, self.scale, self.bk = impl, 1.0 / math.sqrt(d), get_backend("cuda")
        if impl == "naive":
            self.att = cuda.device_array((1, 1, T, T), np.float32)
            self.datt = cuda.device_array((1, 1, T, T), np.float32)
        else:
            self.lse = cuda.device_array((1, 1, T), np.float32)

    def allocated(self) -> int:
        arrays = [self.q, self.k, self.v, self.dy, self.y, self.dq, self.dk, self.dv]
        arrays += [self.att, self.datt] if self.impl == "naive" else [self.lse]
        return sum(int(a.nbytes) for a in arrays)

    def forward(self) -> None:
        k = self.bk.k
        if self.impl == "naive":
            k.attention_heads_forward(self.y, self.att, self.q, self.k, self.v, self.scale, True, self.kv_len)
        else:
            from simulator.kernels.cpu.attention_tiled import TILE_K, TILE_Q
            k.tiled_attention_forward(self.y, self.lse, self.q, self.k, self.v, self.kv_len, self.scale, True,
                                      TILE_Q, TILE_K)

    def backward(self) -> None:
        k = self.bk.k
        if self.impl == "naive":
            k.attention_heads_backward(self.dq, self.dk, self.dv, self.datt, self.dy, self.q, self.k, self.v,
                                       self.att, self.scale, True, self.kv_len)
        else:
            from simulator.kernels.cpu.attention_tiled import BACKWARD_TILE_K, BACKWARD_TILE_Q
            for g in (self.dq, self.dk, self.dv):  # the tiled backward adds onto its gradients
                self.bk.fill(g, 0.0)
            k.tiled_attention_backward(self.dq, self.dk, self.dv, self.dy, self.q, self.k, self.v, self.y, self.lse,
                                       self.kv_len, self.scale, True, BACKWARD_TILE_Q, BACKWARD_TILE_K)

    def both(self) -> None:
        self.forward()
        self.backward()


def attention_point(T: int, impl: str, repeats: int, free_bytes: int, d: int = ATTENTION_HEAD) -> dict:
    """{"seconds", "bytes"} of one head's forward + backward, or {"skipped": why} where it does not fit."""
    need = attention_bytes(impl, T, d)
    if impl == "naive" and need > NAIVE_SHARE * free_bytes:
        return {"skipped": _("does not fit (needs {mib:,.0f} MiB)").format(mib=need / 2 ** 20)}
    head = _Head(T, impl, d)
    assert head.allocated() == need, (head.allocated(), need)  # the bill is the arrays, to the byte
    seconds = device_seconds(head.both, repeats)
    outputs = [a.copy_to_host() for a in (head.y, head.dq, head.dk, head.dv)]
    return {"seconds": seconds, "bytes": need, "outputs": outputs}


def largest_difference(a: dict, b: dict) -> float:
    """The largest |difference| between two points' outputs and input gradients (the same inputs: same seed)."""
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a["outputs"], b["outputs"], strict=True))


# ----------------------------------------------------------------------------- the command
def print_steps(shapes: list[Shape], repeats: int, roof: float, simulated: bool) -> None:
    """The step table: each shape on the device, on our CPU backend, and in PyTorch CUDA eager."""
    print(heading((_("model"), 7, "<"), ("ms/step", 9, ">"), (_("tok/s"), 10, ">"), ("GFLOP/s", 9, ">"),
                  (_("% rate"), 7, ">"), (_("CPU ms"), 9, ">"), (_("vs CPU"), 7, ">"), (_("torch ms"), 9, ">"),
                  (_("vs torch"), 8, ">")))
    for s in shapes:
        gpu = step_seconds(s, "cuda", repeats)
        cpu = step_seconds(s, "cpu", max(2, repeats // 3))
        ref = torch_cuda(s, repeats) if not simulated else _("torch not run on the simulator")
        gflops = step_flops(s) / gpu / 1e9
        torch_cells = (f"{1e3 * ref['seconds']:>9.2f} {ref['seconds'] / gpu:>7.2f}x" if isinstance(ref, dict) else
                       f"  {ref}")
        print(f"{s.name:<7} {1e3 * gpu:>9.2f} {s.B * s.T / gpu:>10,.0f} {gflops:>9.1f} {100 * gflops / roof:>6.1f}% "
              f"{1e3 * cpu:>9.1f} {cpu / gpu:>6.2f}x {torch_cells}")
    print()


def run_cuda_bench(quick: bool = False, shapes: list[Shape] | None = None, lengths: tuple[int, ...] | None = None,
                   repeats: int | None = None) -> int:
    """Prints the tables; 2 with one sentence when no CUDA device (or simulator) is usable here.

    `shapes`, `lengths`, `repeats`: a shorter run (a test in the simulator: no shapes, one length)."""
    import sys

    from simulator.backend.probe import cuda_usable
    ok, what = cuda_usable()
    if not ok:
        print(_("bench --backend cuda: no CUDA GPU is usable here ({what}); set NUMBA_ENABLE_CUDASIM=1 to run it "
                "in numba-cuda's (slow) simulator").format(what=_(what)), file=sys.stderr)
        return 2
    from numba import cuda
    simulated = what == "CUDA simulator"
    if shapes is None:
        shapes = SIMULATED_SHAPES if simulated else GPU_SHAPES[:1] if quick else GPU_SHAPES
    if lengths is None:
        lengths = SIMULATED_ATTENTION_T if simulated else GPU_ATTENTION_T[:3] if quick else GPU_ATTENTION_T
    if repeats is None:
        repeats = 1 if simulated else 5 if quick else 10
    head = SIMULATED_HEAD if simulated else ATTENTION_HEAD
    print("\n".join(describe_device(simulated)))
    n = 16 if simulated else 4096
    rates = gemm_rates(n, repeats)
    print(_("float32 matrix rate on the device now ({n}^3 GEMM): numba tiled {numba:.1f} GFLOP/s").format(
        n=n, numba=rates["numba"])
        + (_("; cuBLAS (CuPy) {cublas:.0f} GFLOP/s").format(cublas=rates["cublas"]) if "cublas" in rates else
           _("; the simulator has no cuBLAS") if simulated else
           _("; cuBLAS not measured (CuPy not installed: pip install .[gpu])")))
    from simulator.kernels.cuda.gemm import which_gemm
    print(_("the engine's matrix products run on: {which}").format(which=which_gemm()))
    roof = max(rates.values())
    print()
    if shapes:
        print_steps(shapes, repeats, roof, simulated)
    print(_("one causal head (d {d}, B 1) forward + backward on the device, tiled against naive (T x T "
            "scores):").format(d=head))
    print(heading(("T", 6, ">"), (_("tiled ms"), 10, ">"), (_("tiled MiB"), 10, ">"), (_("naive ms"), 10, ">"),
                  (_("naive MiB"), 10, ">"), (_("naive / tiled"), 13, ">"), (_("max |diff|"), 10, ">")))
    for T in lengths:
        free = cuda.current_context().get_memory_info()[0] if not simulated else 2 ** 34
        tiled = attention_point(T, "tiled", repeats, free, head)
        naive = attention_point(T, "naive", repeats, free, head)
        naive_cells = (f"{1e3 * naive['seconds']:>10.2f} {naive['bytes'] / 2 ** 20:>10.2f} "
                       f"{naive['seconds'] / tiled['seconds']:>12.2f}x {largest_difference(tiled, naive):>10.1e}"
                       if "seconds" in naive else f"  {naive['skipped']}")
        print(f"{T:>6} {1e3 * tiled['seconds']:>10.2f} {tiled['bytes'] / 2 ** 20:>10.2f} {naive_cells}")
    return 0
