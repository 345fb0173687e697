"""`python main.py bench`: speed of a full training step, against references measured in the same run.

Numbers, not pass/fail. For each model shape: ms/step and tokens/s of forward + backward + AdamW
through the real TrainingSession, the split by phase, achieved GFLOP/s, the float32 BLAS GFLOP/s
of this machine (measured here, now), the speed-up over the plain numpy implementation of the same
step (simulator/reference.py), and PyTorch eager on the same shapes when torch is installed
(measured in a child process, torch_child.py). The machine and its thread pools come first.

The child runs under this interpreter when it can import torch, or under the one named by
TRANSFORMER_SIM_TORCH_PYTHON (a user's torch lives where the user installed it, often a venv of its own):
`TRANSFORMER_SIM_TORCH_PYTHON=~/torch-venv/bin/python python main.py bench`.
"""

from __future__ import annotations

import importlib.util as importlib_util
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simulator.config import ModelConfig, OptimConfig, RunConfig, TrainConfig
from simulator.data.dataset import TextDataset
from simulator.i18n import _
from simulator.session import TrainingSession


@dataclass(frozen=True)
class Shape:
    name: str
    V: int
    d: int
    L: int
    H: int
    T: int
    B: int


SHAPES = [Shape("tiny", 65, 64, 2, 4, 64, 16), Shape("small", 65, 128, 4, 4, 128, 16),
          Shape("medium", 256, 256, 6, 8, 256, 8)]
TORCH_CHILD = Path(__file__).with_name("torch_child.py")
TORCH_PYTHON_VARIABLE = "TRANSFORMER_SIM_TORCH_PYTHON"  # the interpreter of the torch child, if not this one


def step_flops(s: Shape) -> float:
    """FLOPs of one training step: matrix products only, backward = 2x forward."""
    N, C, Hd = s.B * s.T, s.d, 4 * s.d
    per_layer = 2 * N * (C * 3 * C + C * C + 2 * C * Hd) + 4 * s.B * s.T * s.T * C  # linears + (QK^T, PV)
    forward = s.L * per_layer + 2 * N * C * s.V
    return 3.0 * forward


def blas_gflops(n: int = 1024, repeats: int = 20) -> float:
    """float32 GEMM speed of this machine now (n x n x n): the fastest of `repeats` products.

    A roof is what BLAS can reach, so the fastest run and not the median: on a busy machine a
    median roof fell below the step's own rate (a "% roof" over 100 was printed).
    """
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b, c = a.copy(), np.empty_like(a)
    np.matmul(a, b, out=c)
    best = np.inf
    for _i in range(repeats):
        t0 = time.perf_counter()
        np.matmul(a, b, out=c)
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


def median_seconds(fn, repeats: int) -> float:
    """Median wall time of `repeats` calls of fn."""
    times = []
    for _i in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def synthetic_dataset(V: int, n_chars: int = 200_000) -> TextDataset:
    """Random text over exactly V distinct characters (speed does not depend on the text)."""
    alphabet = np.array([chr(0x4E00 + i) for i in range(V)])
    ids = np.random.default_rng(0).integers(0, V, n_chars)
    ids[:V] = np.arange(V)  # every character appears
    return TextDataset("".join(alphabet[ids]), 0.1, source="bench")


def session_for(s: Shape) -> TrainingSession:
    cfg = RunConfig(name=s.name, model=ModelConfig(d_model=s.d, n_layer=s.L, n_head=s.H, seq_len=s.T),
                    optim=OptimConfig(name="adamw", lr=1e-3, weight_decay=0.1, grad_clip=1.0),
                    train=TrainConfig(batch_size=s.B, eval_every=0, stats_every=0))
    return TrainingSession(cfg, synthetic_dataset(s.V))


def bench_engine(s: Shape, repeats: int) -> dict:
    session = session_for(s)
    for _i in range(3):
        session.step()
    records = [session.step() for _ in range(repeats)]
    t = float(np.median([r.seconds for r in records]))
    phases = {k: float(np.median([r.phase_seconds[k] for r in records])) for k in records[0].phase_seconds}
    return {"seconds": t, "phases": phases, "session": session}


def bench_numpy(s: Shape, session: TrainingSession, repeats: int) -> float | None:
    """Seconds per step of the plain numpy implementation, on the same weights and batch."""
    try:
        from simulator.reference import reference_train_step
    except ImportError:
        return None
    m = session.model
    state = {"params": {k: v.copy() for k, v in m.p.items()}, "m": None, "v": None, "t": 0}
    ids, targets = m.ids.copy(), m.targets.copy()

    def step():
        reference_train_step(state, session.config.model, ids, targets, lr=1e-3, weight_decay=0.1,
                             decay_mask=session.model.layout)

    step()
    return median_seconds(step, max(2, repeats // 3))


def bench_torch(s: Shape, repeats: int) -> dict | str:
    """The PyTorch eager step on the same shape ({"seconds", "torch", "threads", "env"}), or why there is none.

    Measured in a child process that imports only torch (torch_child.py) and runs in the user's own
    environment: numba's OpenMP runtime beside torch's, or the passive wait policy this engine
    sets for itself, would slow torch down unfairly.
    """
    return run_torch_child(TORCH_CHILD, [s.V, s.d, s.L, s.H, s.T, s.B, repeats])


def run_torch_child(child: Path, args: list) -> dict | str:
    """The JSON line a torch child script prints for `args`, run in the user's own environment; or why there is none."""
    import simulator
    python = torch_python()
    if python is None:
        return "torch not installed"
    try:
        done = subprocess.run([python, str(child), *(str(a) for a in args)], env=dict(simulator.USER_ENVIRON),
                              capture_output=True, text=True, timeout=600)
    except OSError as e:  # $TRANSFORMER_SIM_TORCH_PYTHON names no interpreter
        return f"torch failed: {python}: {e.strerror}"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"torch failed: {last}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def torch_python() -> str | None:
    """The interpreter that runs the torch child: $TRANSFORMER_SIM_TORCH_PYTHON, else this one if it has torch."""
    named = os.environ.get(TORCH_PYTHON_VARIABLE)
    if named:
        return named
    return sys.executable if importlib_util.find_spec("torch") is not None else None


def run_bench(quick: bool = False, shapes: list[Shape] | None = None, extra: bool = True) -> None:
    """Prints the machine, then the tables (`shapes` and extra=False: a short run, e.g. in a test)."""
    import simulator
    from simulator.bench.environment import describe
    shapes = shapes or (SHAPES[:2] if quick else SHAPES)
    repeats = 5 if quick else 15
    roof = blas_gflops()
    print("\n".join(describe(simulator.USER_ENVIRON)))
    print(_("float32 BLAS (1024^3 GEMM, fastest of 20) on this machine now: {roof:.0f} GFLOP/s; measured again "
            "after each model, and each row's % roof is of the fastest so far").format(roof=roof) + "\n")
    head = (f"{'model':<7} {'ms/step':>8} {'tok/s':>8} {'GFLOP/s':>8} {'% roof':>7} {'numpy ms':>9} "
            f"{'vs numpy':>8} {'torch ms':>9} {'vs torch':>8}")
    print(head)
    print("-" * len(head))
    splits, torch_runs, torch_by_shape = [], [], []
    for s in shapes:
        r = bench_engine(s, repeats)
        roof = max(roof, blas_gflops())
        t = r["seconds"]
        gf = step_flops(s) / t / 1e9
        tn = bench_numpy(s, r["session"], repeats)
        tt = bench_torch(s, repeats)
        torch_by_shape.append(tt)
        if isinstance(tt, str):
            torch_cells = f" {tt}"  # a number quoted from another machine would not be a measurement
        else:
            torch_runs.append(tt)
            torch_cells = f"{tt['seconds'] * 1e3:9.1f} {tt['seconds'] / t:7.2f}x"
        print(f"{s.name:<7} {t * 1e3:8.2f} {s.B * s.T / t:8.0f} {gf:8.1f} {100 * gf / roof:6.1f}% "
              f"{'-' if tn is None else f'{tn * 1e3:9.2f}':>9} {'-' if tn is None else f'{tn / t:7.1f}x':>8} "
              f"{torch_cells}")
        splits.append((s.name, r["phases"], t))
    if torch_runs:
        tt = torch_runs[-1]
        env = ", ".join(f"{k}={v}" for k, v in tt["env"].items()) or _("no speed variables set")

        print("\n" + _("torch: PyTorch {version} eager, the same pre-LN GPT and AdamW, {threads} threads, measured now "
                       "in a child process of {python} ({env}).").format(
            version=tt["torch"], threads=tt["threads"], python=torch_python(), env=env))
    print(_("'vs' columns: how many times faster this engine's step is.") + "\n")
    print(_("time split by phase (ms):"))
    kinds = list(splits[0][1])
    print(f"{'model':<7} " + " ".join(f"{k:>9}" for k in kinds))
    for name, phases, _seconds in splits:
        print(f"{name:<7} " + " ".join(f"{phases[k] * 1e3:9.3f}" for k in kinds))
    from simulator.bench.products import print_products
    print_products(shapes, {name: seconds for name, _phases, seconds in splits}, repeats)
    print_memory(shapes, {s.name: tt for s, tt in zip(shapes, torch_by_shape, strict=True)})
    if extra:
        _extra_tables(quick)


MEMORY_CHILD_STEPS = 3


def bench_memory(s: Shape) -> dict | str:
    """{"start_mb", "peak_mb"} of this engine training shape `s` in a process of its own (memory_child.py), or why
    there is none."""
    try:
        done = subprocess.run([sys.executable, "-m", "simulator.bench.memory_child", *(str(a) for a in
                               (s.V, s.d, s.L, s.H, s.T, s.B, MEMORY_CHILD_STEPS))],
                              capture_output=True, text=True, timeout=600, cwd=Path(__file__).resolve().parents[2])
    except (OSError, subprocess.TimeoutExpired) as e:
        return _("failed: {error}").format(error=e)
    if done.returncode != 0:
        return _("failed: {error}").format(error=(done.stderr.strip().splitlines() or ["no output"])[-1])
    return json.loads(done.stdout.strip().splitlines()[-1])


def memory_cells(m: dict | str) -> str:
    """"peak (above start)" in MB, or the reason there is no number."""
    if isinstance(m, str) or "peak_mb" not in m:
        return m if isinstance(m, str) else "-"
    return f"{m['peak_mb']:7.0f} ({m['peak_mb'] - m['start_mb']:+6.0f})"


def print_memory(shapes: list[Shape], torch_runs: dict) -> None:
    """Peak resident memory per model, this engine's and torch's, each model in a process of its own."""
    print("\n" + _("peak resident memory (MB), each model trained in a process of its own; in brackets, above the "
                   "process's peak after its imports:"))
    print(f"{'model':<7} {'engine':>16} {'torch':>16}")
    for s in shapes:
        print(f"{s.name:<7} {memory_cells(bench_memory(s)):>16} {memory_cells(torch_runs.get(s.name, '-')):>16}")


def _extra_tables(quick: bool) -> None:
    """Tables of other parts of the engine that ship their own benchmarks."""
    from simulator.bench.attention import print_attention_bench
    from simulator.bench.optimizer import bench_optimizer
    rows = bench_optimizer(n=5_000_000, repeats=3 if quick else 5)
    print("\n" + _("AdamW step over 5 M float32 parameters (the medium model's size):"))
    base = next(r for r in rows if r["impl"] != "numba")
    for r in rows:
        print(f"  {r['impl']:<8} {r['ms']:8.2f} ms {r['gb_per_s']:7.1f} GB/s  ({base['ms'] / r['ms']:.1f}x numpy)")
    print()
    print_attention_bench(quick=quick)
